"""Public metrics API (re-exported from :mod:`vssl.severe.metrics`; see its docstring for conventions)."""

from vssl.severe.metrics import (  # noqa: F401
    average_precision,
    classification_metrics,
    counting_errors,
    mean_average_precision,
    mean_class_accuracy,
    multilabel_metrics,
    topk_accuracy,
)

__all__ = [
    "topk_accuracy", "mean_class_accuracy", "average_precision", "mean_average_precision",
    "counting_errors", "classification_metrics", "multilabel_metrics",
]
