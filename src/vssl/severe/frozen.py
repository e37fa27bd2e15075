"""The frozen protocols (``linear``, ``knn``, ``quick``): features of the frozen backbone, then a linear head
or kNN votes on them (:mod:`vssl.severe.heads`).

Features are cached per model and per *video* of a whole split (:mod:`vssl.severe.caches`); labels come
from the experiment's own list (subsets relabel). An unreadable video has no features and is dropped,
never replaced by another video.
"""

from __future__ import annotations

import time

import torch

from vssl.data.dataset import ClipDataset, encode_label
from vssl.data.datasets import VideoList, load_videos
from vssl.errors import VsslError
from vssl.severe.caches import cached, decoded_clips, split_failures
from vssl.severe.evaluate import eval_transform, frozen_features, run_views
from vssl.severe.heads import fit_linear_head, knn_scores
from vssl.severe.plan import ExperimentRun

_FEATURE_KEYS = {"paths": list, "feats": torch.Tensor, "dropped": list}
#: recipe fields that decide a split's features (with the split and the clips per video)
_FEATURE_FIELDS = ("num_frames", "fps", "stride", "sampling", "load_size", "crop_size", "test_crops", "mean", "std",
                   "pool")


def frozen_scores(run: ExperimentRun, net, train: VideoList, test: VideoList, num_classes: int,
                  dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict, list[str]]:
    """Per-video scores and labels of the test videos that decode, timings, and the dropped test paths."""
    exp, recipe = run.experiment, run.recipe
    kind = exp.kind
    net = net.to(dev).eval()
    t = time.perf_counter()
    tr, tr_y, _ = split_features(run, exp.train_split, train, recipe.feature_clips, net, dev)
    te, te_y, dropped = split_features(run, exp.test_split, test, recipe.test_clips, net, dev)
    timings = {"features_s": time.perf_counter() - t}
    t = time.perf_counter()
    if recipe.mode == "linear":
        v = tr.shape[1]
        head = fit_linear_head(tr.flatten(0, 1), tr_y.repeat_interleave(v, 0), exp.task, num_classes,
                               epochs=recipe.head_epochs, lr=recipe.lr, weight_decay=recipe.weight_decay, seed=run.seed)
        with torch.no_grad():
            out = head(te.flatten(0, 1))
            scores = kind.scores(out.reshape(*te.shape[:2], *out.shape[1:]), recipe.ensemble)
    elif recipe.mode == "knn":
        scores = kind.knn_scores(knn_scores(tr.mean(1), tr_y, te.mean(1), exp.task, num_classes, recipe.knn_k,
                                            recipe.knn_tau))
    else:
        raise VsslError(f"unknown recipe mode {recipe.mode!r}")
    timings["head_s"] = time.perf_counter() - t
    return scores, te_y, timings, dropped


def split_features(run: ExperimentRun, split: str, videos: VideoList, clips: int, net,
                   dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Frozen features (K, clips, D) of the K videos of ``videos`` that decode, their encoded labels, and
    the paths of the videos dropped as unreadable.

    The features of every video of the whole ``split`` are cached (``run.caches.features``); the clips of
    a test view do not depend on the seed, so the cache serves every seed.
    """
    exp, recipe, root = run.experiment, run.recipe, run.video_root
    annotations = exp.annotation_dir(run.data_root)
    fields = {k: getattr(recipe, k) for k in _FEATURE_FIELDS}
    fields.update(clips=clips, dataset=exp.dataset, split=split, fold=exp.fold, annotations=str(annotations.resolve()))

    def extract() -> dict:
        # the whole split (no subset options), minus videos missing on disk
        full = load_videos(exp.dataset, annotations, split, exp.fold, **({"root": root} if root.is_dir() else {}))
        ds = ClipDataset(full, root, run.data_config(), train=False, test_clips=clips, seed=run.seed, failure_log=run.failure_log)
        clip_fields = {k: v for k, v in fields.items() if k not in ("pool", "mean", "std")}  # uint8 clips
        feats, _, index = run_views(frozen_features(net, recipe.pool),
                                    decoded_clips(ds, clip_fields, run.caches, recipe.num_workers), eval_transform(recipe),
                                    batch_size=recipe.eval_batch_size, device=dev, num_workers=recipe.num_workers)
        scored = set(index.tolist())
        return {"paths": [full.records[i].path for i in index.tolist()], "feats": feats,
                "failures": split_failures(ds, [r.path for r in full.records]),
                "dropped": [r.path for i, r in enumerate(full.records) if i not in scored]}

    cache = run.caches.feature_file(fields)
    stored = cached(cache, _FEATURE_KEYS, extract, run.failure_log)
    where, gone = {p: i for i, p in enumerate(stored["paths"])}, set(stored["dropped"])
    kept = [r for r in videos.records if r.path not in gone]
    missing = [r.path for r in kept if r.path not in where]
    if missing:
        raise VsslError(f"{exp.name}: {len(missing)} videos missing from the feature cache {cache} "
                        f"(e.g. {missing[0]}); delete it and rerun")
    index = torch.tensor([where[r.path] for r in kept], dtype=torch.long)
    n = len(videos.classes) if videos.classes else 0
    labels = [encode_label(r.label, videos.task, n) for r in kept]
    labels = torch.stack(labels) if labels else torch.empty(0)
    return stored["feats"][index], labels, [r.path for r in videos.records if r.path in gone]


__all__ = ["frozen_scores", "split_features"]
