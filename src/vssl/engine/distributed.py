"""Process-level helpers: device, seeds, ranks, stop signals, and the seeded sharded sampler.

Under ``torchrun`` (env ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) :func:`init_distributed` starts the
process group (NCCL on CUDA, gloo on CPU). Every helper also works in a single process, where it is
the identity, so callers never branch on "am I distributed".
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from vssl.errors import ConfigError


def launched_with_torchrun() -> bool:
    """True when the environment asks for more than one process (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Only rank 0 logs and writes files."""
    return rank() == 0


def init_distributed(device: torch.device) -> None:
    """Start the process group if launched by torchrun; NCCL for CUDA devices, gloo otherwise."""
    if not launched_with_torchrun() or is_dist():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks (in place) and return it."""
    if is_dist():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Average ``t`` over ranks (in place) and return it."""
    return all_reduce_sum(t).div_(world_size())


@torch.no_grad()
def all_gather(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank along dim 0 (same shape on every rank; no gradient)."""
    if not is_dist():
        return t
    out = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out, dim=0)


def broadcast(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Copy ``t`` from rank ``src`` to every rank (in place) and return it."""
    if is_dist():
        dist.broadcast(t, src=src)
    return t


def ranks_without(folder, device: torch.device) -> list[int]:
    """The ranks that do not see a file rank 0 writes in ``folder`` (empty on one node, or when every node
    mounts the same file system). A collective: every rank must call it.

    Resuming needs this: every rank reads ``checkpoints/`` to pick its step, so a rank with its own local
    folder would start from scratch (or another step) while the others resume, and the ranks hang.
    """
    if not is_dist():
        return []
    from pathlib import Path

    token = torch.randint(1, 2**62, (1,), dtype=torch.long) if is_main() else torch.zeros(1, dtype=torch.long)
    token = broadcast(token.to(device)).item()
    marker = Path(folder) / f".vssl-shared-{token}"
    if is_main():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(token))
    barrier()
    try:
        seen = marker.read_text() == str(token)
    except OSError:
        seen = False
    flags = all_gather(torch.tensor([int(seen)], device=device)).tolist()
    barrier()  # everyone has looked before the marker goes
    if is_main():
        marker.unlink(missing_ok=True)
    return [r for r, ok in enumerate(flags) if not ok]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` = this rank's CUDA device if there is one, else CPU.

    A device this machine does not have (``cuda`` without a GPU, ``cuda:3`` on a 2-GPU host, ``mps``
    off Apple silicon) is a ``ConfigError`` now, not a traceback at the first tensor moved there.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r}: expected auto, cpu, mps, cuda or cuda:N") from None
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank())
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if device.index >= count:
            raise ConfigError(f"device {name!r}: this machine has {count} CUDA device(s) visible to torch "
                              f"(rank's device {device}); use --device cpu or auto")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: MPS is not available here; use --device cpu or auto")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_determinism(deterministic: bool, device: torch.device) -> None:
    """Deterministic kernels when asked (bitwise-exact resume); fast autotuned kernels otherwise."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")  # TF32 matmuls


class EpochBatchSampler:
    """Yields this rank's batches of one epoch, in an order fixed by ``(seed, epoch)``.

    The whole dataset is permuted with a generator seeded from ``seed`` and ``epoch``; it is then
    cut into global batches of ``batch_size * world_size`` indices, and rank ``r`` takes the
    ``r``-th slice of each. So a run on W processes sees exactly the global batches of a
    one-process run with a W-times larger batch, and a resumed run skips exactly the batches it
    had consumed (``start``). The last, incomplete global batch is dropped.

    Args:
        n: dataset length.
        batch_size: per-rank batch size.
        seed: run seed.
        epoch: epoch number (a new order each epoch).
        rank, world_size: this process's shard.
        start: number of (per-rank) batches of this epoch already consumed.
        shuffle: permute, or keep index order.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, start: int = 0, shuffle: bool = True):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.rank, self.world_size, self.start, self.shuffle = rank, world_size, start, shuffle

    @property
    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        glob = self.batch_size * self.world_size
        for b in range(self.start, self.batches_per_epoch):
            lo = b * glob + self.rank * self.batch_size
            yield order[lo:lo + self.batch_size]


class SeededItems(Dataset):
    """Reads every item under RNG streams seeded by ``(seed, epoch, index)``.

    Random clip sampling inside a dataset then depends on what is read, not on which worker reads it
    or how many items were read before, which is what makes a mid-epoch resume exact with any number
    of workers. The caller's RNG states are restored afterwards.
    """

    def __init__(self, dataset: Dataset, seed: int, epoch: int):
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item_seed = ((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index) % 2**62
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            seed_everything(item_seed)
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


class StopSignals:
    """SIGTERM/SIGINT ask the loop to checkpoint at the next step boundary and stop (preemption).

    A second SIGINT interrupts at once. Under DDP the request is all-reduced so every rank stops at
    the same step (the checkpoint is a collective). Handlers are only installed in the main thread.
    """

    def __init__(self, device: torch.device):
        self.device, self.requested, self._previous = device, False, {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def should_stop(self) -> bool:
        if not is_dist():
            return self.requested
        flag = torch.tensor([float(self.requested)], device=self.device)
        return bool(all_reduce_sum(flag).item() > 0)
