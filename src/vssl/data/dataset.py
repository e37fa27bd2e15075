"""``ClipDataset``: decoded uint8 clips of a VideoList, robust to bad videos, reproducible.

Each item is ``{"video": uint8 (C, T, H, W) or (V, C, T, H, W), "label": tensor, "index": int}``.
Clips are decoded at reduced resolution (short side ``cfg.load_size``) with their aspect ratio kept:
every reference crops from the whole frame (severe-protocols.md §2.2, sigma-videomae.md §1.8,
tubelet-contrast.md §3), so no pixel is cut here. Batches of different frame sizes stack through
``vssl.data.collate.collate_clips``; crops and other augmentation happen later, batched on the device
(``vssl.data.crops``, ``vssl.data.transforms``).

Bad input never ends a run: in training, a missing, empty, truncated or undecodable video is replaced
by the next index (deterministic); in test mode it is dropped instead (the item is ``None``, which
:func:`collate_kept` leaves out of the batch), because a substitute would be scored under a label that is
not its own. Either way the failure is counted, its path kept and logged once. Failures are
appended to one small file per process in ``failure_log`` (a directory), so counts made inside
DataLoader workers reach the main process (``failures``, ``failed_paths``, ``collect_failures``).

Sampling is reproducible: clip positions come from ``numpy.random.default_rng((seed, epoch,
index))``; ``set_epoch`` updates the epoch through shared memory, so it reaches persistent workers.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vssl.config import DataConfig
from vssl.data import sampling
from vssl.data.video import VIDEO_EXTENSIONS, VideoReader, check_backend
from vssl.errors import VsslError
from vssl.tasks import TASKS, label_kind

log = logging.getLogger("vssl.data")


def resolve_video_path(root: str | Path, path: str | Path) -> Path:
    """``root/path`` if it exists, else the same stem with another video extension (annotation
    files often name .avi/.webm while a prepared tree holds .mp4). Returns ``root/path`` when
    nothing matches, so the error names the path the annotations gave."""
    full = Path(root) / path
    if full.is_file():
        return full
    for ext in VIDEO_EXTENSIONS:
        candidate = full.with_suffix(ext)
        if candidate.is_file():
            return candidate
    return full


def encode_label(label, task: str | None, num_classes: int) -> torch.Tensor:
    """int -> long scalar; list[int] (multilabel) -> multi-hot float (num_classes,); counts -> float
    (``vssl.tasks.label_kind``: the label's own type wins over ``task``)."""
    return label_kind(label, task).encode_label(label, num_classes)


class ClipDataset(Dataset):
    """Clips of the videos in ``videos`` (an object with ``.records``, each with ``.path``/``.label``).

    Args:
        videos: a ``VideoList`` (``.classes`` and ``.task`` are used when present).
        root: directory the record paths are relative to (see :func:`resolve_video_path`).
        cfg: ``num_frames``, ``stride`` or ``fps`` (a target rate; SEVERE: 32 at 16 fps), ``strides``
            (a stride drawn per training clip; Tubelet-Contrast: 1-4) and ``jitter`` (per-index temporal
            jitter in stride mode), ``sampling`` ("random" or "segment"), ``load_size`` (decoded short
            side), ``backend``, ``decoder_threads``.
        num_clips: independent random clips per item in training (2 for video contrast).
        train: random clips; otherwise ``test_clips`` uniformly spaced clips (or segment views).
        test_clips: clips per video in test mode (SEVERE dense test: 10).
        seed: base seed of the per-item generators.
        pad: how clips longer than the video are filled: "cycle" (SEVERE), "clamp" (Tubelet-Contrast)
            or "hold" (VideoMAE); see :mod:`vssl.data.sampling`.
        failure_log: directory for the per-process failure files (a fresh temp dir when None).
        max_skips: consecutive bad videos tolerated before giving up with a ``VsslError``.
        substitute: replace a bad video by the next one (default: in training only); otherwise its item
            is ``None`` and the video is left out (test sets: every score belongs to its own video).
    """

    def __init__(self, videos, root: str | Path, cfg: DataConfig, num_clips: int = 1, train: bool = True,
                 test_clips: int = 1, *, seed: int = 0, pad: str = "cycle",
                 failure_log: str | Path | None = None, max_skips: int = 50, substitute: bool | None = None):
        if cfg.sampling not in ("random", "segment"):
            raise VsslError(f"data.sampling must be 'random' or 'segment', got {cfg.sampling!r}")
        if not len(videos.records):
            raise VsslError(f"{root}: the video list is empty")
        check_backend(cfg.backend, "data.backend")  # else every video would fail (and be skipped) alike
        self.videos, self.root, self.cfg = videos, Path(root), cfg
        self.num_clips = num_clips if train else test_clips
        if pad not in sampling.PAD_MODES:
            raise VsslError(f"unknown pad mode {pad!r} (choose {', '.join(sampling.PAD_MODES)})")
        if any(int(k) < 1 for k in cfg.strides):
            raise VsslError(f"data.strides: every stride must be >= 1, got {list(cfg.strides)}")
        self.train, self.seed, self.pad, self.max_skips = train, seed, pad, max_skips
        self.substitute = train if substitute is None else substitute
        self.task = getattr(videos, "task", None)
        self.num_classes = len(getattr(videos, "classes", []) or [])
        self.failure_log = Path(failure_log or tempfile.mkdtemp(prefix="vssl-failures-"))
        self.failure_log.mkdir(parents=True, exist_ok=True)
        self._epoch = torch.zeros(1, dtype=torch.long).share_memory_()  # seen by persistent workers
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.videos.records)

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch: item ``i`` of epoch ``e`` samples from rng(seed, e, i)."""
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    # -- sampling and decoding -----------------------------------------------------------------

    def clip_indices(self, num_frames: int, fps: float, rng: np.random.Generator,
                     frame_range: tuple[int, int] | None = None) -> np.ndarray:
        """(V, T) frame indices of the clips of one item (V = num_clips, or test_clips in test).

        ``frame_range``: the annotated part ``(first, last)`` (0-based, inclusive; a record's
        ``meta["frame_range"]``, e.g. UCFRep's counted cycles); clips are drawn inside it, clamped to the
        decoded frames.
        """
        if frame_range is not None:
            first, last = int(frame_range[0]), min(int(frame_range[1]), num_frames - 1)
            if not 0 <= first <= last:
                raise ValueError(f"annotated frames {tuple(frame_range)} lie outside the video's {num_frames} frames")
            return first + self.clip_indices(last - first + 1, fps, rng)
        cfg, v = self.cfg, self.num_clips
        if cfg.sampling == "segment":
            if self.train:
                return np.stack([sampling.segment_indices(num_frames, cfg.num_frames, rng) for _ in range(v)])
            return sampling.segment_indices(num_frames, cfg.num_frames, train=False, num_views=v)
        rate = dict(fps=fps, target_fps=cfg.fps) if cfg.fps > 0 else {}
        if self.train:  # each clip draws its own stride (Tubelet-Contrast: its two views play at two speeds)
            strides = rng.choice(cfg.strides, size=v) if cfg.strides else [cfg.stride] * v
            return np.stack([sampling.random_clip(num_frames, cfg.num_frames, int(k), rng, jitter=cfg.jitter,
                                                  pad=self.pad, **rate) for k in strides])
        return sampling.uniform_clips(num_frames, cfg.num_frames, v, cfg.stride, pad=self.pad, **rate)

    def load(self, index: int, times: bool = False):
        """Decode the clips of item ``index``: uint8 (V, C, T, H, W), short side ``load_size``, the
        aspect ratio kept. Raises on a bad video. With ``times``: ``(clips, seconds)``, the (V, T) time
        stamps of the decoded frames."""
        record = self.videos.records[index]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        path = resolve_video_path(self.root, record.path)
        with VideoReader(path, self.cfg.backend, self.cfg.decoder_threads, short_side=self.cfg.load_size) as reader:
            frame_range = getattr(record, "meta", {}).get("frame_range")
            indices = self.clip_indices(reader.num_frames, reader.fps, rng, frame_range)
            frames = reader.get_frames(indices.reshape(-1))  # one pass over the file for all clips
        v, t = indices.shape
        clips = frames.reshape(v, t, *frames.shape[1:]).permute(0, 4, 1, 2, 3).contiguous()
        return (clips, indices / max(reader.fps, 1e-6)) if times else clips

    def label(self, record, times: np.ndarray) -> torch.Tensor:
        """The target of one item. A training item of a record with timed ``segments`` (Charades) is
        labelled with the actions overlapping its clips' spans (the union over its clips), as PySlowFast
        labels a training clip; every other item carries the record's (video-level) label."""
        timed = self.train and self.task is not None and TASKS[self.task].multi_label
        segments = getattr(record, "meta", {}).get("segments") if timed else None
        if segments is None:
            return encode_label(record.label, self.task, self.num_classes)
        from vssl.data.datasets.charades import segment_labels

        classes = set()
        for span in times:
            classes.update(segment_labels(segments, float(span.min()), float(span.max())))
        return encode_label(sorted(classes), self.task, self.num_classes)

    def __getitem__(self, index: int) -> dict | None:
        last_error = None
        for skip in range(min(self.max_skips, len(self)) if self.substitute else 1):
            i = (index + skip) % len(self)
            try:
                clips, times = self.load(i, times=True)
            except Exception as e:  # noqa: BLE001 - any broken file must not end the run
                last_error = e
                self._record_failure(self.videos.records[i].path, e)
                continue
            return {"video": clips[0] if self.num_clips == 1 else clips,
                    "label": self.label(self.videos.records[i], times), "index": i}
        if not self.substitute:
            return None  # dropped: collate_kept leaves it out, the caller counts what is missing
        raise VsslError(f"{self.root}: {min(self.max_skips, len(self))} videos in a row from index {index} "
                        f"could not be decoded; last error: {last_error}")

    # -- failure bookkeeping ---------------------------------------------------------------------

    def _record_failure(self, path: str, error: Exception) -> None:
        reason = str(getattr(error, "reason", None) or f"{type(error).__name__}: {error}").replace("\n", " ")
        with open(self.failure_log / f"failures-{os.getpid()}.tsv", "a", encoding="utf-8") as f:
            f.write(f"{path}\t{reason}\n")
        if path not in self._warned:
            self._warned.add(path)
            log.warning("skipping unreadable video %s (%s); %s", path, reason,
                        "serving the next one" if self.substitute else "left out")

    def failure_report(self) -> list[tuple[str, str]]:
        """Every failed load so far, from all processes: [(path, reason), ...] (repeats kept)."""
        events = []
        for file in sorted(self.failure_log.glob("failures-*.tsv")):
            for line in file.read_text(encoding="utf-8").splitlines():
                path, _, reason = line.partition("\t")
                events.append((path, reason))
        return events

    @property
    def failures(self) -> int:
        """Number of failed loads (a bad video met twice counts twice), across DataLoader workers."""
        return len(self.failure_report())

    @property
    def failed_paths(self) -> list[str]:
        """Distinct paths (as in the annotations) that failed, in first-seen order per process."""
        return list(dict.fromkeys(path for path, _ in self.failure_report()))


def collate_kept(items: list) -> dict | None:
    """:func:`~vssl.data.collate.collate_clips` of the items a test-mode :class:`ClipDataset` could decode
    (dropped ones are ``None``); None when the whole batch was dropped. Items carry their dataset
    ``index``, so the caller knows which videos were scored."""
    from vssl.data.collate import collate_clips

    kept = [item for item in items if item is not None]
    return collate_clips(kept) if kept else None


def record_failures(failure_log: str | Path, failures) -> None:
    """Append ``[(path, reason)]`` met elsewhere (by the run that filled a cache of decoded clips) to a
    ``failure_log`` directory, so that a result computed from the cache still names the unreadable videos."""
    failures = list(failures)
    if failures:
        Path(failure_log).mkdir(parents=True, exist_ok=True)
        with open(Path(failure_log) / f"failures-{os.getpid()}.tsv", "a", encoding="utf-8") as f:
            f.writelines(f"{path}\t{reason}\n" for path, reason in failures)


def distinct_failures(report) -> list[tuple[str, str]]:
    """One (path, reason) per failed video, its first reason, in first-seen order: a video that failed
    twice, or for two reasons (different clips hit different damage), is one unreadable video."""
    first: dict[str, str] = {}
    for path, reason in report:
        first.setdefault(path, reason)
    return list(first.items())


def collect_failures(loader_or_dataset) -> list[tuple[str, str]]:
    """The distinct failed videos, as (path, reason), of a ClipDataset or of a DataLoader over one
    (workers included)."""
    dataset = getattr(loader_or_dataset, "dataset", loader_or_dataset)
    while not hasattr(dataset, "failure_report") and hasattr(dataset, "dataset"):  # Subset wrappers
        dataset = dataset.dataset
    if not hasattr(dataset, "failure_report"):  # synthetic clips: nothing is read, nothing fails
        return []
    return distinct_failures(dataset.failure_report())
