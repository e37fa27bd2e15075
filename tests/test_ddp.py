"""Two CPU processes with gloo (env as torchrun sets it) compute the gradients of one process on the
same global batch, and only rank 0 writes files."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_engine import SHAPE, TinyMethod, tiny_cfg

from vssl.engine import Trainer
from vssl import distributed as D
from vssl.engine.toy import RandomClipDataset


def one_sgd_step(out: str, batch_size: int) -> dict[str, torch.Tensor]:
    """One optimizer step of plain SGD (lr 1, no momentum or decay): the weight change is -grad."""
    cfg = tiny_cfg(max_steps=1, ckpt_every=1)
    cfg.data.batch_size, cfg.optim.lr = batch_size, 1.0
    method = TinyMethod()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    Trainer(cfg, method, RandomClipDataset(16, 3, SHAPE), out).fit()
    grads = {k: before[k] - v for k, v in method.state_dict().items()}
    torch.save(grads, Path(out) / f"grad_{D.rank()}.pt")
    D.cleanup()
    return grads


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: str, out: str) -> None:
    """One torchrun-like process: the Trainer starts the gloo group from these variables."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    torch.set_num_threads(1)
    one_sgd_step(out, 4)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_on_the_global_batch(tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)  # this process stays single; the children set their own
    reference = one_sgd_step(str(tmp_path / "single"), 8)  # the same 8 clips in one process
    # fork after the reference: the children reuse every import it triggered (seconds each otherwise)
    mp.start_processes(_rank_main, args=(2, str(free_port()), str(tmp_path / "ddp")), nprocs=2, join=True,
                       start_method="fork")

    for rank in (0, 1):
        grads = torch.load(tmp_path / "ddp" / f"grad_{rank}.pt", weights_only=True)
        for k, g in reference.items():
            assert g.abs().sum() > 0
            torch.testing.assert_close(grads[k], g, rtol=1e-5, atol=1e-7)
    state = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # every rank's RNG, for an exact resume
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 1  # rank 0 only


def _per_node_main(rank: int, world_size: int, port: str, base: str) -> None:
    """A rank whose --out is its own node-local folder (the same path on different disks)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    torch.set_num_threads(1)
    out, report = Path(base) / f"node{rank}", Path(base) / f"rank{rank}.txt"
    lines = []
    try:
        Trainer(tiny_cfg(max_steps=2, ckpt_every=2), TinyMethod(), RandomClipDataset(16, 3, SHAPE), out).fit()
        lines.append("fresh run finished")
        Trainer(tiny_cfg(max_steps=4, ckpt_every=2), TinyMethod(), RandomClipDataset(16, 3, SHAPE), out,
                resume=True).fit()
        lines.append("resumed")
    except Exception as e:  # noqa: BLE001 - reported to the test through the file
        lines.append(f"{type(e).__name__}: {e}")
    finally:
        D.cleanup()
        report.write_text("\n".join(lines))


@pytest.mark.slow
def test_resume_without_a_shared_folder_stops_every_rank_in_one_line(tmp_path, monkeypatch, capfd):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    ctx = mp.start_processes(_per_node_main, args=(2, str(free_port()), str(tmp_path)), nprocs=2, join=False,
                             start_method="fork")
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1) and time.monotonic() < deadline:
        pass
    hung = [p.pid for p in ctx.processes if p.is_alive()]
    for p in ctx.processes:
        if p.is_alive():
            p.kill()
    assert not hung, "the ranks hung instead of stopping"
    for rank in (0, 1):  # both ranks stop at the same check with the same reason
        fresh, error = (tmp_path / f"rank{rank}.txt").read_text().splitlines()
        assert fresh == "fresh run finished"
        assert error.startswith("CheckpointError: ") and "not one folder shared by all ranks (ranks [1]" in error
        assert "desynchronise" in error
    assert (tmp_path / "node0" / "checkpoints" / "last.pt").is_file()  # rank 0's step-2 checkpoint is untouched
    assert "this run's checkpoints cannot be resumed" in capfd.readouterr().err  # the fresh run warned
