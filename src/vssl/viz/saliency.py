"""``vssl viz saliency``: where in space and time a backbone looks, for one or more checkpoints on
the same clips, side by side.

- 3D CNNs (R(2+1)D, R3D): Grad-CAM (Selvaraju et al., ICCV 2017) on the last conv block
  (``forward_features``, i.e. ``layer4``): channel weights = the score's gradient averaged over
  (t, h, w), map = ReLU(sum_c w_c A_c), upsampled trilinearly to the clip.
- ViTs: ``gradient`` (default) = |sum over colour of input x gradient| (Shrikumar et al., 2017), the
  input measured from the normalised zero (the ImageNet mean colour), summed per token tube, so the
  map has the ViT's token resolution (each token shown over its tube); or ``rollout`` = attention rollout (Abnar & Zuidema, ACL
  2020): per block the head-averaged attention with the residual (0.5 A + 0.5 I, rows renormalised),
  multiplied over the blocks; a token's saliency is its column mean (the backbone's output is the
  mean over tokens). Attention probabilities are recomputed from each block's ``qkv`` weights
  (the blocks use fused SDPA, which does not return them).

The score whose gradient is taken (``--target``): ``class`` = the top logit of a supervised
checkpoint's head; ``norm`` = L2 norm of the pooled features before any final normalisation (mean of
``forward_features`` for CNNs, of ``forward_tokens`` for ViTs: ``fc_norm``'s output has a constant
norm); ``top`` = the largest pooled feature; ``auto`` = class when the checkpoint has a head, else norm.
Every map is divided by its own maximum (rollout, whose minimum is not 0: rescaled min..max).

Per clip ``NN_name.png`` (rows: input, then one per checkpoint; up to 8 evenly spaced frames) and
``NN_name.gif`` (input | checkpoint 1 | checkpoint 2 ..., every frame), and ``saliency.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vssl.errors import VsslError
from vssl.viz.common import (clip_config, expand_videos, grid, overlay, read_run_checkpoint, readable_clips,
                             require_some, save_rows, to_frames)

TARGETS = ("auto", "class", "norm", "top")
RANDOM = "random:"  # --checkpoint random:r2plus1d_18 = that backbone at random init
VIT_METHODS = ("gradient", "rollout")


# --------------------------------------------------------------------------------------------------
# Saliency maps
# --------------------------------------------------------------------------------------------------

def normalise_map(maps: torch.Tensor, size: Sequence[int], mode: str = "trilinear",
                  from_min: bool = False) -> torch.Tensor:
    """(B, t, h, w) -> (B, T, H, W) in [0, 1]: upsampled (``trilinear`` for CNN cells, whose receptive
    fields overlap; ``nearest`` for ViT tokens, which are exactly their tubes), ReLU, divided by each
    map's max (0 stays 0), or with ``from_min`` rescaled from each map's min to its max (for maps
    without a meaningful zero; a constant map becomes 0)."""
    extra = {"align_corners": False} if mode == "trilinear" else {}
    up = F.interpolate(maps[:, None].float(), size=tuple(size), mode=mode, **extra)[:, 0]
    up = up.clamp(min=0)
    if from_min:
        up = up - up.flatten(1).amin(1).view(-1, 1, 1, 1)
    peak = up.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1, 1)
    return up / peak


def grad_cam(backbone: nn.Module, x: torch.Tensor, score_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Grad-CAM of a CNN backbone's last conv block.

    Args:
        backbone: has ``forward_features(x) -> (B, D, t, h, w)``; its output is their spatio-temporal mean.
        x: normalised clips (B, C, T, H, W).
        score_fn: pooled features (B, D) -> a scalar (summed over the batch; samples are independent
            in eval mode).

    Returns:
        (B, T, H, W) in [0, 1].
    """
    x = x.detach().requires_grad_(True)  # so that the graph exists even with frozen weights
    with torch.enable_grad():
        feats = backbone.forward_features(x)
        (grads,) = torch.autograd.grad(score_fn(feats.mean(dim=(2, 3, 4))), feats)
    weights = grads.mean(dim=(2, 3, 4), keepdim=True)
    cam = F.relu((weights * feats.detach()).sum(dim=1))
    return normalise_map(cam, x.shape[-3:])


