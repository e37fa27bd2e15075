"""Atomic checkpoint files and the RNG state that makes ``--resume`` exact.

A checkpoint is a plain dict of tensors and Python scalars, so it loads with
``torch.load(weights_only=True)`` (no pickled code is ever executed on load).
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vssl.errors import CheckpointError

LAST = "last.pt"
_NUMBERED = re.compile(r"step_(\d+)\.pt$")


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same directory, fsync, then ``os.replace``.

    A reader (or a run killed mid-write) therefore sees either the old file or the new one, never a
    truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`atomic_save` with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing or is not a loadable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors have many types; the message is what matters
        raise CheckpointError(f"{path}: cannot load checkpoint: {str(e).splitlines()[0]}") from None


def save_training_checkpoint(ckpt_dir: str | Path, state: dict, step: int, keep: int) -> Path:
    """Write ``last.pt`` and a numbered copy ``step_XXXXXXXX.pt``, keeping the newest ``keep`` copies.

    Args:
        ckpt_dir: the run's ``checkpoints/`` directory.
        state: what to save (see ``Trainer.state_dict``).
        step: optimizer steps done; names the numbered copy.
        keep: numbered copies to keep (0 = only ``last.pt``).

    Returns:
        The path of ``last.pt``.
    """
    ckpt_dir = Path(ckpt_dir)
    last = ckpt_dir / LAST
    atomic_save(state, last)
    if keep > 0:
        numbered = ckpt_dir / f"step_{step:08d}.pt"
        tmp = ckpt_dir / f".{numbered.name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(last, tmp)  # a hard link costs no space or time; last.pt is replaced, not rewritten
        except OSError:
            shutil.copyfile(last, tmp)
        os.replace(tmp, numbered)
        for old in numbered_checkpoints(ckpt_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return last


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
