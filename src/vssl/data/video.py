"""Video decoding and encoding.

``write_video`` encodes uint8 frames as H.264 through PyAV with a short GOP, so that later random
access (seek to the nearest keyframe, decode forward) stays cheap.

``VideoReader`` gives random access to frames through one API over three decoders: PyAV (default,
keyframe seeks over a frame index, :mod:`vssl.data.pyav_reader`), torchcodec and decord (optional,
imported lazily, used only where they are right: :mod:`vssl.data.optional_backends`). Frame ``i``
is the ``i``-th frame a sequential decode shows (:mod:`vssl.data.frame_index`), upright. Unreadable
files raise ``VideoDecodeError(path, reason)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from vssl.data.formats import VIDEO_EXTENSIONS  # noqa: F401 - re-exported: vssl.data.video is its home for users
from vssl.errors import ConfigError, VsslError

log = logging.getLogger("vssl.data")


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0, gop: int = 16,
                crf: int = 18, codec: str = "libx264") -> None:
    """Encode frames as an H.264 mp4 (yuv420p).

    Args:
        path: output file; parent folders are created.
        frames: uint8 array (T, H, W, 3), RGB. H and W must be even (yuv420p).
        fps: frame rate written into the container.
        gop: keyframe interval; short GOPs make seeking cheap (see reference/environment.md §2.1).
        crf: x264 constant rate factor (lower = better quality).
    """
    import av

    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"write_video({path}): expected uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"write_video({path}): height and width must be even, got {h}x{w}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from fractions import Fraction

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.gop_size = gop
        stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"} if codec == "libx264" else {}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------

BACKENDS = ("pyav", "torchcodec", "decord")
_BACKEND_MODULES = {"torchcodec": "torchcodec.decoders", "decord": "decord"}


def check_backend(name: str, key: str = "--backend") -> None:
    """Refuse an unknown or unusable decoder before any video is opened.

    Checked per video instead, a wrong name or a missing library made every good file "unreadable".
    Raises ``ConfigError`` naming ``key`` (the option or config key that chose the backend).
    """
    if name not in BACKENDS:
        raise ConfigError(f"{key}: unknown video backend {name!r} (choose one of {', '.join(BACKENDS)})")
    module = _BACKEND_MODULES.get(name)
    if module:
        import importlib

        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - ImportError, or OSError/RuntimeError when FFmpeg is missing
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise ConfigError(f"{key} {name}: the decoder is not usable here ({reason}); install it "
                              f"(pip install 'vssl[{name}]') or use pyav") from None


class VideoDecodeError(VsslError):
    """A video that cannot be opened or decoded. ``path`` and ``reason`` are kept for reports."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # picklable across DataLoader / process-pool workers
        return (type(self), (self.path, self.reason))


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the short side set to ``short_side`` and the aspect ratio kept (0 = unchanged)."""
    if short_side <= 0:
        return height, width
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def _check_indices(path, indices) -> list[int]:
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError(f"{path}: get_frames needs at least one index")
    if min(indices) < 0:
        raise ValueError(f"{path}: negative frame index {min(indices)}")
    return indices


def _check_file(path: str) -> None:
    if not Path(path).is_file():
        raise VideoDecodeError(path, "file not found")
    if Path(path).stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")


_REFUSED: set[tuple[str, str]] = set()  # (path, backend) that fell back to PyAV in this process


def frame_index(path: str | Path):
    """The :class:`~vssl.data.frame_index.FrameIndex` of a video (cached; PyAV builds it when absent)."""
    from vssl.data.frame_index import cached_index, file_key
    from vssl.data.pyav_reader import PyAVReader

    path = str(path)
    _check_file(path)
    index = cached_index(file_key(path))
    if index is None:
        reader = PyAVReader(path, 0, 0, VideoDecodeError)
        index = reader.index
        reader.close()
    return index


def _optional_reader(path: str, backend: str, threads: int, short_side: int):
    """The optional backend's reader, or None (with a one-time warning) where it cannot be right."""
    from vssl.data.optional_backends import DecordReader, TorchCodecReader, Unsupported

    cls = {"torchcodec": TorchCodecReader, "decord": DecordReader}[backend]
    if (path, backend) in _REFUSED:  # known from an earlier open in this process: no second try
        return None
    try:
        return cls(path, threads, short_side, frame_index(path), VideoDecodeError)
    except Unsupported as e:
        _fall_back(path, backend, str(e))
        return None


