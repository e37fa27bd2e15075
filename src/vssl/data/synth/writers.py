"""Annotation writers in the REAL datasets' formats (reference/severe-protocols.md §3).

Each writer takes the records returned by the renderer (dicts with ``split``, ``name``, ``label``,
``T`` and ``meta``) and writes the files a loader of the real dataset expects:

- pretrain   mini-Kinetics: action_names.txt, train_split_1.txt, val_split_1.txt (1-based labels)
- samples_a  UCF101: classInd.txt, trainlist01.txt, testlist01.txt (lists say .avi, files are .mp4)
- domain_a   SSv2: something-something-v2-{labels,train,validation}.json
- domain_b   FineGym: gym99_{train,val}.txt (+ the *_org.txt variants without extension)
- counting   UCFRep: ucf526_annotations.zip with annotations/{train,val}/<video>.mat and
             annotations/repetition_label/<Class>.txt
- multilabel Charades: Charades_v1_{train,test}.csv, Charades_v1_classes.txt

Names are deterministic functions of (dataset, split, index), so parallel generation is stable.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from vssl.data.synth import tasks

_YT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DATASET_CODE = {"pretrain": 1, "samples_a": 2, "domain_a": 3, "domain_b": 4, "counting": 5, "multilabel": 6}
SPLIT_CODE = {"train": 0, "test": 1}


def _scrambled(n: int, length: int, alphabet: str) -> str:
    """A random-looking but unique id: n -> (n * odd prime + c) mod base**length is a bijection."""
    base = len(alphabet)
    v = (n * 1_000_003 + 7_777_777) % base**length
    out = []
    for _ in range(length):
        v, r = divmod(v, base)
        out.append(alphabet[r])
    return "".join(out)


def video_name(dataset: str, split: str, index: int, label) -> str:
    """File stem of a video, in the naming scheme of the mirrored dataset."""
    uid = (DATASET_CODE[dataset] * 2 + SPLIT_CODE[split]) * 10_000_000 + index
    if dataset == "pretrain":           # <youtube id>_<start 6d>_<end 6d>
        return f"{_scrambled(uid, 11, _YT)}_{index % 300:06d}_{index % 300 + 10:06d}"
    if dataset == "samples_a":          # v_<Class>_gXX_cXX: test groups 1-7, train groups 8-25, as UCF101
        j = index // tasks.num_classes(dataset)
        group, clip = (1 + j % 7, 1 + j // 7) if split == "test" else (8 + j % 18, 1 + j // 18)
        return f"v_{tasks.SOURCE_CLASSES[label][1]}_g{group:02d}_c{clip:02d}"
    if dataset == "domain_a":           # numeric ids
        return str(index + 1 + (0 if split == "train" else 500_000))
    if dataset == "domain_b":           # <ytid>_E_<6d>_<6d>_A_<4d>_<4d>
        e0 = (index * 37) % 5000
        a0 = index % 40
        return f"{_scrambled(uid, 11, _YT)}_E_{e0:06d}_{e0 + 60:06d}_A_{a0:04d}_{a0 + 2:04d}"
    if dataset == "counting":           # v_<Class>_gXX_cXX (UCFRep uses UCF101 names)
        # position j within the class: train groups 1-49, val groups 50-99, 7 clips per group, then
        # further clips (c08, c15, ...) so that large sizes keep 2-digit groups (g100 does not parse)
        j = index // len(tasks.COUNT_CLASSES)
        first, groups = (1, 49) if split == "train" else (50, 50)
        group, clip = first + (j // 7) % groups, j % 7 + 1 + 7 * (j // (7 * groups))
        if clip > 99:
            raise ValueError(f"counting: {j + 1} videos per class do not fit UCF101 names (at most {99 * groups})")
        return f"v_{tasks.COUNT_CLASSES[label[0]][0]}_g{group:02d}_c{clip:02d}"
    if dataset == "multilabel":         # 5-character ids like 46GP8
        return _scrambled(uid, 5, _B36)
    raise ValueError(dataset)


def video_relpath(dataset: str, name: str, label) -> str:
    """Path of the mp4 below the dataset's video root."""
    if dataset == "samples_a":
        return f"{tasks.SOURCE_CLASSES[label][1]}/{name}.mp4"
    if dataset == "counting":
        return f"{tasks.COUNT_CLASSES[label[0]][0]}/{name}.mp4"
    return f"{name}.mp4"


