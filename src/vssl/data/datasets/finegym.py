"""FineGym: Gym99, Gym288 and SEVERE's subsets of Gym99 (``reference/severe-protocols.md`` §3.3, §2.6, §2.8).

Files (``gym/annotations/``)::

    gym99_train.txt       A0xAXXysHUo_E_002184_002237_A_0035_0036.avi 93      (label 0..98)
    gym99_train_org.txt   A0xAXXysHUo_E_002184_002237_A_0035_0036 93          (official, no extension)
    gym288_{train,val}.txt                                                    (label 0..287)

Record path ``<clip>.avi`` (the videos are flat). ``_org.txt`` is read when the ``.avi`` list is missing.
Splits ``train`` / ``val``. Optional ``gym99_categories.txt`` (official ``Clabel: 0; set: 1; Glabel: 1; <name>``)
gives class names; otherwise classes are named by their number.

Subsets: a label filter on the Gym99 lists, relabelled from 0 (``label_range=(lo, hi)``, inclusive):
FX-S1 = 6..16 (11 classes, 1,882 / 777), UB-S1 = 74..88 (15 classes, 3,511 / 1,471).
Gym99 (10³) = a balanced 1000-sample train subset: 11 per class, 1,089 videos (seed 99999).
"""

from __future__ import annotations

import re
from pathlib import Path

from vssl.data.datasets.base import (
    VideoList,
    VideoRecord,
    bad_line,
    check_split,
    finish,
    first_existing,
    parse_int,
    read_lines,
)
from vssl.errors import AnnotationError

SPLITS = ("train", "val")
NUM_CLASSES = {"gym99": 99, "gym288": 288}
FX_S1 = (6, 16)
UB_S1 = (74, 88)
LABEL_SETS = {"fx_s1": FX_S1, "ub_s1": UB_S1, "vault": (0, 5), "floor": (6, 40)}
_CATEGORY = re.compile(r"Clabel:\s*(\d+);.*?;\s*Glabel:\s*\d+;\s*(.*)$")


def _class_names(ann: Path, prefix: str, num_classes: int) -> list[str]:
    path = ann / f"{prefix}_categories.txt"
    names = [str(i) for i in range(num_classes)]
    if path.is_file():
        for lineno, line in read_lines(path):
            m = _CATEGORY.search(line)
            if not m or int(m.group(1)) >= num_classes:
                raise bad_line(path, lineno, "expected 'Clabel: <n>; set: <s>; Glabel: <g>; <name>'", line)
            names[int(m.group(1))] = m.group(2).strip()
    return names


def read_gym_list(path: Path, num_classes: int | None) -> list[VideoRecord]:
    """``<clip>[.avi] <label>`` lines -> flat ``<clip>.avi`` records (labels checked against num_classes)."""
    records = []
    for lineno, line in read_lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise bad_line(path, lineno, "expected '<clip>.avi <label>'", line)
        label = parse_int(parts[1], path, lineno, line)
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise bad_line(path, lineno, f"label {label} outside 0..{(num_classes or 1) - 1}", line)
        clip = parts[0][:-4] if parts[0].endswith(".avi") else parts[0]
        records.append(VideoRecord(f"{clip}.avi", label, {}))
    return records


def _observed_classes(ann: Path, prefix: str, records: list[VideoRecord]) -> int:
    """max label + 1 over every split's list, so that train and val agree on the label space.

    This is 99 / 288 on the official lists, and the true class count of lists with fewer classes
    written in the same format (the synthetic benchmark's Domain B).
    """
    top = max((r.label for r in records), default=-1)
    for split in SPLITS:
        for path in (ann / f"{prefix}_{split}.txt", ann / f"{prefix}_{split}_org.txt"):
            if path.is_file():
                top = max(top, max((r.label for r in read_gym_list(path, NUM_CLASSES.get(prefix))), default=-1))
                break
    return top + 1


def gym(annotations: str | Path, split: str, fold: int = 1, prefix: str = "gym99",
        label_range: tuple[int, int] | None = None, num_classes: int | None = None,
        name: str | None = None, label_set: str | None = None, **opts) -> VideoList:
    """A FineGym list ``<prefix>_{train,val}.txt``, optionally restricted to ``label_range`` (inclusive).

    ``label_set`` names a range of :data:`LABEL_SETS` (``"fx_s1"``, ``"ub_s1"``, ``"vault"``, ``"floor"``).

    ``num_classes`` defaults to max(label) + 1 over the train and val lists (99 / 288 on the official
    lists, which also bound the labels; fewer on lists written by the synthetic benchmark).
    """
    check_split(name or prefix, split, SPLITS)
    if label_set is not None:
        if label_set not in LABEL_SETS:
            raise AnnotationError(f"{prefix}: unknown label_set {label_set!r} (choose {', '.join(LABEL_SETS)})")
        label_range = LABEL_SETS[label_set]
    ann = Path(annotations)
    path = first_existing(ann / f"{prefix}_{split}.txt", ann / f"{prefix}_{split}_org.txt")
    records = read_gym_list(path, num_classes if num_classes is not None else NUM_CLASSES.get(prefix))
    if num_classes is None:
        num_classes = _observed_classes(ann, prefix, records)
    classes = _class_names(ann, prefix, num_classes)
    if label_range is not None:
        lo, hi = int(label_range[0]), int(label_range[1])
        if not 0 <= lo <= hi < num_classes:
            raise AnnotationError(f"{prefix}: label_range {label_range} outside 0..{num_classes - 1}")
        records = [VideoRecord(r.path, r.label - lo, {**r.meta, "gym_label": r.label})
                   for r in records if lo <= r.label <= hi]
        classes = classes[lo : hi + 1]
    return finish(VideoList(name or prefix, split, records, classes), **opts)


def gym99(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    return gym(annotations, split, fold, **{"prefix": "gym99", **opts})


def gym288(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    return gym(annotations, split, fold, **{"prefix": "gym288", **opts})


def fx_s1(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    """FineGym FX-S1 (floor exercise, leap/jump/hop): Gym99 labels 6..16 -> 0..10."""
    return gym(annotations, split, fold, **{"prefix": "gym99", "label_range": FX_S1, "name": "fx_s1", **opts})


def ub_s1(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    """FineGym UB-S1 (uneven bars, circles): Gym99 labels 74..88 -> 0..14."""
    return gym(annotations, split, fold, **{"prefix": "gym99", "label_range": UB_S1, "name": "ub_s1", **opts})


def gym99_1k(annotations: str | Path, split: str, fold: int = 1, num_examples: int = 1000,
             **opts) -> VideoList:
    """SEVERE's Gym99 (10³): 11 per class on train (1,089 videos); val stays full."""
    return gym(annotations, split, fold, **{"prefix": "gym99", "name": "gym99_1k",
                                            "num_examples": num_examples, **opts})
