"""The building blocks the Trainer puts together: autocast precision, the optimizer over a method's
parameter groups, and the per-step learning-rate schedule (linear warm-up, then cosine, step or constant)."""

from __future__ import annotations

import bisect
import math

import torch
from torch import nn

from vssl.config import OptimConfig, ScheduleConfig
from vssl.errors import ConfigError
from vssl.methods.contract import decay_groups


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (``None`` = fp32): ``auto`` is bf16 on CUDA (fp16 if unsupported), fp32 on CPU."""
    if name == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise ConfigError(f"train.precision: expected auto, bf16, fp16 or fp32, got {name!r}")
    return table[name]


def build_optimizer(cfg: OptimConfig, method: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD over ``method.param_groups(wd)`` if the method has it, else :func:`decay_groups`."""
    if hasattr(method, "param_groups"):
        groups = method.param_groups(cfg.weight_decay)
    else:
        groups = decay_groups(method, cfg.weight_decay)
    # fused kernels are the fastest on CUDA; elsewhere keep the well-trodden foreach path
    extra = {"fused": True} if cfg.fused and device.type == "cuda" else {}
    name = cfg.name.lower()
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **extra)
    if name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **extra)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, **extra)
    raise ConfigError(f"optim.name: expected adamw, adam or sgd, got {cfg.name!r}")


def lr_factor(step: int, cfg: ScheduleConfig, max_steps: int, base_lr: float) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_steps`` (the first step already uses ``1/warmup_steps``), then
    ``cosine`` from 1 to ``min_lr/base_lr`` over ``total_steps`` (default ``max_steps``), ``step``
    decay by ``gamma`` at each milestone, or ``constant``.
    """
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        return cfg.gamma ** bisect.bisect_right(sorted(cfg.milestones), step)
    if cfg.name == "cosine":
        total = cfg.total_steps or max_steps
        progress = min(max(step - cfg.warmup_steps, 0) / max(total - cfg.warmup_steps, 1), 1.0)
        floor = cfg.min_lr / base_lr if base_lr > 0 else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ConfigError(f"schedule.name: expected cosine, step or constant, got {cfg.name!r}")


def build_scheduler(cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, max_steps: int,
                    base_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimizer-step ``LambdaLR`` applying :func:`lr_factor` to every group's own lr."""
    lr_factor(0, cfg, max_steps, base_lr)  # validate the name now, not at the first step
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, max_steps, base_lr))
