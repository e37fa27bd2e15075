"""Kill a real `vssl finetune` run with SIGKILL after a checkpoint, resume it, and get the same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TOY = Path(__file__).resolve().parents[1] / "configs" / "finetune" / "toy.yaml"
# 8 batches per epoch: the checkpoint at step 4 (or 8, 12...) is mid-epoch, as is the resume point
ARGS = ["--set", "train.max_steps=16", "--set", "train.ckpt_every=4", "--set", "data.random_size=32"]


def start(out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vssl.cli", "finetune", "--config", str(TOY), "--out", str(out), *ARGS, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    return out


@pytest.mark.slow
def test_sigkill_then_resume_gives_bitwise_identical_weights(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    reference = start(full)  # runs beside the victim: two cores, two processes
    victim = start(killed)
    first = killed / "checkpoints" / "step_00000004.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "final.pt").exists()
    stopped_at = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert 4 <= stopped_at < 16

    finish(start(killed, "--resume"))
    finish(reference)
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
