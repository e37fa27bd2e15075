"""The 8 SEVERE experiments as data (severe-protocols.md §1.1, §2.4, §2.6, §3, §5, §6) and their
synthetic counterparts built from a SynthSEVERE description (``synthsevere.json``).

An :class:`Experiment` says *what* is evaluated (dataset adapter, splits, label space, task, metric,
report column) and carries its published recipe (:class:`PaperRecipe`); *how* it is trained is a
protocol (:mod:`vssl.severe.protocols`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vssl.data.synth import load_description
from vssl.data.synth.describe import SYNTH_EXPERIMENTS
from vssl.errors import ConfigError
from vssl.tasks import TASKS, TaskKind

FACTORS = ("domain", "samples", "actions", "task")


@dataclass(frozen=True)
class PaperRecipe:
    """The published fine-tuning recipe of one experiment (§2.4 recognition, §5.2 UCF-RC, §6 Charades).
    Milestones are in epochs; the LR is multiplied by ``gamma`` at each."""

    epochs: int
    milestones: tuple[int, ...] = ()
    gamma: float = 0.3
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 32
    train_clips_per_video: int = 10  # dataset length = videos x clips per video (§2.1)
    num_frames: int = 32
    fps: float = 16.0
    test_clips: int = 10
    test_crops: int = 1
    ensemble: str = "mean"  # mean of softmax (recognition) | max of sigmoid (Charades)
    warmup_epochs: float = 0.0
    dropout: float = 0.0
    pipeline: dict = field(default_factory=dict)  # clip pipeline fields of the Recipe that differ from SEVERE's
    source: str = ""


@dataclass(frozen=True)
class Experiment:
    name: str  # experiment id (``--experiments``)
    column: str  # report column key
    title: str  # report column title
    factor: str  # domain | samples | actions | task
    dataset: str  # adapter name in vssl.data.datasets.ADAPTERS
    data_dir: str  # folder under the data root: <root>/<data_dir>/{annotations,videos}
    train_split: str
    test_split: str
    task: str  # a vssl.tasks.TASKS kind: classification | multilabel | counting
    num_classes: int  # 0 for counting
    paper: PaperRecipe
    subset: str = ""  # adapter low-sample option ("1k"); the *_1k adapters already apply SEVERE's (§2.6)
    fold: int = 1
    options: dict = field(default_factory=dict)  # extra adapter options (label filters ...)
    flip: bool = True  # horizontal flips in training (SEVERE flips everywhere, §2.2; off for chiral classes)
    annotations: str = ""  # explicit annotation dir (synthetic); default <root>/<data_dir>/annotations
    videos: str = ""  # explicit video root (synthetic); default <root>/<data_dir>/videos
    synthetic: bool = False  # a SynthSEVERE experiment (tiny native videos: protocols size their clips to them)

    @property
    def kind(self) -> TaskKind:
        return TASKS[self.task]

    @property
    def metric(self) -> str:
        """The primary metric (top1 | map | mae): the value of the experiment's report cell."""
        return self.kind.metric

    @property
    def lower_is_better(self) -> bool:
        return self.kind.lower_is_better

    def annotation_dir(self, root: str | Path) -> Path:
        return Path(self.annotations) if self.annotations else Path(root) / self.data_dir / "annotations"

    def video_root(self, root: str | Path) -> Path:
        return Path(self.videos) if self.videos else Path(root) / self.data_dir / "videos"


def _recognition(epochs: int, milestones: tuple[int, ...], source: str) -> PaperRecipe:
    return PaperRecipe(epochs=epochs, milestones=milestones, source=source)


_SSV2 = PaperRecipe(epochs=22, milestones=(12, 17, 20), train_clips_per_video=2,
                    source="configs/benchmark/something/112x112x32.yaml")
_UCF_RC = PaperRecipe(epochs=100, lr=5e-5, weight_decay=1e-3, batch_size=32, train_clips_per_video=10,
                      test_clips=1, source="Repetition-Counting/train_2stream.py (Adam 5e-5, wd 1e-3, 100 ep)")
_CHARADES = PaperRecipe(epochs=57, milestones=(41, 49), gamma=0.1, optimizer="sgd", lr=0.0375, weight_decay=1e-4,
                        batch_size=16, train_clips_per_video=1, num_frames=32, fps=3.0, test_clips=10, test_crops=3,
                        ensemble="max", warmup_epochs=4.0, dropout=0.5,
                        # PySlowFast's pipeline (TRAIN_JITTER_SCALES, INV_UNIFORM_SAMPLE, TEST_CROP_SIZE, DATA.MEAN/STD
                        # defaults, BN.NUM_BATCHES_PRECISE); clips decoded at 340 so no training crop is upsampled
                        pipeline=dict(train_crop="short_side_jitter", short_side=(256, 340), train_size=340,
                                      load_size=112, jitter_p=0.0, mean=(0.45,) * 3, std=(0.225,) * 3, precise_bn=200),
                        source="configs/Charades/VSSL/32x8_112x112_R18_*.yaml (32 frames x rate 8 at 24 fps)")

