"""Backbone registry: ``BACKBONES`` (name -> builder) and ``build_backbone(name, checkpoint=None, **overrides)``.

Every backbone maps (B, C, T, H, W) to pooled (B, D) features and has ``feature_dim``; CNNs add
``forward_features`` (the map before pooling), ViTs ``forward_tokens`` (docs/design.md, "Backbones").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

from torch import nn

from vssl.errors import CheckpointError, ConfigError
from vssl.models import resnet3d, vit
from vssl.models.weights import LoadReport, load_backbone_weights, read_backbone_checkpoint

log = logging.getLogger(__name__)

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "r2plus1d_18": resnet3d.r2plus1d_18,
    "r2plus1d_18_tclr": resnet3d.r2plus1d_18_tclr,
    "r3d_18": resnet3d.r3d_18,
    "r2plus1d_tiny": resnet3d.r2plus1d_tiny,
    "vit_tiny": vit.vit_tiny,
    "vit_s": vit.vit_s,
    "vit_b": vit.vit_b,
    "vit": vit.VisionTransformer,  # any shape via kwargs (e.g. a converted HF/VideoMAE model of another size)
}

# Classifier keys a checkpoint may carry for a backbone: reported as unexpected, then ignored.
DEFAULT_ALLOW_UNEXPECTED = {"cnn": ("fc.",), "vit": ("head.",)}


def build_backbone(name: str, checkpoint: str | os.PathLike | None = None, *, allow_missing: Iterable[str] = (),
                   allow_unexpected: Iterable[str] | None = None, strict_shapes: bool = True,
                   **overrides) -> nn.Module:
    """Build backbone ``name`` with ``overrides`` as builder kwargs; optionally load ``checkpoint``.

    The checkpoint may be vssl's ``backbone.pt``, a vssl training checkpoint (``"model"``/``"backbone"``
    entry) or a file written by ``vssl weights convert``. A converted file carries its architecture (e.g. a
    HF model's width/depth/eps); those kwargs are applied under explicit ``overrides``. The load report is
    attached as ``model.load_report``.
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; available: {', '.join(sorted(BACKBONES))}")
    state = None
    if checkpoint:
        sd, meta = read_backbone_checkpoint(checkpoint)
        if meta.get("backbone") and meta["backbone"] != name:
            raise CheckpointError(f"{checkpoint}: converted for backbone {meta['backbone']!r}, not {name!r}")
        overrides = {**dict(meta.get("kwargs") or {}), **overrides}
        state = sd
    model = BACKBONES[name](**overrides)
    if state is not None:
        family = "vit" if isinstance(model, vit.VisionTransformer) else "cnn"
        if allow_unexpected is None:
            allow_unexpected = DEFAULT_ALLOW_UNEXPECTED[family]
        report: LoadReport = load_backbone_weights(model, state, allow_missing=allow_missing,
                                                   allow_unexpected=allow_unexpected, strict_shapes=strict_shapes)
        report.source = str(checkpoint)
        model.load_report = report
        log.info("%s <- %s", name, report)
    return model
