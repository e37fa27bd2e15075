"""Generic manifest CSVs: bring your own dataset without writing an adapter.

One ``<split>.csv`` per split in the annotations folder (``train.csv``, ``test.csv``, ``val.csv`` ...),
with a header that names the task::

    path,label              clips/jump_001.mp4,jump         classification (class name or integer id)
    path,labels             clips/a.mp4,jump;wave           multi-label (names or ids, ';' or space separated)
    path,count              clips/squats_07.mp4,12          counting (number, may be fractional)

``path`` is relative to the video root. Extra columns are kept as strings in ``meta``.
Classes: ``classes.txt`` (one name per line, line order = index) when present; otherwise, if every
label in every ``*.csv`` of the folder is an integer, ids ``0..max`` named by their number; otherwise the
sorted set of the names seen across all the folder's CSVs, so that train and test agree.
Counting manifests have no classes unless ``classes.txt`` exists.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from vssl.data.datasets.base import (
    MissingAnnotationError,
    VideoList,
    VideoRecord,
    bad_line,
    finish,
    list_files,
    read_lines,
    require_file,
)
from vssl.errors import AnnotationError
from vssl.tasks import TASKS

SPLITS = ("train", "test")
TASK_COLUMNS = {"label": "classification", "labels": "multilabel", "count": "counting"}
_SEP = re.compile(r"[;\s]+")


def split_names(annotations: str | Path) -> tuple[str, ...]:
    """The splits present as ``<split>.csv`` in the folder, ``train`` first."""
    stems = [p.stem for p in list_files(annotations, "*.csv")]
    return tuple(sorted(stems, key=lambda s: (s != "train", s)))


def _read_rows(path: Path) -> tuple[str, str, list[tuple[int, dict]]]:
    """``(task, label column, [(line number, row)])`` of one manifest."""
    with open(require_file(path), encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = fields
        columns = [c for c in TASK_COLUMNS if c in fields]
        if "path" not in fields or len(columns) != 1:
            raise AnnotationError(f"{path}:1: header must be 'path' and one of label, labels, count; got {fields}")
        rows = []
        for row in reader:
            if None in row or row["path"] in (None, "") or row[columns[0]] is None:
                raise bad_line(path, reader.line_num, "wrong number of columns or empty path",
                               ",".join(str(v) for v in row.values()))
            rows.append((reader.line_num, row))
    return TASK_COLUMNS[columns[0]], columns[0], rows


def _tokens(task: str, value: str) -> list[str]:
    return [t for t in _SEP.split(value.strip()) if t] if TASKS[task].multi_label else [value.strip()]


def _collect_classes(ann: Path) -> list[str]:
    classes_txt = ann / "classes.txt"
    if classes_txt.is_file():
        return [line.strip() for _, line in read_lines(classes_txt)]
    tokens: set[str] = set()
    for path in list_files(ann, "*.csv"):
        task, column, rows = _read_rows(path)
        if TASKS[task].has_classes:
            for _, row in rows:
                tokens.update(_tokens(task, row[column]))
    if tokens and all(t.isdigit() for t in tokens):
        return [str(i) for i in range(max(map(int, tokens)) + 1)]
    return sorted(tokens)


def manifest(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    """``<annotations>/<split>.csv`` as a VideoList; the task comes from the header."""
    ann = Path(annotations)
    path = ann / f"{split}.csv"
    if not path.is_file():
        present = ", ".join(split_names(ann)) if ann.is_dir() else "none"
        raise MissingAnnotationError(path, f"manifest (splits present: {present})")
    task, column, rows = _read_rows(path)
    kind = TASKS[task]
    classes = _collect_classes(ann) if kind.has_classes or (ann / "classes.txt").is_file() else []
    index = {name: i for i, name in enumerate(classes)}
    all_ids = bool(classes) and classes == [str(i) for i in range(len(classes))]
    records = []
    for lineno, row in rows:
        meta = {k: v for k, v in row.items() if k not in ("path", column)}
        value = row[column]
        if not kind.has_classes:
            try:
                label: int | list[int] | float = float(value)
            except ValueError:
                raise bad_line(path, lineno, f"count {value!r} is not a number", value) from None
        else:
            ids = []
            for token in _tokens(task, value):
                if token in index:
                    ids.append(index[token])
                elif token.isdigit() and not all_ids and int(token) < len(classes):
                    ids.append(int(token))  # an id next to named classes.txt entries
                else:
                    raise bad_line(path, lineno, f"unknown class {token!r}", f"{row['path']},{value}")
            if kind.single_label and len(ids) != 1:
                raise bad_line(path, lineno, "empty label", row["path"])
            label = ids[0] if kind.single_label else sorted(set(ids))
        records.append(VideoRecord(row["path"].strip(), label, meta))
    return finish(VideoList("csv", split, records, classes, task=task), **opts)
