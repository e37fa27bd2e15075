"""Supervised training of a backbone with a linear head: the supervised baseline and fine-tuning.

Defaults follow SEVERE's fine-tuning recipe (Thoker et al., ECCV 2022, ``finetune.py``): random
resized crop of the whole frame (scale 0.08-1, ratio 3/4-4/3), horizontal flip, colour jitter
(0.4, 0.4, 0.4, 0.2), ImageNet mean/std, no dropout, no label smoothing, a fresh ``nn.Linear`` on the
pooled features. ``crop: short_side_jitter`` is SEVERE's Charades code (PySlowFast): short side
inverse-uniform in ``short_side``, a random crop (with ``jitter_p: 0``, mean 0.45 / std 0.225).
VideoMAE/SIGMA's ViT fine-tuning adds RandAugment, cube random erasing, mixup/cutmix with label
smoothing, layer-wise lr decay and a small head init (:mod:`vssl.data.videomae_augment`; all off by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from vssl.errors import ConfigError
from vssl.methods.contract import decays
from vssl.tasks import TASKS

if TYPE_CHECKING:
    from vssl.config import RunConfig


class Supervised(nn.Module):
    """Backbone + dropout + linear head, trained with cross-entropy or binary cross-entropy.

    Args:
        cfg: :class:`Supervised.Config` (``method.params`` of the run config).
        backbone: a vssl backbone: ``forward(x (B,C,T,H,W)) -> (B, D)`` and ``feature_dim``.
        run: the whole run config (``data.crop_size`` gives the training crop size).
    """

    @dataclass
    class Config:
        num_classes: int = 0  # 0 = taken from the dataset by `vssl finetune`
        task: str = "classification"  # classification (cross-entropy) | multilabel (BCE)
        label_smoothing: float = 0.0
        dropout: float = 0.0
        crop: str = "rrc"  # rrc | short_side_jitter (vssl.data.transforms.TrainAugment)
        scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
        ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
        flip: bool = True
        short_side: list[int] = field(default_factory=lambda: [256, 340])  # short_side_jitter range
        jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.4, 0.2])
        jitter_p: float = 1.0
        grayscale_p: float = 0.0
        mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
        std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
        layer_decay: float = 1.0  # < 1: layer-wise lr decay for ViT backbones (VideoMAE fine-tuning: 0.75)
        # VideoMAE/SIGMA fine-tuning (run_class_finetuning.py defaults): rand-m7-n4-mstd0.5-inc1 on the
        # decoded clip, cube erasing p 0.25 after normalising, mixup 0.8 / cutmix 1.0 on the batch (with
        # label_smoothing 0.1 in the soft targets), head init trunc-normal(0.02) x 0.001
        randaug_ops: int = 0
        randaug_magnitude: float = 7.0
        randaug_std: float = 0.5
        erase_p: float = 0.0
        mixup: float = 0.0
        cutmix: float = 0.0
        head_init_scale: float = 0.0  # 0: PyTorch's default Linear init

    num_clips = 1

    def __init__(self, cfg: Config, backbone: nn.Module, run: RunConfig):
        super().__init__()
        if cfg.task not in TASKS or not TASKS[cfg.task].has_classes:
            raise ConfigError(f"method.task: expected classification or multilabel, got {cfg.task!r}")
        if cfg.crop not in ("rrc", "short_side_jitter"):
            raise ConfigError(f"method.crop: expected rrc or short_side_jitter, got {cfg.crop!r}")
        if cfg.num_classes < 1:
            raise ConfigError("method.num_classes: must be >= 1 (or left 0 for the dataset to set it)")
        if cfg.layer_decay != 1.0 and not hasattr(backbone, "blocks"):
            raise ConfigError("method.layer_decay: needs a backbone with transformer `blocks` (a ViT)")
        self.cfg, self.base_lr = cfg, run.optim.lr
        self.backbone = backbone
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(backbone.feature_dim, cfg.num_classes)
        if cfg.head_init_scale > 0:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
            self.head.weight.data.mul_(cfg.head_init_scale)
        self.augment = self._build_augment(cfg, run.data.crop_size)
        self.mixer = None
        if cfg.mixup > 0 or cfg.cutmix > 0:
            if not TASKS[cfg.task].single_label or run.data.batch_size % 2:
                raise ConfigError("method.mixup/cutmix: need classification and an even data.batch_size")
            from timm.data import Mixup

            self.mixer = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=1.0, switch_prob=0.5,
                               mode="batch", label_smoothing=cfg.label_smoothing, num_classes=cfg.num_classes)

    @staticmethod
    def _build_augment(cfg: Config, size: int):
        # imported here: the transforms module is optional for code that only builds the model
        from vssl.data.transforms import TrainAugment

        return TrainAugment(size, scale=tuple(cfg.scale), ratio=tuple(cfg.ratio), flip=cfg.flip,
                            jitter=tuple(cfg.jitter), jitter_p=cfg.jitter_p,
                            grayscale_p=cfg.grayscale_p, mean=tuple(cfg.mean), std=tuple(cfg.std),
                            crop=cfg.crop, short_side=tuple(cfg.short_side))

    def param_groups(self, weight_decay: float) -> list[dict]:
        """No decay on biases and 1-D params; with ``layer_decay`` < 1, block ``i`` of ``n`` gets
        ``lr * layer_decay ** (n - i)`` and the patch embedding ``lr * layer_decay ** (n + 1)``
        (BEiT/MAE/VideoMAE fine-tuning)."""
        depth = len(getattr(self.backbone, "blocks", ()))
        groups: dict[tuple[int, bool], dict] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            layer = _layer_id(name, depth) if self.cfg.layer_decay != 1.0 else depth + 1
            decay = decays(name, p)
            group = groups.setdefault((layer, decay), {
                "params": [], "weight_decay": weight_decay if decay else 0.0,
                "lr": self.base_lr * self.cfg.layer_decay ** (depth + 1 - layer)})
            group["params"].append(p)
        return list(groups.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for normalized float clips (B, C, T, H, W)."""
        return self.head(self.dropout(self.backbone(x)))

    def loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on class indices, or BCE on multi-hot (B, num_classes) targets (``vssl.tasks``)."""
        return TASKS[self.cfg.task].loss(logits, label, label_smoothing=self.cfg.label_smoothing)

    def training_step(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Augment the uint8 batch on its device, classify it and return (loss, logs)."""
        from vssl.data import videomae_augment as VA

        cfg, video, sizes = self.cfg, batch["video"], batch.get("frame_size")
        if cfg.randaug_ops > 0:
            video = VA.rand_augment(video, cfg.randaug_ops, cfg.randaug_magnitude, cfg.randaug_std, sizes=sizes)
        x = self.augment(video, sizes=sizes)
        if cfg.erase_p > 0:
            x = VA.random_erasing(x, cfg.erase_p)
        if self.mixer is not None:
            x, soft = VA.mixup_clips(x, batch["label"], self.mixer)
            logits = self(x)
            loss = torch.sum(-soft * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()  # SoftTargetCrossEntropy
        else:
            logits = self(x)
            loss = self.loss(logits, batch["label"])
        # 0-dim tensors: the engine reads a step's scalars in one transfer (or every log step), not here
        logs = {"loss": loss.detach()}
        if TASKS[self.cfg.task].single_label:
            logs["acc"] = (logits.argmax(1) == batch["label"]).float().mean()
        return loss, logs


def _layer_id(name: str, depth: int) -> int:
    """0 for the embeddings, i + 1 for ``blocks.i``, depth + 1 for everything after (norm, head)."""
    parts = name.split(".")
    if parts[:2] == ["backbone", "blocks"]:
        return int(parts[2]) + 1
    if len(parts) > 1 and parts[0] == "backbone" and parts[1] in ("patch_embed", "pos_embed", "cls_token"):
        return 0
    return depth + 1
