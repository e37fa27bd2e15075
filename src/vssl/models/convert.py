"""Third-party checkpoint layouts -> vssl backbone keys (timm ``checkpoint_filter_fn`` style).

Each converter is a pure function ``obj -> Converted``: it picks the dict that holds the weights, keeps the
backbone tensors under vssl's names and lists every tensor it drops. R(2+1)D-18 mappings follow SEVERE's
``action_recognition/backbones.py`` (severe-protocols.md §4.2-4.3); ViT mappings follow VideoMAE/SIGMA and
HF transformers' ``convert_videomae_to_pytorch.py`` (sigma-videomae.md §4).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from vssl.errors import CheckpointError
from vssl.serialization import load_checkpoint


@dataclass
class Converted:
    state_dict: dict[str, Tensor]
    backbone: str
    kwargs: dict = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # informational metadata (e.g. HF image size)


def _tensors(obj: Mapping) -> dict[str, Tensor]:
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def _entry(obj: Mapping, *names: str, fmt: str) -> dict[str, Tensor]:
    for name in names:
        if isinstance(obj.get(name), Mapping):
            return _tensors(obj[name])
    if "*" in names and any(isinstance(v, Tensor) for v in obj.values()):
        return _tensors(obj)
    raise CheckpointError(f"--from {fmt}: expected the weights under {' or '.join(repr(n) for n in names)}; "
                          f"top-level keys are {sorted(obj)[:10]}")


def _rename(sd: Mapping[str, Tensor], fmt: str, rules: list[tuple[str, str]], keep: Callable[[str], bool],
            backbone: str = "r2plus1d_18") -> Converted:
    """Keep keys where ``keep(key)``, apply regex ``rules`` in order; everything else is reported dropped."""
    out, dropped = {}, []
    for k, v in sd.items():
        if not keep(k):
            dropped.append(k)
            continue
        for pattern, repl in rules:
            k = re.sub(pattern, repl, k)
        out[k] = v
    if not out:
        raise CheckpointError(f"--from {fmt}: no backbone tensors found (first keys: {list(sd)[:5]})")
    fc = [k for k in out if k.startswith("fc.")]  # classifier of the pretext/supervised task
    for k in fc:
        del out[k]
    return Converted(out, backbone, dropped=dropped + fc)


# R(2+1)D-18 checkpoints evaluated in SEVERE ---------------------------------------------------------

def from_torchvision(obj):
    return _rename(_entry(obj, "state_dict", "*", fmt="torchvision"), "torchvision", [], lambda k: True)


def from_moco(obj):  # moco, video_moco
    return _rename(_entry(obj, "state_dict", fmt="moco"), "moco", [(r"^module\.encoder_q\.", "")],
                   lambda k: k.startswith("module.encoder_q."))


def from_selavi(obj):
    p = "module.video_network.base."
    return _rename(_entry(obj, "model", fmt="selavi"), "selavi", [(f"^{re.escape(p)}", "")], lambda k: k.startswith(p))


def from_avid_cma(obj):
    p = "module.video_model."
    return _rename(_entry(obj, "model", fmt="avid_cma"), "avid_cma", [(f"^{re.escape(p)}", "")],
                   lambda k: k.startswith(p))


def from_gdt(obj):
    return _rename(_entry(obj, "model", fmt="gdt"), "gdt", [(r"^(module\.)?video_network\.base\.", "")],
                   lambda k: re.match(r"^(module\.)?video_network\.base\.", k) is not None)


def from_rspnet(obj):
    # only the query encoder's network: RSPNet's MultiTaskWrapper also holds one head per pretext task
    # (fc1, fc2) and the base encoder's own fc, which SEVERE's block-list lets through (strict=False hides it)
    rules = [(r"^encoder_q\.encoder\.base_network\.", "layer"), (r"^layer0\.", "stem.")]
    return _rename(_entry(obj, "model", fmt="rspnet"), "rspnet", rules,
                   lambda k: k.startswith("encoder_q.encoder.base_network."))


def from_pretext_contrast(obj):
    rules = [(r"^module\.base_network\.0\.", "stem."), (r"^module\.base_network\.", "layer")]
    return _rename(_entry(obj, "state_dict", "*", fmt="pretext_contrast"), "pretext_contrast", rules,
                   lambda k: k.startswith("module.base_network."))


def from_tclr(obj):
    rules = [(r"^module\.0\.stem\.", "stem."), (r"^module\.0\.layer(\d)\.", r"layer\1.")]
    return _rename(_entry(obj, "state_dict", fmt="tclr"), "tclr", rules,
                   lambda k: re.match(r"^module\.0\.(stem|layer\d)\.", k) is not None, backbone="r2plus1d_18_tclr")


_MMACTION_RULES = [  # mmaction-style R(2+1)D names (CTP, Tubelet-Contrast) -> torchvision
    (r"^backbone\.", ""),
    (r"^stem\.conv_s\.", "stem.0."), (r"^stem\.bn_s\.", "stem.1."),
    (r"^stem\.conv_t\.", "stem.3."), (r"^stem\.bn_t\.", "stem.4."),
    (r"^(layer\d\.\d+\.conv\d)\.conv_s\.", r"\1.0.0."), (r"^(layer\d\.\d+\.conv\d)\.bn_s\.", r"\1.0.1."),
    (r"^(layer\d\.\d+\.conv\d)\.conv_t\.", r"\1.0.3."),
    (r"^(layer\d\.\d+)\.bn(\d)\.", r"\1.conv\2.1."),
    (r"^(layer\d\.\d+)\.downsample(\.conv)?\.(weight|bias)$", r"\1.downsample.0.\3"),
    (r"^(layer\d\.\d+)\.downsample(_bn|\.bn)\.", r"\1.downsample.1."),
]


def from_ctp(obj):  # ctp, tubelet_contrast
    return _rename(_entry(obj, "state_dict", fmt="ctp"), "ctp", _MMACTION_RULES, lambda k: k.startswith("backbone."))


# VideoMAE / SIGMA / HF ViTs -------------------------------------------------------------------------

_HEADS = {96: 3, 192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}  # vssl tiny, ViT-Ti, VideoMAE S/B/L/H (§1.4)
_NAMES = {(96, 4, 3): "vit_tiny", (384, 12, 6): "vit_s", (768, 12, 12): "vit_b"}  # else the generic "vit"


def _vit_arch(sd: Mapping[str, Tensor], num_heads: int | None = None) -> tuple[str, dict]:
    w = sd["patch_embed.proj.weight"]  # (D, C, tubelet, patch, patch)
    dim = w.shape[0]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    heads = num_heads or _HEADS.get(dim) or max(1, dim // 64)
    kwargs = dict(embed_dim=dim, depth=depth, num_heads=heads, patch_size=w.shape[-1], tubelet_size=w.shape[2],
                  in_chans=w.shape[1], mlp_ratio=sd["blocks.0.mlp.fc1.weight"].shape[0] / dim,
                  qkv_bias="blocks.0.attn.q_bias" in sd)
    name = _NAMES.get((dim, depth, heads), "vit")
    return name, kwargs


def _fresh_fc_norm(sd: dict, dim: int, notes: list[str]) -> None:
    if "fc_norm.weight" not in sd:  # VideoMAE/SIGMA fine-tuning starts fc_norm fresh (sigma-videomae.md §3.1)
        sd["fc_norm.weight"], sd["fc_norm.bias"] = torch.ones(dim), torch.zeros(dim)
        notes.append("no fc_norm in the checkpoint: written fresh (ones/zeros), as VideoMAE fine-tuning starts it; "
                     "a pretraining final norm (encoder.norm / HF layernorm) is dropped, not reused")


def _heads_from_args(obj: Mapping) -> int | None:
    model = getattr(obj.get("args"), "model", "") or ""
    for size, heads in (("small", 6), ("base", 12), ("large", 16), ("huge", 16)):
        if size in model:
            return heads
    return None


def from_videomae(obj, fmt: str = "videomae"):
    """Official VideoMAE/SIGMA files: ``['model'|'module']``; strip ``encoder.``; drop decoder & heads."""
    raw = _entry(obj, "model", "module", "*", fmt=fmt)
    pretrain = any(k.startswith("encoder.") for k in raw)
    sd, dropped, notes = {}, [], []
    for k, v in raw.items():
        if pretrain:
            if not k.startswith("encoder.") or k.startswith("encoder.norm."):
                dropped.append(k)
                continue
            k = k[len("encoder."):]
        elif k.startswith("backbone."):
            k = k[len("backbone."):]
        if not re.match(r"^(patch_embed|blocks|fc_norm)\.", k):
            dropped.append(k)  # head.*, norm.*, decoder.*, mask_token, encoder_to_decoder, prototypes
            continue
        sd[k] = v
    if "patch_embed.proj.weight" not in sd:
        raise CheckpointError(f"--from {fmt}: no patch_embed.proj.weight found (first keys: {list(raw)[:5]})")
    name, kwargs = _vit_arch(sd, _heads_from_args(obj))
    if _heads_from_args(obj) is None:
        notes.append(f"num_heads={kwargs['num_heads']} inferred from width {kwargs['embed_dim']} "
                     "(heads are not stored in the weights)")
    grid = _pretraining_grid(getattr(obj.get("args"), "num_frames", None), getattr(obj.get("args"), "input_size", None),
                             kwargs)
    if grid:
        kwargs["pos_grid"] = grid
    _fresh_fc_norm(sd, kwargs["embed_dim"], notes)
    return Converted(sd, name, kwargs, dropped, notes)


def _pretraining_grid(num_frames, image_size, kwargs: dict) -> list[int] | None:
    """The token grid of the clips a checkpoint was trained on (its position table's layout), from the
    frame count and image size its arguments or config record; None when they are not recorded."""
    if not num_frames or not image_size:
        return None
    size = image_size[0] if isinstance(image_size, (list, tuple)) else image_size
    return [int(num_frames) // kwargs["tubelet_size"], int(size) // kwargs["patch_size"],
            int(size) // kwargs["patch_size"]]


def from_sigma(obj):
    return from_videomae(obj, fmt="sigma")


_HF_RULES = [
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.(q_bias|query\.bias)$", r"blocks.\1.attn.q_bias"),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.(v_bias|value\.bias)$", r"blocks.\1.attn.v_bias"),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
]


def from_hf(obj):
    """HF ``VideoMAEModel``/``ForVideoClassification``/``ForPreTraining`` (``videomae.`` prefix optional)."""
    cfg, raw = obj.get("config"), obj.get("weights")
    if not isinstance(cfg, Mapping) or not isinstance(raw, Mapping):
        raise CheckpointError("--from hf: expected a directory with config.json and model.safetensors or "
                              "pytorch_model.bin")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"--from hf: hidden_act {cfg['hidden_act']!r} is not supported (exact GELU only)")
    sd, dropped, notes, qkv = {}, [], [], {}
    for k, v in raw.items():
        k0, k = k, re.sub(r"^videomae\.", "", k)
        if m := re.match(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.weight$", k):
            qkv.setdefault(int(m.group(1)), {})[m.group(2)] = v
            continue
        if k.startswith("fc_norm."):
            sd[k] = v
            continue
        for pattern, repl in _HF_RULES:
            k, n = re.subn(pattern, repl, k)
            if n:
                break
        else:
            dropped.append(k0)  # classifier, layernorm (use_mean_pooling=False), decoder, mask_token, ...
            continue
        sd[k] = v
    for i, parts in qkv.items():  # q, k, v rows concatenated, as in VideoMAE's qkv Linear
        sd[f"blocks.{i}.attn.qkv.weight"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    patch = cfg.get("patch_size", 16)
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    dim, depth, heads = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    kwargs = dict(embed_dim=dim, depth=depth, num_heads=heads, patch_size=patch,
                  tubelet_size=cfg.get("tubelet_size", 2), in_chans=cfg.get("num_channels", 3),
                  mlp_ratio=cfg.get("intermediate_size", 4 * dim) / dim,
                  qkv_bias=bool(cfg.get("qv_bias", cfg.get("qkv_bias", True))),
                  norm_eps=cfg.get("layer_norm_eps", 1e-12))
    if "fc_norm.weight" in sd:
        kwargs["fc_norm_eps"] = 1e-5  # HF's fc_norm is nn.LayerNorm(hidden_size): default eps
    grid = _pretraining_grid(cfg.get("num_frames"), cfg.get("image_size"), kwargs)
    if grid:
        kwargs["pos_grid"] = grid
    _fresh_fc_norm(sd, dim, notes)
    extra = {"image_size": cfg.get("image_size"), "num_frames": cfg.get("num_frames")}
    return Converted(sd, _NAMES.get((dim, depth, heads), "vit"), kwargs, dropped, notes, extra)


CONVERTERS: dict[str, Callable[[Mapping], Converted]] = {
    "torchvision": from_torchvision, "moco": from_moco, "video_moco": from_moco, "selavi": from_selavi,
    "avid_cma": from_avid_cma, "gdt": from_gdt, "rspnet": from_rspnet, "pretext_contrast": from_pretext_contrast,
    "tclr": from_tclr, "ctp": from_ctp, "tubelet_contrast": from_ctp,
    "videomae": from_videomae, "sigma": from_sigma, "hf": from_hf,
}


# Reading and guessing -------------------------------------------------------------------------------

def read_source(path) -> tuple[dict, str]:
    """Load a checkpoint file, or an HF directory as ``{"config": dict, "weights": state_dict}``."""
    p = Path(path)
    if p.is_dir() or p.name == "config.json":
        d = p if p.is_dir() else p.parent
        if not (d / "config.json").is_file():
            raise CheckpointError(f"{d}: a directory needs config.json (HuggingFace layout)")
        try:
            cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise CheckpointError(f"{d / 'config.json'}: not a readable JSON file ({e})") from None
        if not isinstance(cfg, dict):
            raise CheckpointError(f"{d / 'config.json'}: expected a JSON object, found {type(cfg).__name__}")
        files = [d / n for n in ("model.safetensors", "pytorch_model.bin") if (d / n).is_file()]
        if not files:
            raise CheckpointError(f"{d}: no model.safetensors or pytorch_model.bin next to config.json")
        return {"config": cfg, "weights": load_checkpoint(files[0])}, f"HuggingFace directory ({files[0].name})"
    kind = "safetensors" if p.suffix == ".safetensors" else "torch (weights_only)"
    return load_checkpoint(p), kind


def find_state_dict(obj: Mapping) -> dict[str, Tensor]:
    for name in ("weights", "backbone", "state_dict", "model", "module"):
        if isinstance(obj.get(name), Mapping) and any(isinstance(v, Tensor) for v in obj[name].values()):
            return _tensors(obj[name])
    return _tensors(obj)


def guess_format(obj: Mapping) -> str | None:
    """A ``--from`` name for a loaded checkpoint (``"vssl"`` = already in vssl layout), or None."""
    if isinstance(obj.get("meta"), Mapping) and "backbone" in obj["meta"]:
        return "vssl"
    model = obj.get("model")
    if isinstance(obj.get("config"), Mapping) and isinstance(model, Mapping) and any(
            str(k).startswith("backbone.") for k in model):
        return "vssl"  # a vssl run's final.pt or training checkpoint: the method, backbone under "backbone."
    if isinstance(obj.get("config"), Mapping) and isinstance(obj.get("weights"), Mapping):
        return "hf"
    keys = list(find_state_dict(obj))
    has = lambda p: any(k.startswith(p) for k in keys)  # noqa: E731
    rules = [
        ("module.encoder_q.", "moco"), ("module.0.stem.", "tclr"), ("backbone.stem.conv_s", "ctp"),
        ("module.video_network.base.", "selavi"), ("module.video_model.", "avid_cma"),
        ("video_network.base.", "gdt"), ("encoder_q.encoder.base_network.", "rspnet"),
        ("module.base_network.", "pretext_contrast"), ("videomae.embeddings.", "hf"), ("embeddings.patch_", "hf"),
    ]
    for prefix, fmt in rules:
        if has(prefix):
            return fmt
    if has("encoder.patch_embed."):
        return "sigma" if has("prototypes") else "videomae"
    if has("stem.") or has("patch_embed."):
        return "torchvision" if has("fc.") else ("videomae" if has("head.") else "vssl")
    return None


def convert(path, fmt: str) -> Converted:
    if fmt not in CONVERTERS:
        raise CheckpointError(f"unknown --from {fmt!r}; choose one of: {', '.join(sorted(CONVERTERS))}")
    obj, _ = read_source(path)
    if fmt == "hf" and "config" not in obj:
        raise CheckpointError(f"{path}: --from hf needs the model directory (config.json + weights)")
    try:
        return CONVERTERS[fmt](obj)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
