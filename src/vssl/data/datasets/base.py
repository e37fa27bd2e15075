"""What every dataset adapter returns, the parsing helpers they share, and SEVERE's subsets.

An adapter turns annotation files into a :class:`VideoList`: records whose ``path`` is relative to
the video root, a label (class index, list of class indices, or a repetition count), and the class
names. Adapters know formats only; decoding and sampling happen elsewhere (``vssl.data``).

Low-sample subsets follow SEVERE's ``get_subset_data`` (``action_recognition/datasets/utils.py``;
``reference/severe-protocols.md`` §2.6).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vssl.data.formats import VIDEO_EXTENSIONS
from vssl.errors import AnnotationError
from vssl.tasks import TASKS
SEVERE_SEED = 99999


class MissingAnnotationError(AnnotationError):
    """An annotation file that a split needs is not there (``summary`` reports the split as missing)."""

    def __init__(self, path: str | Path, what: str = "annotation file"):
        self.path = str(path)
        super().__init__(f"{path}: {what} not found")


@dataclass
class VideoRecord:
    """One video: ``path`` relative to the video root, its label, and format-specific extras."""

    path: str
    label: int | list[int] | float
    meta: dict = field(default_factory=dict)


@dataclass
class VideoList:
    """The videos of one split of one dataset."""

    name: str
    split: str
    records: list[VideoRecord]
    classes: list[str]
    task: str = "classification"
    #: listed videos that ``finish(root=...)`` dropped because they are not on disk (for run summaries)
    missing: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {tuple(TASKS)}, got {self.task!r}")

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self.records)

    def __getitem__(self, i: int) -> VideoRecord:
        return self.records[i]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> list:
        return [r.label for r in self.records]

    def replace(self, records: list[VideoRecord], missing: list[str] | None = None) -> VideoList:
        return VideoList(self.name, self.split, records, self.classes, self.task,
                         self.missing if missing is None else missing)


# ---- parsing helpers --------------------------------------------------------------------------


def bad_line(path: str | Path, lineno: int, why: str, line: str = "") -> AnnotationError:
    """The error for a malformed line: ``<file>:<line>: <why>: '<line>'``."""
    shown = f": {line.strip()[:120]!r}" if line.strip() else ""
    return AnnotationError(f"{path}:{lineno}: {why}{shown}")


def require_file(path: str | Path, what: str = "annotation file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise MissingAnnotationError(path, what)
    return path


def first_existing(*paths: str | Path) -> Path:
    """The first path that is a file; a MissingAnnotationError naming the first one otherwise."""
    for p in paths:
        if Path(p).is_file():
            return Path(p)
    raise MissingAnnotationError(paths[0])


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, line without its end)`` for the non-blank lines (CRLF-safe)."""
    path = require_file(path)
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield lineno, line


def parse_int(text: str, path: str | Path, lineno: int, line: str, what: str = "label") -> int:
    try:
        return int(text)
    except ValueError:
        raise bad_line(path, lineno, f"{what} {text!r} is not an integer", line) from None


