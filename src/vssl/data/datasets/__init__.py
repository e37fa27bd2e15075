"""Dataset adapters: annotation files -> :class:`VideoList` (one file per dataset family).

``ADAPTERS[name](annotations, split, fold=1, **opts) -> VideoList``. Every adapter accepts the
options of :func:`vssl.data.datasets.base.finish`: ``num_examples`` / ``subset="1k"`` (SEVERE's
balanced low-sample train subset), ``fraction`` (class-balanced fraction of train), ``seed`` and
``root`` (drop videos missing on disk first). ``SPLITS[name]`` are the dataset's own split names;
``split_names(name, annotations)`` also looks at the files for the generic ``csv`` manifests.
See ``docs/datasets.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vssl.data.datasets import charades, diving48, finegym, kinetics, manifest, ssv2, ucf101, ucfrep
from vssl.data.datasets.base import (
    MissingAnnotationError,
    VideoList,
    VideoRecord,
    balanced_subset,
    fraction_subset,
)

ADAPTERS: dict[str, Callable[..., VideoList]] = {
    "ucf101": ucf101.ucf101,
    "ucf101_1k": ucf101.ucf101_1k,
    "hmdb51": ucf101.hmdb51,
    "kinetics400": kinetics.kinetics400,
    "mini_kinetics": kinetics.mini_kinetics,
    "ssv2": ssv2.ssv2,
    "gym99": finegym.gym99,
    "gym288": finegym.gym288,
    "fx_s1": finegym.fx_s1,
    "ub_s1": finegym.ub_s1,
    "gym99_1k": finegym.gym99_1k,
    "ucfrep": ucfrep.ucfrep,
    "charades": charades.charades,
    "diving48": diving48.diving48,
    "csv": manifest.manifest,
}

SPLITS: dict[str, tuple[str, ...]] = {
    "ucf101": ucf101.SPLITS,
    "ucf101_1k": ucf101.SPLITS,
    "hmdb51": ucf101.SPLITS,
    "kinetics400": kinetics.SPLITS,
    "mini_kinetics": kinetics.SPLITS,
    "ssv2": ssv2.SPLITS,
    "gym99": finegym.SPLITS,
    "gym288": finegym.SPLITS,
    "fx_s1": finegym.SPLITS,
    "ub_s1": finegym.SPLITS,
    "gym99_1k": finegym.SPLITS,
    "ucfrep": ucfrep.SPLITS,
    "charades": charades.SPLITS,
    "diving48": diving48.SPLITS,
    "csv": manifest.SPLITS,
}


def get_adapter(name: str) -> Callable[..., VideoList]:
    from vssl.errors import VsslError

    if name not in ADAPTERS:
        raise VsslError(f"unknown dataset {name!r} (choose one of {', '.join(sorted(ADAPTERS))})")
    return ADAPTERS[name]


def split_names(name: str, annotations: str | Path | None = None) -> tuple[str, ...]:
    """The dataset's split names, train first; for ``csv`` the ``<split>.csv`` files present."""
    get_adapter(name)
    if name == "csv" and annotations is not None and Path(annotations).is_dir():
        return manifest.split_names(annotations) or SPLITS[name]
    return SPLITS[name]


def load_videos(name: str, annotations: str | Path, split: str, fold: int = 1, **opts) -> VideoList:
    """``ADAPTERS[name](annotations, split, fold, **opts)`` with a clear error for an unknown name."""
    return get_adapter(name)(annotations, split, fold, **opts)


__all__ = [
    "ADAPTERS",
    "SPLITS",
    "MissingAnnotationError",
    "VideoList",
    "VideoRecord",
    "balanced_subset",
    "fraction_subset",
    "get_adapter",
    "load_videos",
    "split_names",
]
