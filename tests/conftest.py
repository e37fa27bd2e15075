"""Shared fixtures: tiny synthetic videos (good and broken) written on the fly.

``make_video(...)`` writes an H.264 mp4 whose frames are ``moving_square_frames(...)``: the
background level encodes the frame index and a bright square moves left to right, so a decoded
frame can be matched to its source frame (by MAE) and flips/crops can be checked.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

#: the project's shared facts beside the checkout (``../shared``: reference tables, real annotation files)
SHARED = Path(os.environ.get("VSSL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
ANNOTATIONS = Path(os.environ.get("VSSL_ANNOTATIONS", SHARED / "annotations"))


def require_shared(path: Path) -> Path:
    """``path`` under ``../shared``; its absence fails the test, never skips it: CI has ``../shared`` beside
    the checkout, so a missing one there is a broken setup that a skip would hide."""
    if not path.exists():
        pytest.fail(f"{path} not found: ../shared must sit beside the checkout (or set VSSL_SHARED / "
                    "VSSL_ANNOTATIONS)", pytrace=False)
    return path


def usable_backends() -> list[str]:
    """pyav and the optional decoders this machine can use, for parametrising at collection (never a skip;
    an absent decoder is refused in one line, tests/test_reliability_config.py)."""
    from vssl.data.video import BACKENDS, check_backend
    from vssl.errors import ConfigError

    usable = []
    for name in BACKENDS:
        try:
            check_backend(name)
            usable.append(name)
        except ConfigError:
            pass
    return usable


@pytest.fixture
def real_annotations() -> Path:
    """The real annotation files (``../shared/annotations``); see :func:`require_shared`."""
    return require_shared(ANNOTATIONS)


def moving_square_frames(num_frames: int = 24, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3): background level 10 + 7*t (mod 200), a 12px square moving right by 2px/frame."""
    rng = np.random.default_rng(seed)
    tint = rng.integers(0, 40, size=3)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    side = max(4, min(height, width) // 4)
    for t in range(num_frames):
        frames[t] = (10 + 7 * t) % 200 + tint
        x = (2 * t) % max(width - side, 1)
        y = (height - side) // 3
        frames[t, y:y + side, x:x + side] = (250, 240, 60)
    return frames


@pytest.fixture
def make_video(tmp_path):
    """Factory: ``make_video(name="clip.mp4", num_frames=24, height=48, width=64, fps=25, gop=8,
    frames=None) -> Path`` writes ``frames`` (default: ``moving_square_frames``) under tmp_path."""
    from vssl.data.video import write_video

    def make(name: str = "clip.mp4", num_frames: int = 24, height: int = 48, width: int = 64,
             fps: float = 25.0, gop: int = 8, frames: np.ndarray | None = None, seed: int = 0) -> Path:
        if frames is None:
            frames = moving_square_frames(num_frames, height, width, seed)
        path = tmp_path / name
        write_video(path, frames, fps=fps, gop=gop)
        return path

    return make


@pytest.fixture
def broken_videos(tmp_path, make_video) -> dict[str, Path]:
    """Paths of bad inputs: ``missing`` (no file), ``empty`` (0 bytes), ``truncated`` (first 30% of a
    valid mp4) and ``garbage`` (random bytes with an .mp4 name)."""
    folder = tmp_path / "broken"
    folder.mkdir()
    good = make_video("broken/_source.mp4", num_frames=16)
    data = good.read_bytes()
    good.unlink()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(data[: len(data) * 3 // 10])
    (folder / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return {name: folder / f"{name}.mp4" for name in ("missing", "empty", "truncated", "garbage")}


@pytest.fixture
def truncated_indexed_video(tmp_path) -> Path:
    """A 40-frame mp4 with its index first (``movflags=faststart``) cut to 60% of its bytes: it
    opens and claims 40 frames, but only the first ~24 decode (the case check/ClipDataset catch)."""
    from fractions import Fraction

    import av

    path = tmp_path / "truncated_indexed.mp4"
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = 64, 48, "yuv420p", 8
        stream.options = {"crf": "18", "preset": "veryfast", "tune": "zerolatency"}
        for frame in moving_square_frames(40, 48, 64):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path
