"""The training engine: one loop (``Trainer``), its optimizer and schedule, checkpoints and resume,
the data order, and the Python API behind ``vssl pretrain``/``finetune`` (``vssl.engine.run``).

Names are resolved on first use so that ``vssl.engine.commands`` (the CLI adapters) can report a
config error before torch is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"Trainer": "vssl.engine.trainer", **{name: "vssl.engine.optim" for name in ("build_optimizer", "build_scheduler",
                                                                                   "lr_factor")}}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vssl.engine' has no attribute {name!r}")
