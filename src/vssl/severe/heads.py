"""Task heads and losses for the SEVERE experiments, and the counting method the engine trains.

- Classification (§2.3): ``nn.Linear(D, C)`` on the pooled features, cross-entropy, no dropout.
- Multi-label (Charades, §4.4/§6): dropout 0.5 -> ``nn.Linear(D, 157)``, BCE-with-logits; sigmoid at test.
  Both are :class:`vssl.methods.supervised.Supervised` (its ``task`` / ``dropout`` options).
- Repetition counting (UCF-RC) in the CPU protocols (``quick``, ``quick-ft``, ``linear``, ``knn``; the
  ``paper`` protocol trains the reference's anchor-based counter instead, ``vssl.severe.counting``): the
  clip covers the **whole** video (segment sampling, ``num_frames`` frames), and a linear head on the
  pooled features predicts ``log(count)``, trained with a smooth-L1 on the relative error
  ``exp(pred) / t - 1`` (the normalised MAE it is scored with). The prediction is ``exp`` of the mean
  log-count over test clips, rounded (``counting_errors``). The floor it must beat, the best constant
  fitted on the train set, is stored with each result (``mae_constant_baseline``); measurements are in
  docs/severe.md. Limit: with a fixed number of frames per video, very high counts alias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

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


def log_count_loss(pred_log: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 on the relative count error ``exp(pred) / t - 1``: the training loss matches the
    normalised MAE ``|p - t| / t`` it is scored with (so a head that learns nothing still converges to
    the best constant, the 1/t-weighted median, not the plain median a log-space L1 would give)."""
    t = count.float().clamp_min(1.0)
    ratio = pred_log.float().clamp(-6.0, 6.0).exp() / t
    return F.smooth_l1_loss(ratio, torch.ones_like(ratio), beta=0.05)


class Counting(nn.Module):
    """Repetition counting with a log-count head as an engine method (``log_count`` in
    ``vssl.methods.METHODS``): ``training_step(batch) -> (loss, logs)``.

    ``batch["label"]`` holds float counts. Augmentation is :class:`vssl.data.transforms.TrainAugment`
    (per-clip crops, flips and colour jitter leave the temporal structure, hence the count, intact).
    """

    @dataclass
    class Config:
        dropout: float = 0.0
        init_log_count: float = 1.5  # ~ exp(1.5) = 4.5 cycles; the runner sets the best train constant
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
        loss = log_count_loss(pred, batch["label"])
        with torch.no_grad():
            rel = ((pred.exp().round() - batch["label"]).abs() / batch["label"].clamp_min(1)).mean()
        return loss, {"loss": loss.item(), "mae": rel.item()}


# --------------------------------------------------------------------------------------------------
# heads on cached (frozen) features: the `linear` protocol
# --------------------------------------------------------------------------------------------------
def fit_linear_head(x: torch.Tensor, y: torch.Tensor, task: str, num_outputs: int, *, epochs: int = 200,
                    lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0) -> nn.Module:
    """Train a linear head on frozen features ``x`` (N, D), full batch with Adam.

    Features are standardised with train statistics (folded into the returned module), which makes one
    learning rate work across backbones. ``task``: classification (CE on int labels), multilabel (BCE on
    multi-hot), counting (smooth-L1 on log-counts; ``num_outputs`` ignored). Returns a module mapping
    features to logits (N, C) or log-counts (N,).
    """
    torch.manual_seed(seed)
    x = x.float()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    out = 1 if task == "counting" else num_outputs
    fc = nn.Linear(x.shape[1], out)
    if task == "counting":
        nn.init.zeros_(fc.weight)
        nn.init.constant_(fc.bias, math.log(constant_count_baseline(y, y[:1])["count"]))
    opt = torch.optim.Adam(fc.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    z = (x - mean) / std
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        logits = fc(z)
        if task == "classification":
            loss = F.cross_entropy(logits, y.long())
        elif task == "multilabel":
            loss = F.binary_cross_entropy_with_logits(logits, y.float())
        else:
            loss = log_count_loss(logits.squeeze(-1), y)
        loss.backward()
        opt.step()
        sched.step()
    return _Standardised(fc, mean, std, squeeze=task == "counting").eval()


class _Standardised(nn.Module):
    def __init__(self, fc: nn.Linear, mean: torch.Tensor, std: torch.Tensor, squeeze: bool):
        super().__init__()
        self.fc, self.squeeze = fc, squeeze
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc((x.float() - self.mean) / self.std)
        return out.squeeze(-1) if self.squeeze else out


# --------------------------------------------------------------------------------------------------
# kNN on a train-set bank: the `knn` protocol (sigma-videomae.md §3.7, corrected)
# --------------------------------------------------------------------------------------------------
def knn_scores(bank: torch.Tensor, bank_targets: torch.Tensor, queries: torch.Tensor, task: str,
               num_classes: int = 0, k: int = 200, tau: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Cosine-weighted kNN votes.

    Both ``bank`` (N, D) and ``queries`` (M, D) are L2-normalised here; the ``k`` most similar bank
    entries vote with weight ``exp(sim / tau)``. classification: per-class summed weights (M, C);
    multilabel: summed weights of multi-hot targets (M, C); counting: weighted mean of log-counts (M,).
    ``k`` is clipped to the bank size.
    """
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    outs = []
    for q in torch.split(F.normalize(queries.float(), dim=1), chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        w = (sim / tau).exp()
        w = w / w.sum(1, keepdim=True)  # normalising does not change the argmax; keeps scores bounded
        if task == "classification":
            votes = torch.zeros(q.shape[0], num_classes)
            outs.append(votes.scatter_add_(1, bank_targets.long()[idx], w))
        elif task == "multilabel":
            outs.append(torch.einsum("mk,mkc->mc", w, bank_targets.float()[idx]))
        else:
            outs.append((w * torch.log(bank_targets.float().clamp_min(1))[idx]).sum(1))
    return torch.cat(outs)


def constant_count_baseline(train_counts, test_counts) -> dict[str, float]:
    """The best constant predictor fitted on the train set: the floor a counting head must beat.

    The constant minimising the train normalised MAE ``sum |c - t| / t`` is the median of the train
    counts weighted by ``1 / t`` (an integer, as predictions are rounded). Returns ``counting_errors`` on
    the test counts plus ``{"count": c}``.
    """
    from vssl.severe.metrics import counting_errors

    t = torch.as_tensor(train_counts, dtype=torch.float64).sort().values
    w = 1.0 / t
    c = float(t[int(torch.searchsorted(w.cumsum(0), w.sum() / 2))])
    return {**counting_errors([c] * len(test_counts), test_counts), "count": c}


__all__ = ["LogCountHead", "log_count_loss", "Counting", "fit_linear_head", "knn_scores", "constant_count_baseline"]
