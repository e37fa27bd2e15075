"""Downstream metrics (SEVERE's): accuracy, mean-class accuracy, Charades mAP and repetition-counting errors.

Conventions (severe-protocols.md):

- Accuracies and mAP are returned in **percent** (0-100), as printed in the SEVERE tables.
- ``mean_class_accuracy`` follows the reference ``test.py`` (``Video@MeanTop1``, §2.5): the mean over
  **all** ``num_classes`` classes, a class with no test video counting as 0. ``present_only=True`` gives
  the usual variant (mean over the classes that occur in the test labels).
- ``mean_average_precision`` follows PySlowFast's ``get_map`` (§6): classes with no positive are dropped,
  per-class AP equals ``sklearn.metrics.average_precision_score`` (step-wise precision/recall curve with
  tied scores grouped into one threshold), unweighted mean over the kept classes.
- ``counting_errors`` follows UCF-RC (§5.3): predicted counts are rounded to integers, then per video
  ``|p - t| / t`` (normalised MAE, lower is better) and ``|p - t| <= 1`` (off-by-one accuracy); both are
  returned as fractions (e.g. MAE 0.150), averaged over videos.
"""

from __future__ import annotations

import numpy as np
import torch



def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def topk_accuracy(scores, labels, k: int = 1) -> float:
    """Percentage of rows whose label is among the ``k`` highest scores. ``scores`` (N, C), ``labels`` (N,)."""
    scores, labels = _np(scores), _np(labels).astype(np.int64)
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    # stable argsort on -scores: ties resolved towards the lower class index, as torch.topk does on CPU
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((topk == labels[:, None]).any(axis=1).mean() * 100.0)


def mean_class_accuracy(scores, labels, num_classes: int | None = None, present_only: bool = False) -> float:
    """Mean per-class top-1 accuracy in percent.

    SEVERE convention (default): mean over all ``num_classes`` classes; a class without test videos
    contributes 0 (``test.py`` ``Video@MeanTop1``). ``present_only=True``: mean over classes present in
    ``labels`` only. ``scores`` is (N, C) scores or (N,) predicted labels.
    """
    scores, labels = _np(scores), _np(labels).astype(np.int64)
    preds = scores.argmax(axis=1) if scores.ndim == 2 else scores.astype(np.int64)
    if num_classes is None:
        num_classes = scores.shape[1] if scores.ndim == 2 else int(labels.max()) + 1
    per_class = np.zeros(num_classes)
    present = np.zeros(num_classes, dtype=bool)
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            present[c] = True
            per_class[c] = (preds[mask] == c).mean()
    if present_only:
        return float(per_class[present].mean() * 100.0) if present.any() else float("nan")
    return float(per_class.mean() * 100.0)


def average_precision(scores, targets) -> float:
    """AP of one class, identical to ``sklearn.metrics.average_precision_score``: sum over distinct score
    thresholds (descending) of (R_n - R_{n-1}) * P_n. Returns nan when there is no positive."""
    scores, targets = _np(scores).astype(np.float64), _np(targets).astype(bool)
    n_pos = targets.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], targets[order]
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    # keep the last index of each group of tied scores: one threshold per distinct score
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores, targets) -> float:
    """Charades mAP in percent: mean of per-class AP over classes with at least one positive (§6).
    ``scores`` (N, C) (any monotone score: logits or sigmoid), ``targets`` (N, C) multi-hot."""
    scores, targets = _np(scores), _np(targets)
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1]) if targets[:, c].any()]
    return float(np.mean(aps) * 100.0) if aps else float("nan")


def counting_errors(pred, true) -> dict[str, float]:
    """UCF-RC errors: ``{"mae": mean(|p - t| / t), "obo": mean(|p - t| <= 1), "mae_std": ...}`` with
    ``p`` rounded to the nearest integer as in the reference ``val_2stream.py`` (§5.3)."""
    pred = np.rint(_np(pred).astype(np.float64))
    true = _np(true).astype(np.float64)
    if np.any(true <= 0):
        raise ValueError("counting_errors: ground-truth counts must be positive")
    err = np.abs(pred - true)
    rel = err / true
    return {"mae": float(rel.mean()), "obo": float((err <= 1).mean()), "mae_std": float(rel.std())}


def classification_metrics(scores, labels, num_classes: int | None = None) -> dict[str, float]:
    """Everything SEVERE reports for a recognition experiment (§2.5, §2.7)."""
    scores = _np(scores)
    num_classes = num_classes or scores.shape[1]
    return {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class": mean_class_accuracy(scores, labels, num_classes),
        "mean_class_present": mean_class_accuracy(scores, labels, num_classes, present_only=True),
    }


def multilabel_metrics(scores, targets) -> dict[str, float]:
    """Charades: mAP (percent) plus the number of classes it averaged over."""
    targets = _np(targets)
    return {"map": mean_average_precision(scores, targets), "map_classes": int((targets.sum(0) > 0).sum())}


__all__ = [
    "topk_accuracy", "mean_class_accuracy", "average_precision", "mean_average_precision",
    "counting_errors", "classification_metrics", "multilabel_metrics",
]