def _lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def _split(records, split):
    return [r for r in records if r["split"] == split]


def write_pretrain(ann: Path, records: list[dict]) -> None:
    _lines(ann / "action_names.txt", [f"{c[0]} {i + 1}" for i, c in enumerate(tasks.SOURCE_CLASSES)])
    for split, fname in (("train", "train_split_1.txt"), ("test", "val_split_1.txt")):
        _lines(ann / fname, [f"{r['name']} {r['label'] + 1}" for r in _split(records, split)])


def write_ucf(ann: Path, records: list[dict]) -> None:
    _lines(ann / "classInd.txt", [f"{i + 1} {c[1]}" for i, c in enumerate(tasks.SOURCE_CLASSES)])
    folder = [c[1] for c in tasks.SOURCE_CLASSES]
    _lines(ann / "trainlist01.txt",
           [f"{folder[r['label']]}/{r['name']}.avi {r['label'] + 1}" for r in _split(records, "train")])
    _lines(ann / "testlist01.txt", [f"{folder[r['label']]}/{r['name']}.avi" for r in _split(records, "test")])


def write_ssv2(ann: Path, records: list[dict]) -> None:
    ann.mkdir(parents=True, exist_ok=True)
    labels = {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(tasks.DOMAIN_A_TEMPLATES)}
    (ann / "something-something-v2-labels.json").write_text(json.dumps(labels, indent=1))
    for split, fname in (("train", "train"), ("test", "validation")):
        items = []
        for r in _split(records, split):
            template = tasks.DOMAIN_A_TEMPLATES[r["label"]]
            things = r["meta"]["placeholders"]
            text = template
            for thing in things:
                text = text.replace("[something]", thing, 1)
            items.append({"id": r["name"], "label": text.lower(), "template": template, "placeholders": things})
        (ann / f"something-something-v2-{fname}.json").write_text(json.dumps(items))


def write_gym(ann: Path, records: list[dict]) -> None:
    for split, fname in (("train", "gym99_train"), ("test", "gym99_val")):
        rows = _split(records, split)
        _lines(ann / f"{fname}.txt", [f"{r['name']}.avi {r['label']}" for r in rows])
        _lines(ann / f"{fname}_org.txt", [f"{r['name']} {r['label']}" for r in rows])
    # not a FineGym file: the class names, so that reports can print them
    _lines(ann / "synth_categories.txt", [f"{i} {c[0]}" for i, c in enumerate(tasks.DOMAIN_B_CLASSES)])


def repetition_struct(T: int, bounds: list[int]) -> dict:
    """The UCFRep ``label`` struct for cycle boundaries (1-based frames, first = start, last = end).

    offset_next/pre_estimate follow UCFRep's linear interpolation between same-phase points and are
    -1 where the next (previous) cycle does not exist.
    """
    b = np.asarray(bounds, float)
    start, end = int(b[0]), int(b[-1])
    frames = np.arange(start, end + 1)
    nxt = np.full(len(frames), -1, np.int32)
    pre = np.full(len(frames), -1, np.int32)
    for i, p in enumerate(frames):
        k = min(np.searchsorted(b, p, side="right") - 1, len(b) - 2)
        frac = (p - b[k]) / (b[k + 1] - b[k])
        if k + 2 < len(b):
            nxt[i] = int(round(frac * (b[k + 2] - b[k + 1]) + b[k + 1] - p))
        if k >= 1:
            pre[i] = int(round(p - (b[k - 1] + frac * (b[k] - b[k - 1]))))
    return {
        "duration": np.array([[end - start + 1]], np.int32), "start_frame": np.array([[start]], np.int32),
        "end_frame": np.array([[end]], np.int32), "temporal_bound_num": np.array([[len(b)]], np.int32),
        "temporal_bound": b.astype(np.int32).reshape(-1, 1),
        "offset_next_estimate": nxt.reshape(1, -1), "offset_pre_estimate": pre.reshape(1, -1),
    }


