"""Fine-tuning protocols (``paper``, ``quick-ft``): the backbone and a head trained end to end through the
engine's ``Trainer``, then tested on every view of every test video.

The method is a registered engine method (``vssl.methods.METHODS``), so each run saves a ``config.yaml``
that loads again: ``supervised`` for classification and multi-label, and for counting the recipe's
``counting_method``, ``log_count`` (a log-count head on one clip) or ``repetition_counter`` (Zhang et al.'s
counter, trained and tested by :mod:`vssl.severe.counting`).
"""

from __future__ import annotations

import math
import time

import torch
from torch.utils.data import Dataset

from vssl.data.dataset import ClipDataset
from vssl.data.datasets import VideoList
from vssl.engine import Trainer
from vssl.methods import METHODS
from vssl.severe.counting import count_videos, train_counter
from vssl.severe.evaluate import eval_transform, precise_bn, run_views
from vssl.severe.plan import ExperimentRun
from vssl.severe.protocols import Recipe, steps_per_epoch
from vssl.tasks import constant_count_baseline


def finetune_method(run: ExperimentRun) -> str:
    """The engine method that fine-tunes the run's experiment: its task's only one, or the recipe's
    ``counting_method`` among the task's (counting has two)."""
    methods = run.experiment.kind.methods
    return run.recipe.counting_method if run.recipe.counting_method in methods else methods[0]


def fine_tune(run: ExperimentRun, net, train: VideoList, num_classes: int) -> tuple[torch.nn.Module, dict]:
    """Train ``net`` with the run's method; returns (method, timings)."""
    name = finetune_method(run)
    if name == "repetition_counter":
        return train_counter(run, net, train)
    return _train(run, name, net, train, num_classes)


def evaluate_fine_tuned(run: ExperimentRun, method, test: VideoList, test_ds: ClipDataset,
                    dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Per-video scores and labels of the test videos that decode, and the paths of the dropped ones."""
    if finetune_method(run) == "repetition_counter":  # counts each whole video by a multi-scale search
        return count_videos(method, test, run.video_root, run.data_config(), dev, run.failure_log)
    views, labels, index = run_views(method.eval(), test_ds, eval_transform(run.recipe),
                                     batch_size=run.recipe.eval_batch_size, device=dev,
                                     num_workers=run.recipe.num_workers)
    scores = run.experiment.kind.scores(views, run.recipe.ensemble)
    scored = set(index.tolist())
    return scores, labels, [r.path for i, r in enumerate(test.records) if i not in scored]


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


def _supervised_params(run: ExperimentRun, train: VideoList, num_classes: int):
    recipe, exp = run.recipe, run.experiment
    return METHODS["supervised"].Config(
        num_classes=num_classes, task=exp.task, dropout=recipe.dropout, crop=recipe.train_crop,
        scale=list(recipe.crop_scale), short_side=list(recipe.short_side), mean=list(recipe.mean), std=list(recipe.std),
        flip=exp.flip and recipe.flip, layer_decay=recipe.layer_decay, label_smoothing=recipe.label_smoothing,
        mixup=recipe.mixup, cutmix=recipe.cutmix, erase_p=recipe.erase_p, randaug_ops=recipe.randaug_ops,
        head_init_scale=recipe.head_init_scale, **_jitter(recipe))


def _log_count_params(run: ExperimentRun, train: VideoList, num_classes: int):
    """The head starts at the best constant count of the train set (the floor it must beat)."""
    recipe = run.recipe
    best = constant_count_baseline([float(r.label) for r in train.records], [1.0])["count"]
    return METHODS["log_count"].Config(dropout=recipe.dropout, init_log_count=math.log(best),
                                       scale=list(recipe.crop_scale), flip=run.experiment.flip, mean=list(recipe.mean),
                                       std=list(recipe.std), **_jitter(recipe))


def _jitter(recipe: Recipe) -> dict:
    return {} if recipe.jitter_p is None else {"jitter_p": float(recipe.jitter_p)}


#: the typed config of an engine-trained method from a run's recipe
_PARAMS = {"supervised": _supervised_params, "log_count": _log_count_params}


def _train(run: ExperimentRun, name: str, net, train: VideoList, num_classes: int):
    recipe: Recipe = run.recipe
    cfg = run.data_config(train=True)
    per_epoch = steps_per_epoch(len(train) * recipe.train_clips_per_video, recipe.batch_size)
    max_steps, milestones, warmup = recipe.schedule(per_epoch)
    # the whole run is one long engine epoch over (video, pass) pairs: every pass draws fresh clips
    repeats = math.ceil((max_steps + 1) * recipe.batch_size / len(train))
    paper_like = recipe.steps == 0  # epoch-based recipes are long: checkpoint every epoch, resume
    params = _PARAMS[name](run, train, num_classes)
    engine_run = recipe.run_config(name, params, run.backbone, cfg, run.seed, run.device, max_steps, milestones,
                                   warmup, ckpt_every=per_epoch if paper_like else 0)
    method = METHODS[name](params, net, engine_run)
    clips = ClipDataset(train, run.video_root, cfg, train=True, seed=run.seed, failure_log=run.failure_log)
    t = time.perf_counter()
    # the work folder is the runner's scratch (the result lives in the store): a killed paper run resumes,
    # anything else left there is replaced
    summary = Trainer(engine_run, method, _ClipEpochs(clips, repeats), run.workdir, resume=paper_like,
                      overwrite=True).fit()
    timings = {"train_s": time.perf_counter() - t, "train_steps": summary["step"], "final_loss": summary.get("loss")}
    if recipe.precise_bn > 0:
        t = time.perf_counter()
        used = precise_bn(method, clips, batches=recipe.precise_bn, batch_size=recipe.batch_size,
                          device=next(method.parameters()).device, num_workers=recipe.num_workers, seed=run.seed)
        timings["precise_bn_batches"] = used
        timings["precise_bn_s"] = time.perf_counter() - t
    return method, timings


__all__ = ["finetune_method", "fine_tune", "evaluate_fine_tuned"]
