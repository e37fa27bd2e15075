"""Metrics against scikit-learn and hand computations (severe-protocols.md §2.5, §5.3, §6)."""

import numpy as np
import pytest
import torch

from vssl.metrics import (
    average_precision, classification_metrics, counting_errors, mean_average_precision,
    mean_class_accuracy, topk_accuracy,
)


def test_topk_hand_example():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = np.array([1, 1, 2, 2])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(50.0)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(75.0)
    assert topk_accuracy(torch.tensor(scores), torch.tensor(labels), 5) == pytest.approx(100.0)


def test_topk_matches_sklearn():
    from sklearn.metrics import top_k_accuracy_score
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 12))
    labels = rng.integers(0, 12, 200)
    for k in (1, 5):
        assert topk_accuracy(scores, labels, k) == pytest.approx(100 * top_k_accuracy_score(labels, scores, k=k))


def test_mean_class_accuracy_severe_convention_counts_absent_classes_as_zero():
    # 4 classes; class 3 has no test video. Per class: c0 1/2, c1 1/1, c2 0/1.
    preds = np.array([0, 1, 1, 0, 3])
    labels = np.array([0, 0, 1, 2, 2])
    # c2: videos 3 (pred 0) and 4 (pred 3) -> 0/2
    assert mean_class_accuracy(preds, labels, num_classes=4) == pytest.approx(100 * (0.5 + 1 + 0 + 0) / 4)
    assert mean_class_accuracy(preds, labels, num_classes=4, present_only=True) == pytest.approx(100 * 1.5 / 3)


def test_mean_class_present_matches_sklearn_balanced_accuracy():
    from sklearn.metrics import balanced_accuracy_score
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(300, 7))
    labels = rng.integers(0, 7, 300)
    ours = mean_class_accuracy(scores, labels, 7, present_only=True)
    assert ours == pytest.approx(100 * balanced_accuracy_score(labels, scores.argmax(1)))
    assert classification_metrics(scores, labels)["mean_class"] == pytest.approx(ours)  # all classes present


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn_including_ties(seed):
    from sklearn.metrics import average_precision_score
    rng = np.random.default_rng(seed)
    targets = rng.random((120, 9)) < 0.2
    targets[:, 4] = False  # a class with no positive: dropped from the mean (Charades convention)
    scores = np.round(rng.random((120, 9)), 1)  # rounding creates many ties
    per_class = [average_precision(scores[:, c], targets[:, c]) for c in range(9)]
    for c in range(9):
        if targets[:, c].any():
            assert per_class[c] == pytest.approx(average_precision_score(targets[:, c], scores[:, c]))
    assert np.isnan(per_class[4])
    keep = targets.any(0)
    expected = 100 * np.mean(average_precision_score(targets[:, keep], scores[:, keep], average=None))
    assert mean_average_precision(scores, targets) == pytest.approx(expected)
    assert mean_average_precision(torch.tensor(scores), torch.tensor(targets)) == pytest.approx(expected)


def test_average_precision_hand_example():
    # ranking: + - + -  ->  AP = 1/2 * 1 + 1/2 * 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx(0.5 + 1 / 3)


def test_counting_errors_round_predictions():
    out = counting_errors([4.4, 10.6, 2.0, 7.49], [4, 10, 4, 9])
    # rounded: 4, 11, 2, 7 -> |err| 0, 1, 2, 2 ; rel 0, .1, .5, 2/9
    assert out["mae"] == pytest.approx((0 + 0.1 + 0.5 + 2 / 9) / 4)
    assert out["obo"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        counting_errors([1], [0])
