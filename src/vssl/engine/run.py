"""A run from its config: dataset -> backbone -> method -> Trainer (the Python API behind ``vssl pretrain``
and ``vssl finetune``, whose command-line adapters are in :mod:`vssl.engine.commands`)."""

from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vssl.config import RunConfig
from vssl.errors import ConfigError
from vssl.tasks import TASKS

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


def build_dataset(cfg: RunConfig, num_clips: int, failure_log: str | Path | None = None, method_cls=None
                  ) -> tuple[Dataset, list[Any], list[str], str]:
    """The training dataset of ``cfg.data`` with its labels, class names and task; clips longer than a
    video are filled by ``method_cls.pad`` (the method reference's rule, ``vssl.data.sampling``).

    ``data.dataset: random`` gives :class:`vssl.engine.toy.RandomClipDataset`; any other name is a
    ``vssl.data.datasets.ADAPTERS`` entry read into a ``vssl.data.dataset.ClipDataset`` whose
    unreadable videos are logged under ``failure_log`` (a directory), or into the method's own
    ``training_set(videos, root, cfg, failure_log)`` when ``method_cls`` has one (the repetition counter).
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

    if hasattr(method_cls, "training_set"):
        ds = method_cls.training_set(videos, d.root, cfg, failure_log)
    else:
        ds = ClipDataset(videos, d.root, d, num_clips=num_clips, train=True, seed=cfg.train.seed,
                         pad=getattr(method_cls, "pad", "cycle"), failure_log=failure_log)
    return ds, [r.label for r in videos.records], list(videos.classes), videos.task


def build_backbone(cfg: RunConfig):
    from vssl.models import BACKBONES, build_backbone as build

    if cfg.model.backbone not in BACKBONES:
        raise ConfigError(f"model.backbone: unknown backbone {cfg.model.backbone!r} "
                          f"(known: {', '.join(BACKBONES)})")
    return build(cfg.model.backbone, checkpoint=cfg.model.checkpoint or None, **cfg.model.kwargs)


def check_paths(cfg: RunConfig) -> None:
    """The files and folders a config names exist (a typo fails now, not after the model is built)."""
    named = [("model.checkpoint", cfg.model.checkpoint)]
    if cfg.data.dataset != "random":
        named += [("data.annotations", cfg.data.annotations), ("data.root", cfg.data.root)]
    for key, value in named:
        if value and not Path(value).exists():
            raise ConfigError(f"{key}: {value}: no such file or directory")
    if cfg.data.dataset != "random" and not cfg.data.annotations:
        raise ConfigError(f"data.annotations: required for data.dataset {cfg.data.dataset!r}")


def train_from_config(cfg: RunConfig, out: str | Path, resume: bool = False, overwrite: bool = False) -> dict:
    """Build everything ``cfg`` names and train it; the Python API behind both commands.

    Unreadable videos never end the run: they are replaced by others, and the run's summary (the
    returned dict, also written to ``<out>/summary.json``) counts them (``failures``, every failed
    load) and lists them (``failed_videos``: ``[path, reason]`` once per video, its first reason).

    A fresh start (no ``resume``) in a folder that holds an earlier run's checkpoints or final weights is
    refused unless ``overwrite`` (see ``Trainer``).

    Returns:
        ``Trainer.fit``'s summary (steps, final loss, time, output directory, checkpoint write
        failures, skipped steps) plus the failures.
    """
    import shutil

    from torch.utils.data import Subset

    from vssl import distributed as D
    from vssl.distributed import seed_everything
    from vssl.engine.trainer import Trainer
    from vssl.methods import METHODS, build_method

    check_paths(cfg)
    out = Path(out)
    if not overwrite:  # before anything of the earlier run (its failure record) is cleared
        from vssl.engine.checkpoint import refuse_overwrite

        refuse_overwrite(out, resume)
    failure_log = out / "failures"  # kept with the run: a resumed run adds to the same record
    if not resume and main_process():
        shutil.rmtree(failure_log, ignore_errors=True)
    seed_everything(cfg.train.seed)  # same initial weights on every rank and every resume
    method_cls = METHODS[cfg.method.name]
    dataset, labels, classes, task = build_dataset(cfg, getattr(method_cls, "num_clips", 1), failure_log, method_cls)
    params = cfg.method.params
    if params.get("num_classes", None) == 0:  # "take it from the dataset"
        params["num_classes"] = len(classes)
    if TASKS[task].multi_label and params.get("task") in TASKS and TASKS[params["task"]].single_label:
        params["task"] = "multilabel"  # cross-entropy cannot train on multi-label targets
    if cfg.data.fraction < 1:
        dataset = Subset(dataset, class_balanced_subset(labels, cfg.data.fraction, cfg.train.seed))
    try:
        method = build_method(cfg, build_backbone(cfg))
    except (TypeError, ValueError) as e:  # e.g. model.kwargs a builder does not take, a bad method value
        raise ConfigError(f"{cfg.method.name} on {cfg.model.backbone}: cannot build it from this config: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:
        summary = Trainer(cfg, method, dataset, out, resume=resume, overwrite=overwrite).fit()
    finally:
        D.cleanup()
    from vssl.data.dataset import distinct_failures

    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    report = base.failure_report() if hasattr(base, "failure_report") else []
    summary["failures"] = len(report)  # failed loads (a video met twice counts twice); never fatal
    summary["failed_videos"] = [list(item) for item in distinct_failures(report)]  # one per video
    if main_process():
        from vssl.serialization import atomic_write_text

        try:
            atomic_write_text(json.dumps(summary, indent=1, default=str) + "\n", out / "summary.json")
        except OSError as e:  # the weights are saved; the summary is also printed
            print(f"vssl: warning: {out / 'summary.json'} not written ({e.strerror or e})", file=sys.stderr)
    return summary


def main_process() -> bool:
    """Rank 0 (torchrun sets RANK), also after the process group is gone."""
    return int(os.environ.get("RANK", "0")) == 0
