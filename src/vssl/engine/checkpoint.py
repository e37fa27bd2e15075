"""Atomic checkpoint files and the RNG state that makes ``--resume`` exact.

A checkpoint is a plain dict of tensors and Python scalars, so it loads with
``torch.load(weights_only=True)`` (no pickled code is ever executed on load).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vssl.errors import CheckpointError, load_failure_reason

LAST = "last.pt"
_NUMBERED = re.compile(r"step_(\d+)\.pt$")


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same directory, fsync, then ``os.replace``.

    A reader (or a run killed mid-write) therefore sees either the old file or the new one, never a
    truncated one; a write that fails (``ENOSPC`` on a full disk) leaves the old file as it was and
    removes its temporary. The directory is fsynced after the rename so that the new name survives
    a power loss too.
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
    _fsync_dir(path.parent)


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write a small text file (a run summary) as :func:`atomic_save` writes checkpoints."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory handles: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`atomic_save` with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing or is not a loadable checkpoint (random bytes, a
            truncated file, a pickle that would run code: nothing in it is executed).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol warnings: the error says it all
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors have many types; the message is what matters
        raise CheckpointError(f"{path}: cannot load checkpoint: {load_failure_reason(e)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: cannot load checkpoint: expected a dict, found {type(state).__name__}")
    return state


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