def load_json(path: str | Path):
    """Read a JSON file; a syntax error names the file and line."""
    path = require_file(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def check_split(name: str, split: str, allowed: Sequence[str]) -> None:
    if split not in allowed:
        raise AnnotationError(f"{name}: unknown split {split!r} (choose {', '.join(allowed)})")


def is_train_split(split: str) -> bool:
    """SEVERE applies low-sample subsets to split names that contain 'train' only (§2.6)."""
    return "train" in split


# ---- subsets ------------------------------------------------------------------------------------


def _group_key(record: VideoRecord):
    # Classification groups by label; multi-label/counting records have no single class, so they
    # group by meta["class"] when an adapter provides one (UCFRep) and form one group otherwise.
    if isinstance(record.label, (int, np.integer)) and not isinstance(record.label, bool):
        return int(record.label)
    return record.meta.get("class", 0)


def _groups(records: Sequence[VideoRecord]) -> dict:
    groups: dict = {}
    for i, r in enumerate(records):
        groups.setdefault(_group_key(r), []).append(i)
    return dict(sorted(groups.items()))


def balanced_subset(records: Sequence[VideoRecord], num_examples: int = 1000,
                    seed: int = SEVERE_SEED) -> list[VideoRecord]:
    """SEVERE's class-balanced low-sample subset ("10³", §2.6), reproduced draw for draw.

    ``per_class = ceil(num_examples / #classes present)``. One ``np.random.RandomState(seed)`` is
    used sequentially over the classes in ascending label order; each class draws
    ``choice(n_class, min(per_class, n_class), replace=False)`` over its indices in file order (a short
    class still draws, a permutation of all its videos, as the original code does). Records come out
    grouped by class, in draw order. N = 1000 gives 10 per class on UCF101 (1,010) and 11 on Gym99 (1,089).
    """
    if num_examples <= 0:
        raise ValueError(f"num_examples must be positive, got {num_examples}")
    groups = _groups(records)
    if not groups:
        return []
    per_class = math.ceil(num_examples / len(groups))
    rng = np.random.RandomState(seed)
    out: list[VideoRecord] = []
    for indices in groups.values():
        n = len(indices)
        picks = rng.choice(n, min(per_class, n), replace=False)
        out.extend(records[indices[j]] for j in picks)
    return out


def fraction_subset(records: Sequence[VideoRecord], fraction: float, seed: int = 0) -> list[VideoRecord]:
    """A class-balanced fraction: ``ceil(n_c * fraction)`` videos of each class, file order kept.

    Classes are visited in ascending order with one ``np.random.RandomState(seed)``, like
    :func:`balanced_subset`. ``fraction`` = 1 returns every record.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(records)
    rng = np.random.RandomState(seed)
    keep: list[int] = []
    for indices in _groups(records).values():
        k = math.ceil(len(indices) * fraction)
        keep.extend(indices[j] for j in rng.choice(len(indices), k, replace=False))
    return [records[i] for i in sorted(keep)]


def video_exists(root: str | Path, rel: str) -> bool:
    """Is ``rel`` under ``root``, as written or with the same stem and another video extension?"""
    p = Path(root) / rel
    if p.is_file():
        return True
    return any(p.with_suffix(ext).is_file() for ext in VIDEO_EXTENSIONS)


def _parse_subset(subset: str | int | None) -> int | None:
    if subset in (None, "", 0, "0", "full"):
        return None
    text = str(subset).strip().lower()
    try:
        return int(float(text[:-1]) * 1000) if text.endswith("k") else int(text)
    except ValueError:
        raise AnnotationError(f"unknown subset {subset!r} (use e.g. '1k' or a number of videos)") from None


def finish(videos: VideoList, *, num_examples: int | None = None, subset: str | int | None = None,
           fraction: float = 1.0, seed: int | None = None, root: str | Path | None = None) -> VideoList:
    """Options every adapter accepts, applied in SEVERE's order.

    - ``root``: drop records whose video is missing under ``root`` (SEVERE drops them before subsetting).
    - ``num_examples`` (or ``subset="1k"``): :func:`balanced_subset` of a train split (seed 99999
      unless ``seed`` is given). Test/val splits stay full, as in SEVERE.
    - ``fraction``: :func:`fraction_subset` of a train split (seed 0 unless given).
    """
    records, missing = videos.records, None
    if root is not None:
        present = [video_exists(root, r.path) for r in records]
        missing = [r.path for r, ok in zip(records, present) if not ok]
        records = [r for r, ok in zip(records, present) if ok]
    n = num_examples if num_examples is not None else _parse_subset(subset)
    if is_train_split(videos.split):
        if n:
            records = balanced_subset(records, n, SEVERE_SEED if seed is None else seed)
        if fraction != 1.0:
            records = fraction_subset(records, fraction, 0 if seed is None else seed)
    return videos if records is videos.records and not missing else videos.replace(records, missing)


def list_files(folder: str | Path, pattern: str) -> list[Path]:
    """Sorted files matching ``pattern`` in ``folder`` (hidden files such as editor swap files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingAnnotationError(folder, "annotation folder")
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))
