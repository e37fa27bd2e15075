"""Diving48 (V2 annotations; used by SEVERE's extended study, ``reference/severe-protocols.md`` §1.2).

Files::

    Diving48_vocab.json      [["Back", "15som", "05Twis", "FREE"], ...]        (48 classes)
    Diving48_V2_train.json   [{"vid_name": "-mmq0PT-u8k_00155", "label": 0,
                               "start_frame": 0, "end_frame": 48}, ...]
    Diving48_V2_test.json    same format

-> record ``<vid_name>.mp4`` with the integer label; class names join the vocabulary entry with
spaces (``"Back 15som 05Twis FREE"``); ``meta`` keeps start_frame / end_frame. Splits ``train`` / ``test``.
"""

from __future__ import annotations

from pathlib import Path

from vssl.data.datasets.base import VideoList, VideoRecord, check_split, finish, load_json
from vssl.errors import AnnotationError

SPLITS = ("train", "test")


def diving48(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    """Diving48 V2 ``train`` / ``test``."""
    check_split("diving48", split, SPLITS)
    ann = Path(annotations)
    vocab_path = ann / "Diving48_vocab.json"
    vocab = load_json(vocab_path)
    if not isinstance(vocab, list):
        raise AnnotationError(f"{vocab_path}: expected a list of class descriptions")
    classes = [" ".join(map(str, v)) if isinstance(v, list) else str(v) for v in vocab]
    path = ann / f"Diving48_V2_{split}.json"
    entries = load_json(path)
    if not isinstance(entries, list):
        raise AnnotationError(f"{path}: expected a list of objects")
    records = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "vid_name" not in e or not isinstance(e.get("label"), int):
            raise AnnotationError(f"{path}: entry {i}: expected 'vid_name' and an integer 'label'")
        if not 0 <= e["label"] < len(classes):
            raise AnnotationError(f"{path}: entry {i} ({e['vid_name']}): "
                                  f"label {e['label']} outside 0..{len(classes) - 1}")
        meta = {k: e[k] for k in ("start_frame", "end_frame") if k in e}
        records.append(VideoRecord(f"{e['vid_name']}.mp4", e["label"], meta))
    return finish(VideoList("diving48", split, records, classes), **opts)
