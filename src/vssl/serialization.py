"""Safe reading and atomic writing of checkpoints and run files: the one place vssl calls
``torch.load`` and ``torch.save``.

Reading: every file goes through ``torch.load(weights_only=True)`` or safetensors, so nothing in a
file is ever executed. Research checkpoints (VideoMAE/SIGMA) pickle an ``argparse.Namespace`` and
older ones numpy scalars; those few data-only types are allow-listed through
``torch.serialization.safe_globals``. Every failure is one :class:`CheckpointError` line naming the
file, without torch's advice to load unsafely.

Writing: a temporary file in the target's folder, fsynced, then ``os.replace``; a reader (or a run
killed mid-write) sees the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

from vssl.errors import CheckpointError, load_failure_reason

META_KEY = "vssl"  # safetensors metadata entry / "meta" entry of a converted backbone's .pt dict


# --- writing --------------------------------------------------------------------------------------

def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, then ``os.replace`` it onto ``path``.

    A write that fails (``ENOSPC`` on a full disk) leaves the old file as it was and removes its
    temporary. The folder is fsynced after the rename so that the new name survives a power loss too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """A small UTF-8 text file (a run summary) through :func:`atomic_write`."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_backbone_file(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], meta: dict) -> None:
    """A converted backbone: safetensors with ``meta`` in its header (``.safetensors``), else a ``.pt``
    dict ``{"backbone": state_dict, "meta": meta}``; :func:`load_checkpoint` reads both back alike."""
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    if Path(path).suffix == ".safetensors":
        from safetensors.torch import save

        atomic_write(path, lambda f: f.write(save(sd, metadata={META_KEY: json.dumps(meta)})))
    else:
        atomic_save({"backbone": sd, "meta": meta}, path)


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


# --- reading --------------------------------------------------------------------------------------

def _safe_globals() -> list:
    """Types a research checkpoint may pickle besides tensors, all data-only."""
    allowed: list = [argparse.Namespace]
    try:
        import numpy as np

        core = getattr(np, "_core", None) or np.core
        allowed += [(core.multiarray.scalar, "numpy.core.multiarray.scalar"), core.multiarray.scalar, np.dtype]
        allowed += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    except Exception:  # numpy absent or moved: Namespace alone still covers VideoMAE/SIGMA
        pass
    return allowed


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a ``.pt/.pth/.tar/.bin`` (weights_only) or ``.safetensors`` file; returns the stored dict.

    A safetensors file with vssl metadata comes back as ``{"backbone": tensors, "meta": {...}}``, as
    :func:`save_backbone_file` wrote it.

    Raises:
        CheckpointError: the file is missing, is not a loadable checkpoint (random bytes, a truncated
            file, a pickle that would run code: nothing in it is executed) or holds no dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint: file not found")
    if path.suffix == ".safetensors":
        return _load_safetensors(path, str(map_location))
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_safe_globals()):
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error says it all
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # UnpicklingError for unknown globals, RuntimeError/EOFError for corrupt files
        reason = load_failure_reason(e)
        if reason.startswith("refusing to unpickle"):
            raise CheckpointError(
                f"{path}: {reason}. Re-save the tensors alone, e.g. torch.save(ckpt['model'], 'weights.pth') "
                "in a trusted environment, then convert that file") from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({reason})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict, found {type(obj).__name__}")
    return dict(obj)


def _load_safetensors(path: Path, device: str) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path), device=device)
        meta = json.loads(header[META_KEY]) if META_KEY in header else None
    except Exception as e:  # SafetensorError (bad header, truncated), JSON errors in the metadata
        raise CheckpointError(f"{path}: not a readable safetensors file ({load_failure_reason(e)})") from None
    return {"backbone": tensors, "meta": meta} if meta is not None else tensors
