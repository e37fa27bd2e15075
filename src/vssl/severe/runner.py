"""``run_severe``: run SEVERE experiments on a backbone and store one result per (experiment, seed).

For every experiment x seed, :func:`run_severe` plans one :class:`~vssl.severe.plan.ExperimentRun` and
:func:`run_experiment` carries it out: build the backbone (checkpoint via ``build_backbone``), train with
the protocol (fine-tuning through the engine, :mod:`vssl.severe.finetune`; ``linear``/``knn`` on cached
frozen features, :mod:`vssl.severe.frozen`), test on all views, and score with the task's metrics. Each
result is written to ``<out>/results.sqlite`` at once (one transaction each), so a killed run loses
nothing finished and a rerun prints ``skip`` for it. The CLI adapter is :mod:`vssl.severe.commands`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from vssl.data.dataset import ClipDataset
from vssl.data.datasets import VideoList, load_videos
from vssl.distributed import resolve_device, seed_everything
from vssl.errors import ConfigError, VsslError
from vssl.models import build_backbone
from vssl.severe.experiments import EXPERIMENTS, Experiment, is_synthetic_root, select, synthetic_experiments
from vssl.severe.finetune import evaluate_fine_tuned, fine_tune
from vssl.severe.frozen import frozen_scores
from vssl.severe.plan import ExperimentRun, plan_run
from vssl.severe.protocols import get_protocol
from vssl.severe.results import Result, ResultKey, ResultsStore, checkpoint_sha256


def default_name(backbone: str, checkpoint: str | Path | None) -> str:
    return f"{backbone}+{Path(checkpoint).stem}" if checkpoint else backbone


def available_experiments(data_root: str | Path) -> dict[str, Experiment]:
    """SynthSEVERE's 8 experiments when ``data_root`` holds ``synthsevere.json``, else the real ones."""
    if not Path(data_root).is_dir():
        raise ConfigError(f"--data-root {data_root}: not a directory")
    return synthetic_experiments(data_root) if is_synthetic_root(data_root) else dict(EXPERIMENTS)


#: recipe fields that change how fast a result is computed, never the result: not part of its key
_SPEED_ONLY = ("num_workers",)


def protocol_key(protocol: str, overrides: list[str] | None, recipe: str = "severe") -> str:
    """The protocol name stored with a result; a published row's recipe and overrides make it a different
    protocol (``paper+tubelet``, ``quick(steps=4)``).

    Overrides of speed-only fields (``num_workers``) are left out: more loader workers on a GPU host give
    the same result, which must be found again (and skipped) on a rerun with other workers.
    """
    name = protocol if recipe == "severe" else f"{protocol}+{recipe}"
    kept = sorted(o for o in overrides or () if o.split("=", 1)[0].strip() not in _SPEED_ONLY)
    return f"{name}({','.join(kept)})" if kept else name


def run_severe(backbone: str, checkpoint: str | Path | None = None, data_root: str | Path = ".",
               out: str | Path = "severe-results", experiments: str | list[str] | None = None,
               protocol: str = "paper", seeds=(1,), name: str | None = None, device: str = "auto",
               overrides: list[str] | None = None, recipe: str = "severe", log=print) -> list[Result]:
    """Run ``experiments`` x ``seeds`` and return their results (finished ones are read back, not rerun).

    Args:
        backbone: a name in ``vssl.models.BACKBONES``.
        checkpoint: initial backbone weights (None = random init; keyed as ``"none"``).
        data_root: a SynthSEVERE directory (``synthsevere.json``) or ``<root>/<dataset>/{annotations,videos}``.
        out: directory of ``results.sqlite``, per-run training folders and cached features.
        experiments: names (list or comma-separated), default all 8.
        protocol: ``paper`` | ``quick`` | ``linear`` | ``knn``.
        seeds: iterable of ints.
        name: model name in the table (default ``backbone[+checkpoint stem]``).
        overrides: ``["steps=50", ...]`` applied to every recipe (see ``protocols.Recipe``).
        recipe: a published row's variant of the paper protocol (``vssl.severe.recipes``: ``tubelet``,
            ``avid``, ``scratch`` ...; default ``severe``).
    """
    proto = get_protocol(protocol)
    if isinstance(seeds, (int, str)):
        seeds = [s for s in str(seeds).split(",") if s.strip()]
    exps = select(experiments, available_experiments(data_root))
    resolve_device(device)  # a missing GPU fails now, not inside the first experiment
    recipes = {exp.name: proto.recipe(exp, overrides, backbone=backbone, row_recipe=recipe)  # a bad --set value too
               for exp in exps}
    if checkpoint:  # an unreadable or mismatched checkpoint fails now, not after the first experiment's data
        build_backbone(backbone, checkpoint)
    sha = checkpoint_sha256(checkpoint)
    model = name or default_name(backbone, checkpoint)
    pkey = protocol_key(protocol, overrides, recipe)
    out = Path(out)
    results = []
    with ResultsStore(out / "results.sqlite") as store:
        for exp in exps:
            settings = recipes[exp.name]
            for seed in [int(s) for s in seeds]:
                key = ResultKey(model, sha, exp.name, pkey, seed)
                if store.has(key):
                    log(f"skip {exp.name} seed {seed} ({model}, {pkey}): already in {store.path}")
                    results.append(store.get(key))
                    continue
                log(f"run  {exp.name} seed {seed} ({model}, {pkey}) ...")
                run = plan_run(out, model, sha, exp, settings, pkey, seed, backbone=backbone, checkpoint=checkpoint,
                               data_root=data_root, device=device)
                metrics, timings, extra = run_experiment(run)
                extra.update(checkpoint_path=str(checkpoint or ""), recipe=asdict(settings), row_recipe=recipe)
                result = Result(key, exp.metric, metrics[exp.metric], metrics, timings, backbone, extra)
                store.put(result)
                results.append(result)
                if extra["failures"]:
                    log(f"warning: {exp.name}: {extra.get('failed_videos', len(extra['failed_paths']))} unreadable "
                        f"videos skipped ({extra['failures']} failed loads; e.g. {extra['failed_paths'][:3]}): left out "
                        "of the scores and of frozen features, replaced by another video when fine-tuning")
                if extra["missing"]:
                    log(f"warning: {exp.name}: {extra['missing']} listed videos are missing on disk and were "
                        f"left out (e.g. {extra['missing_paths'][:3]})")
                log(f"done {exp.name} seed {seed}: {exp.metric} = {metrics[exp.metric]:.4g}{scored_note(extra)} "
                    f"({timings.get('total_s', 0):.1f} s)")
    return results


