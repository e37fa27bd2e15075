"""The training engine: one loop (``Trainer``), checkpoints, distributed helpers, CLI entry points."""

from vssl.engine.trainer import Trainer, build_optimizer, build_scheduler, lr_factor, seed_everything

__all__ = ["Trainer", "build_optimizer", "build_scheduler", "lr_factor", "seed_everything"]
