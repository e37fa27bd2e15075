"""The three kinds of downstream task: classification, multi-label classification, repetition counting.

One :class:`TaskKind` per kind holds everything that differs between them, so that no other module
compares task names: how a label becomes a training target, what a head outputs and how it starts, the
loss, how the outputs of a video's test views become its score, the metrics and the primary one, how the
primary metric enters SEVERE's Mean and Rank (severe-protocols.md §9), and which engine methods fine-tune
a backbone for it. ``TASKS`` maps a name (``VideoList.task``, ``Experiment.task``) to its kind.

Imported by the dataset adapters, so torch is imported inside the functions that need it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class TaskKind(ABC):
    """What one kind of task does with labels, heads, scores and metrics (defaults: higher is better,
    labels index class names, a head has one output per class)."""

    name: str
    metric: str  # the primary metric: the value of a report cell
    metric_text: str  # what a benchmark description says of it
    has_classes = True  # labels index a list of class names (a count has none)
    multi_label = False
    lower_is_better = False
    digits = 1  # decimals of the primary metric in the report
    unit = "%"
    #: how the primary metric enters Mean and how it is ranked (report notes; empty: as it is, higher first)
    mean_note = rank_note = ""
    #: engine methods (``vssl.methods.METHODS``) that fine-tune a backbone for this task, the default first
    methods: tuple[str, ...] = ("supervised",)

    @property
    def single_label(self) -> bool:
        """One class per video: the kind accuracy, mixup and a chance level are defined for."""
        return self.has_classes and not self.multi_label

    def chance(self, num_classes: int) -> float | None:
        """The expected accuracy of a uniform guess, for kinds scored by accuracy."""
        return 1.0 / num_classes if self.single_label and num_classes else None

    @abstractmethod
    def class_ids(self, label) -> tuple[int, ...]:
        """The class indices a label names."""

    @abstractmethod
    def encode_label(self, label, num_classes: int) -> torch.Tensor:
        """The training target of one label."""

    def outputs(self, num_classes: int) -> int:
        """Output units of a head for this task."""
        return num_classes

    def init_head(self, fc, targets: torch.Tensor) -> None:
        """Start a linear head ``fc`` that is fitted on ``targets`` (PyTorch's default init unless a kind
        says otherwise)."""

    def from_head(self, out: torch.Tensor) -> torch.Tensor:
        """A head's raw output (N, outputs) as the task's per-clip output."""
        return out

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """The training loss of per-clip outputs against encoded targets."""

    @abstractmethod
    def scores(self, views: torch.Tensor, how: str = "mean") -> torch.Tensor:
        """Per-video scores from per-view outputs (N, V, ...); ``how``: ``mean`` or ``max`` over the views."""

    @abstractmethod
    def knn_votes(self, weights: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
        """kNN votes (M, ...) from the weights (M, k) of each query's neighbours and their targets (M, k, ...)."""

    def knn_scores(self, votes: torch.Tensor) -> torch.Tensor:
        """Per-video scores from kNN votes (the votes themselves unless a kind says otherwise)."""
        return votes

    @abstractmethod
    def metrics(self, scores, labels, num_classes: int) -> dict[str, float]:
        """Every metric of the task from per-video scores and labels."""

    def baseline_metrics(self, train_labels, test_labels) -> dict[str, float]:
        """Scores of a label-only baseline stored beside a result (none unless a kind has one)."""
        return {}

    def mean_entry(self, value: float) -> float:
        """The primary metric as it enters SEVERE's Mean (and the analysis): higher is better for every kind."""
        return value


