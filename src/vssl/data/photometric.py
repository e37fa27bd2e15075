"""Photometric clip augmentations of the pretraining recipes, batched on (B, C, T, H, W) float [0, 1].

Like :mod:`vssl.data.transforms`, every random parameter is drawn once per clip (on the CPU, from
``generator``) and shared by all frames of the clip.

- :func:`gaussian_blur`: MoCo v2's blur (Chen et al., "Improved Baselines with Momentum Contrastive
  Learning", 2020: ``GaussianBlur([.1, 2.])`` with p 0.5), used by video contrast.
- :func:`tubelet_color_ops`: Tubelet-Contrast's three independent colour ops (``fmthoker/tubelet-contrast:
  configs/moco/r2plus1d_18/pretraining_mini_kinetics.py``, ``pyvrl/datasets/transforms/color.py``).
- :func:`rgb_to_hsv` / :func:`hsv_to_rgb`: hue in [0, 1) turns, saturation and value in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Tubelet-Contrast's colour ops on the 0-255 scale: RandomBrightness(delta=32), RandomContrast(delta=0.2),
# RandomHueSaturation(hue_delta=12 in OpenCV's half-degree hue units = 24 degrees, saturation_delta=0.1)
TUBELET_BRIGHTNESS = 32 / 255
TUBELET_CONTRAST = 0.2
TUBELET_HUE_DEGREES = 24.0
TUBELET_SATURATION = 0.1
#: OpenCV's uint8 hue is degrees / 2 in 0..179 and the reference clips it there (no wrap-around)
OPENCV_MAX_HUE = 358 / 360


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def per_clip(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-clip values (B,) shaped to broadcast over ``x`` (B, ...), on its device and dtype."""
    return v.to(device=x.device, dtype=x.dtype).view(-1, *[1] * (x.dim() - 1))


def rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RGB on channel axis 1 -> (hue in [0, 1) turns, saturation, value), each without the channel axis."""
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    equal = maxc == minc
    chroma = maxc - minc
    ones = torch.ones_like(maxc)
    s = chroma / torch.where(equal, ones, maxc)
    div = torch.where(equal, ones, chroma)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(equal, torch.zeros_like(h), h)
    return torch.remainder(h / 6.0, 1.0), s, maxc


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`: RGB stacked on axis 1."""
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p, q, t = (v * (1 - s)).clamp(0, 1), (v * (1 - s * f)).clamp(0, 1), (v * (1 - s * (1 - f))).clamp(0, 1)
    pick = i.unsqueeze(0)
    out = [torch.stack(c).gather(0, pick).squeeze(0)
           for c in ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))]
    return torch.stack(out, 1)


def gaussian_blur(x: torch.Tensor, sigma=(0.1, 2.0), p: float = 0.5,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Blur each clip with probability ``p`` by a Gaussian of standard deviation ``U(sigma)`` pixels.

    Separable kernels truncated at 3 x the largest sigma, edges replicated (as PIL's ``GaussianBlur``,
    which MoCo v2 uses). Float [0, 1] (B, C, T, H, W) in and out.
    """
    b, c, t, h, w = x.shape
    active = torch.rand(b, generator=generator) < p
    sigmas = _uniform(b, float(sigma[0]), float(sigma[1]), generator)
    if not bool(active.any()):
        return x
    radius = max(1, math.ceil(3 * float(sigma[1])))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernels = torch.exp(-offsets[None] ** 2 / (2 * sigmas.double()[:, None] ** 2))
    kernels = (kernels / kernels.sum(1, keepdim=True)).to(device=x.device, dtype=x.dtype)  # (B, K)
    idx = torch.nonzero(active).flatten().to(x.device)
    sel = x[idx].reshape(1, -1, h, w)  # every frame and channel of a clip is one group
    k = kernels[idx].repeat_interleave(c * t, 0)  # (n*C*T, K)
    sel = F.pad(sel, (radius, radius, radius, radius), mode="replicate")
    sel = F.conv2d(sel, k[:, None, None, :], groups=k.shape[0])
    sel = F.conv2d(sel, k[:, None, :, None], groups=k.shape[0])
    out = x.clone()
    out[idx] = sel.reshape(len(idx), c, t, h, w)
    return out


def tubelet_color_ops(x: torch.Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Tubelet-Contrast's colour augmentation: three ops, each applied to a clip with probability ``p``
    independently, in this order (values on the 0-1 scale, clipped to [0, 1] after each op):

    1. brightness: ``x + U(-32, 32) / 255``;
    2. contrast: ``x * exp(U(-0.2, 0.2))`` (a scale of the pixel values, not a blend with the mean);
    3. hue and saturation in HSV: hue ``+ U(-24, 24)`` degrees, clipped to OpenCV's 0-358 degrees rather
       than wrapped, saturation ``* exp(U(-0.1, 0.1))``.

    Float [0, 1] (B, C, T, H, W) in and out.
    """
    n = x.shape[0]
    flags = [torch.rand(n, generator=generator) < p for _ in range(3)]
    shift = _uniform(n, -TUBELET_BRIGHTNESS, TUBELET_BRIGHTNESS, generator)
    scale = torch.exp(_uniform(n, -TUBELET_CONTRAST, TUBELET_CONTRAST, generator))
    hue = _uniform(n, -TUBELET_HUE_DEGREES, TUBELET_HUE_DEGREES, generator) / 360
    sat = torch.exp(_uniform(n, -TUBELET_SATURATION, TUBELET_SATURATION, generator))
    x = torch.where(per_clip(flags[0], x).bool(), (x + per_clip(shift, x)).clamp(0, 1), x)
    x = torch.where(per_clip(flags[1], x).bool(), (x * per_clip(scale, x)).clamp(0, 1), x)
    if bool(flags[2].any()):
        h, s, v = rgb_to_hsv(x)
        h = (h + per_clip(hue, h)).clamp(0, OPENCV_MAX_HUE)
        s = (s * per_clip(sat, s)).clamp(0, 1)
        x = torch.where(per_clip(flags[2], x).bool(), hsv_to_rgb(h, s, v), x)
    return x


__all__ = ["gaussian_blur", "tubelet_color_ops", "rgb_to_hsv", "hsv_to_rgb", "per_clip"]
