"""Process-level helpers used by every layer: ranks, collectives, the device, seeds, determinism.

Under ``torchrun`` (env ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) :func:`init_distributed` starts the
process group (NCCL on CUDA, gloo on CPU). Every helper also works in a single process, where it is
the identity, so callers never branch on "am I distributed". Methods (MoCo's shuffle-BN and queue,
SIGMA's Sinkhorn) and the engine take their collectives from here; only the engine starts and ends
the process group.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

import torch
import torch.distributed as dist

from vssl.errors import ConfigError


def launched_with_torchrun() -> bool:
    """True when the environment asks for more than one process (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_multiprocess() -> bool:
    """A process group of more than one rank is running (collectives have something to combine)."""
    return is_dist() and dist.get_world_size() > 1


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


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of ``t`` over ranks (in place) and return it."""
    if is_dist():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


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
