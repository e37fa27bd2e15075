"""Repetition counting with a log-count head: SEVERE's UCF-RC in the CPU protocols (``quick-ft``; the
``paper`` protocol trains Zhang et al.'s anchor counter, :mod:`vssl.methods.repetition_counter`).

The clip covers the **whole** video (segment sampling), and a linear head on the pooled features predicts
``log(count)``, trained with :func:`vssl.tasks.log_count_loss` (a smooth-L1 on the relative error, the
normalised MAE it is scored with). At test time the count is ``exp`` of the mean log-count over the test
clips, rounded (``vssl.tasks.Counting``). Limit: with a fixed number of frames per video, very high counts
alias.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from vssl.tasks import TASKS

if TYPE_CHECKING:
    from vssl.config import RunConfig


class LogCountHead(nn.Module):
    """Pooled features (B, D) -> predicted log-count (B,)."""

    def __init__(self, feature_dim: int, dropout: float = 0.0, init_log_count: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, 1)
        nn.init.zeros_(self.fc.weight)  # start at the train-set typical count: a sane first prediction
        nn.init.constant_(self.fc.bias, init_log_count)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features)).squeeze(-1)


class LogCount(nn.Module):
    """Repetition counting with a log-count head as an engine method (``log_count`` in
    ``vssl.methods.METHODS``): ``training_step(batch) -> (loss, logs)``.

    ``batch["label"]`` holds float counts. Augmentation is :class:`vssl.data.transforms.TrainAugment`
    (per-clip crops, flips and colour jitter leave the temporal structure, hence the count, intact).
    """

    @dataclass
    class Config:
        dropout: float = 0.0
        init_log_count: float = 1.5  # ~ exp(1.5) = 4.5 cycles; SEVERE's runner sets the best train constant
        flip: bool = True
        scale: list[float] = field(default_factory=lambda: [0.25, 1.0])
        jitter_p: float = 0.8  # probability of colour jitter per clip
        mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
        std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])

    num_clips = 1

    def __init__(self, cfg: Config, backbone: nn.Module, run: RunConfig):
        super().__init__()
        from vssl.data.transforms import TrainAugment

        self.cfg, self.backbone = cfg, backbone
        self.head = LogCountHead(backbone.feature_dim, cfg.dropout, cfg.init_log_count)
        self.augment = TrainAugment(run.data.crop_size, scale=tuple(cfg.scale), flip=cfg.flip,
                                    jitter_p=cfg.jitter_p, mean=tuple(cfg.mean), std=tuple(cfg.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted log-counts (B,) of normalised clips (B, C, T, H, W)."""
        return self.head(self.backbone(x))

    def training_step(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        pred = self(self.augment(batch["video"], sizes=batch.get("frame_size")))
        loss = TASKS["counting"].loss(pred, batch["label"])
        with torch.no_grad():
            rel = ((pred.exp().round() - batch["label"]).abs() / batch["label"].clamp_min(1)).mean()
        return loss, {"loss": loss.detach(), "mae": rel}  # read by the engine once per log step


__all__ = ["LogCountHead", "LogCount"]