def vit_gradient(backbone: nn.Module, x: torch.Tensor,
                 score_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """|sum_c x * d score / d x| per pixel, summed over each token's tube, upsampled to the clip.

    ``score_fn`` takes the mean of ``forward_tokens`` (B, D). Returns (B, T, H, W) in [0, 1].
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(score_fn(backbone.forward_tokens(x).mean(dim=1)), x)
    pixel = (x.detach() * g).sum(dim=1).abs()  # (B, T, H, W)
    p0, p = backbone.tubelet_size, backbone.patch_size
    tokens = F.avg_pool3d(pixel[:, None], (p0, p, p))[:, 0]
    return normalise_map(tokens, x.shape[-3:], "nearest")


def attention_probs(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The attention probabilities (B, heads, N, N) of a ``vssl.models.vit.Attention`` on its input
    ``x`` (B, N, C) (the block's ``norm1`` output): softmax(q k^T / sqrt(head_dim)) as its SDPA call."""
    b, n, c = x.shape
    bias = None
    if getattr(attn, "q_bias", None) is not None:
        bias = torch.cat((attn.q_bias, torch.zeros_like(attn.v_bias), attn.v_bias))
    qkv = F.linear(x, attn.qkv.weight, bias).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    return ((q @ k.transpose(-2, -1)) * attn.head_dim ** -0.5).softmax(dim=-1)


@torch.no_grad()
def attention_rollout(backbone: nn.Module, x: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """Attention rollout of a ViT over its blocks; (B, C, T, H, W) -> (B, T, H, W) in [0, 1]."""
    probs: list[torch.Tensor] = []
    hooks = [blk.attn.register_forward_hook(lambda m, inp, out: probs.append(attention_probs(m, inp[0])))
             for blk in backbone.blocks]
    try:
        backbone.forward_tokens(x)
    finally:
        for h in hooks:
            h.remove()
    b = x.shape[0]
    t, h, w = backbone.grid(x.shape)
    eye = torch.eye(t * h * w, device=x.device)
    rollout = eye.expand(b, -1, -1)
    for p in probs:
        a = (1 - residual) * p.float().mean(dim=1) + residual * eye
        rollout = (a / a.sum(dim=-1, keepdim=True)) @ rollout
    # every token keeps >= residual / N of itself, so the map has no meaningful zero: show min..max
    return normalise_map(rollout.mean(dim=1).view(b, t, h, w), x.shape[-3:], "nearest", from_min=True)


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------

@dataclass
class SaliencyModel:
    """A backbone (and a supervised head, if its checkpoint has one) ready for saliency."""

    name: str
    backbone: nn.Module
    head: nn.Module | None = None
    data: object | None = None  # the run's DataConfig, when known

    @property
    def family(self) -> str:
        return "vit" if hasattr(self.backbone, "forward_tokens") else "cnn"

    def score_fn(self, target: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
        """The scalar to explain, from the pooled (un-normalised) features, and its resolved name."""
        if target not in TARGETS:
            raise VsslError(f"--target: expected one of {', '.join(TARGETS)}, got {target!r}")
        if target == "auto":
            target = "class" if self.head is not None else "norm"
        if target == "class":
            if self.head is None:
                raise VsslError(f"{self.name}: --target class needs a supervised checkpoint with a head")
            post = self.backbone.fc_norm if self.family == "vit" else nn.Identity()

            def top_class(pooled):
                logits = self.head(post(pooled))
                return logits.gather(1, logits.detach().argmax(1, keepdim=True)).sum()

            return top_class, target
        if target == "norm":
            return (lambda pooled: pooled.float().norm(dim=1).sum()), target
        return (lambda pooled: pooled.gather(1, pooled.detach().argmax(1, keepdim=True)).sum()), target

    def saliency(self, x: torch.Tensor, target: str = "auto", vit_method: str = "gradient") -> tuple[torch.Tensor, str]:
        """(B, T, H, W) maps of normalised clips and a description of how they were made."""
        fn, target = self.score_fn(target)
        if self.family == "cnn":
            if not hasattr(self.backbone, "forward_features"):
                raise VsslError(f"{self.name}: Grad-CAM needs a backbone with forward_features")
            return grad_cam(self.backbone, x, fn), f"grad-cam ({target})"
        if vit_method == "rollout":
            return attention_rollout(self.backbone, x), "attention rollout"
        if vit_method != "gradient":
            raise VsslError(f"--vit-method: expected one of {', '.join(VIT_METHODS)}, got {vit_method!r}")
        return vit_gradient(self.backbone, x, fn), f"gradient x input ({target})"


def load_saliency_model(checkpoint: str | os.PathLike, backbone: str | None = None,
                        device: str = "cpu") -> SaliencyModel:
    """A backbone from a ``vssl pretrain``/``finetune`` output: a run directory, ``final.pt``,
    ``checkpoints/*.pt`` or ``backbone.pt`` (its backbone name from the run's config, else from
    ``backbone``). A supervised run's ``final.pt`` also gives its classification head.
    ``random:NAME`` is backbone NAME at random init (seed 0), the baseline of the papers' tables."""
    from vssl.distributed import resolve_device
    from vssl.models import build_backbone

    dev = resolve_device(device)
    if str(checkpoint).startswith(RANDOM):  # the random-init baseline, the same network every time
        name = str(checkpoint)[len(RANDOM):]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_backbone(name)
        return SaliencyModel(f"random init ({name})", model.to(dev).eval())
    ckpt = read_run_checkpoint(checkpoint)
    if backbone is None and ckpt.cfg is None:
        raise VsslError(f"{ckpt.path}: no run config beside this file to name its backbone; pass --backbone")
    name = backbone or ckpt.cfg.model.backbone
    kwargs = dict(ckpt.cfg.model.kwargs) if ckpt.cfg is not None and name == ckpt.cfg.model.backbone else {}
    model = build_backbone(name, checkpoint=ckpt.path, **kwargs)
    head = None
    state = ckpt.method_state or {}
    if ckpt.cfg is not None and ckpt.cfg.method.name == "supervised" and "head.weight" in state:
        weight = state["head.weight"]
        head = nn.Linear(weight.shape[1], weight.shape[0])
        head.load_state_dict({"weight": weight, "bias": state["head.bias"]})
    model = model.to(dev).eval()
    return SaliencyModel(ckpt.name, model, head.to(dev).eval() if head is not None else None,
                         ckpt.cfg.data if ckpt.cfg is not None else None)


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------

def render_clip(frames: np.ndarray, maps: Sequence[np.ndarray], names: Sequence[str], out_dir: Path, name: str) -> dict:
    """``name.png`` (input row + one overlay row per model) and ``name.gif`` (all of them side by side)."""
    rows = [frames] + [overlay(frames, m) for m in maps]
    return save_rows(rows, ["input", *names], out_dir, name)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} [{seen[n]}]")
    return out


def render_saliency(checkpoints: Sequence[str | os.PathLike], videos: Sequence[str | os.PathLike],
                    out_dir: str | os.PathLike, backbone: str | None = None, target: str = "auto",
                    vit_method: str = "gradient", device: str = "cpu", frames: int | None = None,
                    stride: int | None = None, size: int | None = None) -> list[Path]:
    """Saliency of every checkpoint on the same clips; returns the PNG of each clip.

    The clips are sampled with the first checkpoint's data config (``--frames``, ``--stride``,
    ``--size`` override it; without any run config, ``DataConfig``'s defaults) and fed unchanged
    to every model. ``backbone`` names the architecture of checkpoints that carry no run config.
    """
    from vssl.config import DataConfig
    from vssl.data.transforms import normalize

    models = [load_saliency_model(c, backbone, device) for c in checkpoints]
    names = _unique([m.name for m in models])
    data = clip_config(next((m.data for m in models if m.data is not None), None) or DataConfig(), frames, stride, size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = expand_videos(videos)
    pngs, records, skipped = [], [], []
    for path, stem, clip in readable_clips(files, data, skipped):
        x = normalize(clip.unsqueeze(0))
        maps, how = [], []
        for m in models:
            dev = next(m.backbone.parameters()).device
            try:
                sal, desc = m.saliency(x.to(dev), target, vit_method)
            except ValueError as e:  # e.g. a clip size the ViT cannot tokenise
                raise VsslError(f"{m.name} on {path}: {e}; choose --frames/--size that fit every backbone") from None
            maps.append(sal[0].cpu().numpy())
            how.append(desc)
        paths = render_clip(to_frames(clip), maps, names, out, stem)
        pngs.append(paths["png"])
        records.append({"video": str(path), "png": str(paths["png"]), "gif": str(paths["gif"]), "models": [
            {"name": n, "method": d, "peak_thw": [int(i) for i in np.unravel_index(int(np.argmax(s)), s.shape)],
             "mean": float(s.mean())} for n, d, s in zip(names, how, maps)]})
    (out / "saliency.json").write_text(json.dumps({
        "checkpoints": [str(c) for c in checkpoints], "names": names,
        "clip": {"num_frames": data.num_frames, "stride": data.stride, "size": data.crop_size}, "clips": records,
        "skipped": [{"video": p, "reason": r} for p, r in skipped]}, indent=1))
    require_some(len(pngs), skipped, "viz saliency")
    return pngs
