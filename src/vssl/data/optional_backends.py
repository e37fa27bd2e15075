"""torchcodec and decord behind vssl's frame numbering, used only where they are right.

Both libraries number frames their own way, and both are wrong on common files (measured with
torchcodec 0.17 and decord 0.6, see docs/data.md): torchcodec's index-based access is one frame off
on AVI with B-frames and fails on MPEG-TS/PS; decord keeps the samples before an mp4 edit list,
mis-times AVI B-frame streams and cut MPEG-TS, lands up to 4 frames late on HEVC with B-frames and
fails on rotated video. So vssl asks them for frames by *timestamp* from its own
:class:`~vssl.data.frame_index.FrameIndex` and checks what comes back:

- torchcodec: ``get_frames_played_at`` (exact seek mode) at each frame's timestamp; every returned
  frame's timestamp must be the one asked for, and its frame count must equal the index's.
- decord: only for streams it decodes right (not HEVC, not rotated, timestamps ordered by packets);
  its frame count and every frame's timestamp must equal the index's.

A check that fails raises :class:`Unsupported`; :class:`vssl.data.video.VideoReader` then reads the
file with PyAV and says so once. Both return upright frames (torchcodec applies the display matrix,
decord is never given a rotated file) resized to the same displayed size as PyAV's.
"""

from __future__ import annotations

import numpy as np
import torch

from vssl.data.frame_index import FrameIndex, display_size


class Unsupported(Exception):
    """This backend cannot be trusted with this file (the reason is the message)."""


def library_threads(threads: int) -> int:
    """Our ``threads`` (0 = single, n, -1 = auto) in torchcodec/decord terms (1 = single, 0 = auto)."""
    return 1 if threads == 0 else max(threads, 0)


def resize_thwc(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tuple(frames.shape[1:3]) == (height, width):
        return frames
    x = frames.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", antialias=True,
                                        align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _needs_timestamps(index: FrameIndex, backend: str) -> None:
    if index.mode != "pts":
        raise Unsupported(f"{backend} needs frame timestamps; this file's are unusable ({index.mode} index)")


class TorchCodecReader:
    """torchcodec ``VideoDecoder`` (optional; needs a system FFmpeg, reference/environment.md §2.3)."""

    def __init__(self, path: str, threads: int, short_side: int, index: FrameIndex, error):
        try:
            from torchcodec.decoders import VideoDecoder
        except Exception as e:  # ImportError, or OSError/RuntimeError when its FFmpeg libs are missing
            raise ImportError(f"backend 'torchcodec' is not usable here: {e}") from e
        _needs_timestamps(index, "torchcodec")
        if index.container in ("mpegts", "mpeg"):
            raise Unsupported("torchcodec cannot decode frames by timestamp in MPEG-TS/PS")
        self.path, self.index, self._error = path, index, error
        try:
            # exact mode: approximate seeks return neighbouring frames on HEVC, VFR and edit lists
            self.decoder = VideoDecoder(path, dimension_order="NHWC", seek_mode="exact",
                                        num_ffmpeg_threads=library_threads(threads))
            count = len(self.decoder)
        except Exception as e:  # noqa: BLE001 - anything it cannot open, PyAV may still read
            raise Unsupported(f"torchcodec cannot open it: {e}") from e
        if count != index.num_frames:
            raise Unsupported(f"torchcodec counts {count} frames, a sequential decode {index.num_frames}")
        self.num_frames, self.fps = index.num_frames, index.fps
        self.duration = self.num_frames / self.fps
        self.height, self.width = display_size(index.height, index.width, index.sar, index.rotation, short_side)
        self._native = display_size(index.height, index.width, index.sar, index.rotation, 0)

    def get_frames(self, indices: list[int]) -> torch.Tensor:
        frames = [min(i, self.num_frames - 1) for i in indices]
        times = self.index.labels[frames] * self.index.time_base
        try:
            batch = self.decoder.get_frames_played_at(seconds=times.tolist())
        except Exception as e:  # noqa: BLE001
            raise Unsupported(f"torchcodec failed: {str(e).splitlines()[0]}") from e
        got = batch.pts_seconds.numpy()
        if np.abs(got - times).max(initial=0.0) > self.index.time_base / 2:
            raise Unsupported("torchcodec returned frames other than the ones asked for")
        data = batch.data
        if tuple(data.shape[1:3]) != self._native:
            raise Unsupported(f"torchcodec returned {tuple(data.shape[1:3])} frames, the display is {self._native}")
        return resize_thwc(data, self.height, self.width)

    def close(self) -> None:
        self.decoder = None


class DecordReader:
    """decord ``VideoReader`` (optional, unmaintained; reference/environment.md §2.4)."""

    def __init__(self, path: str, threads: int, short_side: int, index: FrameIndex, error):
        try:
            import decord
        except Exception as e:
            raise ImportError(f"backend 'decord' is not usable here: {e}") from e
        decord.logging.set_level(decord.logging.QUIET)  # its own FFmpeg would print every decode error
        _needs_timestamps(index, "decord")
        if index.codec == "hevc":
            raise Unsupported("decord returns frames up to 4 late on HEVC with B-frames")
        if index.rotation:
            raise Unsupported("decord cannot read rotated video")
        self.path, self._error = path, error
        self.num_frames, self.fps = index.num_frames, index.fps
        self.duration = self.num_frames / self.fps
        self.height, self.width = display_size(index.height, index.width, index.sar, 0, short_side)
        size = dict(width=self.width, height=self.height) if short_side > 0 else {}  # resized while decoding
        try:
            self.vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=library_threads(threads), **size)
            count = len(self.vr)
            times = self.vr.get_frame_timestamp(list(range(count)))[:, 0] if count == index.num_frames else None
        except Exception as e:  # noqa: BLE001
            raise Unsupported(f"decord cannot open it: {e}") from e
        if times is None:
            raise Unsupported(f"decord counts {count} frames, a sequential decode {index.num_frames}")
        # decord stores float32 seconds: allow its rounding, far below a frame interval
        if np.abs(times - index.labels * index.time_base).max() > max(index.time_base, 1e-4) + 1e-6 * times.max():
            raise Unsupported("decord's frame timestamps differ from the display order")

    def get_frames(self, indices: list[int]) -> torch.Tensor:
        frames = [min(i, self.num_frames - 1) for i in indices]
        try:
            return torch.from_numpy(self.vr.get_batch(frames).asnumpy())
        except Exception as e:  # noqa: BLE001
            raise self._error(self.path, f"decord decoding failed: {e}") from e

    def close(self) -> None:
        self.vr = None
