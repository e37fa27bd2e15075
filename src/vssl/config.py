"""Typed run configuration: YAML files under ``configs/`` mapped onto dataclasses.

A run config has six sections. ``method`` is special: its ``name`` picks a method from
``vssl.methods.METHODS`` and the remaining keys are validated against that method's own ``Config``
dataclass. Overrides use dotted keys: ``--set optim.lr=0.01 --set method.queue_size=4096``.

Errors (unknown key, wrong type) raise :class:`vssl.errors.ConfigError` whose one-line message names
the key and the file; the CLI turns it into exit status 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # adapter name, as in `vssl data summary --dataset`
    root: str = ""  # directory with the videos
    annotations: str = ""  # directory with the annotation files
    split: str = "train"
    fold: int = 1  # UCF101/HMDB51 split number
    subset: str = ""  # adapter option, e.g. "1k" for SEVERE's low-sample subsets
    fraction: float = 1.0  # class-balanced fraction of the training set (--data-fraction)
    num_frames: int = 16
    stride: int = 4  # frame stride; ignored when fps > 0
    fps: float = 0.0  # sample at a target frame rate instead of a stride
    sampling: str = "random"  # random | segment (SSv2-style)
    load_size: int = 128  # decoded clips are resized to this short side and centre-cropped square
    crop_size: int = 112  # network input size after (batched, on-device) augmentation
    backend: str = "pyav"  # pyav | torchcodec | decord
    decoder_threads: int = 0
    batch_size: int = 8
    num_workers: int = 2
    pin_memory: bool = True
    persistent_workers: bool = True


@dataclass
class ModelConfig:
    backbone: str = "r2plus1d_tiny"  # a name in vssl.models.BACKBONES
    checkpoint: str = ""  # optional initial weights for the backbone
    kwargs: dict[str, Any] = field(default_factory=dict)  # **overrides for build_backbone


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9
    nesterov: bool = False
    fused: bool = True  # fused kernels where the device supports them


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine | step | constant
    warmup_steps: int = 0
    min_lr: float = 0.0
    milestones: list[int] = field(default_factory=list)  # step schedule, in optimizer steps
    gamma: float = 0.1
    total_steps: int = 0  # cosine horizon; 0 = train.max_steps (set larger for "cosine over 200, stop at 100")


@dataclass
class TrainConfig:
    max_steps: int = 1000  # optimizer steps
    grad_accum: int = 1
    clip_grad: float = 0.0  # 0 = off; else max global L2 norm
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    log_every: int = 10
    ckpt_every: int = 200
    keep_checkpoints: int = 2
    seed: int = 0
    deterministic: bool = False
    compile: bool = False
    channels_last: bool = True  # channels_last_3d for CNN backbones on CUDA
    device: str = "auto"
    tensorboard: bool = True
    progress: bool = True


@dataclass
class MethodSection:
    name: str = "supervised"
    params: dict[str, Any] = field(default_factory=dict)  # validated against METHODS[name].Config


@dataclass
class RunConfig:
    method: MethodSection = field(default_factory=MethodSection)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
