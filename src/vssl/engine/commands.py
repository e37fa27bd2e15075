"""``vssl pretrain`` and ``vssl finetune``: the command-line adapters of :mod:`vssl.engine.run`.

Torch is imported only once the config has been read: a config error exits with status 2 at once.
"""

from __future__ import annotations

from pathlib import Path

from vssl.config import load_config
from vssl.engine.run import main_process, train_from_config
from vssl.errors import ConfigError


def _command(args) -> int:
    cfg = load_config(args.config, args.overrides)
    fraction = getattr(args, "data_fraction", None)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ConfigError(f"--data-fraction: expected 0 < F <= 1, got {fraction}")
        cfg.data.fraction = fraction
    summary = train_from_config(cfg, args.out, resume=args.resume, overwrite=getattr(args, "overwrite", False))
    if main_process():
        loss = summary["loss"]
        print(f"vssl: {cfg.method.name} on {cfg.data.dataset}: step {summary['step']}, {summary['steps_run']} steps in "
              f"{summary['time_s']:.1f} s ({summary['steps_per_s']:.2f} steps/s), final loss "
              f"{'n/a' if loss is None else f'{loss:.4f}'}; backbone weights: {Path(args.out) / 'backbone.pt'}")
        failed = summary["failed_videos"]
        if failed:
            print(f"vssl: {len(failed)} unreadable videos skipped ({summary['failures']} failed loads, each "
                  f"replaced by another video); listed in {Path(args.out) / 'summary.json'}:")
            for path, reason in failed[:20]:
                print(f"  {path}: {reason}")
            if len(failed) > 20:
                print(f"  ... and {len(failed) - 20} more")
        for key, what in (("checkpoint_failures", "checkpoint writes failed for lack of space"),
                          ("skipped_steps", "steps were skipped by the fp16 gradient scaler (inf/NaN)")):
            if summary.get(key):
                print(f"vssl: warning: {summary[key]} {what}")
    return 0


def pretrain_command(args) -> int:
    """``vssl pretrain --config C --out O [--set k=v] [--resume | --overwrite] [--data-fraction F]``."""
    return _command(args)


def finetune_command(args) -> int:
    """``vssl finetune --config C --out O [--set k=v] [--resume | --overwrite]``."""
    return _command(args)
