"""``vssl severe``: run SEVERE experiments on a backbone and store one result per (experiment, seed).

``run_severe(...)`` is the Python API (the demo calls it); ``severe_command(args)`` is the CLI entry.
For every experiment x seed: build the backbone (checkpoint via ``build_backbone``), train with the
protocol (fine-tuning through the engine's ``Trainer`` with ``Supervised`` or :class:`Counting`;
``linear``/``knn`` on cached frozen features), test on all views, and write the result to
``<out>/results.sqlite`` at once (one transaction each), so a killed run loses nothing finished and a
rerun prints ``skip`` for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import Dataset

from vssl.errors import ConfigError, VsslError
from vssl.severe.experiments import EXPERIMENTS, Experiment, is_synthetic_root, select, synthetic_experiments
from vssl.severe.protocols import Recipe, get_protocol, steps_per_epoch
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
    from vssl.distributed import resolve_device

    resolve_device(device)  # a missing GPU fails now, not inside the first experiment
    recipes = {exp.name: proto.recipe(exp, overrides, backbone=backbone, row_recipe=recipe)  # a bad --set value too
               for exp in exps}
    if checkpoint:  # an unreadable or mismatched checkpoint fails now, not after the first experiment's data
        from vssl.models import build_backbone

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
                metrics, timings, extra = run_experiment(exp, settings, backbone, checkpoint, data_root, seed,
                                                         device, _workdir(out, model, sha, exp, pkey, seed))
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


def _workdir(out: Path, model: str, sha: str, exp: Experiment, pkey: str, seed: int) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in f"{model}-{sha[:8]}")
    tag = hashlib.sha1(pkey.encode()).hexdigest()[:6]
    return out / "runs" / safe / f"{exp.name}-{pkey.split('(')[0]}-{tag}-seed{seed}"


# --------------------------------------------------------------------------------------------------
# one experiment
# --------------------------------------------------------------------------------------------------
def load_splits(exp: Experiment, data_root: str | Path):
    """(train VideoList, test VideoList, video root) of an experiment; missing videos are dropped (§7.7)."""
    from vssl.data.datasets import load_videos

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
    return train, test, videos


def data_config(exp: Experiment, recipe: Recipe, video_root: Path, train: bool = False):
    """The data config of an experiment's clips: training clips are decoded at ``train_size`` (when set),
    test clips (and the frozen protocols' clips) at ``load_size``, the test resize."""
    from vssl.config import DataConfig

    size = (recipe.train_size or recipe.load_size) if train else recipe.load_size
    return DataConfig(dataset=exp.dataset, root=str(video_root), num_frames=recipe.num_frames, stride=recipe.stride,
                      fps=recipe.fps, sampling=recipe.sampling, load_size=size, crop_size=recipe.crop_size,
                      batch_size=recipe.batch_size, num_workers=recipe.num_workers, persistent_workers=False)


def run_experiment(exp: Experiment, recipe: Recipe, backbone: str, checkpoint, data_root, seed: int, device: str,
                   workdir: Path) -> tuple[dict, dict, dict]:
    """Train/probe and test one experiment; returns (metrics, timings, extra)."""
    from vssl.data.dataset import ClipDataset
    from vssl.distributed import resolve_device, seed_everything
    from vssl.models import build_backbone

    t0 = time.perf_counter()
    train, test, root = load_splits(exp, data_root)
    cfg = data_config(exp, recipe, root)
    num_classes = len(train.classes) if exp.task != "counting" else 0
    # Random init is one fixed network (seed 0), like a pretrained one: seeds vary what happens
    # downstream (clips, head, fine-tuning), and frozen features of "none" are extracted once.
    seed_everything(0)
    net = build_backbone(backbone, checkpoint, **({"drop_path_rate": recipe.drop_path} if recipe.drop_path else {}))
    seed_everything(seed)
    dev = resolve_device(device)
    test_ds = ClipDataset(test, root, cfg, train=False, test_clips=recipe.test_clips, seed=seed,
                          failure_log=workdir / "failures")
    extra = {"num_train": len(train), "num_test": len(test), "num_classes": num_classes, "device": str(dev)}
    counter = exp.task == "counting" and recipe.mode == "finetune" and _counting_method(recipe) == "repetition_counter"
    if counter:
        from vssl.severe.counting import count_videos, train_counter

        method, timings = train_counter(exp, recipe, net, backbone, train, root, cfg, seed, device, workdir)
        t1 = time.perf_counter()
        scores, labels, dropped = count_videos(method, test, root, cfg, dev, workdir)
    elif recipe.mode == "finetune":
        method, timings = _finetune(exp, recipe, net, backbone, train, root, data_config(exp, recipe, root, True),
                                    num_classes, seed, device, workdir)
        t1 = time.perf_counter()
        views, labels, index = _views(method.eval(), test_ds, recipe, dev)
        scores = _ensemble(views, exp.task, recipe.ensemble)
        scored = set(index.tolist())
        dropped = [r.path for i, r in enumerate(test.records) if i not in scored]
    else:
        t1 = time.perf_counter()
        scores, labels, timings, dropped = _frozen(exp, recipe, net, train, test, data_root, root, cfg, num_classes,
                                                   seed, dev, workdir, checkpoint)
    if len(dropped) == len(test):
        raise VsslError(f"{exp.name}: none of the {len(test)} test videos could be decoded "
                        f"(reasons in {workdir / 'failures'})")
    from vssl.severe.evaluate import task_metrics
    metrics = task_metrics(exp.task, scores, labels, num_classes)
    if exp.task == "counting":
        from vssl.severe.heads import constant_count_baseline
        base = constant_count_baseline([r.label for r in train.records], labels)
        metrics.update(mae_constant_baseline=base["mae"], obo_constant_baseline=base["obo"])
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


def _counting_method(recipe) -> str:
    from vssl.severe.protocols import COUNTING_METHODS

    if recipe.counting_method not in COUNTING_METHODS:
        raise ConfigError(f"--set counting_method: expected one of {', '.join(COUNTING_METHODS)}, "
                          f"got {recipe.counting_method!r}")
    return recipe.counting_method


class _ClipEpochs(Dataset):
    """``repeats`` passes over a ClipDataset as one long epoch: item ``i`` is video ``i % N`` with a fresh
    random clip per pass (SEVERE's epoch is ``videos x clips_per_video`` random clips, §2.1). Each pass
    reseeds the (per-process) dataset copy, because the engine does not call ``ClipDataset.set_epoch``;
    the engine shuffles all (video, pass) pairs of the run at once, so every video is seen equally often
    over the run rather than exactly ``clips_per_video`` times per epoch."""

    def __init__(self, dataset, repeats: int):
        self.dataset, self.repeats, self.base_seed = dataset, max(1, repeats), dataset.seed

    def __len__(self) -> int:
        return len(self.dataset) * self.repeats

    def __getitem__(self, index: int) -> dict:
        n = len(self.dataset)
        self.dataset.seed = self.base_seed * 1_000_003 + index // n
        return self.dataset[index % n]


def _finetune(exp, recipe, net, backbone, train, root, cfg, num_classes, seed, device, workdir):
    from vssl.data.dataset import ClipDataset
    from vssl.engine import Trainer
    from vssl.methods.supervised import Supervised
    from vssl.severe.heads import Counting

    per_epoch = steps_per_epoch(len(train) * recipe.train_clips_per_video, recipe.batch_size)
    max_steps, milestones, warmup = recipe.schedule(per_epoch)
    # the whole run is one long engine epoch over (video, pass) pairs: every pass draws fresh clips
    repeats = math.ceil((max_steps + 1) * recipe.batch_size / len(train))
    paper_like = recipe.steps == 0  # epoch-based recipes are long: checkpoint every epoch, resume
    if exp.task == "counting":
        from vssl.severe.heads import constant_count_baseline
        best = constant_count_baseline([float(r.label) for r in train.records], [1.0])["count"]
        name, params = "log_count", Counting.Config(dropout=recipe.dropout, init_log_count=math.log(best),
                                                     scale=list(recipe.crop_scale), flip=exp.flip,
                                                     mean=list(recipe.mean), std=list(recipe.std), **_jitter(recipe))
    else:
        name, params = "supervised", Supervised.Config(
            num_classes=num_classes, task=exp.task, dropout=recipe.dropout, crop=recipe.train_crop,
            scale=list(recipe.crop_scale), short_side=list(recipe.short_side), mean=list(recipe.mean),
            std=list(recipe.std), flip=exp.flip and recipe.flip, layer_decay=recipe.layer_decay,
            label_smoothing=recipe.label_smoothing, mixup=recipe.mixup, cutmix=recipe.cutmix, erase_p=recipe.erase_p,
            randaug_ops=recipe.randaug_ops, head_init_scale=recipe.head_init_scale, **_jitter(recipe))
    run = recipe.run_config(name, params, backbone, cfg, seed, device, max_steps, milestones, warmup,
                            ckpt_every=per_epoch if paper_like else 0)
    method = (Counting if name == "log_count" else Supervised)(params, net, run)
    clips = ClipDataset(train, root, cfg, train=True, seed=seed, failure_log=workdir / "failures")
    t = time.perf_counter()
    # the work folder is the runner's scratch (the result lives in the store): a killed paper run resumes,
    # anything else left there is replaced
    summary = Trainer(run, method, _ClipEpochs(clips, repeats), workdir, resume=paper_like, overwrite=True).fit()
    timings = {"train_s": time.perf_counter() - t, "train_steps": summary["step"], "final_loss": summary.get("loss")}
    if recipe.precise_bn > 0:
        from vssl.severe.evaluate import precise_bn

        t = time.perf_counter()
        used = precise_bn(method, clips, batches=recipe.precise_bn, batch_size=recipe.batch_size,
                          device=next(method.parameters()).device, num_workers=recipe.num_workers, seed=seed)
        timings["precise_bn_batches"] = used
        timings["precise_bn_s"] = time.perf_counter() - t
    return method, timings


def _jitter(recipe) -> dict:
    return {} if recipe.jitter_p is None else {"jitter_p": float(recipe.jitter_p)}


def _views(fn, dataset, recipe, dev):
    from vssl.severe.evaluate import eval_transform, run_views

    return run_views(fn, dataset, eval_transform(recipe), batch_size=recipe.eval_batch_size, device=dev,
                     num_workers=recipe.num_workers)


def _ensemble(views, task, how):
    from vssl.severe.evaluate import ensemble

    return ensemble(views, task, how)


def _frozen(exp, recipe, net, train, test, data_root, root, cfg, num_classes, seed, dev, workdir, checkpoint):
    """linear / knn: features of the frozen backbone, cached per model and video (see ``_features``)."""
    from vssl.severe.heads import fit_linear_head, knn_scores

    net = net.to(dev).eval()
    t = time.perf_counter()
    args = (net, data_root, root, cfg, seed, dev, workdir, checkpoint)
    tr, tr_y, _ = _features(exp, exp.train_split, train, recipe, recipe.feature_clips, *args)
    te, te_y, dropped = _features(exp, exp.test_split, test, recipe, recipe.test_clips, *args)
    timings = {"features_s": time.perf_counter() - t}
    t = time.perf_counter()
    if recipe.mode == "linear":
        v = tr.shape[1]
        head = fit_linear_head(tr.flatten(0, 1), tr_y.repeat_interleave(v, 0), exp.task, num_classes,
                               epochs=recipe.head_epochs, lr=recipe.lr, weight_decay=recipe.weight_decay, seed=seed)
        with torch.no_grad():
            scores = _ensemble(head(te.flatten(0, 1)).reshape(te.shape[0], te.shape[1], -1).squeeze(-1)
                               if exp.task == "counting" else head(te.flatten(0, 1)).reshape(*te.shape[:2], -1),
                               exp.task, recipe.ensemble)
    elif recipe.mode == "knn":
        scores = knn_scores(tr.mean(1), tr_y, te.mean(1), exp.task, num_classes, recipe.knn_k, recipe.knn_tau)
        if exp.task == "counting":
            scores = scores.exp()
    else:
        raise VsslError(f"unknown recipe mode {recipe.mode!r}")
    timings["head_s"] = time.perf_counter() - t
    return scores, te_y, timings, dropped


def _features(exp, split, videos, recipe, clips, net, data_root, root, cfg, seed, dev, workdir, checkpoint):
    """Frozen features (K, clips, D) of the K videos of ``videos`` that decode, their encoded labels, and
    the paths of the videos dropped as unreadable (no features: never another video's in their place).

    Features are cached per model and per *video* of the whole split (``<model dir>/features``), so the
    experiments that share videos (Gym99, its 10^3 subset, FX-S1 and UB-S1 all read the Gym99 lists)
    decode and embed each video once; labels come from ``videos`` (subsets relabel). The clips of a
    test view do not depend on the seed, so the cache serves every seed.
    """
    from vssl.data.dataset import ClipDataset, encode_label, record_failures
    from vssl.data.datasets import load_videos

    fields = {k: getattr(recipe, k) for k in ("num_frames", "fps", "stride", "sampling", "load_size", "crop_size",
                                              "test_crops", "mean", "std", "pool")}
    annotations = exp.annotation_dir(data_root)
    fields.update(clips=clips, dataset=exp.dataset, split=split, fold=exp.fold, annotations=str(annotations.resolve()))
    tag = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    cache = workdir.parent / "features" / f"{exp.dataset}-{split}-{tag}.pt"
    stored = _read_feature_cache(cache, keys={"paths": list, "feats": torch.Tensor, "dropped": list})
    if stored is not None:
        paths, feats, unreadable = stored["paths"], stored["feats"], stored["dropped"]
        record_failures(workdir / "failures", stored.get("failures", []))  # met when the cache was filled
    else:
        # the whole split (no subset options), minus videos missing on disk
        full = load_videos(exp.dataset, annotations, split, exp.fold, **({"root": root} if root.is_dir() else {}))
        ds = ClipDataset(full, root, cfg, train=False, test_clips=clips, seed=seed, failure_log=workdir / "failures")
        from vssl.severe.evaluate import frozen_features

        clip_fields = {k: v for k, v in fields.items() if k not in ("pool", "mean", "std")}  # uint8 clips
        feats, _, index = _views(frozen_features(net, recipe.pool), _decoded_clips(ds, clip_fields, recipe, workdir),
                                 recipe, dev)
        scored = set(index.tolist())
        paths = [full.records[i].path for i in index.tolist()]
        unreadable = [r.path for i, r in enumerate(full.records) if i not in scored]
        from vssl.serialization import atomic_save

        failures = _split_failures(ds, [r.path for r in full.records])
        atomic_save({"paths": paths, "feats": feats, "failures": failures, "dropped": unreadable},
                    cache)  # per-process tmp: runs may race
    where, gone = {p: i for i, p in enumerate(paths)}, set(unreadable)
    kept = [r for r in videos.records if r.path not in gone]
    missing = [r.path for r in kept if r.path not in where]
    if missing:
        raise VsslError(f"{exp.name}: {len(missing)} videos missing from the feature cache {cache} "
                        f"(e.g. {missing[0]}); delete it and rerun")
    index = torch.tensor([where[r.path] for r in kept], dtype=torch.long)
    n = len(videos.classes) if getattr(videos, "classes", None) else 0
    labels = [encode_label(r.label, getattr(videos, "task", None), n) for r in kept]
    labels = torch.stack(labels) if labels else torch.empty(0)
    return feats[index], labels, [r.path for r in videos.records if r.path in gone]


#: decoded clips of a split are kept (``<out>/clips``) when they take at most this many bytes
CLIP_CACHE_BYTES = 1 << 30


class _TensorClips(Dataset):
    """Decoded uint8 clips (padded to one frame size), labels and dataset indices held in memory, served like
    a ClipDataset's test items: each clip cut back to its own frame size (the videos that could not be
    decoded are not among them)."""

    def __init__(self, video: torch.Tensor, label: torch.Tensor, frame_size: torch.Tensor, index: torch.Tensor):
        self.video, self.label, self.frame_size, self.index = video, label, frame_size, index

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict:
        h, w = self.frame_size[i].tolist()
        return {"video": self.video[i][..., :h, :w], "label": self.label[i], "index": self.index[i]}


def _decoded_clips(ds, fields: dict, recipe, workdir: Path):
    """The test views of ``ds`` decoded once per results folder and reused by every model.

    The frozen protocols embed the same clips of the same videos with every model (the clips do not
    depend on the model or the seed), so on the synthetic benchmark most of an evaluation's time was
    decoding the same files again (``vssl demo``: 7 models). Splits whose clips fit in
    :data:`CLIP_CACHE_BYTES` are decoded once into ``<out>/clips/<dataset>-<split>-<tag>.pt``; larger
    ones (real data at 112 px, 10 clips) are decoded on the fly as before.
    """
    estimate = len(ds) * fields["clips"] * 3 * recipe.num_frames * recipe.load_size ** 2 * 16 // 9
    if estimate > CLIP_CACHE_BYTES:
        return ds
    tag = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    path = workdir.parents[2] / "clips" / f"{fields['dataset']}-{fields['split']}-{tag}.pt"
    stored = _read_feature_cache(path, keys={"video": torch.Tensor, "label": torch.Tensor, "frame_size": torch.Tensor,
                                             "index": torch.Tensor})
    if stored is not None:
        from vssl.data.dataset import record_failures

        record_failures(ds.failure_log, stored.get("failures", []))  # met when the cache was filled
    else:
        from torch.utils.data import DataLoader

        from vssl.data.collate import pad_frames
        from vssl.data.dataset import collate_kept
        from vssl.serialization import atomic_save

        batches = [b for b in DataLoader(ds, batch_size=32, shuffle=False, num_workers=recipe.num_workers,
                                         collate_fn=collate_kept) if b is not None]
        if not batches:  # nothing decodes: the caller reports it
            return ds
        sizes = torch.cat([b["frame_size"] for b in batches])
        height, width = sizes.max(0).values.tolist()
        stored = {"video": torch.cat([pad_frames(b["video"], height, width) for b in batches]),
                  "label": torch.cat([b["label"] for b in batches]), "frame_size": sizes,
                  "index": torch.cat([torch.as_tensor(b["index"]) for b in batches]),
                  "failures": _split_failures(ds, [r.path for r in ds.videos.records])}
        atomic_save(stored, path)
    return _TensorClips(stored["video"], stored["label"], stored["frame_size"], stored["index"])


def _split_failures(ds, paths: list[str]) -> list[list[str]]:
    """[path, reason] of the failed videos of ``ds`` among ``paths``, once each (kept with a cache of its clips)."""
    from vssl.data.dataset import distinct_failures

    wanted = set(paths)
    return [[p, r] for p, r in distinct_failures(ds.failure_report()) if p in wanted]


def _read_feature_cache(cache: Path, keys: dict) -> dict | None:
    """The cached entry when it holds ``keys`` (name -> type), or None when absent, unreadable or of an older
    layout (then it is computed again)."""
    if not cache.is_file():
        return None
    from vssl.serialization import load_checkpoint

    try:
        stored = load_checkpoint(cache)
        if all(isinstance(stored.get(k), t) for k, t in keys.items()):
            return stored
    except VsslError as e:
        print(f"vssl: warning: {e}; extracting the features again")
    return None


def failure_summary(results: list[Result]) -> list[str]:
    """Lines naming the videos the results could not read (decoding failed) or find (missing on disk)."""
    lines = []
    for what, key in (("unreadable, dropped from the scores", "dropped_paths"),
                      ("unreadable in training (replaced when fine-tuning, left out of frozen features)",
                       "train_failed_paths"),
                      ("missing on disk, left out", "missing_paths")):
        per_exp: dict[str, list[str]] = {}
        for r in results:
            paths = r.extra.get(key) or []
            per_exp.setdefault(r.key.experiment, [])
            per_exp[r.key.experiment] += [p for p in paths if p not in per_exp[r.key.experiment]]
        for exp, paths in per_exp.items():
            if paths:
                shown = ", ".join(paths[:20]) + (f", ... (+{len(paths) - 20})" if len(paths) > 20 else "")
                lines.append(f"{exp}: {len(paths)} videos {what}: {shown}")
    return lines


def severe_command(args) -> int:
    """``vssl severe --backbone NAME [--checkpoint] --data-root DIR --out DIR [--experiments] [--protocol]
    [--recipe] [--seeds] [--name] [--device] [--set k=v]``."""
    from vssl.severe.report import build_tables, render

    try:
        seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    if not seeds:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise ConfigError(f"--checkpoint {args.checkpoint}: no such file")
    from vssl.models import BACKBONES

    if args.backbone not in BACKBONES:
        raise ConfigError(f"--backbone: unknown backbone {args.backbone!r} (known: {', '.join(BACKBONES)})")
    results = run_severe(args.backbone, args.checkpoint, args.data_root, args.out, args.experiments, args.protocol,
                         seeds, name=args.name, device=args.device, overrides=args.overrides,
                         recipe=getattr(args, "recipe", "severe"))
    print(render(build_tables(results), "md"), end="")
    for line in failure_summary(results):
        print(f"vssl: warning: {line}")
    return 0
