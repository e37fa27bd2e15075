"""What the frozen protocols (``linear``, ``knn``, ``quick``) keep between runs, each in an explicit folder.

- **Features** (:attr:`Caches.features`, one folder per model): the frozen backbone's features of every
  video of a split, so that the experiments sharing videos (Gym99, its 10^3 subset, FX-S1 and UB-S1 all
  read the Gym99 lists) decode and embed each video once, and every seed reuses them.
- **Clips** (:attr:`Caches.clips`, one folder per results folder): the decoded uint8 test views of a
  split, shared by every model: the clips do not depend on the model or the seed, and on the synthetic
  benchmark most of an evaluation's time was decoding the same files again (``vssl demo``: 7 models).

An entry is one ``.pt`` file named by the dataset, the split and a hash of the fields that decide its
contents; it is written atomically (runs may race) and read with ``weights_only=True``. An entry that
cannot be read, or of an older layout, is computed again. The videos that failed to decode when an
entry was filled are stored with it and recorded again whenever it is read, so a result computed from
the cache still names them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from vssl.data.collate import pad_frames
from vssl.data.dataset import collate_kept, distinct_failures, record_failures
from vssl.serialization import atomic_save, load_checkpoint
from vssl.errors import VsslError

#: decoded clips of a split are kept when they take at most this many bytes
CLIP_CACHE_BYTES = 1 << 30

_CLIP_KEYS = {"video": torch.Tensor, "label": torch.Tensor, "frame_size": torch.Tensor, "index": torch.Tensor}


@dataclass(frozen=True)
class Caches:
    """The folders of the two caches of one run."""

    features: Path  # frozen features of one model (``<out>/runs/<model>/features``)
    clips: Path  # decoded test clips shared by every model (``<out>/clips``)

    def feature_file(self, fields: dict) -> Path:
        return self.features / _file_name(fields)

    def clip_file(self, fields: dict) -> Path:
        return self.clips / _file_name(fields)


def _file_name(fields: dict) -> str:
    """``<dataset>-<split>-<hash of fields>.pt``."""
    tag = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return f"{fields['dataset']}-{fields['split']}-{tag}.pt"


def cached(path: Path, keys: dict, compute: Callable[[], dict | None], failure_log: Path) -> dict | None:
    """The entry at ``path`` when it holds ``keys`` (name -> type), its stored failures recorded in
    ``failure_log``; else ``compute()``, stored at ``path`` unless it is None."""
    stored = _read(path, keys)
    if stored is not None:
        record_failures(failure_log, stored.get("failures", []))  # met when the entry was filled
        return stored
    stored = compute()
    if stored is not None:
        atomic_save(stored, path)  # a per-process temporary: runs may race
    return stored


def _read(path: Path, keys: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        stored = load_checkpoint(path)
        if all(isinstance(stored.get(k), t) for k, t in keys.items()):
            return stored
    except VsslError as e:
        print(f"vssl: warning: {e}; extracting the features again")
    return None


def split_failures(ds, paths: list[str]) -> list[list[str]]:
    """[path, reason] of the failed videos of ``ds`` among ``paths``, once each (kept with an entry)."""
    wanted = set(paths)
    return [[p, r] for p, r in distinct_failures(ds.failure_report()) if p in wanted]


class TensorClips(Dataset):
    """Decoded uint8 clips (padded to one frame size), labels and dataset indices held in memory, served like
    a ClipDataset's test items: each clip cut back to its own frame size (the videos that could not be
    decoded are not among them)."""

    def __init__(self, video: torch.Tensor, label: torch.Tensor, frame_size: torch.Tensor, index: torch.Tensor):
        self.video, self.label, self.frame_size, self.index = video, label, frame_size, index

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict:
        h, w = self.frame_size[i].tolist()
        return {"video": self.video[i][..., :h, :w], "label": self.label[i], "index": self.index[i]}


def decoded_clips(ds, fields: dict, caches: Caches, num_workers: int = 0) -> Dataset:
    """The test views of the ClipDataset ``ds`` from the clip cache (decoded on the first call).

    ``fields`` say which clips are decoded (``dataset``, ``split``, ``clips`` per video, ``num_frames``,
    ``load_size`` ...). Splits whose clips would take more than :data:`CLIP_CACHE_BYTES` (real data at
    112 px, 10 clips) are not cached: ``ds`` itself is returned and decodes them on the fly, as it does
    when no video of the split decodes (the caller reports that).
    """
    estimate = len(ds) * fields["clips"] * 3 * fields["num_frames"] * fields["load_size"] ** 2 * 16 // 9
    if estimate > CLIP_CACHE_BYTES:
        return ds

    def decode() -> dict | None:
        batches = [b for b in DataLoader(ds, batch_size=32, shuffle=False, num_workers=num_workers,
                                         collate_fn=collate_kept) if b is not None]
        if not batches:
            return None
        sizes = torch.cat([b["frame_size"] for b in batches])
        height, width = sizes.max(0).values.tolist()
        return {"video": torch.cat([pad_frames(b["video"], height, width) for b in batches]),
                "label": torch.cat([b["label"] for b in batches]), "frame_size": sizes,
                "index": torch.cat([torch.as_tensor(b["index"]) for b in batches]),
                "failures": split_failures(ds, [r.path for r in ds.videos.records])}

    stored = cached(caches.clip_file(fields), _CLIP_KEYS, decode, ds.failure_log)
    if stored is None:
        return ds
    return TensorClips(stored["video"], stored["label"], stored["frame_size"], stored["index"])


__all__ = ["CLIP_CACHE_BYTES", "Caches", "cached", "decoded_clips", "split_failures", "TensorClips"]
