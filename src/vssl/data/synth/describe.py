"""``synthsevere.json`` and README.md: what each SynthSEVERE experiment is and how to load it.

Paths are relative to the benchmark folder. Adapter names and options follow the dataset adapters
(``vssl.data.datasets.ADAPTERS``): ``label_range`` is inclusive and relabels from 0, as SEVERE's
FX-S1 (Gym99 labels 6-16); ``num_examples`` is SEVERE's class-balanced low-sample subset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vssl.data.synth import tasks
from vssl.tasks import TASKS

# dataset -> (adapter name, train split name, test split name, mirrored real dataset)
ADAPTER = {
    "pretrain": ("mini_kinetics", "train", "val", "mini-Kinetics-200"),
    "samples_a": ("ucf101", "train", "test", "UCF101"),
    "domain_a": ("ssv2", "train", "validation", "Something-Something-v2"),
    "domain_b": ("gym99", "train", "val", "FineGym Gym99"),
    "counting": ("ucfrep", "train", "val", "UCFRep"),
    "multilabel": ("charades", "train", "test", "Charades v1"),
}
SE_FORMULA = "SE = sqrt(p * (1 - p) / n_test); at most 0.5 / sqrt(n_test)"


def _classes(dataset: str) -> list[str]:
    return {
        "pretrain": [c[0] for c in tasks.SOURCE_CLASSES],
        "samples_a": [c[1] for c in tasks.SOURCE_CLASSES],
        "domain_a": list(tasks.DOMAIN_A_TEMPLATES),
        "domain_b": [c[0] for c in tasks.DOMAIN_B_CLASSES],
        "counting": [c[0] for c in tasks.COUNT_CLASSES],
        "multilabel": [c[0] for c in tasks.MULTI_CLASSES],
    }[dataset]


def _count(records: list[dict], split: str, label_range=None) -> int:
    if label_range is None:
        return sum(r["split"] == split for r in records)
    lo, hi = label_range
    return sum(r["split"] == split and lo <= r["label"] <= hi for r in records)


@dataclass(frozen=True)
class SynthExperiment:
    """One SynthSEVERE experiment: the SEVERE column it stands in for and the generated data it reads.

    The one place these facts are written: ``synthsevere.json``, SEVERE's synthetic experiments
    (``vssl.severe.experiments.synthetic_experiments``) and the report's columns are made from them.
    """

    name: str  # experiment id and report column
    severe: str  # the SEVERE column it mirrors
    factor: str  # domain | samples | actions | task
    dataset: str  # the generated dataset it reads (a key of ADAPTER)
    task: str = "classification"  # a vssl.tasks.TASKS kind
    options: dict = field(default_factory=dict)  # adapter options: label_range (inclusive), num_examples
    hflip_safe: bool = False  # False: chirality-dependent classes, trained without horizontal flips
    note: str = ""


def labelled_examples(num_classes: int, per_class: int = 10) -> int:
    """``num_examples`` for a 10-per-class subset (SEVERE: per class = ceil(N / C))."""
    return per_class * num_classes


#: the 8 experiments in SEVERE's column order (domain x2, samples x2, actions x2, counting, multi-label)
SYNTH_EXPERIMENTS: tuple[SynthExperiment, ...] = (
    SynthExperiment("domain_a", "SS-v2", "domain", "domain_a", hflip_safe=True,
                    note="two objects, object-agnostic relations; other backgrounds/palette, handheld camera"),
    SynthExperiment("domain_b", "Gym-99", "domain", "domain_b",
                    note="fine-grained motions of one object in a third domain (dark arena)"),
    SynthExperiment("samples_a", "UCF (10^3)", "samples", "samples_a",
                    options={"num_examples": labelled_examples(tasks.num_classes("samples_a"))},
                    note="in-domain (same domain and classes as the corpus), 10 labelled clips per class"),
    SynthExperiment("samples_b", "Gym-99 (10^3)", "samples", "domain_b",
                    options={"num_examples": labelled_examples(tasks.num_classes("domain_b"))},
                    note="Domain B with 10 clips per class"),
    SynthExperiment("actions_1", "FX-S1", "actions", "domain_b", options={"label_range": list(tasks.ACTIONS_1_RANGE)},
                    hflip_safe=True, note="hops: number of hops, turns in the air, tempo"),
    SynthExperiment("actions_2", "UB-S1", "actions", "domain_b", options={"label_range": list(tasks.ACTIONS_2_RANGE)},
                    note="circles: direction, number of turns, swing vs circle"),
    SynthExperiment("counting", "UCF-RC", "task", "counting", task="counting", hflip_safe=True,
                    note=f"count k in {tasks.COUNT_RANGE[0]}..{tasks.COUNT_RANGE[1]} = "
                    "temporal_bound_num - 1; SE of MAE = std(per-video error) / sqrt(n_test)"),
    SynthExperiment("multilabel", "Charades", "task", "multilabel", task="multilabel", hflip_safe=True,
                    note="3 objects, 1-3 of them act (the others rest); labels = the set of actions"),
)


def _experiment(spec: SynthExperiment, records: dict) -> dict:
    """The ``synthsevere.json`` entry of one experiment: its facts plus the sizes of the generated data."""
    options, kind = spec.options, TASKS[spec.task]
    adapter, tr, te, _ = ADAPTER[spec.dataset]
    classes = _classes(spec.dataset)
    lr = options.get("label_range")
    n_train, n_test = _count(records[spec.dataset], "train", lr), _count(records[spec.dataset], "test", lr)
    if lr is not None:
        classes = classes[lr[0]:lr[1] + 1]
    if "num_examples" in options:   # SEVERE: ceil(N / C) per class, a short class gives all it has
        per_class = math.ceil(options["num_examples"] / len(classes))
        counts = np.bincount([r["label"] for r in records[spec.dataset] if r["split"] == "train"],
                             minlength=len(classes))
        n_train = int(np.minimum(counts, per_class).sum())
    exp = {
        "name": spec.name, "severe": spec.severe, "factor": spec.factor, "task": spec.task, "dataset": adapter,
        "annotations": f"{spec.dataset}/annotations", "video_root": f"{spec.dataset}/videos",
        "adapter_options": dict(options), "splits": {"train": tr, "test": te},
        "sizes": {tr: n_train, te: n_test}, "num_classes": len(classes), "classes": classes,
        "metric": kind.metric_text, "hflip_safe": spec.hflip_safe,
    }
    chance = kind.chance(len(classes))
    if chance is not None and n_test:
        exp["chance"] = chance
        exp["standard_error_at_chance"] = round(math.sqrt(chance * (1 - chance) / n_test), 4)
        exp["max_standard_error"] = round(0.5 / math.sqrt(n_test), 4)
    if spec.note:
        exp["note"] = spec.note
    return exp


def describe(preset_name: str, preset, seed: int, records: dict, seconds: float, workers: int) -> dict:
    """The machine-readable description of a generated benchmark."""
    experiments = [_experiment(spec, records) for spec in SYNTH_EXPERIMENTS]
    datasets = {}
    for d, recs in records.items():
        adapter, tr, te, real = ADAPTER[d]
        datasets[d] = {"format": real, "adapter": adapter, "annotations": f"{d}/annotations",
                       "video_root": f"{d}/videos", "sizes": {tr: _count(recs, "train"), te: _count(recs, "test")},
                       "frames": preset.num_frames(d), "classes": _classes(d), "domain": tasks.DOMAIN[d]}
    return {
        "name": "SynthSEVERE", "preset": preset_name, "seed": seed, "resolution": preset.size, "fps": 16.0,
        "generation_seconds": round(seconds, 2), "workers": workers,
        "pretrain": {"dataset": "mini_kinetics", "annotations": "pretrain/annotations",
                     "video_root": "pretrain/videos", "splits": {"train": "train", "test": "val"},
                     "sizes": datasets["pretrain"]["sizes"],
                     "note": "labels (the corpus' own motion classes) are for the supervised baseline only"},
        "experiments": experiments, "datasets": datasets, "standard_error": SE_FORMULA,
        "label_ranges_inclusive": True,
    }


def readme(desc: dict) -> str:
    """A human-readable summary of the generated benchmark."""
    lines = [f"# SynthSEVERE ({desc['preset']}, seed {desc['seed']}, {desc['resolution']} px, "
             f"{desc['fps']:g} fps)", "",
             "Synthetic stand-in for the SEVERE benchmark generated by `vssl synth`; see docs/synthsevere.md "
             "in vssl. Machine-readable description: `synthsevere.json`.", "",
             f"Pretraining corpus: `pretrain/` (mini-Kinetics format), sizes {desc['pretrain']['sizes']}.", "",
             "| experiment | SEVERE | factor | adapter | options | classes | train | test | metric | SE at chance |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in desc["experiments"]:
        tr, te = e["sizes"].values()
        se = e.get("standard_error_at_chance", "-")
        lines.append(f"| {e['name']} | {e['severe']} | {e['factor']} | {e['dataset']} | "
                     f"{e['adapter_options'] or ''} | {e['num_classes']} | {tr} | {te} | {e['metric']} | {se} |")
    lines += ["", f"Standard error of an accuracy: {desc['standard_error']}.",
              "Label ranges are inclusive and relabelled from 0. Experiments with `hflip_safe: false` have "
              "chirality-dependent classes (clockwise vs anticlockwise, left vs right): train them without "
              "horizontal flips.", "", f"Generated in {desc['generation_seconds']} s with {desc['workers']} workers."]
    return "\n".join(lines) + "\n"
