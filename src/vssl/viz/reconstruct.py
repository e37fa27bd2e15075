"""``vssl viz reconstruct``: what a VideoMAE or SIGMA checkpoint does with a masked clip.

The clip is sampled as the run's data config evaluates (``common.load_clip``), tube-masked with the
run's ``mask_ratio`` (``methods.masking.tube_mask``, seeded by ``--seed``) and passed through the
method's own ``predict`` (encoder on the visible tokens, decoder on all):

- VideoMAE: the decoder predicts every masked tube's pixels, normalised per tube and channel when
  the run used ``normalize_target``; they are mapped back with the true tube's mean and standard
  deviation (as VideoMAE's ``run_videomae_vis.py``), the visible tubes are the input's.
  Rows: input, masked input, reconstruction, absolute error (colour map scaled to the clip's max).
- SIGMA: the prototype assignment of every token: targets (the MLP's or DINO's feature of each tube,
  all tokens) and predictions (the decoder's output, masked tokens only), each scored against the
  unit prototypes and assigned by ``argmax`` (default) or by Sinkhorn then argmax (``--assign
  sinkhorn``, as the training labels; over one clip with fewer tokens than prototypes its
  equipartition spreads tokens over prototypes, so argmax shows the clusters better). A colour per
  prototype id, the same in every figure. Rows: input, masked input, target and predicted prototypes.

Per video ``NN_name.png`` (one column per token slot, at most 8) and ``NN_name.gif`` (every frame,
rows side by side); ``reconstruct.json`` holds the metrics: VideoMAE ``loss`` (the training MSE on
the masked tokens) and ``psnr_masked`` (dB, reconstruction vs input on masked pixels, in [0, 1]);
SIGMA ``agreement`` (masked tokens whose predicted prototype is the target's) and the number of
distinct prototypes used.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vssl.errors import VsslError
from vssl.viz.common import (category_colours, clip_config, colormap, expand_videos, grid, read_run_checkpoint,
                             readable_clips, require_some, save_rows, to_frames, token_map_to_pixels)

MASK_GREY = 128


def unpatchify(tubes: torch.Tensor, size: tuple[int, int, int], tubelet: int, patch: int) -> torch.Tensor:
    """Inverse of ``methods.masking.patchify``: (B, N, p0*p*p, C) -> (B, C, T, H, W)."""
    b, _, _, c = tubes.shape
    t, h, w = size
    x = tubes.reshape(b, t // tubelet, h // patch, w // patch, tubelet, patch, patch, c)
    return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, c, t, h, w)


def compose_reconstruction(x01: torch.Tensor, mask: torch.Tensor, pred: torch.Tensor, tubelet: int, patch: int,
                           normalized: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """The clip with its masked tubes replaced by the decoder's prediction.

    Args:
        x01: the input clip, float in [0, 1], (B, C, T, H, W).
        mask: bool (B, N), True = masked, in token order.
        pred: (B, N_masked, p0*p*p*C) predictions of the masked tubes in token order, flattened
            ``(p c)`` as ``pixel_targets``.
        normalized: the predictions are per-tube, per-channel normalised targets: undo that with the
            input tube's mean and unbiased std (+ eps), the statistics ``pixel_targets`` used.

    Returns:
        float (B, C, T, H, W) clamped to [0, 1]; visible tubes are the input's.
    """
    from vssl.methods.masking import patchify

    tubes = patchify(x01.float(), tubelet, patch)  # (B, N, P, C)
    b, _, p, c = tubes.shape
    guess = pred.float().reshape(b, -1, p, c)
    if normalized:
        mean = tubes.mean(dim=-2, keepdim=True)
        std = tubes.var(dim=-2, unbiased=True, keepdim=True).sqrt() + eps
        guess = guess * std[mask].view(b, -1, 1, c) + mean[mask].view(b, -1, 1, c)
    out = tubes.clone()
    out[mask] = guess.reshape(-1, p, c)
    return unpatchify(out, tuple(x01.shape[-3:]), tubelet, patch).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor | None = None) -> float:
    """PSNR in dB of images in [0, 1] (``inf`` when equal), optionally over the pixels ``where``."""
    err = (a.float() - b.float()) ** 2
    mse = float(err[where.expand_as(err)].mean() if where is not None else err.mean())
    return math.inf if mse == 0 else -10 * math.log10(mse)


def assign_prototypes(scores: torch.Tensor, how: str = "argmax", eps: float = 0.05, iters: int = 10) -> torch.Tensor:
    """Prototype id per row of ``scores`` (N, K): ``argmax``, or ``sinkhorn`` (SIGMA's training labels:
    Sinkhorn-Knopp over these N rows, then argmax)."""
    if how == "argmax":
        return scores.argmax(dim=1)
    if how == "sinkhorn":
        from vssl.methods.sigma import sinkhorn_labels

        return sinkhorn_labels(scores, eps, iters, distributed=False)
    raise VsslError(f"--assign: expected argmax or sinkhorn, got {how!r}")


def load_masked_model(checkpoint: str | os.PathLike, device: str = "cpu"):
    """(method, RunCheckpoint) of a VideoMAE or SIGMA training checkpoint, its run directory, or
    the run's exported ``backbone.pt`` (then ``final.pt`` beside it is read)."""
    from vssl.distributed import resolve_device
    from vssl.viz.common import build_method_from_checkpoint

    ckpt = read_run_checkpoint(checkpoint)
    if ckpt.state is None and (ckpt.path.parent / "final.pt").is_file():  # an exported backbone.pt of a run
        ckpt = read_run_checkpoint(ckpt.path.parent / "final.pt")
    if ckpt.cfg is None or ckpt.cfg.method.name not in ("videomae", "sigma"):
        found = ckpt.cfg.method.name if ckpt.cfg is not None else "no run config"
        raise VsslError(f"{ckpt.path}: `viz reconstruct` needs a VideoMAE or SIGMA training checkpoint "
                        f"(final.pt or checkpoints/last.pt of the run), found {found}")
    return build_method_from_checkpoint(ckpt, resolve_device(device)), ckpt


