"""The training engine: one loop (``Trainer``), checkpoints, distributed helpers, CLI entry points.

Names are resolved on first use so that ``vssl.engine.run`` (the CLI entry) can report a config error
before torch is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {name: "vssl.engine.trainer" for name in ("Trainer", "build_optimizer", "build_scheduler", "lr_factor")}
_LAZY["seed_everything"] = "vssl.engine.distributed"

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vssl.engine' has no attribute {name!r}")
