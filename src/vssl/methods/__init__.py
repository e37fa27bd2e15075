"""Training methods: one file each, one class each, a nested ``Config`` dataclass per class.

``METHODS`` maps a name to its class and imports the file only when the entry is read, so that
``vssl.config`` can validate ``method.params`` without importing every method (and torch) up front.
What a method must provide is :class:`Method` (``vssl.methods.contract``, with the weight-decay rule).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from vssl.methods.contract import Method

if TYPE_CHECKING:
    from torch import nn

    from vssl.config import RunConfig

_ENTRIES: dict[str, str] = {
    "supervised": "vssl.methods.supervised:Supervised",
    "video_contrast": "vssl.methods.moco:VideoContrast",
    "tubelet_contrast": "vssl.methods.tubelet_contrast:TubeletContrast",
    "videomae": "vssl.methods.videomae:VideoMAE",
    "sigma": "vssl.methods.sigma:SIGMA",
    # SEVERE's UCF-RC fine-tuning: Zhang et al.'s counter (paper protocol) and the quick log-count head
    "repetition_counter": "vssl.methods.repetition_counter:RepetitionCounter",
    "log_count": "vssl.methods.log_count:LogCount",
}


class _LazyMethods(Mapping):
    """A read-only ``name -> class`` mapping whose values are imported on first access."""

    def __init__(self, entries: dict[str, str]):
        self._entries = entries
        self._loaded: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        if name not in self._loaded:
            module, _, attr = self._entries[name].partition(":")  # KeyError for unknown names
            self._loaded[name] = getattr(importlib.import_module(module), attr)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: Any) -> bool:  # without importing
        return name in self._entries

    def __repr__(self) -> str:
        return f"METHODS({', '.join(self._entries)})"


METHODS: Mapping[str, type] = _LazyMethods(_ENTRIES)


def build_method(cfg: RunConfig, backbone: nn.Module) -> Method:
    """Build ``cfg.method`` around ``backbone``.

    Args:
        cfg: the run config; ``cfg.method.params`` is validated against the method's ``Config``.
        backbone: the network to train (see ``vssl.models.build_backbone``).

    Returns:
        The method module, ``METHODS[name](typed_params, backbone, cfg)``.
    """
    from vssl.config import method_config

    return METHODS[cfg.method.name](method_config(cfg), backbone, cfg)


__all__ = ["METHODS", "Method", "build_method"]
