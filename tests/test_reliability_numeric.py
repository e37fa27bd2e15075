"""Issue 8.6: numerical faults. A NaN/Inf loss stops the run with a one-line message naming the step
and keeps the last good checkpoint; weights that turn non-finite are never checkpointed; with an fp16
gradient scaler the step is skipped instead, as the scaler does, until too many in a row. Under DDP a
fault seen by one rank (a NaN loss, a failed checkpoint write on rank 0) stops every rank."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.reliability_cases import TOY, TinyMethod, tiny_data, tiny_run_config  # noqa: E402
from vssl.engine import Trainer  # noqa: E402
from vssl.serialization import load_checkpoint  # noqa: E402
from vssl.errors import NumericalError  # noqa: E402


def _clean_weights(steps: int, tmp: Path) -> dict:
    method = TinyMethod()
    Trainer(tiny_run_config(max_steps=steps, ckpt_every=0), method, tiny_data(), tmp).fit()
    return method.state_dict()


@pytest.mark.parametrize("bad, at, last_good", [(math.nan, 5, 4), (math.inf, 3, 2), (-math.inf, 1, None)])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, bad, at, last_good):
    run = tmp_path / "run"
    with pytest.raises(NumericalError) as err:
        Trainer(tiny_run_config(max_steps=8, ckpt_every=2), TinyMethod((at,), bad), tiny_data(), run).fit()
    text = str(err.value)
    assert f"loss is {bad} at step {at} " in text and "\n" not in text
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, at))  # nothing logged for the bad step
    if last_good is None:
        assert "no checkpoint was written yet" in text and not (run / "checkpoints" / "last.pt").exists()
        return
    assert f"last good checkpoint is {run / 'checkpoints' / 'last.pt'} (step {last_good})" in text
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == last_good
    clean = _clean_weights(last_good, tmp_path / "clean")
    assert all(torch.equal(state["model"][k], clean[k]) for k in clean)  # the good weights, bit for bit
    assert not (run / "final.pt").exists()


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    with pytest.raises(NumericalError, match=r"weights became non-finite \(head.weight\) at step 4 .*\(step 2\)"):
        Trainer(tiny_run_config(max_steps=8, ckpt_every=2), TinyMethod(inf_weights_at=4), tiny_data(), tmp_path).fit()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2


def test_fp16_scaler_skips_the_bad_step_and_goes_on(tmp_path):
    method = TinyMethod((3,), math.nan)
    summary = Trainer(tiny_run_config(max_steps=6, ckpt_every=2, precision="fp16"), method, tiny_data(),
                      tmp_path).fit()
    rows = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    skipped = [r["step"] for r in rows if r["skipped"]]
    assert 3 in skipped and summary["skipped_steps"] == len(skipped) and summary["step"] == 6
    assert torch.equal(method.snapshots[3], method.snapshots[2])  # the NaN step changed nothing
    assert not torch.equal(method.snapshots[4], method.snapshots[3])  # and training went on
    assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"].values())


def test_fp16_scaler_stops_after_too_many_skips_in_a_row(tmp_path):
    cfg = tiny_run_config(max_steps=20, ckpt_every=2, precision="fp16")
    cfg.train.max_skipped_steps = 3
    # steps 3-6 are skipped, so the weights stay finite and the step-4 checkpoint is a good one
    with pytest.raises(NumericalError, match=r"skipped 4 steps in a row .* at step 6 .*\(step 4\)"):
        Trainer(cfg, TinyMethod(tuple(range(3, 21)), math.nan), tiny_data(), tmp_path).fit()


def test_cli_divergence_is_one_line_exit_1(tmp_path, capsys):
    from vssl.cli import main

    rc = main(["finetune", "--config", str(TOY), "--out", str(tmp_path), "--set", "optim.name=sgd",
               "--set", "optim.lr=1e30", "--set", "train.ckpt_every=1", "--set", "train.deterministic=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "at step" in err[0] and "stopped" in err[0], err


def _rank_main(rank: int, port: str, out: str, fault: str) -> None:
    """One of two gloo ranks: a NaN loss on rank 1 only, or a failing (EIO) checkpoint write on rank 0."""
    import errno
    import os

    from benchmarks.reliability_cases import full_disk
    from vssl import distributed as D
    from vssl.errors import VsslError

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=port)
    torch.set_num_threads(1)
    method = TinyMethod((3,) if fault == "nan" and rank == 1 else ())
    cfg = tiny_run_config(max_steps=6, ckpt_every=2)
    cfg.data.batch_size = 4
    try:
        with full_disk(at_steps={4}, code=errno.EIO) if fault == "eio" else contextlib.nullcontext():
            Trainer(cfg, method, tiny_data(), out).fit()
        outcome = "finished"
    except VsslError as e:
        outcome = f"{type(e).__name__}: {e}"
    finally:
        D.cleanup()
    Path(out, f"rank{rank}.txt").write_text(outcome)


@pytest.mark.slow
@pytest.mark.parametrize("fault, error", [("nan", "NumericalError"), ("eio", "CheckpointError")])
def test_ddp_ranks_stop_together(tmp_path, monkeypatch, fault, error):
    """A fault seen by one rank stops every rank at the same step instead of leaving them waiting."""
    import socket

    import torch.multiprocessing as mp

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    ctx = mp.start_processes(_rank_main, args=(port, str(tmp_path), fault), nprocs=2, join=False,
                             start_method="fork")
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        assert time.monotonic() < deadline, "a rank is still waiting: the fault did not stop both"
    outcomes = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert all(o.startswith(error) for o in outcomes), outcomes
    assert all(("at step 3" if fault == "nan" else "step 4") in o for o in outcomes), outcomes
