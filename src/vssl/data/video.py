"""Video decoding and encoding.

``write_video`` encodes uint8 frames as H.264 through PyAV with a short GOP, so that later random
access (seek to the nearest keyframe, decode forward) stays cheap.

``VideoReader`` gives random access to frames through one API over three decoders: PyAV (default,
keyframe seeks, see reference/environment.md §2.1), torchcodec and decord (optional, imported
lazily). Unreadable files raise ``VideoDecodeError(path, reason)``.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import torch

from vssl.errors import ConfigError, VsslError


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

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov")
BACKENDS = ("pyav", "torchcodec", "decord")
FRAME_COUNT_SLACK = 2  # frames a container's frame count may overstate before a file counts as truncated
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


def _library_threads(threads: int) -> int:
    """Our ``threads`` (0 = single, n, -1 = auto) in torchcodec/decord terms (1 = single, 0 = auto)."""
    return 1 if threads == 0 else max(threads, 0)


def _check_indices(path, indices) -> list[int]:
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError(f"{path}: get_frames needs at least one index")
    if min(indices) < 0:
        raise ValueError(f"{path}: negative frame index {min(indices)}")
    return indices



def _yuv420p_to_rgb(planes: list[tuple], size: tuple[int, int] | None) -> torch.Tensor:
    """Convert limited-range yuv420p planes of T frames to uint8 RGB (T, H, W, 3) in one batched op.

    Coefficients are BT.601 (swscale's default for unlabelled video) or BT.709 when the frames say
    so; chroma is upsampled by pixel replication like swscale's fast path. ``size`` = (H, W) resizes
    the clip (bilinear, antialiased) after conversion.
    """
    y = torch.from_numpy(np.stack([p[0] for p in planes])).float()
    u = torch.from_numpy(np.stack([p[1] for p in planes])).float() - 128.0
    v = torch.from_numpy(np.stack([p[2] for p in planes])).float() - 128.0
    h, w = y.shape[1:]
    u = u.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :h, :w]
    v = v.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :h, :w]
    y = (y - 16.0) * (255.0 / 219.0)
    if planes[0][3]:  # BT.709
        kr, kg_u, kg_v, kb = 1.7927, 0.2132, 0.5329, 2.1124
    else:  # BT.601
        kr, kg_u, kg_v, kb = 1.5960, 0.3918, 0.8130, 2.0172
    rgb = torch.stack((y + kr * v, y - kg_u * u - kg_v * v, y + kb * u), dim=-1)
    if size is not None and size != (h, w):
        rgb = torch.nn.functional.interpolate(rgb.permute(0, 3, 1, 2), size=size, mode="bilinear",
                                              align_corners=False, antialias=True).permute(0, 2, 3, 1)
    return rgb.round_().clamp_(0, 255).to(torch.uint8).contiguous()

class _PyAVReader:
    """PyAV decoding with keyframe seeks (see reference/environment.md §2.1).

    For each group of nearby requested frames: seek backward to the keyframe before the first one
    (``container.seek(pts, backward=True, stream=...)``), decode forward and stop after the last
    one. Frames are identified by their pts, so a seek that lands early costs time, never accuracy.
    The needed frames are split into groups where a keyframe lies between two of them (from the
    container's index), since a new seek then skips decoding the gap; without an index, where two
    needed frames are more than ``max_gap`` frames apart.
    """

    max_gap = 48

    def __init__(self, path: str, threads: int, short_side: int):
        import av

        self.path = path
        try:
            self.container = av.open(path)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:  # UnicodeDecodeError: garbage headers
            raise VideoDecodeError(path, f"cannot open: {e}") from e
        try:
            if not self.container.streams.video:
                raise VideoDecodeError(path, "no video stream")
            demuxer = self.container.format.name
            if demuxer == "image2" or demuxer.endswith("_pipe"):  # png_pipe, jpeg_pipe, ...: FFmpeg probes
                # the content, not the name, so a picture renamed .mp4 would "play" as one still frame
                raise VideoDecodeError(path, f"a still image ({demuxer}), not a video")
            self.stream = stream = self.container.streams.video[0]
            if threads != 0:
                stream.thread_type = "AUTO"
                stream.thread_count = max(threads, 0)  # -1 -> 0 = let FFmpeg choose
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.fps = float(rate) if rate else 0.0
            self.native_height, self.native_width = stream.codec_context.height, stream.codec_context.width
            if self.fps <= 0 or self.native_height <= 0:
                raise VideoDecodeError(path, "stream has no frame rate or size")
            self.height, self.width = scaled_size(self.native_height, self.native_width, short_side)
            self._resize = short_side > 0
            self.time_base = float(stream.time_base) if stream.time_base else 0.0
            self.start_pts = stream.start_time or 0
            self.num_frames = stream.frames or self._count_frames()
            if self.num_frames <= 0:
                raise VideoDecodeError(path, "no frames")
            if stream.duration and self.time_base:
                self.duration = float(stream.duration * self.time_base)
            else:
                self.duration = self.num_frames / self.fps
        except VideoDecodeError:
            self.close()
            raise
        except (av.error.FFmpegError, ValueError, ZeroDivisionError) as e:
            self.close()
            raise VideoDecodeError(path, f"bad stream metadata: {e}") from e
        self.last_decoded = 0  # frames decoded by the last get_frames call (for tests and benchmarks)
        self.last_missing: list[int] = []  # requested frames the last call could not reach (clamped)
        self._keyframe_cache: list[int] | None = None

    def _count_frames(self) -> int:
        """Frame count when the container does not store it (webm/mkv): count the demuxed packets."""
        count = sum(1 for p in self.container.demux(self.stream) if p.size > 0)
        self.container.seek(0)
        return count

    def _index_of(self, frame, fallback: int) -> int:
        if frame.pts is None or not self.time_base:
            return fallback
        return round((frame.pts - self.start_pts) * self.time_base * self.fps)

    def _to_array(self, frame):
        """The frame's yuv420p planes (converted later, for the whole clip at once), else RGB.

        At native size, ``frame.to_ndarray(format="rgb24")`` builds a new swscale context for every
        frame (~0.4-0.8 ms even at 32x32); copying the planes costs ~5 us and the batched conversion in
        :func:`_yuv420p_to_rgb` a few more. Reduced-size output keeps swscale, which resizes while
        converting.
        """
        # swscale resizes while it converts (BENCHMARKS.md: faster than converting, then resizing)
        if not self._resize and frame.format.name == "yuv420p" and frame.color_range != 2:  # limited range
            h, w = frame.height, frame.width
            y, u, v = (np.frombuffer(p, np.uint8).reshape(-1, p.line_size) for p in frame.planes)
            return (y[:h, :w], u[:(h + 1) // 2, :(w + 1) // 2], v[:(h + 1) // 2, :(w + 1) // 2],
                    int(frame.colorspace) == 1)  # BT.709 (HD); else BT.601, as swscale assumes
        if self._resize:
            return frame.to_ndarray(format="rgb24", width=self.width, height=self.height)
        return frame.to_ndarray(format="rgb24")

    def _decode_range(self, first: int, last: int, wanted: set[int], out: dict) -> None:
        """Decode from the keyframe before ``first`` up to ``last``; store wanted frames in ``out``."""
        if self.time_base:
            target = self.start_pts + round(first / self.fps / self.time_base)
        else:
            first, target = 0, 0  # no timestamps: frames can only be counted from the start
        self.container.seek(target, backward=True, any_frame=False, stream=self.stream)
        frame = idx = None
        for position, frame in enumerate(self.container.decode(self.stream)):
            self.last_decoded += 1
            idx = self._index_of(frame, position)
            if idx in wanted and idx not in out:
                out[idx] = self._to_array(frame)
            if idx >= last:
                break
        else:  # end of stream before `last`: keep the final frame to stand in for frames past it
            if frame is not None and (self._eof_frame is None or idx > self._eof_frame[0]):
                self._eof_frame = (idx, self._to_array(frame))

    def _keyframes(self) -> list[int]:
        """Frame indices of the keyframes from the container index ([] when it has none).

        MP4 (and most containers') index timestamps are decode timestamps: with B-frames a frame's
        DTS runs ``start_pts - first DTS`` (libx264: 2 frames) before its PTS, so the index is
        shifted by that delay to give display indices ([0, 16, 32] instead of [-2, 14, 30]), the
        frames a seek to a presentation time lands on (``container.seek`` compares PTS). Without the
        shift ``_worth_seeking`` saw a keyframe 2 frames early and re-seeked, decoding up to a GOP twice.
        """
        if self._keyframe_cache is None:
            entries = list(self.stream.index_entries) if self.time_base else []
            first_dts = min((e.timestamp for e in entries), default=self.start_pts)
            self._keyframe_cache = sorted(round((e.timestamp - first_dts) * self.time_base * self.fps)
                                          for e in entries if e.is_keyframe)
        return self._keyframe_cache

    def _worth_seeking(self, previous: int, following: int) -> bool:
        """Seek again for ``following`` when a keyframe lies after ``previous`` and at or before it."""
        keys = self._keyframes()
        if keys:
            k = bisect.bisect_right(keys, following) - 1
            return k >= 0 and keys[k] > previous
        return following - previous > self.max_gap

    def get_frames(self, indices) -> torch.Tensor:
        import av

        indices = [min(i, self.num_frames - 1) for i in _check_indices(self.path, indices)]
        wanted = sorted(set(indices))
        out: dict[int, np.ndarray] = {}
        self.last_decoded, self._eof_frame = 0, None
        try:
            start = 0
            for i in range(1, len(wanted) + 1):  # split into groups that one forward decode serves
                if i == len(wanted) or self._worth_seeking(wanted[i - 1], wanted[i]):
                    self._decode_range(wanted[start], wanted[i - 1], set(wanted[start:i]), out)
                    start = i
            missing = [i for i in wanted if i not in out]
            if missing and min(missing) < max(out, default=-1):
                # A seek landed after a needed frame (broken index): decode from the start once.
                self._decode_range(0, max(missing), set(missing), out)
        except (av.error.FFmpegError, ValueError) as e:
            raise VideoDecodeError(self.path, f"decoding failed: {e}") from e
        if self._eof_frame is not None:
            out.setdefault(*self._eof_frame)
        if not out:
            raise VideoDecodeError(self.path, "no frame could be decoded")
        # Metadata frame counts can overstate the real count by a frame or two: such indices are
        # clamped to the last frame. More missing frames, or holes, mean a truncated/damaged file.
        self.last_missing = [i for i in wanted if i not in out]
        reached = max(out)
        lost = [i for i in self.last_missing if i < reached or i > reached + FRAME_COUNT_SLACK]
        if lost:
            raise VideoDecodeError(self.path, f"truncated or damaged: frame {lost[0]} of {self.num_frames} "
                                              f"cannot be decoded (last decodable: {reached})")
        have = sorted(out)
        frames = [out[i] if i in out else out[have[max(bisect.bisect_right(have, i) - 1, 0)]] for i in indices]
        if isinstance(frames[0], tuple):
            return _yuv420p_to_rgb(frames, (self.height, self.width) if self._resize else None)
        return torch.from_numpy(np.stack(frames))

    def close(self) -> None:
        container = getattr(self, "container", None)
        if container is not None:
            container.close()
            self.container = None


class _TorchCodecReader:
    """torchcodec ``VideoDecoder`` (optional; needs a system FFmpeg, reference/environment.md §2.3)."""

    def __init__(self, path: str, threads: int, short_side: int):
        try:
            from torchcodec.decoders import VideoDecoder
        except Exception as e:  # ImportError, or OSError/RuntimeError when its FFmpeg libs are missing
            raise ImportError(f"backend 'torchcodec' is not usable here: {e}") from e
        self.path, self.short_side = path, short_side
        try:
            self.decoder = VideoDecoder(path, dimension_order="NHWC", seek_mode="exact",
                                        num_ffmpeg_threads=_library_threads(threads))
            meta = self.decoder.metadata
            self.num_frames = int(meta.num_frames or len(self.decoder))
            self.fps = float(meta.average_fps)
            self.native_height, self.native_width = int(meta.height), int(meta.width)
            self.duration = float(meta.duration_seconds or self.num_frames / self.fps)
        except Exception as e:
            raise VideoDecodeError(path, f"torchcodec cannot open: {e}") from e
        self.height, self.width = scaled_size(self.native_height, self.native_width, short_side)

    def get_frames(self, indices) -> torch.Tensor:
        indices = [min(i, self.num_frames - 1) for i in _check_indices(self.path, indices)]
        try:
            frames = self.decoder.get_frames_at(indices=indices).data
        except Exception as e:
            raise VideoDecodeError(self.path, f"torchcodec decoding failed: {e}") from e
        return _resize_thwc(frames, self.height, self.width)

    def close(self) -> None:
        self.decoder = None


class _DecordReader:
    """decord ``VideoReader`` (optional, unmaintained; reference/environment.md §2.4)."""

    def __init__(self, path: str, threads: int, short_side: int):
        try:
            import decord
        except Exception as e:
            raise ImportError(f"backend 'decord' is not usable here: {e}") from e
        self.path = path
        try:
            probe = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
            self.native_height, self.native_width = probe[0].shape[:2]
            self.height, self.width = scaled_size(self.native_height, self.native_width, short_side)
            if short_side > 0:  # decord resizes while decoding
                del probe
                self.vr = decord.VideoReader(path, ctx=decord.cpu(0), width=self.width, height=self.height,
                                             num_threads=_library_threads(threads))
            else:
                self.vr = probe
            self.num_frames = len(self.vr)
            self.fps = float(self.vr.get_avg_fps())
            self.duration = self.num_frames / self.fps
        except Exception as e:
            raise VideoDecodeError(path, f"decord cannot open: {e}") from e

    def get_frames(self, indices) -> torch.Tensor:
        indices = [min(i, self.num_frames - 1) for i in _check_indices(self.path, indices)]
        try:
            return torch.from_numpy(self.vr.get_batch(indices).asnumpy())
        except Exception as e:
            raise VideoDecodeError(self.path, f"decord decoding failed: {e}") from e

    def close(self) -> None:
        self.vr = None


def _resize_thwc(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if frames.shape[1:3] == (height, width):
        return frames
    x = frames.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", antialias=True,
                                        align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


_READERS = {"pyav": _PyAVReader, "torchcodec": _TorchCodecReader, "decord": _DecordReader}


class VideoReader:
    """Random access to the frames of one video, with one API over several decoders.

    Args:
        path: the video file.
        backend: ``"pyav"`` (default, always installed), ``"torchcodec"`` or ``"decord"`` (optional:
            imported lazily; ``ImportError`` names the backend when it is missing).
        threads: decoder threads. 0 = single-threaded (best inside DataLoader workers, which already
            use every core); n > 0 = FFmpeg frame/slice threading with n threads; -1 = FFmpeg's choice.
        short_side: when > 0, frames come out with this short side (aspect kept), resized while
            converting (PyAV swscale, decord) or right after decoding (torchcodec).

    Attributes: ``num_frames`` (container metadata; for PyAV a demux count when absent), ``fps``,
    ``duration`` (seconds), ``height`` and ``width`` (of the frames ``get_frames`` returns).
    Raises :class:`VideoDecodeError` for missing, empty, truncated or undecodable files.
    Use as a context manager (or call ``close``) to release the container.
    """

    def __init__(self, path: str | Path, backend: str = "pyav", threads: int = 0, short_side: int = 0):
        if backend not in _READERS:
            raise ValueError(f"unknown video backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        path = str(path)
        if not Path(path).is_file():
            raise VideoDecodeError(path, "file not found")
        if Path(path).stat().st_size == 0:
            raise VideoDecodeError(path, "empty file (0 bytes)")
        self.path, self.backend = path, backend
        self._impl = _READERS[backend](path, threads, short_side)
        self.num_frames: int = int(self._impl.num_frames)
        self.fps: float = float(self._impl.fps)
        self.duration: float = float(self._impl.duration)
        self.height: int = int(self._impl.height)
        self.width: int = int(self._impl.width)

    def get_frames(self, indices) -> torch.Tensor:
        """uint8 (T, H, W, C) RGB frames at ``indices`` (any order, repeats allowed), in that order.

        Indices past the end are clamped to the last frame (container frame counts are sometimes
        one or two too high). PyAV raises ``VideoDecodeError`` when more than
        ``FRAME_COUNT_SLACK`` frames are missing at the end, or any in the middle (truncation).
        """
        return self._impl.get_frames(indices)

    @property
    def last_decoded(self) -> int:
        """Frames the PyAV backend decoded during the last ``get_frames`` call (-1 for others)."""
        return getattr(self._impl, "last_decoded", -1)

    @property
    def last_missing(self) -> list[int]:
        """Requested frames that the last PyAV ``get_frames`` served clamped to the last frame
        because the container's frame count overstates (at most ``FRAME_COUNT_SLACK``)."""
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
