"""Two CPU processes with gloo (env as torchrun sets it) compute the gradients of one process on the
same global batch, and only rank 0 writes files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_engine import SHAPE, TinyMethod, tiny_cfg

from vssl.engine import Trainer
from vssl.engine import distributed as D
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