def scored_note(extra: dict) -> str:
    """`` (on 97 of 100 test videos: 3 unreadable, dropped)`` when test videos were dropped, else ``""``."""
    if not extra.get("dropped"):
        return ""
    return (f" (on {extra['num_scored']} of {extra['num_test']} test videos: {extra['dropped']} unreadable, "
            "dropped)")


# --------------------------------------------------------------------------------------------------
# one experiment
# --------------------------------------------------------------------------------------------------
def load_splits(exp: Experiment, data_root: str | Path) -> tuple[VideoList, VideoList]:
    """(train, test) video lists of an experiment; missing videos are dropped (§7.7)."""
    videos = exp.video_root(data_root)
    opts = dict(exp.options)
    if exp.subset:
        opts["subset"] = exp.subset
    if videos.is_dir():
        opts["root"] = videos
    ann = exp.annotation_dir(data_root)
    train = load_videos(exp.dataset, ann, exp.train_split, exp.fold, **opts)
    test = load_videos(exp.dataset, ann, exp.test_split, exp.fold, **opts)
    if not len(train) or not len(test):
        raise VsslError(f"{exp.name}: no videos found for {exp.train_split}/{exp.test_split} under {videos}")
    return train, test


def run_experiment(run: ExperimentRun) -> tuple[dict, dict, dict]:
    """Train/probe and test one experiment; returns (metrics, timings, extra)."""
    exp, recipe, seed = run.experiment, run.recipe, run.seed
    t0 = time.perf_counter()
    train, test = load_splits(exp, run.data_root)
    num_classes = len(train.classes) if exp.kind.has_classes else 0
    # Random init is one fixed network (seed 0), like a pretrained one: seeds vary what happens
    # downstream (clips, head, fine-tuning), and frozen features of "none" are extracted once.
    seed_everything(0)
    net = build_backbone(run.backbone, run.checkpoint, **({"drop_path_rate": recipe.drop_path} if recipe.drop_path else {}))
    seed_everything(seed)
    dev = resolve_device(run.device)
    test_ds = ClipDataset(test, run.video_root, run.data_config(), train=False, test_clips=recipe.test_clips, seed=seed,
                          failure_log=run.failure_log)
    extra = {"num_train": len(train), "num_test": len(test), "num_classes": num_classes, "device": str(dev)}
    if recipe.mode == "finetune":
        method, timings = fine_tune(run, net, train, num_classes)
        t1 = time.perf_counter()
        scores, labels, dropped = evaluate_fine_tuned(run, method, test, test_ds, dev)
    else:
        t1 = time.perf_counter()
        scores, labels, timings, dropped = frozen_scores(run, net, train, test, num_classes, dev)
    if len(dropped) == len(test):
        raise VsslError(f"{exp.name}: none of the {len(test)} test videos could be decoded "
                        f"(reasons in {run.failure_log})")
    metrics = exp.kind.metrics(scores, labels, num_classes)
    metrics.update(exp.kind.baseline_metrics([r.label for r in train.records], labels))
    timings.update(eval_s=time.perf_counter() - t1, total_s=time.perf_counter() - t0)
    # train and test datasets share the failure folder: counts and paths cover both
    missing = list(dict.fromkeys(train.missing + test.missing))  # load_splits dropped them, as SEVERE does
    # an unreadable test video is dropped, never replaced: the score covers num_scored of num_test videos
    in_test = {r.path for r in test.records}
    extra.update(failures=test_ds.failures, failed_videos=len(test_ds.failed_paths),
                 failed_paths=test_ds.failed_paths[:100], missing=len(missing),
                 missing_paths=missing[:100], num_scored=len(test) - len(dropped), dropped=len(dropped),
                 dropped_paths=dropped[:100],
                 train_failed_paths=[p for p in test_ds.failed_paths if p not in in_test][:100])
    return metrics, timings, extra


__all__ = ["run_severe", "run_experiment", "available_experiments", "protocol_key", "default_name", "scored_note",
           "load_splits"]
