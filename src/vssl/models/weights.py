"""Safe checkpoint reading, reported loading, and the ``vssl weights inspect|convert`` commands.

Every file is read with ``torch.load(map_location="cpu", weights_only=True)`` or safetensors; nothing is
ever unpickled unsafely. VideoMAE/SIGMA files pickle an ``argparse.Namespace`` (and older files numpy
scalars); those few harmless types are allow-listed through ``torch.serialization.safe_globals``.
Key mismatches are reported, and refused unless the caller allows them: nothing is dropped silently.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from vssl.errors import CheckpointError, load_failure_reason

log = logging.getLogger(__name__)

META_KEY = "vssl"  # safetensors metadata entry / "meta" entry of a .pt dict


def _safe_globals() -> list:
    """Types a research checkpoint may pickle besides tensors, all data-only."""
    allowed: list = [argparse.Namespace]
    try:
        import numpy as np

        core = getattr(np, "_core", None) or np.core
        allowed += [(core.multiarray.scalar, "numpy.core.multiarray.scalar"), core.multiarray.scalar, np.dtype]
        allowed += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    except Exception:  # numpy absent or moved: Namespace alone still covers VideoMAE/SIGMA
        pass
    return allowed


def load_state_dict_file(path: str | os.PathLike) -> dict:
    """Read a ``.pt/.pth/.tar/.bin`` (weights_only) or ``.safetensors`` file; returns the stored object.

    A safetensors file with vssl metadata comes back as ``{"backbone": tensors, "meta": {...}}``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
            tensors = load_file(str(path), device="cpu")
            meta = json.loads(header[META_KEY]) if META_KEY in header else None
        except Exception as e:  # SafetensorError (bad header, truncated), JSON errors in the metadata
            raise CheckpointError(f"{path}: not a readable safetensors file ({load_failure_reason(e)})") from None
        return {"backbone": tensors, "meta": meta} if meta is not None else tensors
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_safe_globals()):
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error says it all
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for unknown globals, RuntimeError/EOFError for corrupt files
        reason = load_failure_reason(e)
        if reason.startswith("refusing to unpickle"):
            raise CheckpointError(
                f"{path}: {reason}. Re-save the tensors alone, e.g. torch.save(ckpt['model'], 'weights.pth') "
                "in a trusted environment, then convert that file") from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({reason})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return dict(obj)


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
        return backbone_state(load_state_dict_file(path))
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
                lines.append(f"  {name} ({len(keys)}): {_summarize(keys)}")
        for k, a, b in self.mismatched:
            lines.append(f"  shape mismatch (not loaded): {k}: checkpoint {list(a)} vs model {list(b)}")
        return "\n".join(lines)


def _summarize(keys: list[str], n: int = 8) -> str:
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
        problems.append(f"{len(bad_missing)} missing keys: {_summarize(bad_missing)}")
    if bad_unexpected:
        problems.append(f"{len(bad_unexpected)} unexpected keys: {_summarize(bad_unexpected)}")
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
        path_or_state_dict: a file (see ``load_state_dict_file``/``backbone_state``) or a mapping.
        allow_missing / allow_unexpected: key prefixes that may be missing / present in excess (e.g.
            ``("fc.",)``); BatchNorm ``num_batches_tracked`` buffers may always be missing.
        strict_shapes: raise on shape mismatches (default); if False, mismatched tensors keep their init.

    Raises:
        CheckpointError: missing or unexpected keys not allowed, or shape mismatches under strict_shapes.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        source, original = str(path_or_state_dict), load_state_dict_file(path_or_state_dict)
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


