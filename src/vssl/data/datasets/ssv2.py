"""Something-Something-v2 (``reference/severe-protocols.md`` §3.2).

Files (``something-something-v2-annotations/``)::

    something-something-v2-labels.json       {"Approaching something with your camera": "0", ...}   (174)
    something-something-v2-validation.json   [{"id": "74225", "label": "spinning cube ...",
                                               "template": "Spinning [something] that quickly stops spinning",
                                               "placeholders": ["cube"]}, ...]
    something-something-v2-train.json        same format (large; may be absent)
    something-something-v2-test.json         [{"id": "1420"}, ...]   (no labels)

The class is ``labels[template with "[" and "]" removed]``; record path ``<id>.webm`` (re-encoded
trees with ``.mp4``/``.avi`` are found by the clip dataset). Splits ``train`` and ``validation``
(SEVERE's test set). ``test`` is accepted too: its records carry label -1 and ``meta["unlabeled"]``.
"""

from __future__ import annotations

from pathlib import Path

from vssl.data.datasets.base import VideoList, VideoRecord, check_split, finish, load_json
from vssl.errors import AnnotationError

SPLITS = ("train", "validation")
PREFIX = "something-something-v2"


def read_labels(path: str | Path) -> list[str]:
    """``labels.json`` (template -> index string) -> class names ordered by index."""
    labels = load_json(path)
    if not isinstance(labels, dict):
        raise AnnotationError(f"{path}: expected an object mapping template -> index")
    try:
        by_index = {int(v): k for k, v in labels.items()}
    except (TypeError, ValueError):
        raise AnnotationError(f"{path}: indices must be integers") from None
    if sorted(by_index) != list(range(len(labels))):
        raise AnnotationError(f"{path}: indices are not 0..{len(labels) - 1}")
    return [by_index[i] for i in range(len(labels))]


def ssv2(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    """SSv2 ``train`` / ``validation`` (``test``: unlabeled ids)."""
    check_split("ssv2", split, SPLITS + ("test",))
    ann = Path(annotations)
    classes = read_labels(ann / f"{PREFIX}-labels.json")
    index = {name: i for i, name in enumerate(classes)}
    path = ann / f"{PREFIX}-{split}.json"
    entries = load_json(path)
    if not isinstance(entries, list):
        raise AnnotationError(f"{path}: expected a list of objects")
    records = []
    for i, entry in enumerate(entries):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or "id" not in entry:
            raise AnnotationError(f"{where}: expected an object with an 'id'")
        if split == "test":
            records.append(VideoRecord(f"{entry['id']}.webm", -1, {"unlabeled": True}))
            continue
        template = str(entry.get("template", "")).replace("[", "").replace("]", "")
        if template not in index:
            raise AnnotationError(f"{where} (id {entry['id']}): template {template!r} is not in the labels file")
        meta = {"caption": entry.get("label", ""), "placeholders": entry.get("placeholders", [])}
        records.append(VideoRecord(f"{entry['id']}.webm", index[template], meta))
    return finish(VideoList("ssv2", split, records, classes), **opts)
