"""Kill a real `vssl finetune` run with SIGKILL after a checkpoint, resume it, and get the same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from vssl.config import RECIPES

TOY = RECIPES / "finetune" / "toy.yaml"
# 8 batches per epoch: the checkpoint at step 4 (or 8, 12...) is mid-epoch, as is the resume point
ARGS = ["--set", "train.max_steps=16", "--set", "train.ckpt_every=4", "--set", "data.random_size=32"]


def start(out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vssl.cli", "finetune", "--config", str(TOY), "--out", str(out), *ARGS, *extra]
    # same thread count as this process, whose in-process run is the reference
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def kill_after(proc: subprocess.Popen, path: Path, timeout: float = 300) -> threading.Thread:
    """SIGKILL ``proc`` as soon as ``path`` exists (polled in a thread)."""
    def watch():
        deadline = time.monotonic() + timeout
        while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_sigkill_then_resume_gives_bitwise_identical_weights(tmp_path):
    from vssl.cli import main

    full, killed = tmp_path / "full", tmp_path / "killed"
    victim = start(killed)
    watcher = kill_after(victim, killed / "checkpoints" / "step_00000004.pt")
    try:  # the uninterrupted reference runs in this process meanwhile
        assert main(["finetune", "--config", str(TOY), "--out", str(full), *ARGS]) == 0
    finally:
        torch.use_deterministic_algorithms(False)  # the run turned it on for this whole process
    watcher.join()
    out, _ = victim.communicate()
    assert victim.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {out}"
    assert not (killed / "final.pt").exists()
    stopped_at = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert 4 <= stopped_at < 16

    try:  # resumed in this process too: no second torch import, same thread count as the reference
        assert main(["finetune", "--config", str(TOY), "--out", str(killed), *ARGS, "--resume"]) == 0
    finally:
        torch.use_deterministic_algorithms(False)
    for name in ("backbone.pt", "final.pt"):
        a = torch.load(full / name, weights_only=True)
        b = torch.load(killed / name, weights_only=True)
        a, b = a.get("model", a), b.get("model", b)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after resume"
    rows = [[json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines()] for d in (full, killed)]
    assert [r["step"] for r in rows[1]] == list(range(1, 17))  # no duplicated or missing steps
    assert [r["loss"] for r in rows[0]] == [r["loss"] for r in rows[1]]


def test_resume_of_a_finished_run_is_a_no_op(tmp_path):
    from vssl.cli import main

    args = ["finetune", "--config", str(TOY), "--out", str(tmp_path), "--set", "train.max_steps=2",
            "--set", "train.deterministic=false"]
    assert main(args) == 0
    before = torch.load(tmp_path / "backbone.pt", weights_only=True)
    assert main([*args, "--resume"]) == 0
    after = torch.load(tmp_path / "backbone.pt", weights_only=True)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_fresh_start_never_deletes_an_earlier_runs_checkpoints(tmp_path, capsys):
    """A run killed after its step-8 checkpoint, started again without --resume: refused in one line, nothing
    deleted; --overwrite starts again on purpose."""
    from vssl.cli import main

    args = ["finetune", "--config", str(TOY), "--out", str(tmp_path), "--set", "train.max_steps=8",
            "--set", "train.ckpt_every=4", "--set", "train.keep_checkpoints=5", "--set", "train.deterministic=false"]
    assert main(args) == 0
    for name in ("final.pt", "backbone.pt"):  # as if killed right after the last checkpoint
        (tmp_path / name).unlink()
    kept = {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}
    assert {"step_00000004.pt", "step_00000008.pt", "last.pt"} <= set(kept)
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run (checkpoints up to step 8)" in err and "--resume" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()} == kept
    assert main([*args, "--resume"]) == 0 and (tmp_path / "final.pt").is_file()
    assert main(args) == 1  # finished weights are protected too
    assert "final.pt, backbone.pt" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert torch.load(tmp_path / "final.pt", weights_only=True)["step"] == 8