@torch.no_grad()
def reconstruct_clip(method, clip: torch.Tensor, seed: int = 0, assign: str = "argmax") -> dict:
    """Mask one uint8 clip (C, T, H, W) and run the method on it.

    Returns ``{"kind", "mask" (t, h, w) bool, "metrics"}`` plus ``"recon"`` float (C, T, H, W)
    (VideoMAE) or ``"target_ids"`` (t, h, w) and ``"pred_ids"`` (t, h, w, -1 at visible tokens) (SIGMA).
    """
    from vssl.data import transforms as TF
    from vssl.methods.masking import gather_tokens, pixel_targets, tube_mask

    dev = next(method.parameters()).device
    bb = method.backbone
    p0, p = bb.tubelet_size, bb.patch_size
    x01 = clip.unsqueeze(0).to(dev).float() / 255
    grid_thw = bb.grid(x01.shape)
    mask = tube_mask(1, grid_thw, method.cfg.mask_ratio, "cpu", torch.Generator().manual_seed(seed)).to(dev)
    pred = method.predict(TF.normalize(x01), mask)  # (1, N_masked, out)
    out = {"mask": mask.view(grid_thw).cpu()}
    if not hasattr(method, "prototypes"):  # VideoMAE
        target = gather_tokens(pixel_targets(x01, p0, p, method.cfg.normalize_target), mask)
        recon = compose_reconstruction(x01, mask, pred, p0, p, method.cfg.normalize_target)
        where = token_map_to_pixels(out["mask"].numpy(), p0, p)[None, None]
        out.update(kind="videomae", recon=recon[0].cpu(), metrics={
            "loss": float(F.mse_loss(pred.float(), target)),
            "psnr_masked": psnr(recon, x01, torch.from_numpy(where).to(dev))})
        return out
    cfg = method.cfg
    if cfg.target == "dino":
        z_t = method.teacher_targets(TF.normalize(x01))
    else:
        z_t = method.projector(pixel_targets(x01, p0, p, cfg.normalize_target))
    protos = F.normalize(method.prototypes.float(), dim=1)
    s_t = F.normalize(z_t[0].float(), dim=1) @ protos.t()  # every token
    s_p = F.normalize(pred[0].float(), dim=1) @ protos.t()  # masked tokens
    y_t = assign_prototypes(s_t, assign, cfg.sinkhorn_eps, cfg.sinkhorn_iters).cpu()
    y_p = assign_prototypes(s_p, assign, cfg.sinkhorn_eps, cfg.sinkhorn_iters).cpu()
    flat_mask = mask[0].cpu()
    pred_ids = torch.full_like(y_t, -1)
    pred_ids[flat_mask] = y_p
    out.update(kind="sigma", target_ids=y_t.view(grid_thw), pred_ids=pred_ids.view(grid_thw), metrics={
        "agreement": float((y_t[flat_mask] == y_p).float().mean()),
        "prototypes_target": int(y_t.unique().numel()), "prototypes_pred": int(y_p.unique().numel()),
        "num_prototypes": int(protos.shape[0]), "assign": assign})
    return out


