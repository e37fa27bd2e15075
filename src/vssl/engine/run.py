"""``vssl pretrain`` and ``vssl finetune``: config -> dataset -> backbone -> method -> Trainer."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vssl.config import RunConfig, load_config
from vssl.errors import ConfigError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

# torch, numpy and the engine are imported inside the functions: a config error must be reported
# (exit status 2) without paying for the torch import


def class_balanced_subset(labels: list[Any], fraction: float, seed: int = 0) -> list[int]:
    """Indices of a class-balanced fraction: ``ceil(n_c * fraction)`` items of every class ``c``.

    Labels that are not a single class (multi-label lists, counts) are treated as one group.

    Args:
        labels: one label per item.
        fraction: in (0, 1].
        seed: seeds the ``numpy.random.RandomState`` that picks the items (same subset every run).

    Returns:
        Sorted item indices.
    """
    import numpy as np

    if not 0 < fraction <= 1:
        raise ConfigError(f"data fraction must be in (0, 1], got {fraction}")
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[int(label) if isinstance(label, (int, np.integer)) else None].append(i)
    rng = np.random.RandomState(seed)
    keep: list[int] = []
    for key in sorted(groups, key=lambda k: (k is None, k or 0)):  # fixed order: reproducible draws
        members = groups[key]
        k = math.ceil(len(members) * fraction)
        keep.extend(int(i) for i in rng.choice(members, size=k, replace=False))
    return sorted(keep)


def build_dataset(cfg: RunConfig, num_clips: int) -> tuple[Dataset, list[Any], list[str], str]:
    """The training dataset of ``cfg.data`` with its labels, class names and task.

    ``data.dataset: random`` gives :class:`vssl.engine.toy.RandomClipDataset`; any other name is a
    ``vssl.data.datasets.ADAPTERS`` entry read into a ``vssl.data.dataset.ClipDataset``.
    """
    d = cfg.data
    if d.dataset == "random":
        from vssl.engine.toy import RandomClipDataset

        ds = RandomClipDataset(d.random_size, d.random_classes, (3, d.num_frames, d.load_size, d.load_size),
                               num_clips=num_clips, seed=cfg.train.seed)
        return ds, ds.labels, ds.classes, ds.task
    from vssl.data.datasets import ADAPTERS  # imported here: only runs on real data need them

    if d.dataset not in ADAPTERS:
        raise ConfigError(f"data.dataset: unknown dataset {d.dataset!r} (known: random, {', '.join(ADAPTERS)})")
    opts = {"subset": d.subset} if d.subset else {}
    videos = ADAPTERS[d.dataset](d.annotations, d.split, fold=d.fold, **opts)
    from vssl.data.dataset import ClipDataset

    ds = ClipDataset(videos, d.root, d, num_clips=num_clips, train=True, seed=cfg.train.seed)
    return ds, [r.label for r in videos.records], list(videos.classes), videos.task


def build_backbone(cfg: RunConfig):
    from vssl.models import BACKBONES, build_backbone as build

    if cfg.model.backbone not in BACKBONES:
        raise ConfigError(f"model.backbone: unknown backbone {cfg.model.backbone!r} "
                          f"(known: {', '.join(BACKBONES)})")
    return build(cfg.model.backbone, checkpoint=cfg.model.checkpoint or None, **cfg.model.kwargs)


def train_from_config(cfg: RunConfig, out: str | Path, resume: bool = False) -> dict:
    """Build everything ``cfg`` names and train it; the Python API behind both commands.

    Returns:
        ``Trainer.fit``'s summary (steps, final loss, time, output directory).
    """
    from torch.utils.data import Subset

    from vssl.engine import distributed as D
    from vssl.engine.distributed import seed_everything
    from vssl.engine.trainer import Trainer
    from vssl.methods import METHODS, build_method

    seed_everything(cfg.train.seed)  # same initial weights on every rank and every resume
    method_cls = METHODS[cfg.method.name]
    dataset, labels, classes, task = build_dataset(cfg, getattr(method_cls, "num_clips", 1))
    params = cfg.method.params
    if params.get("num_classes", None) == 0:  # "take it from the dataset"
        params["num_classes"] = len(classes)
    if task == "multilabel" and params.get("task") == "classification":
        params["task"] = "multilabel"  # cross-entropy cannot train on multi-label targets
    if cfg.data.fraction < 1:
        dataset = Subset(dataset, class_balanced_subset(labels, cfg.data.fraction, cfg.train.seed))
    method = build_method(cfg, build_backbone(cfg))
    try:
        summary = Trainer(cfg, method, dataset, out, resume=resume).fit()
    finally:
        D.cleanup()
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    summary["failures"] = int(getattr(base, "failures", 0))  # broken videos replaced, never fatal
    return summary


def _command(args) -> int:
    cfg = load_config(args.config, args.overrides)
    fraction = getattr(args, "data_fraction", None)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ConfigError(f"--data-fraction: expected 0 < F <= 1, got {fraction}")
        cfg.data.fraction = fraction
    summary = train_from_config(cfg, args.out, resume=args.resume)
    from vssl.engine import distributed as D

    if D.is_main():
        loss = summary["loss"]
        print(f"vssl: {cfg.method.name} on {cfg.data.dataset}: step {summary['step']}, {summary['steps_run']} steps in "
              f"{summary['time_s']:.1f} s ({summary['steps_per_s']:.2f} steps/s), final loss "
              f"{'n/a' if loss is None else f'{loss:.4f}'}; backbone weights: {Path(args.out) / 'backbone.pt'}")
        if summary["failures"]:
            print(f"vssl: {summary['failures']} unreadable videos were skipped and replaced by others")
    return 0


def pretrain_command(args) -> int:
    """``vssl pretrain --config C --out O [--set k=v] [--resume] [--data-fraction F]``."""
    return _command(args)


def finetune_command(args) -> int:
    """``vssl finetune --config C --out O [--set k=v] [--resume]``."""
    return _command(args)