def _fall_back(path: str, backend: str, reason: str) -> None:
    if (path, backend) not in _REFUSED:
        _REFUSED.add((path, backend))
        log.warning("%s: read with pyav instead of %s (%s)", path, backend, reason)


class VideoReader:
    """Random access to the displayed frames of one video, with one API over several decoders.

    Frame ``i`` is the ``i``-th frame a sequential decode from the start of the file outputs, and
    ``num_frames`` is how many it outputs, on every backend and container (see
    :mod:`vssl.data.frame_index`). Frames come out upright (the display matrix applied).

    Args:
        path: the video file.
        backend: ``"pyav"`` (default, always installed), ``"torchcodec"`` or ``"decord"`` (optional:
            imported lazily; ``ImportError`` names the backend when it is missing). Where an optional
            backend cannot be right on a file (:mod:`vssl.data.optional_backends`), PyAV reads it
            instead, with one warning; ``decoder`` names the backend actually used.
        threads: decoder threads. 0 = single-threaded (best inside DataLoader workers, which already
            use every core); n > 0 = FFmpeg frame/slice threading with n threads; -1 = FFmpeg's choice.
        short_side: when > 0, frames come out with this short side, the displayed aspect kept (sample
            aspect ratio and rotation applied), resized while converting (PyAV swscale, decord) or
            right after decoding (torchcodec). 0 returns the stored pixels, rotated upright.

    Attributes: ``num_frames``, ``fps`` (displayed frames per second, averaged over the video),
    ``duration`` (seconds), ``height`` and ``width`` (of the frames ``get_frames`` returns).
    Raises :class:`VideoDecodeError` for missing, empty, truncated or undecodable files.
    Use as a context manager (or call ``close``) to release the container.
    """

    def __init__(self, path: str | Path, backend: str = "pyav", threads: int = 0, short_side: int = 0):
        if backend not in BACKENDS:
            raise ValueError(f"unknown video backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        path = str(path)
        _check_file(path)
        self.path, self.backend = path, backend
        self._options = (threads, short_side)
        self._impl = _optional_reader(path, backend, threads, short_side) if backend != "pyav" else None
        if self._impl is None:
            self._impl = self._pyav()

    def _pyav(self):
        from vssl.data.pyav_reader import PyAVReader

        return PyAVReader(self.path, *self._options, VideoDecodeError)

    @property
    def decoder(self) -> str:
        """The backend that decodes this file: ``backend``, or "pyav" where it fell back."""
        return "pyav" if type(self._impl).__name__ == "PyAVReader" else self.backend

    num_frames = property(lambda self: int(self._impl.num_frames))
    fps = property(lambda self: float(self._impl.fps))
    duration = property(lambda self: float(self._impl.duration))
    height = property(lambda self: int(self._impl.height))
    width = property(lambda self: int(self._impl.width))

    def get_frames(self, indices) -> torch.Tensor:
        """uint8 (T, H, W, C) RGB frames at ``indices`` (any order, repeats allowed), in that order.

        Indices past the end are clamped to the last frame. PyAV raises ``VideoDecodeError`` when
        frames before the last decodable one cannot be decoded, or more than ``FRAME_COUNT_SLACK``
        past it (a truncated or damaged file).
        """
        from vssl.data.optional_backends import Unsupported

        indices = _check_indices(self.path, indices)
        try:
            return self._impl.get_frames(indices)
        except Unsupported as e:  # an optional backend's result failed its check: PyAV reads the file
            _fall_back(self.path, self.backend, str(e))
            self._impl.close()
            self._impl = self._pyav()
            return self._impl.get_frames(indices)

    @property
    def last_decoded(self) -> int:
        """Frames the PyAV backend decoded during the last ``get_frames`` call (-1 for others)."""
        return getattr(self._impl, "last_decoded", -1)

    @property
    def last_missing(self) -> list[int]:
        """Requested frames that the last PyAV ``get_frames`` served clamped to the last decodable
        frame (at most ``FRAME_COUNT_SLACK`` past it)."""
        return list(getattr(self._impl, "last_missing", []))

    def close(self) -> None:
        self._impl.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"VideoReader({self.path!r}, backend={self.backend!r}: {self.num_frames} frames, "
                f"{self.fps:.3g} fps, {self.width}x{self.height})")
