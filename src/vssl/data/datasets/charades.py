"""Charades multi-label classification (``reference/severe-protocols.md`` §3.6).

Official files::

    Charades_v1_classes.txt   c000 Holding some clothes                       (157 lines)
    Charades_v1_train.csv     id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length
                              46GP8,HR43,Kitchen,6,7,Yes,"...","...","...","c092 11.90 21.20;c147 0.00 12.60",24.83

-> record ``<id>.mp4`` with label = sorted list of the class indices present in ``actions`` (may be
empty); ``meta["segments"]`` = ``[(class, start s, end s), ...]`` and ``meta["length"]`` (seconds).
Splits ``train`` / ``test`` (``val`` is accepted for ``test``: PySlowFast's name for it). (SEVERE itself reads PySlowFast frame lists; these CSVs are the
standard distribution and carry the same video-level labels.)

The record label is the test-time (video-level) target. A *training clip* is labelled with the actions
whose interval overlaps the clip (:func:`segment_labels`), as PySlowFast, which takes the union of the
frame labels from the clip's first to its last frame (``slowfast/datasets/charades.py``,
severe-protocols.md §3.6); ``vssl.data.dataset.ClipDataset`` applies it to training clips.
"""

from __future__ import annotations

import csv
from pathlib import Path

from vssl.data.datasets.base import (
    VideoList,
    VideoRecord,
    bad_line,
    check_split,
    finish,
    read_lines,
    require_file,
)
from vssl.errors import AnnotationError

SPLITS = ("train", "test")
NUM_CLASSES = 157


def read_classes(path: Path) -> list[str]:
    """``c000 Holding some clothes`` lines -> names indexed by the class number."""
    names: dict[int, str] = {}
    for lineno, line in read_lines(path):
        code, _, name = line.partition(" ")
        if len(code) != 4 or code[0] != "c" or not code[1:].isdigit():
            raise bad_line(path, lineno, "expected 'c<3 digits> <name>'", line)
        names[int(code[1:])] = name.strip()
    if sorted(names) != list(range(len(names))):
        raise AnnotationError(f"{path}: class codes are not c000..c{len(names) - 1:03d}")
    return [names[i] for i in range(len(names))]


def _parse_actions(text: str, path: Path, lineno: int, num_classes: int) -> list[tuple[int, float, float]]:
    segments = []
    for item in filter(None, (s.strip() for s in text.split(";"))):
        parts = item.split()
        try:
            code, start, end = parts
            cls = int(code[1:]) if code[0] == "c" else -1
            seg = (cls, float(start), float(end))
        except (ValueError, IndexError):
            raise bad_line(path, lineno, f"action {item!r} is not 'c<class> <start> <end>'") from None
        if not 0 <= cls < num_classes:
            raise bad_line(path, lineno, f"action class {code!r} outside c000..c{num_classes - 1:03d}")
        segments.append(seg)
    return segments


def segment_labels(segments, start: float, end: float) -> list[int]:
    """Sorted classes of the ``(class, start s, end s)`` segments that overlap the clip span
    ``[start, end]`` seconds (closed intervals: an action ending where the clip starts counts).

    >>> segment_labels([(92, 11.9, 21.2), (147, 0.0, 12.6)], 13.0, 20.0)
    [92]
    """
    return sorted({int(c) for c, s, e in segments if s <= end and e >= start})


def charades(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    """Charades v1 ``train`` / ``test`` as multi-label video records."""
    check_split("charades", split, SPLITS + ("val",))
    ann = Path(annotations)
    class_file = ann / "Charades_v1_classes.txt"
    classes = read_classes(class_file) if class_file.is_file() else [f"c{i:03d}" for i in range(NUM_CLASSES)]
    path = require_file(ann / f"Charades_v1_{'test' if split == 'val' else split}.csv")
    records = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("id", "actions") if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(f"{path}:1: missing column(s) {', '.join(missing)}")
        for row in reader:
            lineno = reader.line_num
            if not row["id"] or row["actions"] is None:
                raise bad_line(path, lineno, "empty id or too few columns")
            segments = _parse_actions(row["actions"], path, lineno, len(classes))
            try:
                length = float(row["length"]) if row.get("length") else None
            except ValueError:
                raise bad_line(path, lineno, f"length {row['length']!r} is not a number") from None
            labels = sorted({s[0] for s in segments})
            records.append(VideoRecord(f"{row['id']}.mp4", labels, {"segments": segments, "length": length}))
    return finish(VideoList("charades", split, records, classes, task="multilabel"), **opts)