def write_ucfrep(ann: Path, records: list[dict]) -> None:
    import scipy.io

    ann.mkdir(parents=True, exist_ok=True)
    per_class: dict[str, list[str]] = {}
    with zipfile.ZipFile(ann / "ucf526_annotations.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for r in records:
            bounds = r["meta"]["bounds"]
            buf = io.BytesIO()
            scipy.io.savemat(buf, {"label": repetition_struct(r["T"], bounds)})
            folder = "train" if r["split"] == "train" else "val"
            zf.writestr(_entry(f"annotations/{folder}/{r['name']}.mat"), _fixed_mat_header(buf.getvalue()))
            cls = tasks.COUNT_CLASSES[r["label"][0]][0]
            per_class.setdefault(cls, []).append(f"{r['name']}\n{' '.join(map(str, bounds))}\n")
        for cls, blocks in sorted(per_class.items()):
            zf.writestr(_entry(f"annotations/repetition_label/{cls}.txt"), "\n".join(blocks))


def _entry(name: str) -> zipfile.ZipInfo:
    """A zip member with a fixed timestamp, so the archive is byte-identical for a given seed."""
    info = zipfile.ZipInfo(name, date_time=(2019, 7, 2, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _fixed_mat_header(data: bytes) -> bytes:
    """savemat writes the creation time into the 116-byte MAT-5 text header; pin it."""
    text = b"MATLAB 5.0 MAT-file, written by vssl SynthSEVERE"
    return text.ljust(116, b" ") + data[116:]


CHARADES_HEADER = ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects",
                   "descriptions", "actions", "length"]


def write_charades(ann: Path, records: list[dict], fps: float) -> None:
    ann.mkdir(parents=True, exist_ok=True)
    _lines(ann / "Charades_v1_classes.txt", [f"c{i:03d} {c[0]}" for i, c in enumerate(tasks.MULTI_CLASSES)])
    for split, fname in (("train", "Charades_v1_train.csv"), ("test", "Charades_v1_test.csv")):
        with open(ann / fname, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(CHARADES_HEADER)
            for r in _split(records, split):
                acts = ";".join(f"c{c:03d} {s / fps:.2f} {(e + 1) / fps:.2f}" for c, s, e in r["label"])
                names = [tasks.MULTI_CLASSES[c][0] for c, _, _ in r["label"]]
                w.writerow([r["name"], "SYN", "Synthetic room", 7, 7, "Yes", "; ".join(names) + ".",
                            ";".join(r["meta"]["shapes"]), "; ".join(names) + ".", acts, f"{r['T'] / fps:.2f}"])


def write_annotations(dataset: str, ann: Path, records: list[dict], fps: float) -> None:
    records = sorted(records, key=lambda r: (r["split"], r["index"]))
    {"pretrain": write_pretrain, "samples_a": write_ucf, "domain_a": write_ssv2, "domain_b": write_gym,
     "counting": write_ucfrep}.get(dataset, lambda a, r: write_charades(a, r, fps))(ann, records)


def write_davis_video(root: Path, name: str, frames: np.ndarray, ids: np.ndarray, quality: int = 95) -> None:
    """One video in the DAVIS-2017 layout: ``JPEGImages/480p/<name>/00000.jpg`` frames and
    ``Annotations/480p/<name>/00000.png`` palette PNGs of object ids (:mod:`vssl.data.davis`)."""
    from PIL import Image

    from vssl.data.davis import write_annotation

    img_dir = root / "JPEGImages" / "480p" / name
    img_dir.mkdir(parents=True, exist_ok=True)
    for t, (frame, mask) in enumerate(zip(frames, ids)):
        Image.fromarray(frame).save(img_dir / f"{t:05d}.jpg", quality=quality)
        write_annotation(root / "Annotations" / "480p" / name / f"{t:05d}.png", mask)
