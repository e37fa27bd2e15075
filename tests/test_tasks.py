"""The task kinds (vssl.tasks): each kind's label encoding, loss, scores, votes, metrics and Mean entry
against hand computations, and no other module switching on task names."""

import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from vssl.tasks import TASKS, constant_count_baseline, label_kind, log_count_loss, task_kind

SRC = Path(__file__).resolve().parents[1] / "src" / "vssl"
#: modules that name the generated SynthSEVERE *datasets* (a dataset called "counting" is rendered and
#: written in its own way); they never ask what a task does
_DATASET_NAMES = {"benchmark.py", "tasks.py", "writers.py"}


def _task_name_switches(source: str) -> list[int]:
    """Lines of ``x == "counting"``-style comparisons (==, !=, in, not in) with a task name."""
    names = set(TASKS)

    def named(node) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(named(e) for e in node.elts)

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops) and any(map(named, sides)):
                found.append(node.lineno)
    return found


def test_no_module_but_vssl_tasks_switches_on_task_names():
    modules = [p for p in SRC.rglob("*.py") if p != SRC / "tasks.py"
               and not (p.parent.name == "synth" and p.name in _DATASET_NAMES)]
    assert len(modules) > 50
    offenders = [f"{p.relative_to(SRC)}:{line}" for p in modules for line in _task_name_switches(p.read_text())]
    assert offenders == []
    # what it looks for: the switches the task kinds replaced
    assert _task_name_switches('if exp.task != "counting":\n    pass\nk = task in ("classification", "multilabel")\n'
                               'ok = {"counting": 1}\n') == [1, 3]


def test_labels_become_targets_by_kind():
    assert TASKS["classification"].encode_label(3, 5).tolist() == 3
    assert TASKS["multilabel"].encode_label([0, 3], 4).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert TASKS["counting"].encode_label(7, 0).dtype == torch.float32
    # the label's own type wins over the task it is read under
    assert label_kind([1], "classification").name == "multilabel" and label_kind(2.0, None).name == "counting"
    assert label_kind(2, None).name == "classification" and label_kind(2, "counting").name == "counting"
    assert TASKS["multilabel"].class_ids([2, 5]) == (2, 5) and TASKS["counting"].class_ids(4.0) == ()
    with pytest.raises(ValueError, match="counting"):
        task_kind("regression")


def test_losses_match_hand_computations():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    p = [math.exp(v) / sum(math.exp(u) for u in (2.0, 0.0, -1.0)) for v in (2.0, 0.0, -1.0)]
    assert TASKS["classification"].loss(logits, torch.tensor([1])).item() == pytest.approx(-math.log(p[1]), rel=1e-6)
    smoothed = -(0.9 * math.log(p[1]) + 0.1 * sum(math.log(q) for q in p) / 3)
    assert TASKS["classification"].loss(logits, torch.tensor([1]), label_smoothing=0.1).item() == pytest.approx(
        smoothed, rel=1e-6)
    sigmoid = [1 / (1 + math.exp(-v)) for v in (2.0, 0.0, -1.0)]
    bce = -(math.log(sigmoid[0]) + math.log(1 - sigmoid[1]) + math.log(1 - sigmoid[2])) / 3  # targets 1, 0, 0
    assert TASKS["multilabel"].loss(logits, torch.tensor([[1, 0, 0]])).item() == pytest.approx(bce, rel=1e-6)
    # counting: smooth-L1 (beta 0.05) of the relative error exp(pred) / t - 1; zero at the true count
    assert log_count_loss(torch.log(torch.tensor([4.0])), torch.tensor([4.0])).item() == pytest.approx(0, abs=1e-6)
    err = 6.0 / 4.0 - 1  # 0.5 > beta: linear part
    assert TASKS["counting"].loss(torch.log(torch.tensor([6.0])), torch.tensor([4.0])).item() == pytest.approx(
        err - 0.025, rel=1e-5)


def test_scores_votes_and_mean_entries():
    views = torch.tensor([[[0.0, math.log(3.0)], [math.log(3.0), 0.0]]])  # 1 video, 2 views, 2 classes
    assert TASKS["classification"].scores(views, "max")[0].tolist() == pytest.approx([0.75, 0.75])
    assert TASKS["counting"].scores(torch.log(torch.tensor([[2.0, 8.0]])), "max").item() == pytest.approx(4.0)
    w = torch.tensor([[0.25, 0.75]])
    assert TASKS["classification"].knn_votes(w, torch.tensor([[1, 1]]), 3).tolist() == [[0.0, 1.0, 0.0]]
    assert TASKS["counting"].knn_scores(TASKS["counting"].knn_votes(w, torch.tensor([[2.0, 8.0]]), 0)).item() == (
        pytest.approx(2 ** 0.25 * 8 ** 0.75))
    # SEVERE's Mean (severe-protocols.md §9): UCF-RC's MAE 0.232 enters as 76.8; accuracies as they are
    assert TASKS["counting"].mean_entry(0.232) == pytest.approx(76.8)
    assert TASKS["multilabel"].mean_entry(7.9) == 7.9
    assert [k.lower_is_better for k in TASKS.values()] == [False, False, True]
    assert TASKS["classification"].chance(4) == 0.25 and TASKS["multilabel"].chance(4) is None


def test_a_counting_head_starts_at_the_best_constant():
    counts = torch.tensor([2.0, 2.0, 3.0, 10.0, 10.0, 10.0])
    best = min(range(1, 12), key=lambda c: sum(abs(c - t) / t for t in counts.tolist()))
    fc = nn.Linear(5, TASKS["counting"].outputs(99))
    TASKS["counting"].init_head(fc, counts)
    assert fc.weight.abs().sum() == 0 and fc.bias.item() == pytest.approx(math.log(best))
    assert constant_count_baseline(counts, counts)["count"] == best
    base = TASKS["counting"].baseline_metrics(counts, torch.tensor([4.0]))
    assert base["mae_constant_baseline"] == pytest.approx(abs(best - 4) / 4)
