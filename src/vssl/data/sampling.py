"""Clip samplers: pure functions from a video's (num_frames, fps) to frame indices.

Every function returns ``int64`` numpy indices that are valid for the video (``0 <= i < num_frames``),
so they can go straight to :meth:`vssl.data.video.VideoReader.get_frames`. Randomness comes only
from the ``numpy.random.Generator`` passed in, so a dataset that seeds it from (seed, epoch, index)
is reproducible.

Two ways to lay frames out in time:

* **stride** — ``clip_len`` frames ``stride`` source frames apart (VideoMAE: 16 frames at stride 4
  on K400 / 2 on SSv2, sigma-videomae.md §1.8; Tubelet-Contrast: 16 frames at a stride in {1..4}
  with per-index jitter ``randint(0, stride-1)``, tubelet-contrast.md §3).
* **fps** — ``clip_len`` frames at a target frame rate whatever the native one (SEVERE: 32 frames
  at 16 fps = a 2 s window; source index of time t is ``int(t * native_fps)``, so frames are
  duplicated when the native rate is lower and skipped when higher; severe-protocols.md §2.1).

Short videos (the clip needs frames past the end) are padded by the rule of the method's reference:

* ``"cycle"`` (SEVERE ``pad_missing``): keep the frames that exist and repeat them cyclically
  (``a b c`` -> ``a b c a b c a ...``).
* ``"clamp"`` (Tubelet-Contrast ``RandomFrameSampler``): every out-of-range index becomes the last
  frame (``a b c`` -> ``a b c c c c ...``).
* ``"hold"`` (VideoMAE / SIGMA ``_video_TSN_decord_batch_loader``): the clip stops advancing and
  repeats the last frame it reached; a position advances only while it stays below the video's last
  frame (stride 4 over 10 frames: ``0 4 8 8 ...``; over 9 frames: ``0 4 4 4 ...``, frame 8 unused).
  VideoMAE also counts a clip's span as ``clip_len * stride`` when drawing its start.
"""

from __future__ import annotations

import math

import numpy as np

PAD_MODES = ("cycle", "clamp", "hold")


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


