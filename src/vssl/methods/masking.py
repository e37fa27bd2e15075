"""Tube masking and per-patch pixel targets shared by VideoMAE and SIGMA.

Both follow VideoMAE (Tong et al., NeurIPS 2022; ``MCG-NJU/VideoMAE: masking_generator.py`` and
``engine_for_pretraining.py``), but run batched on the clip's device instead of per sample in the
data loader.
"""

from __future__ import annotations

import torch


def tube_mask(batch_size: int, grid: tuple[int, int, int], ratio: float = 0.9,
              device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> torch.Tensor:
    """Random tube masks: the same spatial positions are masked in every temporal slot.

    Each sample masks exactly ``int(ratio * h * w)`` positions per slot (176 of 196 at 224 px and
    ratio 0.9, VideoMAE's default), so every sample keeps the same number of visible tokens and
    they can be gathered into a dense (B, N_visible, D) tensor. Vectorised: the positions are the
    first ``n`` indices of an argsort of uniform noise.

    Args:
        batch_size: B.
        grid: token grid (t, h, w) as given by ``backbone.grid(x.shape)``.
        ratio: fraction of masked tokens (VideoMAE/SIGMA 0.9; VideoMAE's UCF101 script 0.75).
        device: where to build the mask.
        generator: optional RNG (on ``device``) for reproducible masks.

    Returns:
        Bool (B, t*h*w), True = masked, in token order ``t*h*w + y*w + x``.
    """
    t, h, w = grid
    num_masked = int(ratio * h * w)
    noise = torch.rand(batch_size, h * w, device=device, generator=generator)
    rank = noise.argsort(dim=1).argsort(dim=1)  # the rank of each position in a random order
    spatial = rank < num_masked  # (B, h*w): exactly num_masked True per row
    return spatial.unsqueeze(1).expand(batch_size, t, h * w).reshape(batch_size, t * h * w)


def patchify(video: torch.Tensor, tubelet_size: int, patch_size: int) -> torch.Tensor:
    """Cut a clip into tubes: (B, C, T, H, W) -> (B, N, p0*p1*p2, C) in token order (t, h, w)."""
    b, c, t, h, w = video.shape
    p0, p = tubelet_size, patch_size
    x = video.reshape(b, c, t // p0, p0, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # b, t', h', w', p0, p1, p2, c
    return x.reshape(b, (t // p0) * (h // p) * (w // p), p0 * p * p, c)


def pixel_targets(video: torch.Tensor, tubelet_size: int, patch_size: int, normalize: bool = True,
                  eps: float = 1e-6) -> torch.Tensor:
    """VideoMAE's reconstruction target: tubes normalised per tube AND per colour channel.

    ``(v - mean) / (std_unbiased + 1e-6)`` over the p0*p1*p2 pixel positions of each tube, separately
    for each channel (sigma-videomae.md §1.7; unlike image MAE, which pools the channels). The
    flattening is ``(p c)``: index ``((t*p1 + y)*p2 + x)*C + c``.

    Args:
        video: float clip in [0, 1] (un-normalised), (B, C, T, H, W).
        tubelet_size: p0 (2 in VideoMAE).
        patch_size: p1 = p2 (16 in VideoMAE).
        normalize: False gives the raw pixels (VideoMAE's ``--normlize_target False``).

    Returns:
        (B, N, p0*p1*p2*C) float32.
    """
    x = patchify(video.float(), tubelet_size, patch_size)
    if normalize:
        x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + eps)
    return x.flatten(2)


def gather_tokens(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Tokens where ``keep`` is True, in their original order: (B, N, D), (B, N) -> (B, n, D).

    Every row of ``keep`` must hold the same count (true for :func:`tube_mask`).
    """
    b, _, d = x.shape
    return x[keep].reshape(b, -1, d)
