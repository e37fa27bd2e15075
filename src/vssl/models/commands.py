"""``vssl weights inspect`` and ``vssl weights convert``: the command-line adapters of :mod:`vssl.models`."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from vssl.models.backbones import build_backbone
from vssl.models.convert import convert, find_state_dict, guess_format, read_source
from vssl.models.weights import summarize_keys, check_state_dict
from vssl.serialization import save_backbone_file


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
        print(f"dropped {len(result.dropped)} non-backbone tensors: {summarize_keys(sorted(result.dropped), 12)}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"check: {len(report.loaded)} tensors load into {result.backbone}; "
          f"missing: {len(report.missing)}, unexpected: {len(report.unexpected)}")
    return 0
