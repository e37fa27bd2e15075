"""A run's checkpoints: the numbered copies beside ``last.pt``, what ``--resume`` picks, the RNG state
that makes it exact, and the stop signals that checkpoint before a preemption.

A checkpoint is a plain dict of tensors and Python scalars, written by
:func:`vssl.serialization.atomic_save` and read by :func:`vssl.serialization.load_checkpoint`.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import torch

from vssl import distributed as D
from vssl.errors import CheckpointError
from vssl.serialization import atomic_save

LAST = "last.pt"
_NUMBERED = re.compile(r"step_(\d+)\.pt$")


def save_training_checkpoint(ckpt_dir: str | Path, state: dict, step: int, keep: int) -> Path:
    """Write ``last.pt`` and a numbered copy ``step_XXXXXXXX.pt``, keeping the newest ``keep`` copies.

    Args:
        ckpt_dir: the run's ``checkpoints/`` directory.
        state: what to save (see ``Trainer.state_dict``).
        step: optimizer steps done; names the numbered copy.
        keep: numbered copies to keep (0 = only ``last.pt``).

    Returns:
        The path of ``last.pt``.

    Raises:
        OSError: the write failed (e.g. ``ENOSPC``); the previous ``last.pt`` is intact and no
            temporary file is left behind.
    """
    ckpt_dir = Path(ckpt_dir)
    last = ckpt_dir / LAST
    atomic_save(state, last)
    if keep > 0:
        numbered = ckpt_dir / f"step_{step:08d}.pt"
        tmp = ckpt_dir / f".{numbered.name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            try:
                os.link(last, tmp)  # a hard link costs no space or time; last.pt is replaced, not rewritten
            except OSError:
                shutil.copyfile(last, tmp)
            os.replace(tmp, numbered)
        finally:
            tmp.unlink(missing_ok=True)  # a copy cut short by a full disk
        for old in numbered_checkpoints(ckpt_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return last


def resume_candidates(ckpt_dir: str | Path) -> list[Path]:
    """Checkpoints to resume from, best first: ``last.pt``, then the numbered copies, newest first."""
    ckpt_dir = Path(ckpt_dir)
    last = [ckpt_dir / LAST] if (ckpt_dir / LAST).is_file() else []
    return last + numbered_checkpoints(ckpt_dir)[::-1]


def previous_run(out_dir: str | Path) -> str | None:
    """What an earlier run left in ``out_dir`` that a fresh start would delete or overwrite, or None.

    Checkpoints (``checkpoints/*.pt``) and the final weights (``final.pt``, ``backbone.pt``) count: a run
    started afresh over them would lose work that ``--resume`` could have continued.
    """
    out = Path(out_dir)
    steps = [int(_NUMBERED.search(p.name).group(1)) for p in numbered_checkpoints(out / "checkpoints")]
    found = []
    if steps:
        found.append(f"checkpoints up to step {max(steps)}")
    elif (out / "checkpoints" / LAST).is_file():
        found.append("checkpoints/last.pt")
    found += [name for name in ("final.pt", "backbone.pt") if (out / name).is_file()]
    return ", ".join(found) or None


def refuse_overwrite(out_dir: str | Path, resume: bool) -> None:
    """Stop a fresh start that would delete an earlier run's checkpoints or final weights.

    Nothing to continue from (no checkpoint) with ``resume`` still counts as a fresh start. Raises
    ``CheckpointError`` naming what is there and the three ways on: ``--resume``, ``--overwrite`` or
    another ``--out``.
    """
    if resume and resume_candidates(Path(out_dir) / "checkpoints"):
        return
    found = previous_run(out_dir)
    if found:
        raise CheckpointError(f"{out_dir} already holds a run ({found}); continue it with --resume, start it "
                              "again with --overwrite (deletes them), or choose another --out")


def remove_stale_temporaries(ckpt_dir: str | Path) -> None:
    """Delete half-written ``.*.tmp*`` files that a killed run left behind (never read anyway)."""
    for tmp in Path(ckpt_dir).glob(".*.tmp*"):
        tmp.unlink(missing_ok=True)


def numbered_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """The ``step_*.pt`` files of a run, oldest first."""
    files = [p for p in Path(ckpt_dir).glob("step_*.pt") if _NUMBERED.search(p.name)]
    return sorted(files, key=lambda p: int(_NUMBERED.search(p.name).group(1)))


def rng_state() -> dict:
    """Python, NumPy, torch and CUDA generator states as tensors and scalars (weights_only-safe)."""
    version, mt, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "mt": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["mt"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


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
        if not D.is_dist():
            return self.requested
        flag = torch.tensor([float(self.requested)], device=self.device)
        return bool(D.all_reduce_sum(flag).item() > 0)
