"""Training samples of the repetition counter (:mod:`vssl.methods.repetition_counter`) and whole-video
decoding for counting, as SEVERE's UCF-RC code reads UCFRep (``Repetition-Counting/datasets/ucf_aug.py``,
``main.py``; severe-protocols.md §5.2).

- :func:`draw_samples`: ``samples_per_video`` sub-segments of every training video, drawn once per run
  (``make_dataset``): a random range of at least 2 cycles whose ends are jittered inside the neighbouring
  cycles, at most ``max_frames`` long, with the per-frame period labels and the cycles it spans.
- :func:`load_segment`: frames letterboxed to a square (longer side = ``size``, black bars), as
  ``Scale_longerside`` + ``CenterCrop`` do.
- :class:`RepetitionSamples`: the training set over such samples, robust to unreadable videos.
"""

from __future__ import annotations

import numpy as np
import torch

from vssl.data.dataset import ClipDataset, resolve_video_path
from vssl.data.datasets.base import VideoList, VideoRecord


def draw_samples(videos: VideoList, per_video: int, max_frames: int, rng: np.random.Generator) -> VideoList:
    """The training samples of ``videos`` (UCFRep records with ``temporal_bound`` and offset labels).

    Per video with at least 3 cycle bounds b_0..b_{K-1} (1-based frames): first bound index
    ``p ~ U{0..K-3}``, last ``q ~ U{p+2..K}``, count ``q - p``; the sample starts at ``b_0`` (p = 0) or
    uniformly in ``[b_{p-1}, b_p]`` and ends at the last frame (q = K) or uniformly in ``[b_{q-1}, b_q]``,
    cut to ``max_frames``. Records keep the video path; ``meta`` holds ``begin``/``end`` (1-based,
    inclusive) and the offsets of those frames.
    """
    samples = []
    for r in videos.records:
        bounds, start = [int(b) for b in r.meta["temporal_bound"]], int(r.meta["start_frame"])
        end_frame = int(r.meta["end_frame"])
        k = len(bounds)
        if k < 3 or end_frame < start:
            continue
        nxt, pre = np.asarray(r.meta["offset_next"]), np.asarray(r.meta["offset_pre"])
        for _ in range(per_video):
            p = int(rng.integers(0, k - 2))
            q = int(rng.integers(p + 2, k + 1))
            begin = start if p == 0 else int(rng.integers(bounds[p - 1], bounds[p] + 1))
            end = end_frame if q == k else int(rng.integers(bounds[q - 1], bounds[q] + 1))
            end = min(end, begin + max_frames - 1)
            window = slice(begin - start, end - start + 1)
            samples.append(VideoRecord(r.path, float(q - p), {
                "begin": begin, "end": end, "offset_next": nxt[window].tolist(), "offset_pre": pre[window].tolist()}))
    return VideoList(videos.name, videos.split, samples, videos.classes, task="counting")


def load_segment(path, begin: int, end: int, size: int, backend: str = "pyav", chunk: int = 64) -> torch.Tensor:
    """Frames ``begin..end`` (1-based, inclusive) of a video as uint8 (C, n, size, size), letterboxed:
    the longer side resized to ``size`` (``int(size * short / long)`` for the other), centred on black."""
    from vssl.data.video import VideoReader

    with VideoReader(path, backend) as reader:
        h, w = reader.height, reader.width
        oh, ow = (int(size * h / w), size) if w >= h else (size, int(size * w / h))
        out = torch.zeros(3, end - begin + 1, size, size, dtype=torch.uint8)
        top, left = (size - oh) // 2, (size - ow) // 2
        for first in range(begin - 1, end, chunk):  # bounded memory for long videos at native size
            frames = reader.get_frames(range(first, min(first + chunk, end)))
            x = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float(), size=(oh, ow), mode="bilinear",
                                                antialias=True, align_corners=False)
            out[:, first - begin + 1:first - begin + 1 + len(x), top:top + oh, left:left + ow] = \
                x.round_().clamp_(0, 255).to(torch.uint8).permute(1, 0, 2, 3)
    return out


class RepetitionSamples(ClipDataset):
    """The counter's training set: items ``{"video": uint8 (C, D, S, S), "label": {"next", "pre", "count",
    "length"}}`` with D = ``max_frames`` (frames and labels zero-padded after the sample's length).
    Unreadable videos are skipped, counted and logged as in :class:`vssl.data.dataset.ClipDataset`."""

    def __init__(self, samples: VideoList, root, cfg, max_frames: int, *, seed: int = 0, failure_log=None):
        super().__init__(samples, root, cfg, train=True, seed=seed, failure_log=failure_log)
        self.max_frames = max_frames

    def load(self, index: int, times: bool = False):
        r = self.videos.records[index]
        frames = load_segment(resolve_video_path(self.root, r.path), r.meta["begin"], r.meta["end"],
                              self.cfg.crop_size, self.cfg.backend)
        video = torch.zeros(1, 3, self.max_frames, *frames.shape[-2:], dtype=torch.uint8)
        video[0, :, :frames.shape[1]] = frames
        return (video, None) if times else video

    def label(self, record, times) -> dict:
        n = record.meta["end"] - record.meta["begin"] + 1
        out = {"count": torch.tensor(float(record.label)), "length": torch.tensor(n)}
        for key in ("next", "pre"):
            padded = torch.zeros(self.max_frames, dtype=torch.int64)
            padded[:n] = torch.as_tensor(record.meta[f"offset_{key}"], dtype=torch.int64)
            out[key] = padded
        return out


__all__ = ["draw_samples", "load_segment", "RepetitionSamples"]
