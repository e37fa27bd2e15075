"""UCFRep repetition counting (``reference/severe-protocols.md`` §3.5).

``ucf526_annotations.zip`` (or its extracted folder) holds ``annotations/{train,val}/<video>.mat``
(421 / 105 files) and ``annotations/repetition_label/<Class>.txt`` (raw labels, not read here).
Each ``.mat`` has a MATLAB struct ``label`` with fields ``duration``, ``start_frame`` (1-based),
``end_frame``, ``temporal_bound_num``, ``temporal_bound`` (K cycle boundaries; first = start, last =
end), ``offset_next_estimate``, ``offset_pre_estimate``. For example ``v_BenchPress_g01_c01.mat``::

    label.start_frame = 1, label.end_frame = 122, label.temporal_bound = [1, 36, 122]   -> count 2

The record label is the count ``float(K - 1)``, the number of cycles between ``start_frame`` and
``end_frame``; the path is the video in the UCF101 tree, ``<folder>/<video>.avi`` with the folder
``name[2:-8]`` (``v_BabyCrawling_g01_c01`` -> ``BabyCrawling``), except that UCFRep's video names spell
``HandStandPushups`` where the UCF101 folder is ``HandstandPushups`` (the file keeps the name:
``HandstandPushups/v_HandStandPushups_g01_c01.avi``, as in UCF101's own lists). ``meta`` holds ``class``
(UCFRep's spelling), ``start_frame``, ``end_frame``, ``duration``, ``temporal_bound`` (list of ints), the
per-frame period labels ``offset_next`` / ``offset_pre`` (``duration`` ints each: frames to the same phase
of the next / previous cycle, -1 where it does not exist; the counter's training targets) and
``frame_range`` = ``(start_frame - 1, end_frame - 1)``, the annotated part as 0-based decoded-frame indices:
clips are drawn from it (``ClipDataset``), because the count covers only it. ``classes`` are the 23 action
classes (sorted); they are not the prediction target. Splits ``train`` / ``val``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from vssl.data.datasets.base import MissingAnnotationError, VideoList, VideoRecord, check_split, finish
from vssl.errors import AnnotationError

SPLITS = ("train", "val")
ZIP_NAME = "ucf526_annotations.zip"
#: UCFRep class spellings whose UCF101 folder is spelled otherwise (checked against UCF101's classInd.txt)
UCF101_FOLDER = {"HandStandPushups": "HandstandPushups"}


def _mat_sources(annotations: Path, split: str) -> list[tuple[str, object]]:
    """``(display name, bytes-or-path)`` of the split's .mat files, from the zip or a folder."""
    zip_path = annotations if annotations.suffix == ".zip" else annotations / ZIP_NAME
    if zip_path.is_file():
        with zipfile.ZipFile(zip_path) as zf:
            names = sorted(n for n in zf.namelist()
                           if n.endswith(".mat") and n.split("/")[-2:-1] == [split])
            return [(f"{zip_path}:{n}", zf.read(n)) for n in names]
    for folder in (annotations / "annotations" / split, annotations / split):
        if folder.is_dir():
            return [(str(p), p) for p in sorted(folder.glob("*.mat"))]
    raise MissingAnnotationError(zip_path, f"{ZIP_NAME} or annotations/{split}/ folder")


def _scalar(value) -> int:
    return int(np.asarray(value).ravel()[0])


def read_mat(name: str, source) -> dict:
    """The ``label`` struct of one .mat file as plain ints (errors name the file)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(io.BytesIO(source) if isinstance(source, bytes) else source,
                               squeeze_me=True, struct_as_record=False)
        label = mat["label"]
        bounds = [int(b) for b in np.atleast_1d(label.temporal_bound)]
        meta = {"start_frame": _scalar(label.start_frame), "end_frame": _scalar(label.end_frame),
                "duration": _scalar(label.duration), "temporal_bound": bounds}
        for key, field in (("offset_next", "offset_next_estimate"), ("offset_pre", "offset_pre_estimate")):
            meta[key] = [int(v) for v in np.atleast_1d(getattr(label, field))]
            if len(meta[key]) != meta["duration"]:
                raise ValueError(f"{field} has {len(meta[key])} entries for a duration of {meta['duration']}")
        return meta
    except Exception as e:  # scipy raises many types for a broken file
        raise AnnotationError(f"{name}: not a UCFRep annotation ({type(e).__name__}: {e})") from None


def ucfrep(annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    """UCFRep ``train`` / ``val``: one counting record per ``.mat`` file."""
    check_split("ucfrep", split, SPLITS)
    sources = _mat_sources(Path(annotations), split)
    if not sources:
        raise AnnotationError(f"{annotations}: no .mat files for split {split!r}")
    records = []
    for name, source in sources:
        video = Path(name.split(":")[-1]).stem
        if not video.startswith("v_") or len(video) <= 10:
            raise AnnotationError(f"{name}: expected a UCF101 video name like v_<Class>_gXX_cXX")
        meta = read_mat(name, source)
        if len(meta["temporal_bound"]) < 2:
            raise AnnotationError(f"{name}: temporal_bound needs at least 2 boundaries")
        if not 1 <= meta["start_frame"] <= meta["end_frame"]:
            raise AnnotationError(f"{name}: start_frame {meta['start_frame']} / end_frame {meta['end_frame']} "
                                  "do not delimit a segment")
        cls = video[2:-8]
        frame_range = (meta["start_frame"] - 1, meta["end_frame"] - 1)
        records.append(VideoRecord(f"{UCF101_FOLDER.get(cls, cls)}/{video}.avi", float(len(meta["temporal_bound"]) - 1),
                                   {"class": cls, **meta, "frame_range": frame_range}))
    classes = sorted({r.meta["class"] for r in records})
    return finish(VideoList("ucfrep", split, records, classes, task="counting"), **opts)
