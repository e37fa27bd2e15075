"""Heads on the cached features of a frozen backbone: a linear head (the ``linear`` and ``quick``
protocols) and kNN votes (``knn``). What differs between classification, multi-label and counting (outputs,
initialisation, loss, votes) is the task's :class:`vssl.tasks.TaskKind`.

Fine-tuned heads are engine methods: :class:`vssl.methods.supervised.Supervised` (classification,
multi-label), :class:`vssl.methods.log_count.LogCount` and :class:`vssl.methods.repetition_counter.RepetitionCounter`
(counting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vssl.tasks import task_kind


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
    kind = task_kind(task)
    x = x.float()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    fc = nn.Linear(x.shape[1], kind.outputs(num_outputs))
    kind.init_head(fc, y)
    opt = torch.optim.Adam(fc.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    z = (x - mean) / std
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        loss = kind.loss(kind.from_head(fc(z)), y)
        loss.backward()
        opt.step()
        sched.step()
    return _Standardised(fc, mean, std, kind.from_head).eval()


class _Standardised(nn.Module):
    def __init__(self, fc: nn.Linear, mean: torch.Tensor, std: torch.Tensor, from_head):
        super().__init__()
        self.fc, self.from_head = fc, from_head
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_head(self.fc((x.float() - self.mean) / self.std))


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
    kind = task_kind(task)
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    outs = []
    for q in torch.split(F.normalize(queries.float(), dim=1), chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        w = (sim / tau).exp()
        w = w / w.sum(1, keepdim=True)  # normalising does not change the argmax; keeps scores bounded
        outs.append(kind.knn_votes(w, bank_targets[idx], num_classes))
    return torch.cat(outs)


__all__ = ["fit_linear_head", "knn_scores"]