def _check(num_frames: int, clip_len: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got num_frames={num_frames}")
    if clip_len < 1:
        raise ValueError(f"clip_len must be >= 1, got {clip_len}")


def pad_indices(indices, num_frames: int, mode: str = "cycle") -> np.ndarray:
    """Make ``indices`` (ascending positions of one clip) valid for a video of ``num_frames``.

    ``"cycle"`` keeps the in-range prefix and repeats it cyclically to the original length
    (SEVERE); ``"clamp"`` replaces each out-of-range index with ``num_frames - 1`` (Tubelet-Contrast);
    ``"hold"`` keeps the first position and those below ``num_frames - 1``, then repeats the last one
    kept (VideoMAE).
    """
    if mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {mode!r}; choose one of {PAD_MODES}")
    indices = np.asarray(indices, dtype=np.int64)
    if mode == "clamp":
        return np.clip(indices, 0, num_frames - 1)
    if mode == "hold":
        advanced = indices < num_frames - 1
        advanced[0] = True
        last = int(np.flatnonzero(advanced).max())  # ascending positions: the kept ones are a prefix
        held = np.concatenate([indices[:last + 1], np.full(len(indices) - last - 1, indices[last])])
        return np.minimum(held, num_frames - 1)
    valid = indices[(indices >= 0) & (indices < num_frames)]
    if len(valid) == len(indices):
        return indices
    if len(valid) == 0:  # the clip starts past the end: nothing of its own to repeat
        valid = np.array([num_frames - 1], dtype=np.int64)
    return valid[np.arange(len(indices)) % len(valid)]


def clip_span(clip_len: int, stride: int = 1, fps: float = 0.0, target_fps: float = 0.0) -> int:
    """Source frames covered by one clip: ``(clip_len-1)*stride + 1``, or ``clip_len`` frames at
    ``target_fps`` measured in native frames (``ceil(clip_len * fps / target_fps)``)."""
    if target_fps > 0:
        if fps <= 0:
            raise ValueError("sampling at a target fps needs the video's native fps")
        return max(1, math.ceil(clip_len * fps / target_fps))
    return (clip_len - 1) * stride + 1


def stride_clip(start: int, clip_len: int, stride: int, num_frames: int, pad: str = "cycle") -> np.ndarray:
    """Indices ``start, start+stride, ...`` (``clip_len`` of them), padded with ``pad``."""
    return pad_indices(start + np.arange(clip_len, dtype=np.int64) * stride, num_frames, pad)


def fps_clip(start_time: float, clip_len: int, fps: float, target_fps: float, num_frames: int,
             pad: str = "cycle") -> np.ndarray:
    """Frames at times ``start_time + k / target_fps`` (k < clip_len): index ``int(t * fps)``.

    As in SEVERE's ``av_load_video``: times past the end are truncated, then ``pad`` fills the clip.
    """
    times = start_time + np.arange(clip_len) / target_fps
    # A tiny epsilon keeps t*fps = 2.9999999 from flooring to 2 when the rates divide evenly.
    return pad_indices(np.floor(times * fps + 1e-6).astype(np.int64), num_frames, pad)


def random_clip(num_frames: int, clip_len: int, stride: int = 1, rng: np.random.Generator | None = None,
                *, fps: float = 0.0, target_fps: float = 0.0, jitter: bool = False,
                pad: str = "cycle") -> np.ndarray:
    """One random training clip of ``clip_len`` frames.

    Stride mode (``target_fps == 0``): start uniform in ``[0, num_frames - span]``
    (``span = (clip_len-1)*stride + 1``, VideoMAE's ``clip_len*stride`` with ``pad="hold"``; start 0
    when the video is shorter, then ``pad``). With
    ``jitter`` each index gets ``+randint(0, stride-1)`` independently (Tubelet-Contrast
    ``RandomFrameSampler``); jittered indices past the end are clamped.

    FPS mode (``target_fps > 0``, needs the native ``fps``): start time uniform in
    ``[0, duration - clip_len/target_fps]`` (0 when shorter), frames at ``target_fps``
    (SEVERE train "clip" mode: 32 frames at 16 fps, §2.1).
    """
    _check(num_frames, clip_len)
    rng = _rng(rng)
    if target_fps > 0:
        if fps <= 0:
            raise ValueError("sampling at a target fps needs the video's native fps")
        slack = num_frames / fps - clip_len / target_fps
        start_time = rng.uniform(0.0, slack) if slack > 0 else 0.0
        return fps_clip(start_time, clip_len, fps, target_fps, num_frames, pad)
    span = clip_len * stride if pad == "hold" else clip_span(clip_len, stride)
    start = int(rng.integers(0, num_frames - span + 1)) if num_frames >= span else 0
    indices = stride_clip(start, clip_len, stride, num_frames, pad)
    if jitter and stride > 1:
        indices = np.minimum(indices + rng.integers(0, stride, size=clip_len), num_frames - 1)
    return indices


def uniform_clips(num_frames: int, clip_len: int, num_clips: int, stride: int = 1, *, fps: float = 0.0,
                  target_fps: float = 0.0, pad: str = "cycle") -> np.ndarray:
    """``num_clips`` evenly spaced test clips, shape (num_clips, clip_len).

    Starts are ``linspace(0, max(n - span, 0), num_clips)`` cast to int (SEVERE §2.1 dense test,
    VideoMAE §3.4). In stride mode ``n`` and ``span`` count source frames. In fps mode, as in
    SEVERE, the video is first resampled to ``target_fps`` (``n`` = number of resampled frames) and
    each clip is ``clip_len`` consecutive resampled frames. (SEVERE's code uses
    ``max(n - 32, 1)``; the 1 is a quirk that shifts a short video's clips by one frame, not kept.)
    A video shorter than a clip gives the same padded clip ``num_clips`` times.
    """
    _check(num_frames, clip_len)
    if target_fps > 0:
        if fps <= 0:
            raise ValueError("sampling at a target fps needs the video's native fps")
        grid = np.floor(np.arange(math.ceil(num_frames * target_fps / fps) + 1) * fps / target_fps + 1e-6)
        grid = grid[grid < num_frames].astype(np.int64)  # the whole video resampled at target_fps
        starts = np.linspace(0, max(len(grid) - clip_len, 0), num_clips).astype(np.int64)
        positions = starts[:, None] + np.arange(clip_len)[None, :]
        return np.stack([grid[pad_indices(p, len(grid), pad)] for p in positions])
    span = clip_span(clip_len, stride)
    starts = np.linspace(0, max(num_frames - span, 0), num_clips).astype(np.int64)
    return np.stack([stride_clip(int(s), clip_len, stride, num_frames, pad) for s in starts])


def segment_indices(num_frames: int, num_segments: int, rng: np.random.Generator | None = None,
                    train: bool = True, num_views: int = 1) -> np.ndarray:
    """TSN-style sampling (SSv2 in VideoMAE/SIGMA, sigma-videomae.md §3.3-3.4).

    The video is cut into ``num_segments`` equal segments (boundaries ``linspace(0, n, N+1)``).
    Train: one uniformly random frame per segment, shape (N,). Test: shape (num_views, N); view
    ``k`` takes the frame at fraction ``(k + 0.5) / num_views`` of every segment (one view = the
    centres). A video shorter than ``num_segments`` repeats frames in order (segments shorter than
    a frame share it), so no other padding is needed.
    """
    _check(num_frames, num_segments)
    bounds = np.linspace(0.0, num_frames, num_segments + 1)
    lo, length = bounds[:-1], np.diff(bounds)
    if train:
        positions = lo + _rng(rng).random(num_segments) * length
        return np.clip(np.floor(positions).astype(np.int64), 0, num_frames - 1)
    fractions = (np.arange(num_views) + 0.5) / num_views
    positions = lo[None, :] + fractions[:, None] * length[None, :]
    return np.clip(np.floor(positions).astype(np.int64), 0, num_frames - 1)
