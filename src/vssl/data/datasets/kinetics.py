"""Kinetics-400 and Mini-Kinetics-200 (``reference/tubelet-contrast.md`` §5.1).

Kinetics-400, official CSV ``kinetics_{train,val,test}.csv``::

    label,youtube_id,time_start,time_end,split,is_cc
    abseiling,0wR5jVB-WPk,417,427,val,0

-> record ``<label>/<youtube_id>_<start:06d>_<end:06d>.mp4``; classes are the sorted label names.

Kinetics-400, list format ``{train,val}_split_1.txt`` (Tubelet-Contrast's filtered lists)::

    0wR5jVB-WPk_000417_000427 1                           (1-based label, classInd order)

-> record ``<class name>/<name>.mp4``. Pass ``source="list"`` (``"auto"``, the default, reads the CSV
when it exists and the list otherwise). Class names come from ``classInd.txt`` when present (``1 abseiling``
or ``1 abseiling`` with underscores), otherwise from the CSV names sorted as folder names (spaces -> "_",
parentheses dropped): that is the order of the list labels, and it differs from plain sorted names for
two classes ("skiing (not slalom or crosscountry)" / "skiing crosscountry"), so CSV and list labels of
those two classes differ.

Mini-Kinetics-200 ``annotations_mini_kinetics/``::

    action_names.txt     air drumming 2                  (name, 1-based id)
    train_split_1.txt    kIRmvrmc2nM_000020_000030 4     (1-based Mini-Kinetics id)

-> record ``<name>.mp4`` (flat), label = id - 1. Splits ``train`` / ``val``.
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
    parse_int,
    read_lines,
    require_file,
)
from vssl.errors import AnnotationError

SPLITS = ("train", "val")
CSV_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def _read_csv_rows(path: Path) -> list[tuple[int, dict]]:
    with open(require_file(path), encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(f"{path}:1: missing column(s) {', '.join(missing)}")
        return [(reader.line_num, row) for row in reader]


def _row_text(row: dict) -> str:
    return ",".join("" if v is None else str(v) for v in row.values())


def _kinetics_csv(path: Path, split: str) -> VideoList:
    rows = _read_csv_rows(path)
    classes = sorted({row["label"] for _, row in rows if row["label"]})
    index = {name: i for i, name in enumerate(classes)}
    records = []
    for lineno, row in rows:
        if not row["label"] or not row["youtube_id"] or row["time_end"] is None:
            raise bad_line(path, lineno, "empty label, youtube_id or missing columns", _row_text(row))
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except ValueError:
            raise bad_line(path, lineno, "time_start/time_end are not numbers", _row_text(row)) from None
        name = f"{row['youtube_id']}_{start:06d}_{end:06d}"
        records.append(VideoRecord(f"{row['label']}/{name}.mp4", index[row["label"]],
                                   {"youtube_id": row["youtube_id"], "time_start": start, "time_end": end}))
    return VideoList("kinetics400", split, records, classes)


def _folder_order(name: str) -> str:
    return name.replace("(", "").replace(")", "").replace(" ", "_")


def _list_classes(ann: Path) -> list[str]:
    class_ind = ann / "classInd.txt"
    if class_ind.is_file():
        names = []
        for lineno, line in read_lines(class_ind):
            parts = line.split(maxsplit=1)
            if len(parts) != 2 or not parts[0].isdigit():
                raise bad_line(class_ind, lineno, "expected '<id> <class name>'", line)
            names.append(parts[1].strip())
        return names
    for csv_name in ("kinetics_val.csv", "kinetics_train.csv", "kinetics_test.csv"):
        if (ann / csv_name).is_file():
            labels = {row["label"] for _, row in _read_csv_rows(ann / csv_name)}
            return sorted(labels, key=_folder_order)
    return [str(i) for i in range(400)]


def _kinetics_list(path: Path, split: str, classes: list[str], name: str, nested: bool) -> VideoList:
    records = []
    for lineno, line in read_lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise bad_line(path, lineno, "expected '<youtube_id>_<start>_<end> <label>'", line)
        label = parse_int(parts[1], path, lineno, line) - 1
        if not 0 <= label < len(classes):
            raise bad_line(path, lineno, f"label {label + 1} outside 1..{len(classes)}", line)
        rel = f"{classes[label]}/{parts[0]}.mp4" if nested else f"{parts[0]}.mp4"
        records.append(VideoRecord(rel, label, {}))
    return VideoList(name, split, records, classes)


def kinetics400(annotations: str | Path, split: str, fold: int = 1, source: str = "auto",
                **opts) -> VideoList:
    """Kinetics-400 from the official CSV (``source="csv"``) or ``<split>_split_1.txt`` (``"list"``)."""
    check_split("kinetics400", split, SPLITS + ("test",))
    ann = Path(annotations)
    csv_path, list_path = ann / f"kinetics_{split}.csv", ann / f"{split}_split_{fold}.txt"
    if source == "auto":
        source = "list" if not csv_path.is_file() and list_path.is_file() else "csv"
    if source == "csv":
        videos = _kinetics_csv(csv_path, split)
    elif source == "list":
        videos = _kinetics_list(require_file(list_path), split, _list_classes(ann), "kinetics400", nested=True)
    else:
        raise AnnotationError(f"kinetics400: source must be auto, csv or list, got {source!r}")
    return finish(videos, **opts)


def read_action_names(path: str | Path) -> list[str]:
    """``action_names.txt`` lines ``<name with spaces> <1-based id>`` -> names ordered by id."""
    by_id = {}
    for lineno, line in read_lines(path):
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise bad_line(path, lineno, "expected '<class name> <id>'", line)
        by_id[int(parts[1])] = parts[0].strip()
    if sorted(by_id) != list(range(1, len(by_id) + 1)):
        raise AnnotationError(f"{path}: class ids are not 1..{len(by_id)}")
    return [by_id[i] for i in range(1, len(by_id) + 1)]


def mini_kinetics(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    """Mini-Kinetics-200 ``train``/``val``: flat ``<name>.mp4`` records with 0-based labels."""
    check_split("mini_kinetics", split, SPLITS)
    ann = Path(annotations)
    classes = read_action_names(require_file(ann / "action_names.txt"))
    videos = _kinetics_list(ann / f"{split}_split_{fold}.txt", split, classes, "mini_kinetics", nested=False)
    return finish(videos, **opts)
