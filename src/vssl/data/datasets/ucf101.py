"""UCF101 and HMDB51: the two classic three-fold benchmarks (``reference/severe-protocols.md`` §3.1).

UCF101 (``ucfTrainTestlist/``)::

    classInd.txt      1 ApplyEyeMakeup                              (101 lines, 1-based id, name)
    trainlist01.txt   ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1
    testlist01.txt    ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi   (no label column)

The label is the 0-based position of the path's folder in classInd order (the numeric column of the
train lists is ignored, as in SEVERE's loader); the record path is the list entry as written,
``<Class>/<video>.avi``. ``ucf101_1k`` is SEVERE's 1000-sample train subset (10 per class, 1,010 videos,
seed 99999, §2.6); its test split is the full test list.

HMDB51 (``testTrainMulti_7030_splits/``)::

    brush_hair_test_split1.txt   April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1

one file per class and fold; the number says 1 = train, 2 = test, 0 = unused. Classes are the
sorted class names from the file names; record path ``<class>/<video>.avi``.
"""

from __future__ import annotations

from pathlib import Path

from vssl.data.datasets.base import (
    VideoList,
    VideoRecord,
    bad_line,
    check_split,
    finish,
    list_files,
    read_lines,
    require_file,
)
from vssl.errors import AnnotationError

SPLITS = ("train", "test")


def _check_fold(name: str, fold: int) -> None:
    if fold not in (1, 2, 3):
        raise AnnotationError(f"{name}: fold must be 1, 2 or 3, got {fold}")


def read_class_index(path: str | Path) -> list[str]:
    """``classInd.txt`` lines ``<1-based id> <name>`` -> names in file order."""
    classes = []
    for lineno, line in read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise bad_line(path, lineno, "expected '<id> <ClassName>'", line)
        classes.append(parts[1])
    return classes


def ucf101(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    """UCF101 ``train``/``test`` lists of fold 1, 2 or 3."""
    check_split("ucf101", split, SPLITS)
    _check_fold("ucf101", fold)
    ann = Path(annotations)
    classes = read_class_index(require_file(ann / "classInd.txt"))
    index = {name: i for i, name in enumerate(classes)}
    list_path = ann / f"{split}list0{fold}.txt"
    records = []
    for lineno, line in read_lines(list_path):
        parts = line.split()
        if len(parts) not in (1, 2) or "/" not in parts[0]:
            raise bad_line(list_path, lineno, "expected '<Class>/<video>.avi [label]'", line)
        folder = parts[0].split("/", 1)[0]
        if folder not in index:
            raise bad_line(list_path, lineno, f"class folder {folder!r} is not in classInd.txt", line)
        records.append(VideoRecord(parts[0], index[folder], {}))
    return finish(VideoList("ucf101", split, records, classes), **opts)


def ucf101_1k(annotations: str | Path, split: str, fold: int = 1, num_examples: int = 1000,
              **opts) -> VideoList:
    """SEVERE's UCF101 (10³): a balanced ``num_examples`` train subset; test stays full."""
    videos = ucf101(annotations, split, fold, num_examples=num_examples, **opts)
    videos.name = "ucf101_1k"
    return videos


def hmdb51(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    """HMDB51 ``train``/``test`` of fold 1, 2 or 3 from the per-class split files."""
    check_split("hmdb51", split, SPLITS)
    _check_fold("hmdb51", fold)
    suffix = f"_test_split{fold}.txt"
    files = list_files(annotations, f"*{suffix}")
    if not files:
        raise AnnotationError(f"{annotations}: no HMDB51 split files '*{suffix}'")
    classes = [f.name[: -len(suffix)] for f in files]
    wanted = "1" if split == "train" else "2"
    records = []
    for label, (name, path) in enumerate(zip(classes, files)):
        for lineno, line in read_lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise bad_line(path, lineno, "expected '<video>.avi <0|1|2>'", line)
            if parts[1] == wanted:
                records.append(VideoRecord(f"{name}/{parts[0]}", label, {}))
    return finish(VideoList("hmdb51", split, records, classes), **opts)