def save_backbone_file(path: str | os.PathLike, state_dict: Mapping[str, Tensor], meta: dict) -> None:
    """Write a converted backbone atomically: safetensors (metadata in the header) or a ``.pt`` dict
    ``{"backbone": state_dict, "meta": meta}`` that ``torch.load(weights_only=True)`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(tmp), metadata={META_KEY: json.dumps(meta)})
    else:
        torch.save({"backbone": sd, "meta": meta}, tmp)
    os.replace(tmp, path)


# CLI -----------------------------------------------------------------------------------------------

def _prefixes(keys: Iterable[str], depth: int = 2) -> Counter:
    return Counter(".".join(k.split(".")[:depth]) for k in keys)


def vssl_backbone_name(obj: Mapping, path: str | os.PathLike) -> tuple[str | None, dict, str]:
    """``(builder name, builder kwargs, where found)`` of a vssl file: its metadata (converted files), the
    run config inside it (``final.pt``, checkpoints), or the ``config.yaml`` of the run folder that holds it
    (a pretraining's ``backbone.pt``); ``(None, {}, "")`` when none says."""
    meta = obj.get("meta")
    if isinstance(meta, Mapping) and meta.get("backbone"):
        return str(meta["backbone"]), dict(meta.get("kwargs") or {}), "file metadata"
    configs = [(obj.get("config"), "run config in the file")]
    here = Path(path).resolve().parent
    for run_config in (here / "config.yaml", here.parent / "config.yaml"):  # run folder, or its checkpoints/
        if run_config.is_file():
            import yaml

            try:
                configs.append((yaml.safe_load(run_config.read_text()), str(run_config)))
            except (OSError, yaml.YAMLError):
                pass
    for config, origin in configs:
        model = config.get("model") if isinstance(config, Mapping) else None
        if isinstance(model, Mapping) and model.get("backbone"):
            return str(model["backbone"]), dict(model.get("kwargs") or {}), origin
    return None, {}, ""


def inspect_command(args) -> int:
    """``vssl weights inspect PATH``: container, entries, tensor counts, key prefixes, guessed ``--from``."""
    from vssl.models.convert import find_state_dict, guess_format, read_source

    obj, container = read_source(args.path)
    print(f"{args.path}: {container}")
    others = {k: v for k, v in obj.items() if not isinstance(v, Tensor)} if isinstance(obj, Mapping) else {}
    for k, v in others.items():
        desc = f"dict with {len(v)} entries" if isinstance(v, Mapping) else f"{type(v).__name__}"
        if isinstance(v, (int, float, str)) or k == "meta":
            desc = repr(v)[:120]
        print(f"  entry {k!r}: {desc}")
    sd = find_state_dict(obj)
    n_params = sum(v.numel() for v in sd.values())
    print(f"tensors: {len(sd)}  parameters: {n_params:,} ({n_params / 1e6:.2f} M)")
    print("top-level prefixes:")
    for prefix, count in sorted(_prefixes(sd).items()):
        print(f"  {prefix:<48} {count:5d} tensors")
    fmt = guess_format(obj)
    if fmt == "vssl":
        name, kwargs, origin = vssl_backbone_name(obj, args.path)
        what = "vssl training output" + (f" (step {obj['step']})" if isinstance(obj.get("step"), int) else "") \
            if isinstance(obj.get("config"), Mapping) else "vssl backbone"
        if name:
            extra = "".join(f", {k}={v!r}" for k, v in kwargs.items())
            print(f"format: {what} of {name} (architecture from {origin}); load it with "
                  f"build_backbone({name!r}, checkpoint=PATH{extra})")
        else:
            print(f"format: {what}; the architecture is recorded neither in the file nor in a config.yaml beside "
                  "it: load it with build_backbone(NAME, checkpoint=PATH) using the backbone it was trained as")
    elif fmt:
        print(f"format guess: {fmt}\nsuggested: vssl weights convert {args.path} OUT.safetensors --from {fmt}")
    else:
        print("format guess: unknown (see docs/weights.md for the supported --from formats)")
    return 0


def convert_command(args) -> int:
    """``vssl weights convert PATH OUT --from FORMAT``: map keys, write OUT, check it loads with no missing keys."""
    from vssl.models.backbones import build_backbone
    from vssl.models.convert import convert

    result = convert(args.path, args.source_format)
    meta = {"backbone": result.backbone, "kwargs": result.kwargs, "source_format": args.source_format,
            "source": os.path.basename(str(args.path).rstrip("/")), **result.extra}
    with torch.device("meta"):  # keys and shapes only: no memory, no init time
        model = build_backbone(result.backbone, **result.kwargs)
    report = check_state_dict(model, result.state_dict, str(args.out))
    save_backbone_file(args.out, result.state_dict, meta)
    print(f"converted {args.path} ({args.source_format}) -> {args.out}: backbone {result.backbone}"
          f"{' ' + json.dumps(result.kwargs) if result.kwargs else ''}, {len(result.state_dict)} tensors")
    if result.dropped:
        print(f"dropped {len(result.dropped)} non-backbone tensors: {_summarize(sorted(result.dropped), 12)}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"check: {len(report.loaded)} tensors load into {result.backbone}; "
          f"missing: {len(report.missing)}, unexpected: {len(report.unexpected)}")
    return 0
