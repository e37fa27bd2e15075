"""SynthSEVERE's generator: presets, one video from its seed, and the whole benchmark on disk.

``generate(out, preset, seed, workers)`` renders an unlabelled-for-SSL pretraining corpus and the
datasets behind 8 downstream experiments, writes them as H.264 mp4 files plus annotation files in
the real datasets' formats, and describes every experiment in ``synthsevere.json``::

    vssl synth OUT --preset tiny --seed 0 [--workers N] [--masks]

``--masks`` (``generate(..., masks=True)``) also writes the videos of one split (default
``multilabel/test``: 3 objects per video) as JPEG frames with per-frame object-id masks in the
DAVIS-2017 layout under ``OUT/davis/`` for ``vssl viz segment``; the rest of the output is unchanged.

Every video is rendered from its own seed ``SeedSequence([seed, dataset, split, index])``, so the
output does not depend on the number of workers or on the order in which videos finish.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from vssl.data.synth import render as R
from vssl.data.synth import tasks, writers

FPS = 16.0
DATASETS = ("pretrain", "samples_a", "domain_a", "domain_b", "counting", "multilabel")


@dataclass(frozen=True)
class Preset:
    """Resolution, video lengths and (train, test) sizes of every dataset."""

    size: int
    frames: int              # recognition videos (clips of 16 are sampled from them)
    count_frames: int        # counting videos are longer: up to 10 repetitions of >= 4 frames
    multi_frames: int
    sizes: dict = field(default_factory=dict)
    gop: int = 8

    def num_frames(self, dataset: str) -> int:
        return {"counting": self.count_frames, "multilabel": self.multi_frames}.get(dataset, self.frames)


_TINY_SIZES = {"pretrain": (1200, 300), "samples_a": (200, 400), "domain_a": (480, 320),
               "domain_b": (576, 576), "counting": (252, 180), "multilabel": (480, 240)}


def _scaled(sizes: dict, f: float) -> dict:
    return {k: (int(round(a * f)), int(round(b * f))) for k, (a, b) in sizes.items()}


PRESETS = {
    "tiny": Preset(size=32, frames=24, count_frames=64, multi_frames=32, sizes=_TINY_SIZES),
    "small": Preset(size=64, frames=32, count_frames=80, multi_frames=48, sizes=_scaled(_TINY_SIZES, 2)),
    "base": Preset(size=112, frames=32, count_frames=96, multi_frames=64, sizes=_scaled(_TINY_SIZES, 4), gop=16),
}


# --- rendering one video (runs in worker processes) ---------------------------------------------

def video_seed(seed: int, dataset: str, split: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, writers.DATASET_CODE[dataset], writers.SPLIT_CODE[split], index])


def render_video(preset: Preset, seed: int, dataset: str, split: str, index: int, masks: bool = False):
    """Render one video; returns (uint8 frames (T, S, S, 3), record dict without the path), and with
    ``masks`` also the object ids (T, S, S) uint8 (1..N in drawing order, 0 background), which cost no
    random numbers: the frames are the same either way."""
    g = np.random.default_rng(video_seed(seed, dataset, split, index))
    T, S = preset.num_frames(dataset), preset.size
    label = tasks.sample_label(dataset, g, index, T)
    domain = tasks.DOMAIN[dataset]
    canvas = R.background(g, domain, S + 2 * R.canvas_margin(S))
    objects, cam = tasks.sample_scene(dataset, g, label, T, canvas.mean((0, 1)))
    camera = R.camera_path(g, T, *cam) if cam is not None else (np.zeros(T), np.zeros(T))
    frames = R.render(g, canvas, S, objects, camera)
    meta: dict = {"shapes": [f"{a.texture} {a.shape}" for a, _ in objects]}
    if dataset == "domain_a":   # A is drawn last, B first: placeholders in template order (A, B)
        meta["placeholders"] = [meta["shapes"][1], meta["shapes"][0]]
    if dataset == "counting":
        _, k, start, stop = label
        meta["bounds"] = [int(round(start + 1 + i * (stop - start) / k)) for i in range(k + 1)]
    rec = {"split": split, "index": index, "label": label, "T": T, "meta": meta}
    if masks:
        return frames, rec, R.object_ids(T, S, objects, camera)
    return frames, rec


def _work(args) -> list[dict]:
    out, preset, seed, jobs, masks = args
    from vssl.data.video import write_video

    records = []
    for dataset, split, index in jobs:
        with_ids = masks == (dataset, split)
        frames, rec, *ids = render_video(preset, seed, dataset, split, index, masks=with_ids)
        rec["dataset"] = dataset
        rec["name"] = writers.video_name(dataset, split, index, rec["label"])
        rec["path"] = writers.video_relpath(dataset, rec["name"], rec["label"])
        write_video(Path(out) / dataset / "videos" / rec["path"], frames, fps=FPS, gop=preset.gop)
        if with_ids:
            writers.write_davis_video(Path(out) / DAVIS_DIR, rec["name"], frames, ids[0])
        records.append(rec)
    return records


DAVIS_DIR = "davis"
MASKS_DEFAULT = "multilabel/test"


def _mask_split(masks: bool | str) -> tuple[str, str] | None:
    """``masks`` option -> (dataset, split) or None: True = the default, "dataset/split" = that one."""
    if not masks:
        return None
    spec = MASKS_DEFAULT if masks is True else str(masks)
    dataset, _, split = spec.partition("/")
    if dataset not in DATASETS or split not in ("train", "test"):
        from vssl.errors import VsslError

        raise VsslError(f"masks: expected True or 'dataset/split' with a dataset of {', '.join(DATASETS)} "
                        f"and split train or test, got {masks!r}")
    return dataset, split


# --- the whole benchmark ------------------------------------------------------------------------

def _resolve(preset: str | Preset, scale: float, sizes: dict | None) -> Preset:
    p = PRESETS[preset] if isinstance(preset, str) else preset
    new = _scaled(p.sizes, scale) if scale != 1.0 else dict(p.sizes)
    new.update(sizes or {})
    return replace(p, sizes=new)


def generate(out: str | Path, preset: str | Preset = "tiny", seed: int = 0, workers: int = 0,
             scale: float = 1.0, sizes: dict | None = None, progress: bool = True,
             masks: bool | str = False) -> dict:
    """Generate SynthSEVERE into ``out``; returns the description (also written as synthsevere.json).

    Args:
        out: output folder (created).
        preset: "tiny" (32 px), "small" (64 px), "base" (112 px) or a ``Preset``.
        seed: base seed; the same seed gives the same frames whatever ``workers`` is.
        workers: processes; 0 = all cores, 1 = in this process.
        scale: multiply every split size (tests use e.g. 0.1).
        sizes: per-dataset ``(train, test)`` overrides, e.g. ``{"pretrain": (0, 0)}``.
        masks: also write one split in the DAVIS-2017 layout with object masks under ``out/davis``
            (``JPEGImages/480p/<video>/00000.jpg``, ``Annotations/480p/<video>/00000.png`` palette PNGs
            with ids 1..N, ``ImageSets/2017/val.txt``): True = ``multilabel/test``, or "dataset/split".
    """
    out = Path(out)
    mask_split = _mask_split(masks)
    _prepare_folder(out)
    p = _resolve(preset, scale, sizes)
    name = preset if isinstance(preset, str) else "custom"
    jobs = [(d, split, i) for d in DATASETS for split, n in zip(("train", "test"), p.sizes[d]) for i in range(n)]
    chunk = 24
    batches = [(str(out), p, seed, jobs[i:i + chunk], mask_split) for i in range(0, len(jobs), chunk)]
    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    records: list[dict] = []
    with _progress(progress, len(jobs)) as advance:
        if workers == 1:
            for b in batches:
                records += _work(b)
                advance(len(b[3]))
        else:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                for recs in pool.map(_work, batches):
                    records += recs
                    advance(len(recs))
    paths = {(r["dataset"], r["path"]) for r in records}
    if len(paths) != len(records):   # UCF-style names have 2-digit groups: guard absurd sizes
        raise ValueError(f"{out}: {len(records) - len(paths)} video names collide; use smaller sizes")
    by_dataset: dict[str, list[dict]] = {d: [] for d in DATASETS}
    for r in records:
        by_dataset[r["dataset"]].append(r)
    for d, recs in by_dataset.items():
        writers.write_annotations(d, out / d / "annotations", recs, FPS)
    from vssl.data.synth.describe import describe, readme

    desc = describe(name, p, seed, by_dataset, seconds=time.perf_counter() - t0, workers=workers)
    desc["preset_config"] = asdict(p)
    text = readme(desc)
    if mask_split:
        desc["davis"] = _write_davis_index(out / DAVIS_DIR, by_dataset[mask_split[0]], mask_split)
        text += (f"\nObject masks of {'/'.join(mask_split)} in the DAVIS-2017 layout: `{DAVIS_DIR}/` "
                 f"({desc['davis']['videos']} videos; `vssl viz segment --davis {out / DAVIS_DIR}`).\n")
    (out / "synthsevere.json").write_text(json.dumps(desc, indent=1))
    (out / "README.md").write_text(text)
    return desc


def _write_davis_index(root: Path, records: list[dict], split: tuple[str, str]) -> dict:
    """``ImageSets/2017/val.txt`` (the masked videos in index order) and the description entry."""
    names = [r["name"] for r in sorted(records, key=lambda r: r["index"]) if r["split"] == split[1]]
    lst = root / "ImageSets" / "2017" / "val.txt"
    lst.parent.mkdir(parents=True, exist_ok=True)
    lst.write_text("".join(n + "\n" for n in names))
    return {"root": DAVIS_DIR, "source": "/".join(split), "videos": len(names), "resolution": "480p",
            "images": "JPEGImages/480p/<video>/%05d.jpg", "annotations": "Annotations/480p/<video>/%05d.png",
            "note": "object ids 1..N in drawing order (later objects occlude earlier ones), 0 background; "
                    "frames are the video's frames before H.264 encoding"}


def _prepare_folder(out: Path) -> None:
    """Refuse a non-empty foreign folder; clear a previous SynthSEVERE tree (no stale videos)."""
    import shutil

    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / "synthsevere.json").is_file():
        from vssl.errors import VsslError

        raise VsslError(f"{out}: not empty and not a SynthSEVERE folder (no synthsevere.json); "
                        "choose a new or empty folder")
    for d in (*DATASETS, DAVIS_DIR):
        shutil.rmtree(out / d, ignore_errors=True)
    for f in ("synthsevere.json", "README.md"):
        (out / f).unlink(missing_ok=True)


class _progress:
    """A rich progress bar (or nothing), used as ``with _progress(on, total) as advance``."""

    def __init__(self, on: bool, total: int):
        self.on, self.total, self.bar = on, total, None

    def __enter__(self):
        if not self.on:
            return lambda n: None
        from rich.progress import Progress

        self.bar = Progress(transient=False)
        self.bar.start()
        task = self.bar.add_task("SynthSEVERE videos", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def load_description(out: str | Path) -> dict:
    """Read ``synthsevere.json`` of a generated benchmark (paths in it are relative to ``out``)."""
    path = Path(out) / "synthsevere.json"
    if not path.is_file():
        from vssl.errors import VsslError

        raise VsslError(f"{path}: not found; generate it with `vssl synth {out}`")
    return json.loads(path.read_text())


__all__ = ["PRESETS", "Preset", "generate", "load_description", "render_video"]
