"""How an experiment is trained and tested: protocols as data.

A :class:`Protocol` resolves to a :class:`Recipe` per experiment (``protocol.recipe(experiment)``):

- ``paper``: the published SEVERE recipe of each experiment (severe-protocols.md §2.1-2.5, §5, §6):
  32 frames at 16 fps, training crops drawn from the whole frame (random resized crop 0.08-1 of clips
  decoded at short side 256), 112x112 test crop after short side 128, Adam 1e-4 (wd 0), batch 32, per-epoch
  MultiStepLR (gamma 0.3) with the experiment's epochs/milestones (§2.4), 10 uniform test clips x 1 centre
  crop with softmax averaging. Charades (PySlowFast): SGD 0.0375 Nesterov, wd 1e-4, 4 warm-up epochs, 57
  epochs (steps 41, 49, x0.1), dropout 0.5, BCE, 32 frames x rate 8 at 24 fps; train short side
  inverse-uniform in [256, 340], random 112 crop, flip, no colour jitter; mean 0.45 / std 0.225;
  precise-BN over 200 train batches; test short side 112, 10 clips x 3 crops spanning the long side,
  max-ensembled.
  UCF-RC: the repetition counter of Zhang et al. (CVPR 2020) as SEVERE fine-tunes it (``counting.py``):
  32-frame inputs around tracked cycles of <= 300-frame samples (10 per video), 7 anchors, Adam 5e-5,
  wd 1e-3, 100 epochs; test-time multi-scale search and merge over each whole video.
  Deviation: the **last** weights are tested (no best-on-test checkpoint selection, §2.5/§7.1).
  ViT backbones get SIGMA's fine-tuning recipe instead on the experiments SIGMA's code fine-tunes
  (:data:`VIT_PAPER`): 16 frames at 224 px, AdamW with layer-wise lr decay, warm-up and cosine,
  RandAugment, random erasing, mixup/cutmix, 5 x 3 test views.
- ``quick``: the synthetic benchmark on CPU (``vssl demo``): frozen backbone, 16x32x32 clips, pooled
  features of one clip per video (16 frames spanning the whole synthetic video) extracted once per
  model and video (cached), pooled over space
  but not time (``pool="time"``, as the pilot's better probe), a linear head.
  Cheap enough for 7 models x 8 experiments x 2 seeds in minutes on 2 cores.
- ``quick-ft``: the synthetic benchmark with fine-tuning: 16x32x32 clips, 300 Adam steps (lr 1e-3,
  x0.3 at 60% and 85%), batch 8, 2 test clips (minutes per experiment on CPU: the longer runs).
- ``linear``: frozen backbone on real data (paper clips: 32 frames at 16 fps, 112 px, 10 test clips);
  pooled features extracted once (cached per model and video), a linear head trained with torch on
  them (classification: CE, multi-label: BCE, counting: log-count regression).
- ``knn``: frozen backbone (paper clips), L2-normalised pooled features, k=200 (or all train videos if fewer),
  tau=0.07, votes weighted by exp(cos/tau), bank = **train** set (sigma-videomae.md §3.7, not the
  reference's test-set monitor).

``--set key=value`` overrides any :class:`Recipe` field (``--set steps=50 --set batch_size=4``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import yaml

from vssl.config import MethodSection, ModelConfig, OptimConfig, RunConfig, ScheduleConfig, TrainConfig
from vssl.errors import ConfigError
from vssl.severe.experiments import Experiment
from vssl.severe.recipes import get_recipe
from vssl.tasks import TASKS


#: how a counting experiment is fine-tuned (``Recipe.counting_method``): the task's engine methods
COUNTING_METHODS = TASKS["counting"].methods


@dataclass(frozen=True)
class Recipe:
    """Fully resolved settings of one (experiment, protocol) run."""

    mode: str = "finetune"  # finetune | linear | knn
    # clips
    num_frames: int = 32
    fps: float = 16.0  # target frame rate; 0 = use `stride`
    stride: int = 1
    sampling: str = "random"  # random | segment (whole-video coverage; used for counting)
    load_size: int = 128  # decoded short side of test clips (= test resize, SEVERE: int(112 / 0.875))
    #: decoded short side of training clips (0 = load_size). The references crop training clips from native
    #: frames; decoding at 256 keeps UCF101's and SS-v2's native 240 px, so their random resized crops see
    #: the reference's pixels rather than upsampled ones (docs/severe.md, "Parity with the public code")
    train_size: int = 0
    crop_size: int = 112
    train_crop: str = "rrc"  # rrc (RandomResizedCrop of crop_scale) | short_side_jitter (PySlowFast, Charades)
    short_side: tuple[int, ...] = (256, 340)  # short_side_jitter: inverse-uniform short side range (§6)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # normalisation (ImageNet; PySlowFast: 0.45)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)  # (ImageNet; PySlowFast: 0.225)
    precise_bn: int = 0  # train batches whose BN statistics replace the running ones before testing (§6: 200)
    # optimisation (finetune / linear head)
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    batch_size: int = 32
    epochs: int = 0  # passes over (train videos x train_clips_per_video)
    steps: int = 0  # fixed number of optimizer steps; wins over `epochs` when > 0
    milestones: tuple[float, ...] = ()  # in epochs, or fractions of `steps` when steps > 0
    gamma: float = 0.3
    warmup_epochs: float = 0.0
    lr_schedule: str = "step"  # step (MultiStepLR at milestones) | cosine (to min_lr after the warm-up)
    min_lr: float = 0.0
    train_clips_per_video: int = 1
    dropout: float = 0.0
    crop_scale: tuple[float, ...] = (0.08, 1.0)  # RandomResizedCrop area range (§2.2)
    #: colour-jitter probability per training clip; None = the head's default (SEVERE: always for
    #: classification, 0.8 for counting). SynthSEVERE's appearance is label-free by construction, and on
    #: 32 px clips both jitter and strong crops slowed learning from scratch (docs/synthsevere.md)
    jitter_p: float | None = None
    clip_grad: float = 0.0
    flip: bool = True  # horizontal flips in training (and the experiment allows them)
    # VideoMAE/SIGMA ViT fine-tuning (vssl.methods.supervised.Supervised.Config): off in the CNN recipes
    layer_decay: float = 1.0
    drop_path: float = 0.0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    erase_p: float = 0.0
    randaug_ops: int = 0
    head_init_scale: float = 0.0
    #: counting experiments under fine-tuning: "repetition_counter" (Zhang et al.'s anchor counter, the
    #: paper protocol; vssl.severe.counting) or "log_count" (a log-count head on one clip, the quick ones)
    counting_method: str = "log_count"
    # test
    test_clips: int = 10
    test_crops: int = 1
    ensemble: str = "mean"  # mean (of softmax / log-count) | max (of sigmoid, Charades)
    # frozen-feature protocols
    feature_clips: int = 2  # uniform clips per train video for cached features
    pool: str = "mean"  # frozen features: mean (global average) | time (space-pooled, time kept; see evaluate.py)
    head_epochs: int = 200  # full-batch epochs of the linear head on cached features
    knn_k: int = 200
    knn_tau: float = 0.07
    # loader
    num_workers: int = 0
    eval_batch_size: int = 8

    def run_config(self, method: str, params, backbone: str, data, seed: int, device: str, max_steps: int,
                   milestones, warmup: int, ckpt_every: int):
        """The engine's RunConfig of a fine-tuning run: ``method`` (a ``vssl.methods.METHODS`` name) with
        its typed ``params`` (saved in full, so the run's ``config.yaml`` loads again), this recipe's
        optimizer, its schedule (step at ``milestones`` or cosine to ``min_lr``; ``warmup`` steps first)
        and ``max_steps``."""
        return RunConfig(
            method=MethodSection(method, asdict(params)),
            model=ModelConfig(backbone=backbone),
            data=data,
            optim=OptimConfig(name=self.optimizer, lr=self.lr, weight_decay=self.weight_decay, betas=[0.9, 0.999],
                              momentum=self.momentum, nesterov=self.nesterov),
            schedule=ScheduleConfig(name=self.lr_schedule, milestones=list(milestones), gamma=self.gamma,
                                    warmup_steps=warmup, min_lr=self.min_lr),
            train=TrainConfig(max_steps=max_steps, clip_grad=self.clip_grad, seed=seed, device=device,
                              log_every=max(1, min(50, max_steps // 10)), ckpt_every=ckpt_every,
                              progress=False, tensorboard=False),
        )

    def schedule(self, steps_per_epoch: int) -> tuple[int, list[int], int]:
        """(max_steps, milestones in steps, warm-up steps) for a train set of ``steps_per_epoch`` batches."""
        if self.steps > 0:
            return self.steps, [int(round(m * self.steps)) for m in self.milestones], 0
        total = max(1, self.epochs * steps_per_epoch)
        return total, [int(m * steps_per_epoch) for m in self.milestones], int(self.warmup_epochs * steps_per_epoch)


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    base: Recipe
    per_task: dict = field(default_factory=dict)  # task -> overrides
    use_paper_recipe: bool = False  # take epochs/lr/... from Experiment.paper
    #: on SynthSEVERE, take the clip settings of this protocol: paper-sized clips (32 frames at 16 fps,
    #: 10 test clips, 128 px) upsample its 32 px videos 16-fold and made one small experiment take minutes
    synthetic_clips_from: str = ""

    def recipe(self, experiment: Experiment, overrides: list[str] | dict | None = None,
               backbone: str | None = None, row_recipe: str = "severe") -> Recipe:
        """The recipe of ``experiment``; under the paper protocol a ViT ``backbone`` (a ``vit*`` name) gets
        SIGMA's fine-tuning recipe on the experiments of :data:`VIT_PAPER`, and ``row_recipe`` names a
        published row's variant of the paper recipe (:mod:`vssl.severe.recipes`; only the paper protocol
        has one)."""
        r = self.base
        if row_recipe != "severe" and not self.use_paper_recipe:
            raise ConfigError(f"--recipe {row_recipe}: a published row's recipe varies the paper protocol, "
                              f"not {self.name!r}")
        if self.use_paper_recipe:
            p = get_recipe(row_recipe).paper(experiment)
            r = replace(r, optimizer=p.optimizer, lr=p.lr, weight_decay=p.weight_decay, batch_size=p.batch_size,
                        epochs=p.epochs, milestones=tuple(p.milestones), gamma=p.gamma,
                        warmup_epochs=p.warmup_epochs, train_clips_per_video=p.train_clips_per_video,
                        num_frames=p.num_frames, fps=p.fps, test_clips=p.test_clips, test_crops=p.test_crops,
                        ensemble=p.ensemble, dropout=p.dropout, nesterov=p.optimizer == "sgd")
            r = replace(r, **p.pipeline)
        r = replace(r, **self.per_task.get(experiment.task, {}))
        if self.use_paper_recipe and (backbone or "").startswith("vit") and experiment.name in VIT_PAPER:
            r = replace(r, **VIT_PAPER[experiment.name])
        if experiment.synthetic and self.synthetic_clips_from:
            clips = PROTOCOLS[self.synthetic_clips_from].recipe(experiment)
            r = replace(r, **{k: getattr(clips, k) for k in _CLIP_FIELDS})
        return check_recipe(apply_overrides(r, overrides))


#: the fields that say which clips are decoded and how many (not how they are learned from)
_CLIP_FIELDS = ("num_frames", "fps", "stride", "sampling", "load_size", "crop_size", "test_clips", "test_crops",
                "feature_clips", "eval_batch_size")


#: (lowest allowed, strictly above it?) per numeric recipe field: a value outside is refused, never stored
_BOUNDS = {
    "num_frames": (1, False), "fps": (0, False), "stride": (1, False), "load_size": (1, False),
    "crop_size": (1, False), "lr": (0, True), "weight_decay": (0, False), "momentum": (0, False),
    "batch_size": (1, False), "epochs": (0, False), "steps": (0, False), "gamma": (0, True),
    "warmup_epochs": (0, False), "train_clips_per_video": (1, False), "dropout": (0, False),
    "jitter_p": (0, False), "clip_grad": (0, False), "test_clips": (1, False), "test_crops": (1, False),
    "feature_clips": (1, False), "head_epochs": (1, False), "knn_k": (1, False), "knn_tau": (0, True),
    "num_workers": (0, False), "eval_batch_size": (1, False), "train_size": (0, False), "precise_bn": (0, False),
    "min_lr": (0, False), "layer_decay": (0, True), "drop_path": (0, False), "label_smoothing": (0, False),
    "mixup": (0, False), "cutmix": (0, False), "erase_p": (0, False), "randaug_ops": (0, False),
    "head_init_scale": (0, False),
}
_CHOICES = {"mode": ("finetune", "linear", "knn"), "sampling": ("random", "segment"),
            "optimizer": ("adam", "adamw", "sgd"), "ensemble": ("mean", "max"), "pool": ("mean", "time"),
            "train_crop": ("rrc", "short_side_jitter"), "lr_schedule": ("step", "cosine"),
            "counting_method": COUNTING_METHODS}


def check_recipe(recipe: Recipe) -> Recipe:
    """``recipe`` unchanged when every field is in range; else a ``ConfigError`` naming the field.

    A value such as ``steps=-3`` or ``knn_k=0`` used to run and store a result; ``test_clips=0``
    showed up as unreadable videos.
    """
    for key, (low, strict) in _BOUNDS.items():
        value = getattr(recipe, key)
        if value is not None and (value <= low if strict else value < low):
            raise ConfigError(f"--set {key}={value}: must be {'>' if strict else '>='} {low}")
    for key, choices in _CHOICES.items():
        if getattr(recipe, key) not in choices:
            raise ConfigError(f"--set {key}={getattr(recipe, key)!r}: expected one of {', '.join(choices)}")
    if recipe.dropout >= 1 or (recipe.jitter_p is not None and recipe.jitter_p > 1):
        raise ConfigError(f"--set dropout/jitter_p: must be below 1 / at most 1, got {recipe.dropout}, "
                          f"{recipe.jitter_p}")
    scale = recipe.crop_scale
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ConfigError(f"--set crop_scale={list(scale)}: expected [low, high] with 0 < low <= high <= 1")
    if recipe.mode == "finetune" and recipe.steps == 0 and recipe.epochs == 0:
        raise ConfigError("--set steps/epochs: a fine-tuning recipe needs steps > 0 or epochs > 0")
    return recipe


def apply_overrides(recipe: Recipe, overrides: list[str] | dict | None) -> Recipe:
    """``["steps=50", "lr=1e-3"]`` or ``{"steps": 50}`` applied to a recipe; unknown keys are errors."""
    if not overrides:
        return recipe
    if not isinstance(overrides, dict):
        pairs = {}
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
            pairs[key.strip()] = yaml.safe_load(value)
        overrides = pairs
    known = {f.name: f for f in fields(Recipe)}
    out = {}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"--set: unknown recipe key {key!r} (known: {', '.join(known)})")
        default = getattr(Recipe(), key)
        if default is None:  # optional numbers (jitter_p)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"--set {key}: expected a number, got {value!r}")
            out[key] = None if value is None else float(value)
            continue
        if isinstance(default, tuple):
            value = tuple(value if isinstance(value, (list, tuple)) else [value])
        elif isinstance(default, bool):
            value = bool(value)
        elif isinstance(default, (int, float)) and not isinstance(value, (int, float)):
            raise ConfigError(f"--set {key}: expected a number, got {value!r}")
        elif isinstance(default, int) and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"--set {key}: expected an integer, got {value!r}")
        out[key] = type(default)(value) if not isinstance(default, tuple) else value
    return replace(recipe, **out)


# counting with the log-count head (the protocols other than paper): a clip must see the whole video to
# count its cycles -> segment sampling over the video; mild crops so the repeating object stays in view.
# linear/knn: 64 frames so UCFRep's short periods do not alias; quick: 16 (measured in docs/severe.md:
# 64 frames cost 4x and did not beat 16 on SynthSEVERE tiny)
_COUNTING = {"sampling": "segment", "crop_scale": (0.8, 1.0), "test_clips": 2, "ensemble": "mean"}

# SIGMA fine-tunes ViTs on UCF101 (--examples 1000), Gym99 (also with 1000 examples), FX-S1 and UB-S1 with
# run_class_finetuning.py (QUVA-Lab/SIGMA datasets.py). No SEVERE script is released, so the values are
# that script's defaults (AdamW betas 0.9/0.999, wd 0.05, layer decay 0.75, 5 warm-up epochs from 0, cosine
# to min_lr 1e-6, drop path 0.1, rand-m7-n4-mstd0.5-inc1, erasing 0.25, mixup 0.8 / cutmix 1.0, label
# smoothing 0.1, RandomResizedCrop scale 0.25-1 with SIGMA's finetuning_crops, head x 0.001, 30 epochs,
# 5 x 3 test views) with the batch and rates of its released scripts (scripts_finetune/*.sh: 16 frames at
# sampling rate 4, 224 px, short side 224, base lr 1e-3 for 4 x 8 GPUs = 32 clips, scaled by 32 / 256 as
# the script does) and one clip per video per epoch (num_sample 1). SSv2 follows finetune_ssv2.sh
# (40 epochs, TSN segment sampling, 2 x 3 test views, no flip).
_VIT = dict(optimizer="adamw", lr=1e-3 * 32 / 256, weight_decay=0.05, batch_size=32, lr_schedule="cosine",
            warmup_epochs=5.0, min_lr=1e-6 * 32 / 256, milestones=(), epochs=30, train_clips_per_video=1,
            layer_decay=0.75, drop_path=0.1, label_smoothing=0.1, mixup=0.8, cutmix=1.0, erase_p=0.25, randaug_ops=4,
            head_init_scale=0.001, crop_scale=(0.25, 1.0), jitter_p=0.0, num_frames=16, fps=0.0, stride=4,
            sampling="random", load_size=224, crop_size=224, test_clips=5, test_crops=3, ensemble="mean")
VIT_PAPER: dict[str, dict] = {
    **{name: _VIT for name in ("ucf101_1k", "gym99", "gym99_1k", "fx_s1", "ub_s1")},
    "ssv2": {**_VIT, "epochs": 40, "sampling": "segment", "test_clips": 2, "flip": False},
}

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol("paper", "published SEVERE fine-tuning recipe per experiment (last weights tested)",
             Recipe(mode="finetune", num_frames=32, fps=16.0, load_size=128, train_size=256, crop_size=112,
                    num_workers=4),
             per_task={"counting": {"counting_method": "repetition_counter"}}, use_paper_recipe=True),
    Protocol("quick", "SynthSEVERE on CPU: frozen backbone, linear head on cached features of 16x32x32 clips",
             Recipe(mode="linear", num_frames=16, fps=0.0, stride=1, sampling="segment", load_size=32, crop_size=32,
                    optimizer="adam", lr=1e-2, weight_decay=1e-4, test_clips=1, feature_clips=1, pool="time",
                    eval_batch_size=32),
             per_task={"counting": _COUNTING}),
    Protocol("quick-ft", "SynthSEVERE on CPU: fine-tuning, 16x32x32, 300 Adam steps, batch 8, 2 test clips",
             Recipe(mode="finetune", num_frames=16, fps=0.0, stride=1, sampling="segment", load_size=32,
                    crop_size=32, optimizer="adam", lr=1e-3, weight_decay=1e-4, batch_size=8, steps=300,
                    milestones=(0.6, 0.85), gamma=0.3, crop_scale=(0.3, 1.0), test_clips=2,
                    feature_clips=2, eval_batch_size=32),
             per_task={"counting": _COUNTING, "multilabel": {"dropout": 0.5}}),
    Protocol("linear", "frozen backbone, linear head on cached pooled features (paper clips: 32 at 16 fps, 112 px)",
             Recipe(mode="linear", num_frames=32, fps=16.0, load_size=128, crop_size=112, optimizer="adam",
                    lr=1e-2, weight_decay=1e-4, test_clips=10, feature_clips=2, num_workers=4),
             per_task={"counting": {**_COUNTING, "num_frames": 64, "test_clips": 4}}, synthetic_clips_from="quick"),
    Protocol("knn", "frozen backbone, k=200 / tau=0.07 cosine-weighted votes over a train-set bank (paper clips)",
             Recipe(mode="knn", num_frames=32, fps=16.0, load_size=128, crop_size=112, test_clips=10,
                    feature_clips=2, num_workers=4),
             per_task={"counting": {**_COUNTING, "num_frames": 64, "test_clips": 4}}, synthetic_clips_from="quick"),
]}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"--protocol: unknown protocol {name!r} (choose {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]


def steps_per_epoch(num_items: int, batch_size: int) -> int:
    """Full batches per epoch (the engine drops the last incomplete batch)."""
    return max(1, num_items // batch_size) if num_items >= batch_size else 1 if num_items else 0


__all__ = ["COUNTING_METHODS", "VIT_PAPER", "Recipe", "Protocol", "PROTOCOLS", "get_protocol", "apply_overrides",
           "check_recipe", "steps_per_epoch"]
