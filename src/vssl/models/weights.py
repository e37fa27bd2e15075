"""Backbone weights out of vssl files, loaded with a report.

Files are read by :func:`vssl.serialization.load_checkpoint` (``weights_only`` or safetensors: nothing is
ever unpickled unsafely). Key mismatches are reported, and refused unless the caller allows them:
nothing is dropped silently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from vssl.errors import CheckpointError
from vssl.serialization import load_checkpoint

log = logging.getLogger(__name__)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def backbone_state(obj: Mapping) -> tuple[dict[str, Tensor], dict]:
    """The backbone state dict and metadata inside a vssl file.

    Accepts a plain state dict (``backbone.pt``), a dict with a ``"backbone"`` entry (converted files), or a
    vssl training checkpoint whose ``"model"``/``"state_dict"`` holds the method with ``backbone.*`` keys.
    A DDP ``module.`` prefix on every key is stripped.
    """
    meta = dict(obj.get("meta") or {}) if isinstance(obj.get("meta"), Mapping) else {}
    if _is_state_dict(obj):
        sd = dict(obj)
    elif isinstance(obj.get("backbone"), Mapping):
        sd = dict(obj["backbone"])
    else:
        inner = next((obj[k] for k in ("model", "state_dict") if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            raise CheckpointError(f"no state dict found (top-level keys: {sorted(obj)[:10]})")
        sd = {k: v for k, v in inner.items() if isinstance(v, Tensor)}
        if any(k.startswith("backbone.") for k in sd):
            sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd, meta


def read_backbone_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """``backbone_state`` of a file, with the file name in error messages."""
    try:
        return backbone_state(load_checkpoint(path))
    except CheckpointError as e:
        raise CheckpointError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None


@dataclass
class LoadReport:
    """What ``load_backbone_weights`` did. Keys are the model's names."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, checkpoint, model shape

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"{self.source}: loaded {len(self.loaded)} tensors"]
        for name, keys in (("missing", self.missing), ("unexpected (ignored)", self.unexpected)):
            if keys:
                lines.append(f"  {name} ({len(keys)}): {summarize_keys(keys)}")
        for k, a, b in self.mismatched:
            lines.append(f"  shape mismatch (not loaded): {k}: checkpoint {list(a)} vs model {list(b)}")
        return "\n".join(lines)


def summarize_keys(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def _allowed(key: str, prefixes: Iterable[str]) -> bool:
    return any(key.startswith(p) for p in prefixes)


def check_state_dict(model: nn.Module, sd: Mapping[str, Tensor], source: str = "state dict",
                     allow_missing: Iterable[str] = (), allow_unexpected: Iterable[str] = (),
                     strict_shapes: bool = True, original: Mapping | None = None) -> LoadReport:
    """Compare keys and shapes of ``sd`` with ``model`` (which may live on the meta device); load nothing.

    Raises CheckpointError as ``load_backbone_weights`` does; ``report.loaded`` lists the loadable keys.
    ``original`` (the object as read from the file) is used to suggest a ``--from`` format on failure.
    """
    allow_missing, allow_unexpected = tuple(allow_missing), tuple(allow_unexpected)
    own = model.state_dict()
    report = LoadReport(source)
    report.missing = [k for k in own if k not in sd]
    report.unexpected = [k for k in sd if k not in own]
    report.mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in sd.items()
                         if k in own and v.shape != own[k].shape]
    bad_missing = [k for k in report.missing
                   if not (_allowed(k, allow_missing) or k.endswith("num_batches_tracked"))]
    bad_unexpected = [k for k in report.unexpected if not _allowed(k, allow_unexpected)]
    problems = []
    if bad_missing:
        problems.append(f"{len(bad_missing)} missing keys: {summarize_keys(bad_missing)}")
    if bad_unexpected:
        problems.append(f"{len(bad_unexpected)} unexpected keys: {summarize_keys(bad_unexpected)}")
    if report.mismatched and strict_shapes:
        problems.append("shape mismatches: " + "; ".join(f"{k} {list(a)} vs model {list(b)}"
                                                         for k, a, b in report.mismatched[:5]))
    if problems:
        from vssl.models.convert import guess_format

        hint = guess_format(original if original is not None else sd)
        hint = (f" (this looks like a '{hint}' checkpoint: convert it first with "
                f"`vssl weights convert {source} OUT --from {hint}`)") if hint not in (None, "vssl") else ""
        raise CheckpointError(f"{source}: cannot load into {type(model).__name__}: " + "; ".join(problems) + hint)
    skip = {k for k, _, _ in report.mismatched}
    report.loaded = sorted(k for k in sd if k in own and k not in skip)
    return report


def load_backbone_weights(model: nn.Module, path_or_state_dict, allow_missing: Iterable[str] = (),
                          allow_unexpected: Iterable[str] = (), strict_shapes: bool = True) -> LoadReport:
    """Load weights into ``model`` and report loaded/missing/unexpected/mismatched keys.

    Args:
        path_or_state_dict: a file (see ``load_checkpoint``/``backbone_state``) or a mapping.
        allow_missing / allow_unexpected: key prefixes that may be missing / present in excess (e.g.
            ``("fc.",)``); BatchNorm ``num_batches_tracked`` buffers may always be missing.
        strict_shapes: raise on shape mismatches (default); if False, mismatched tensors keep their init.

    Raises:
        CheckpointError: missing or unexpected keys not allowed, or shape mismatches under strict_shapes.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        source, original = str(path_or_state_dict), load_checkpoint(path_or_state_dict)
    else:
        source, original = "state dict", path_or_state_dict
    try:
        sd, _ = backbone_state(original)
    except CheckpointError as e:
        raise CheckpointError(f"{source}: {e}") from None
    report = check_state_dict(model, sd, source, allow_missing, allow_unexpected, strict_shapes, original)
    model.load_state_dict({k: sd[k] for k in report.loaded}, strict=False)
    (log.info if report.ok else log.warning)("%s", report)
    return report