#: The SEVERE-benchmark subset (§1.1). Gym columns report top-1 (mean-class accuracy stored alongside, §2.7).
EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    Experiment("ssv2", "ssv2", "SS-v2", "domain", "ssv2", "ssv2", "train", "validation", "classification", 174, _SSV2),
    Experiment("gym99", "gym99", "Gym-99", "domain", "gym99", "gym99", "train", "val", "classification", 99,
               _recognition(16, (6, 10, 14), "configs/benchmark/gym99/112x112x32.yaml")),
    Experiment("ucf101_1k", "ucf_1k", "UCF (10^3)", "samples", "ucf101_1k", "ucf101", "train", "test",
               "classification", 101,
               _recognition(16, (6, 10, 14), "configs/benchmark/ucf/112x112x32-fold1_1000_examples.yaml")),
    Experiment("gym99_1k", "gym_1k", "Gym-99 (10^3)", "samples", "gym99_1k", "gym99", "train", "val",
               "classification", 99,
               _recognition(16, (6, 10, 14), "configs/benchmark/gym99/112x112x32_1000_examples.yaml")),
    Experiment("fx_s1", "fx_s1", "FX-S1", "actions", "fx_s1", "gym99", "train", "val", "classification", 11,
               _recognition(18, (7, 12, 16), "configs/benchmark/gym_set_FX_S1/112x112x32.yaml")),
    # fx_s1 / ub_s1 adapters: Gym99 labels 6-16 (offset -6) and 74-88 (offset -74), §3.3
    Experiment("ub_s1", "ub_s1", "UB-S1", "actions", "ub_s1", "gym99", "train", "val", "classification", 15,
               _recognition(18, (7, 12, 16), "configs/benchmark/gym_set_UB_S1/112x112x32.yaml")),
    Experiment("ucf_rc", "ucf_rc", "UCF-RC (MAE)", "task", "ucfrep", "ucfrep", "train", "val", "counting", 0, _UCF_RC),
    Experiment("charades", "charades", "Charades (mAP)", "task", "charades", "charades", "train", "test",
               "multilabel", 157, _CHARADES),
]}
#: report columns in SEVERE order; the published CSV uses these keys
SEVERE_COLUMNS = tuple(e.column for e in EXPERIMENTS.values())
#: the same 8 slots for SynthSEVERE (domain x2, samples x2, actions x2, counting, multi-label)
SYNTH_COLUMNS = tuple(spec.name for spec in SYNTH_EXPERIMENTS)
#: the paper recipe a synthetic experiment keeps for reference, by task (``quick`` is meant for them)
_SYNTH_PAPER = {"classification": _SSV2, "multilabel": _CHARADES, "counting": _UCF_RC}


def synthetic_experiments(root: str | Path) -> dict[str, Experiment]:
    """The 8 SynthSEVERE experiments of a generated benchmark at ``root`` (``synthsevere.json`` inside).

    What each experiment is (name, factor, task, horizontal flips) comes from
    :data:`vssl.data.synth.describe.SYNTH_EXPERIMENTS`; where its data lies comes from the description
    (``vssl.data.synth.load_description(root)``): each entry of its ``experiments`` list names the
    adapter (``dataset``), ``annotations`` and ``video_root`` (relative to ``root``), ``adapter_options``
    (``label_range``, ``num_examples``), ``splits`` and ``classes``. Columns follow :data:`SYNTH_COLUMNS`.
    The paper recipe is kept for reference only; ``quick`` is the protocol meant for this benchmark.
    """
    desc = load_description(Path(root))
    entries = desc.get("experiments", [])
    if isinstance(entries, dict):
        entries = [{"name": k, **v} for k, v in entries.items()]
    found = {e["name"]: e for e in entries}
    unknown = [n for n in found if n not in SYNTH_COLUMNS]
    if unknown:
        raise ConfigError(f"{root}/synthsevere.json: unknown synthetic experiment {unknown[0]!r} "
                          f"(expected one of {', '.join(SYNTH_COLUMNS)})")
    missing = [n for n in SYNTH_COLUMNS if n not in found]
    if missing:
        raise ConfigError(f"{root}/synthsevere.json: experiments missing: {', '.join(missing)}")
    out: dict[str, Experiment] = {}
    for spec in SYNTH_EXPERIMENTS:
        e, kind = found[spec.name], TASKS[spec.task]
        splits = e.get("splits", {})
        out[spec.name] = Experiment(
            name=spec.name, column=spec.name, title=spec.name, factor=spec.factor, dataset=e["dataset"],
            data_dir=spec.name, train_split=splits.get("train", "train"), test_split=splits.get("test", "test"),
            task=spec.task, num_classes=int(e.get("num_classes", len(e.get("classes", [])))) if kind.has_classes else 0,
            paper=_SYNTH_PAPER[spec.task], options=dict(e.get("adapter_options") or {}), flip=spec.hflip_safe,
            annotations=str(Path(root) / e["annotations"]), videos=str(Path(root) / e["video_root"]), synthetic=True,
        )
    return out


def is_synthetic_root(root: str | Path) -> bool:
    return (Path(root) / "synthsevere.json").is_file()


def select(names: str | list[str] | None, available: dict[str, Experiment]) -> list[Experiment]:
    """Experiments named in ``names`` (comma-separated string or list), all when None; clear error otherwise."""
    if not names:
        return list(available.values())
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"--experiments: unknown experiment(s) {', '.join(unknown)} "
                          f"(available: {', '.join(available)})")
    return [available[n] for n in names]
