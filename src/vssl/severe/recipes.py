"""Per-row recipes: how each published SEVERE row was fine-tuned, as data.

SEVERE's tables mix rows that were not trained alike. The shipped configs of ``fmthoker/SEVERE-BENCHMARK``
(``action_recognition/configs/benchmark/``; severe-protocols.md §2.4) give some methods their own files:
random init (``*_scratch.yaml``), AVID-CMA (``*_avid.yaml``), TCLR (``*_tclr.yaml``) and Tubelet-Contrast on
the 10^3 subsets (``*_1000_examples_tubelet.yaml``). A published row names its recipe (the ``recipe`` column
of ``configs/severe/published/*.csv``); ``vssl severe --recipe NAME`` runs the ``paper`` protocol with it;
the report prints, beside each published row, its recipe and the deviations that remain between vssl's run
of it and the published protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vssl.errors import ConfigError

_RECOGNITION = ("ssv2", "gym99", "ucf101_1k", "gym99_1k", "fx_s1", "ub_s1")

#: what every vssl run of a recipe still does differently from the published protocol
COMMON_DEVIATIONS = (
    "vssl tests the last weights; the published recognition numbers test the epoch with the best clip accuracy "
    "on the test set (severe-protocols.md §2.5), UCF-RC the best validation epoch (§5.3)",
)


@dataclass(frozen=True)
class RowRecipe:
    """A named variant of the ``paper`` protocol.

    ``changes``: experiment name -> :class:`~vssl.severe.experiments.PaperRecipe` fields it sets;
    ``deviations``: what vssl's run of it does differently from the published protocol, besides
    :data:`COMMON_DEVIATIONS`.
    """

    name: str
    description: str
    source: str
    changes: dict
    deviations: tuple[str, ...] = ()

    def paper(self, experiment):
        """The experiment's published recipe with this row recipe's changes."""
        return replace(experiment.paper, **self.changes.get(experiment.name, {}))

    @property
    def all_deviations(self) -> tuple[str, ...]:
        return COMMON_DEVIATIONS + self.deviations


_TUBELET_1K = {"epochs": 18, "milestones": (8, 13, 16)}
RECIPES: dict[str, RowRecipe] = {r.name: r for r in [
    RowRecipe("severe", "SEVERE's published recipe of each experiment",
              "configs/benchmark/*/112x112x32*.yaml", {}),
    RowRecipe("scratch", "random init: longer schedules with weight decay on SS-v2 and Gym-99, weight decay on "
              "FX-S1/UB-S1 (the 10^3 subsets keep the normal recipe)",
              "configs/benchmark/*/112x112x32_scratch.yaml",
              {"ssv2": {"epochs": 25, "milestones": (12, 19, 22), "weight_decay": 1e-4},
               "gym99": {"epochs": 20, "milestones": (10, 15, 18), "weight_decay": 1e-4},
               "fx_s1": {"weight_decay": 1e-5}, "ub_s1": {"weight_decay": 1e-5}}),
    RowRecipe("tubelet", "Tubelet-Contrast on UCF and Gym-99 10^3: 18 epochs, milestones 8, 13, 16",
              "configs/benchmark/{ucf,gym99}/*_1000_examples_tubelet.yaml",
              {"ucf101_1k": _TUBELET_1K, "gym99_1k": _TUBELET_1K}),
    RowRecipe("avid", "AVID-CMA: base lr 1e-3 in the action-recognition experiments",
              "configs/benchmark/*/*_avid.yaml", {name: {"lr": 1e-3} for name in _RECOGNITION}),
    RowRecipe("tclr", "TCLR: the fine-tuning input is neither mean/std-normalised nor RGB",
              "configs/benchmark/*/*_tclr.yaml (normalize: false, switch_channels: true)", {},
              ("TCLR's configs feed unnormalised BGR frames (severe-protocols.md §2.2); vssl normalises RGB",)),
    RowRecipe("vit", "ViT-B rows, fine-tuned with their authors' VideoMAE-style code; the paper protocol gives a "
              "vit* backbone SIGMA's recipe (protocols.VIT_PAPER) by itself",
              "QUVA-Lab/SIGMA run_class_finetuning.py and scripts_finetune/*.sh", {},
              ("SIGMA released no SEVERE fine-tuning scripts: vssl's ViT recipe is run_class_finetuning.py's "
               "defaults with the released scripts' batch and rates", "UCF-RC and Charades keep the CNN recipes")),
]}


def get_recipe(name: str) -> RowRecipe:
    if name not in RECIPES:
        raise ConfigError(f"--recipe: unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    return RECIPES[name]