def panels(clip: torch.Tensor, result: dict, tubelet: int, patch: int) -> tuple[list[str], list[np.ndarray]]:
    """Row names and uint8 (T, H, W, 3) frame stacks of one clip's figure."""
    frames = to_frames(clip)
    masked_px = token_map_to_pixels(result["mask"].numpy(), tubelet, patch)  # (T, H, W) bool
    masked = frames.copy()
    masked[masked_px] = MASK_GREY
    if result["kind"] == "videomae":
        recon = to_frames(result["recon"])
        err = np.abs(recon.astype(np.float32) - frames.astype(np.float32)).mean(-1) / 255
        scale = max(float(err.max()), 1e-6)
        return (["input", "masked input", "reconstruction", f"|error| (max {scale:.2f})"],
                [frames, masked, recon, colormap(err / scale)])
    target_px = token_map_to_pixels(result["target_ids"].numpy(), tubelet, patch)
    pred_px = token_map_to_pixels(result["pred_ids"].numpy(), tubelet, patch)
    blend = lambda ids: (0.35 * frames + 0.65 * category_colours(ids)).round().astype(np.uint8)  # noqa: E731
    pred = blend(pred_px)
    pred[~masked_px] = (0.35 * frames[~masked_px] + 0.65 * 255).round().astype(np.uint8)  # visible: washed out
    names = ["input", "masked input", "target prototypes", "predicted (masked)"]
    return names, [frames, masked, blend(target_px), pred]


def render_clip(clip: torch.Tensor, result: dict, tubelet: int, patch: int, out_dir: Path, name: str) -> dict:
    """``name.png`` (rows x token-slot frames) and ``name.gif`` (every frame, rows side by side)."""
    names, stacks = panels(clip, result, tubelet, patch)
    return save_rows(stacks, names, out_dir, name, step=tubelet)


def render_reconstructions(checkpoint: str | os.PathLike, videos, out_dir: str | os.PathLike, seed: int = 0,
                           assign: str = "argmax", device: str = "cpu", frames: int | None = None,
                           stride: int | None = None, size: int | None = None) -> list[dict]:
    """Figures for every readable video; returns per video ``{"video", "png", "gif", "metrics"}`` and
    writes ``reconstruct.json`` (its ``"skipped"`` lists unreadable videos with the reason)."""
    method, ckpt = load_masked_model(checkpoint, device)
    data = clip_config(ckpt.cfg.data, frames, stride, size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = expand_videos(videos)
    p0, p = method.backbone.tubelet_size, method.backbone.patch_size
    rows, skipped = [], []
    for path, name, clip in readable_clips(files, data, skipped):
        try:
            result = reconstruct_clip(method, clip, seed, assign)
        except ValueError as e:  # a clip the ViT cannot tokenise (T, H, W vs tubelet x patch)
            raise VsslError(f"{path}: {e}; choose --frames/--size divisible by the tubelet/patch size") from None
        rows.append({"video": str(path), **render_clip(clip, result, p0, p, out, name), "metrics": result["metrics"]})
    summary = {"checkpoint": str(ckpt.path), "method": ckpt.cfg.method.name, "seed": seed,
               "mask_ratio": method.cfg.mask_ratio,
               "clips": [{**r, "png": str(r["png"]), "gif": str(r["gif"])} for r in rows],
               "skipped": [{"video": p, "reason": r} for p, r in skipped]}
    (out / "reconstruct.json").write_text(json.dumps(summary, indent=1))
    require_some(len(rows), skipped, "viz reconstruct")
    return rows


def render_reconstruction(checkpoint_path: str | os.PathLike, video_path: str | os.PathLike,
                          out_dir: str | os.PathLike, seed: int = 0, device: str = "cpu") -> Path:
    """The demo's entry point: one video through a VideoMAE/SIGMA checkpoint -> the PNG's path."""
    return render_reconstructions(checkpoint_path, [video_path], out_dir, seed=seed, device=device)[0]["png"]
