"""The bad inputs and faults of issue 8, built on demand: broken video trees, untrusted checkpoint
files, a method whose loss turns NaN, a disk that fills up. Used by ``benchmarks/reliability.py``
(the full trials behind RELIABILITY.md) and by ``tests/test_reliability_*.py`` (fewer trials).
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import pickle
import random
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vssl.config import RECIPES

TOY = RECIPES / "finetune" / "toy.yaml"
VIDEO_CONTRAST = RECIPES / "pretrain" / "video_contrast_tiny.yaml"
BROKEN_KINDS = ("zero-byte", "truncated", "random bytes", "non-video renamed .mp4", "missing")


# --------------------------------------------------------------------------------------------------
# Broken videos
# --------------------------------------------------------------------------------------------------

def clip_frames(rng: np.random.Generator, num_frames: int = 12, size: int = 32) -> np.ndarray:
    """uint8 (T, H, W, 3): a tinted background and a bright square moving right."""
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    frames[:] = rng.integers(0, 120, size=3, dtype=np.uint8)
    y, side = int(rng.integers(0, size - 8)), 8
    for t in range(num_frames):
        x = (2 * t) % (size - side)
        frames[t, y:y + side, x:x + side] = (250, 240, 60)
    return frames


def non_video_bytes(rng: np.random.Generator, which: int) -> bytes:
    """A PNG, a JPEG, a WAV or a text file: things that end up named .mp4 by mistake."""
    from PIL import Image

    kind = which % 4
    if kind < 2:
        buf = io.BytesIO()
        image = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        image.save(buf, format="PNG" if kind == 0 else "JPEG")
        return buf.getvalue()
    if kind == 2:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(rng.integers(0, 255, 8000, dtype=np.uint8).tobytes())
        return buf.getvalue()
    return b"subject: the videos you asked for\n\nThey are attached as a zip, not here.\n" * 20


def break_video(path: Path, kind: str, rng: np.random.Generator, which: int = 0) -> None:
    """Turn the good video at ``path`` into one of ``BROKEN_KINDS``."""
    data = path.read_bytes()
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: max(1, len(data) * int(rng.integers(20, 70)) // 100)])
    elif kind == "random bytes":
        path.write_bytes(rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif kind == "non-video renamed .mp4":
        path.write_bytes(non_video_bytes(rng, which))
    elif kind == "missing":
        path.unlink()
    else:
        raise ValueError(kind)


def pick_broken(paths: list[Path], fraction: float, rng: np.random.Generator) -> dict[Path, str]:
    """Break ``fraction`` of ``paths`` (at least one of every kind), kinds in turn; returns path -> kind."""
    n = max(len(BROKEN_KINDS), round(len(paths) * fraction))
    chosen = sorted(rng.choice(len(paths), size=n, replace=False).tolist())
    broken = {}
    for i, index in enumerate(chosen):
        kind = BROKEN_KINDS[i % len(BROKEN_KINDS)]
        break_video(paths[index], kind, rng, which=i // len(BROKEN_KINDS))
        broken[paths[index]] = kind
    return broken


def broken_manifest_tree(root: Path, n_videos: int = 50, fraction: float = 0.1, seed: int = 0,
                         classes: int = 2) -> tuple[Path, Path, dict[str, str]]:
    """``root/videos/*.mp4`` listed in ``root/ann/train.csv`` (the ``csv`` adapter), ``fraction`` broken.

    Returns:
        (video folder, annotation folder, {path as in the manifest: broken kind}).
    """
    from vssl.data.video import write_video

    rng = np.random.default_rng(seed)
    videos, ann = root / "videos", root / "ann"
    ann.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_videos):
        path = videos / f"v{i:03d}.mp4"
        write_video(path, clip_frames(rng), fps=16, gop=4)
        paths.append(path)
    (ann / "train.csv").write_text("path,label\n" + "".join(f"{p.name},c{i % classes}\n" for i, p in enumerate(paths)))
    broken = pick_broken(paths, fraction, rng)
    return videos, ann, {p.name: kind for p, kind in broken.items()}


# --------------------------------------------------------------------------------------------------
# Untrusted checkpoints
# --------------------------------------------------------------------------------------------------

class Payload:
    """Pickles to a call that creates ``marker``: proof that a loader executed code if the file appears."""

    def __init__(self, marker: Path, via: str = "os.system"):
        self.marker, self.via = str(marker), via

    def __reduce__(self):
        if self.via == "exec":
            import builtins

            return (builtins.exec, (f"open({self.marker!r}, 'w').close()",))
        return (os.system, (f"touch {self.marker}",))


def untrusted_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Files a researcher may be handed: random bytes, cut-off files, pickles that run code."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    good = io.BytesIO()
    torch.save({"stem.0.weight": torch.ones(4, 3, 1, 3, 3)}, good)
    files = {
        "random bytes (.pt)": rng.randbytes(4096),
        "random bytes (.pth)": rng.randbytes(300),
        "zero-byte": b"",
        "truncated torch zip": good.getvalue()[: len(good.getvalue()) // 2],
        "pickle (protocol 2) running os.system": pickle.dumps({"model": Payload(marker)}, protocol=2),
        "pickle (protocol 5) running os.system": pickle.dumps({"model": Payload(marker)}, protocol=5),
        "pickle running builtins.exec": pickle.dumps({"state_dict": Payload(marker, "exec")}, protocol=2),
    }
    paths = {}
    for name, data in files.items():
        path = folder / f"{len(paths):02d}{'.pth' if '.pth' in name else '.pt'}"
        path.write_bytes(data)
        paths[name] = path
    zipped = folder / f"{len(paths):02d}.pt"  # torch.save's own format with a payload inside
    torch.save({"model": {"w": torch.ones(2)}, "extra": Payload(marker)}, zipped)
    paths["torch.save zip with a payload"] = zipped
    nested = folder / f"{len(paths):02d}.pt"
    torch.save({"stem.0.weight": torch.ones(1), "hook": Payload(marker, "exec")}, nested)
    paths["state dict with a payload value"] = nested
    st = folder / "weights.safetensors"
    save_file({"w": torch.ones(64)}, str(st))
    (folder / "random.safetensors").write_bytes(rng.randbytes(2048))
    (folder / "truncated.safetensors").write_bytes(st.read_bytes()[:100])
    paths["random bytes (.safetensors)"] = folder / "random.safetensors"
    paths["truncated safetensors"] = folder / "truncated.safetensors"
    return paths


# --------------------------------------------------------------------------------------------------
# Numerical faults and a full disk, on a tiny deterministic method
# --------------------------------------------------------------------------------------------------

SHAPE = (3, 4, 8, 8)


class TinyMethod(nn.Module):
    """A linear classifier on raw pixels whose loss becomes ``bad`` (nan, inf) at the given steps
    (1-based optimizer steps, as in metrics.jsonl), or whose weights turn infinite after ``inf_weights_at``."""

    @dataclass
    class Config:
        pass

    num_clips = 1

    def __init__(self, bad_steps: tuple[int, ...] = (), bad: float = math.nan, inf_weights_at: int = 0):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), 6))
        self.head = nn.Linear(6, 3)
        self.bad_steps, self.bad, self.inf_weights_at = set(bad_steps), bad, inf_weights_at
        self.calls, self.snapshots = 0, {}

    def training_step(self, batch):
        self.calls += 1  # one call per optimizer step (no gradient accumulation here)
        logits = self.head(torch.tanh(self.backbone(batch["video"].float() / 255)))
        loss = F.cross_entropy(logits, batch["label"])
        if self.calls in self.bad_steps:
            loss = loss * self.bad
        return loss, {}

    def after_optimizer_step(self, step: int) -> None:
        self.snapshots[step] = self.head.weight.detach().clone()
        if step == self.inf_weights_at:
            with torch.no_grad():
                self.head.weight[0, 0] = math.inf


def tiny_run_config(max_steps: int = 8, ckpt_every: int = 2, precision: str = "fp32"):
    from vssl.config import RunConfig

    cfg = RunConfig()
    cfg.data.batch_size, cfg.data.num_workers = 8, 0
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.momentum = "sgd", 0.5, 0.0, 0.0
    cfg.schedule.name = "constant"
    cfg.train.max_steps, cfg.train.ckpt_every, cfg.train.keep_checkpoints = max_steps, ckpt_every, 2
    cfg.train.progress, cfg.train.tensorboard, cfg.train.precision = False, False, precision
    return cfg


def tiny_data():
    from vssl.engine.toy import RandomClipDataset

    return RandomClipDataset(16, 3, SHAPE)


@contextlib.contextmanager
def full_disk(at_steps: set[int] | None = None, after_bytes: int = 100, code: int = errno.ENOSPC):
    """Checkpoint writes (``vssl.serialization``'s ``torch.save``) fail with ``OSError(code)``
    after ``after_bytes`` bytes, for checkpoints of the given steps (None = every write).

    Yields a list that collects the steps whose write failed.
    """
    import vssl.serialization as ckpt

    real, failed = torch.save, []

    class Module:  # the checkpoint module's view of torch: everything real except save
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def save(obj, f, *args, **kwargs):
            step = obj.get("step") if isinstance(obj, dict) else None
            if at_steps is None or step in at_steps:
                failed.append(step)
                buf = io.BytesIO()
                real(obj, buf, *args, **kwargs)
                f.write(buf.getvalue()[:after_bytes])  # the part that fitted
                raise OSError(code, os.strerror(code))
            return real(obj, f, *args, **kwargs)

    previous = ckpt.torch
    ckpt.torch = Module()
    try:
        yield failed
    finally:
        ckpt.torch = previous
