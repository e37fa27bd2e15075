"""One SEVERE run described in one typed value, and where its files go.

:class:`ExperimentRun` is everything that decides one (experiment, seed) result of one backbone: the
experiment, its resolved recipe, the weights, the data, the seed and device, and the run's folders.
``vssl.severe.runner.run_severe`` plans one per (experiment, seed) with :func:`plan_run`; the protocols'
code (``finetune``, ``frozen``, ``counting``) reads what it needs from it.

Layout of a results folder ``<out>``::

    results.sqlite                           the results (vssl.severe.results)
    clips/                                   decoded test clips, shared by every model (vssl.severe.caches)
    runs/<model>-<sha[:8]>/features/         frozen features of one model
    runs/<model>-<sha[:8]>/<exp>-<protocol>-<hash>-seed<N>/   the run's scratch: engine checkpoints, failures
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from vssl.config import DataConfig
from vssl.severe.caches import Caches
from vssl.severe.experiments import Experiment
from vssl.severe.protocols import Recipe


@dataclass(frozen=True)
class ExperimentRun:
    experiment: Experiment
    recipe: Recipe
    backbone: str  # a name in vssl.models.BACKBONES
    checkpoint: Path | None  # initial backbone weights; None = random init
    data_root: Path
    seed: int
    device: str
    workdir: Path  # the run's scratch: a killed paper run resumes from it; the result lives in the store
    caches: Caches

    @property
    def failure_log(self) -> Path:
        """The folder where train and test datasets record the videos they could not decode."""
        return self.workdir / "failures"

    @property
    def video_root(self) -> Path:
        return self.experiment.video_root(self.data_root)

    def data_config(self, train: bool = False) -> DataConfig:
        """The data config of the run's clips: training clips are decoded at ``train_size`` (when set), test
        clips (and the frozen protocols' clips) at ``load_size``, the test resize."""
        r = self.recipe
        size = (r.train_size or r.load_size) if train else r.load_size
        return DataConfig(dataset=self.experiment.dataset, root=str(self.video_root), num_frames=r.num_frames,
                          stride=r.stride, fps=r.fps, sampling=r.sampling, load_size=size, crop_size=r.crop_size,
                          batch_size=r.batch_size, num_workers=r.num_workers, persistent_workers=False)


def plan_run(out: Path, model: str, sha: str, experiment: Experiment, recipe: Recipe, protocol_key: str,
             seed: int, *, backbone: str, checkpoint, data_root, device: str) -> ExperimentRun:
    """The run of ``experiment`` x ``seed`` for the model ``model`` (weights ``sha``) in the results folder
    ``out`` under the protocol stored as ``protocol_key``."""
    safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in f"{model}-{sha[:8]}")
    tag = hashlib.sha1(protocol_key.encode()).hexdigest()[:6]
    model_dir = out / "runs" / safe
    return ExperimentRun(experiment, recipe, backbone, Path(checkpoint) if checkpoint else None, Path(data_root),
                         seed, device, model_dir / f"{experiment.name}-{protocol_key.split('(')[0]}-{tag}-seed{seed}",
                         Caches(features=model_dir / "features", clips=out / "clips"))


__all__ = ["ExperimentRun", "plan_run"]