class Classification(TaskKind):
    """Single-label classification (SEVERE §2.3): cross-entropy, softmax scores, top-1 accuracy."""

    name = "classification"
    metric = metric_text = "top1"

    def class_ids(self, label) -> tuple[int, ...]:
        return (int(label),)

    def encode_label(self, label, num_classes: int) -> torch.Tensor:
        """A class index (long scalar)."""
        import torch

        return torch.tensor(int(label), dtype=torch.long)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(outputs.float(), targets.long(), label_smoothing=label_smoothing)

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """Per-view outputs as the probabilities that are ensembled."""
        return outputs.softmax(-1)

    def scores(self, views: torch.Tensor, how: str = "mean") -> torch.Tensor:
        """The mean (SEVERE §2.5) or the max (Charades §6) of the per-view probabilities."""
        probs = self.probabilities(views)
        return probs.amax(1) if how == "max" else probs.mean(1)

    def knn_votes(self, weights: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
        """The summed weight per class."""
        import torch

        votes = torch.zeros(weights.shape[0], num_classes)
        return votes.scatter_add_(1, targets.long(), weights)

    def metrics(self, scores, labels, num_classes: int) -> dict[str, float]:
        from vssl.metrics import classification_metrics

        return classification_metrics(scores, labels, num_classes)


class MultiLabel(Classification):
    """Multi-label classification (Charades, §4.4/§6): BCE on multi-hot targets, sigmoid scores, mAP."""

    name = "multilabel"
    metric = "map"
    metric_text = "mAP (mean over classes with a positive test video)"
    multi_label = True

    def class_ids(self, label) -> tuple[int, ...]:
        return tuple(int(c) for c in label)

    def encode_label(self, label, num_classes: int) -> torch.Tensor:
        """A multi-hot float target (num_classes,)."""
        import torch

        target = torch.zeros(num_classes, dtype=torch.float32)
        if len(label):
            target[torch.as_tensor(list(label), dtype=torch.long)] = 1.0
        return target

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(outputs.float(), targets.float())

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.sigmoid()

    def knn_votes(self, weights: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
        """The weighted sum of the neighbours' multi-hot targets."""
        import torch

        return torch.einsum("mk,mkc->mc", weights, targets.float())

    def metrics(self, scores, labels, num_classes: int) -> dict[str, float]:
        from vssl.metrics import multilabel_metrics

        return multilabel_metrics(scores, labels)


class Counting(TaskKind):
    """Repetition counting (UCF-RC, §5): a head predicts ``log(count)``; scored by the normalised MAE of
    the rounded counts (lower is better), entering Mean as ``(1 − MAE) × 100`` (§9)."""

    name = "counting"
    metric = "mae"
    metric_text = "normalised MAE (lower is better); OBO accuracy"
    has_classes = False
    lower_is_better = True
    digits = 3
    unit = "normalised MAE"
    mean_note = "entered as (1 − MAE) × 100"
    rank_note = "ranked by lower MAE"
    #: Zhang et al.'s anchor counter (the paper protocol) and a log-count head on one clip (the quick ones)
    methods = ("repetition_counter", "log_count")

    def class_ids(self, label) -> tuple[int, ...]:
        return ()

    def encode_label(self, label, num_classes: int) -> torch.Tensor:
        """The count as a float scalar."""
        import torch

        return torch.tensor(float(label), dtype=torch.float32)

    def outputs(self, num_classes: int) -> int:
        return 1

    def init_head(self, fc, targets: torch.Tensor) -> None:
        """Zero weights and the log of the best constant count as bias: the head starts at the floor it
        must beat, a sane first prediction."""
        from torch import nn

        nn.init.zeros_(fc.weight)
        nn.init.constant_(fc.bias, math.log(constant_count_baseline(targets, targets[:1])["count"]))

    def from_head(self, out: torch.Tensor) -> torch.Tensor:
        return out.squeeze(-1)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        return log_count_loss(outputs, targets)

    def scores(self, views: torch.Tensor, how: str = "mean") -> torch.Tensor:
        """Predicted counts: ``exp`` of the mean log-count over the views (a geometric mean of their counts)."""
        return views.mean(1).exp()

    def knn_votes(self, weights: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
        """The weighted mean of the neighbours' log-counts."""
        return (weights * targets.float().clamp_min(1).log()).sum(1)

    def knn_scores(self, votes: torch.Tensor) -> torch.Tensor:
        """Predicted counts: ``exp`` of the voted log-count."""
        return votes.exp()

    def metrics(self, scores, labels, num_classes: int) -> dict[str, float]:
        from vssl.metrics import counting_errors

        return counting_errors(scores, labels)

    def baseline_metrics(self, train_labels, test_labels) -> dict[str, float]:
        """The best constant count fitted on the train set, scored on the test counts: the floor a
        counting head must beat."""
        base = constant_count_baseline(train_labels, test_labels)
        return {"mae_constant_baseline": base["mae"], "obo_constant_baseline": base["obo"]}

    def mean_entry(self, value: float) -> float:
        return (1.0 - value) * 100.0


def log_count_loss(pred_log: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 on the relative count error ``exp(pred) / t - 1``: the training loss matches the
    normalised MAE ``|p - t| / t`` it is scored with (so a head that learns nothing still converges to
    the best constant, the 1/t-weighted median, not the plain median a log-space L1 would give)."""
    import torch
    import torch.nn.functional as F

    t = count.float().clamp_min(1.0)
    ratio = pred_log.float().clamp(-6.0, 6.0).exp() / t
    return F.smooth_l1_loss(ratio, torch.ones_like(ratio), beta=0.05)


def constant_count_baseline(train_counts, test_counts) -> dict[str, float]:
    """The best constant predictor fitted on the train set: the floor a counting head must beat.

    The constant minimising the train normalised MAE ``sum |c - t| / t`` is the median of the train
    counts weighted by ``1 / t`` (an integer, as predictions are rounded). Returns ``counting_errors`` on
    the test counts plus ``{"count": c}``.
    """
    import torch

    from vssl.metrics import counting_errors

    t = torch.as_tensor(train_counts, dtype=torch.float64).sort().values
    w = 1.0 / t
    c = float(t[int(torch.searchsorted(w.cumsum(0), w.sum() / 2))])
    return {**counting_errors([c] * len(test_counts), test_counts), "count": c}


TASKS: dict[str, TaskKind] = {kind.name: kind for kind in (Classification(), MultiLabel(), Counting())}


def task_kind(name: str) -> TaskKind:
    """The kind named ``name``; a ``ValueError`` naming the known ones otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"task must be one of {tuple(TASKS)}, got {name!r}") from None


def label_kind(label, task: str | None = None) -> TaskKind:
    """The kind of a label: a list of classes is multi-label, a float a count, whatever ``task`` says;
    otherwise ``task`` (classification when None)."""
    if isinstance(label, (list, tuple)):
        return TASKS["multilabel"]
    if isinstance(label, float):
        return TASKS["counting"]
    return task_kind(task or "classification")


__all__ = ["TaskKind", "Classification", "MultiLabel", "Counting", "TASKS", "task_kind", "label_kind", "log_count_loss",
           "constant_count_baseline"]
