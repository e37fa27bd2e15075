"""Batched, device-agnostic video transforms on (B, C, T, H, W) tensors.

Every random parameter is drawn once per clip and shared by all its frames (SEVERE §2.2,
VideoMAE ``Group*`` transforms), on the CPU from ``generator`` (a ``torch.Generator``; the global
RNG when None), then applied in one op on whatever device the batch lives on:

* crops are boxes drawn over each clip's whole frame and cut with one ``roi_align`` call per batch
  (:mod:`vssl.data.crops`); a padded batch of clips of different frame sizes passes its ``sizes``
  (``batch["frame_size"]``, :mod:`vssl.data.collate`);
* colour ops are per-clip factors broadcast over (C, T, H, W).

Colour ops and the composites work in float [0, 1]; ``normalize`` maps uint8 or [0, 1] floats to
normalised floats (ImageNet statistics by default). The composites also accept (B, V, C, T, H, W) and
treat the V clips of a video independently.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# the crops live in vssl.data.crops; crop_boxes, random_resized_crop and multi_scale_crop stay importable
# from here, where scripts (benchmarks/) found them before
from vssl.data.crops import (crop_boxes, eval_boxes, frame_sizes, multi_scale_crop,  # noqa: F401
                             random_resized_crop, rrc_params, short_side_jitter_params)

from vssl.data.photometric import gaussian_blur, hsv_to_rgb, per_clip, rgb_to_hsv

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def _rand(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


# --------------------------------------------------------------------------------------------------
# Resize and flip
# --------------------------------------------------------------------------------------------------

def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear (antialiased) resize of every frame of (B, C, T, H, W) to ``size`` = (h, w) or an int for
    a square; uint8 stays uint8 (rounded)."""
    b, c, t, h, w = x.shape
    oh, ow = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
    if (oh, ow) == (h, w):
        return x
    y = F.interpolate((x if x.is_floating_point() else x.float()).reshape(b, c * t, h, w), size=(oh, ow),
                      mode="bilinear", antialias=True, align_corners=False).reshape(b, c, t, oh, ow)
    return y.round().clamp_(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else y


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the short side is ``size``, aspect kept (the long side rounded)."""
    h, w = x.shape[-2:]
    if h <= w:
        return resize(x, (size, max(1, round(w * size / h))))
    return resize(x, (max(1, round(h * size / w)), size))


def horizontal_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each clip (all its frames) with probability ``p``."""
    flip = (_rand(x.shape[0], generator) < p).to(x.device)
    return torch.where(flip.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)


# --------------------------------------------------------------------------------------------------
# Colour (float [0, 1], channel axis 1)
# --------------------------------------------------------------------------------------------------

def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def adjust_brightness(x, factor):
    return (x * per_clip(factor, x)).clamp_(0, 1)


def adjust_contrast(x, factor):
    """Blend with the mean grey level of each frame (torchvision ``adjust_contrast`` per frame)."""
    mean = _gray(x).mean(dim=(-2, -1), keepdim=True)
    f = per_clip(factor, x)
    return (f * x + (1 - f) * mean).clamp_(0, 1)


def adjust_saturation(x, factor):
    f = per_clip(factor, x)
    return (f * x + (1 - f) * _gray(x)).clamp_(0, 1)


def adjust_hue(x, shift):
    """Rotate hue by ``shift`` in [-0.5, 0.5] turns per clip (HSV round trip as in torchvision)."""
    h, s, v = rgb_to_hsv(x)
    return hsv_to_rgb(torch.remainder(h + per_clip(shift, h), 1.0), s, v)


def color_jitter(x: torch.Tensor, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.2, p: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """ColorJitter per clip with probability ``p``, its four ops in a random order per clip
    (SEVERE train: (0.4, 0.4, 0.4, 0.2), §2.2). Factors: U(1-v, 1+v) for brightness, contrast and
    saturation; hue shift U(-hue, hue). Returns float [0, 1]."""
    x = _as_float(x).clone()
    n = x.shape[0]
    active = _rand(n, generator) < p
    factors = [1 + v * (2 * _rand(n, generator) - 1) for v in (brightness, contrast, saturation)]
    factors.append(hue * (2 * _rand(n, generator) - 1))
    order = torch.argsort(torch.rand(n, 4, generator=generator), dim=1)  # a permutation per clip
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    strengths = (brightness, contrast, saturation, hue)
    for position in range(4):
        for k, op in enumerate(ops):
            if strengths[k] <= 0:
                continue
            chosen = torch.nonzero(active & (order[:, position] == k)).flatten()
            if len(chosen):
                idx = chosen.to(x.device)
                x[idx] = op(x[idx], factors[k][chosen])
    return x


def random_grayscale(x: torch.Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace a clip by its grey level (3 equal channels) with probability ``p``. Float [0, 1]."""
    x = _as_float(x)
    gray = (_rand(x.shape[0], generator) < p).to(x.device)
    return torch.where(gray.view(-1, 1, 1, 1, 1), _gray(x).expand_as(x), x)


def normalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 (0-255) or float [0, 1] -> ``(x - mean) / std`` per channel (ImageNet, RGB)."""
    x = _as_float(x)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s


def denormalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Inverse of :func:`normalize`: back to float [0, 1] (for display and checks)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return x * s + m


# --------------------------------------------------------------------------------------------------
# Composites
# --------------------------------------------------------------------------------------------------

def _fold_views(x: torch.Tensor, sizes: torch.Tensor | None):
    """(B, V, C, T, H, W) -> (B*V, C, T, H, W), the frame sizes of the B*V clips (the (B, 2) sizes of
    the videos repeated) and a function that restores the V axis."""
    if x.dim() == 6:
        b, v = x.shape[:2]
        sizes = None if sizes is None else sizes.reshape(-1, 2).repeat_interleave(v, 0)
        return x.flatten(0, 1), sizes, lambda y: y.view(b, v, *y.shape[1:])
    if x.dim() != 5:
        raise ValueError(f"expected (B, C, T, H, W) or (B, V, C, T, H, W), got shape {tuple(x.shape)}")
    return x, sizes, lambda y: y


#: training crops of :class:`TrainAugment`
TRAIN_CROPS = ("rrc", "short_side_jitter")


class TrainAugment:
    """Crop -> horizontal flip -> colour jitter (random order) -> grayscale -> Gaussian blur -> normalize.

    ``crop="rrc"`` (default) is SEVERE's fine-tuning recipe (§2.2): RandomResizedCrop of the whole
    frame, scale (0.08, 1), ratio (3/4, 4/3), flip p=0.5, ColorJitter(0.4, 0.4, 0.4, 0.2) (applied with
    ``jitter_p``), no blur, ImageNet mean/std. ``crop="short_side_jitter"`` is PySlowFast's (SEVERE's
    Charades code, §6): short side inverse-uniform in ``short_side``, a random ``size`` crop.
    ``blur_p`` > 0 blurs a clip with sigma ``U(blur_sigma)`` pixels (MoCo v2: p 0.5, sigma 0.1-2).
    uint8 (B, C, T, H, W) or (B, V, C, T, H, W) -> float (..., C, T, size, size).
    """

    def __init__(self, size: int = 112, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True,
                 jitter=(0.4, 0.4, 0.4, 0.2), jitter_p: float = 0.8, grayscale_p: float = 0.0,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, blur_p: float = 0.0, blur_sigma=(0.1, 2.0),
                 crop: str = "rrc", short_side=(256, 340)):
        if crop not in TRAIN_CROPS:
            raise ValueError(f"TrainAugment: crop must be one of {', '.join(TRAIN_CROPS)}, got {crop!r}")
        self.size, self.scale, self.ratio, self.flip = size, tuple(scale), tuple(ratio), flip
        self.jitter, self.jitter_p, self.grayscale_p = tuple(jitter) if jitter else None, jitter_p, grayscale_p
        self.blur_p, self.blur_sigma = blur_p, tuple(blur_sigma)
        self.mean, self.std = tuple(mean), tuple(std)
        self.crop, self.short_side = crop, tuple(short_side)

    def boxes(self, sizes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 4) crop boxes for clips of frame sizes ``sizes`` (B, 2)."""
        if self.crop == "rrc":
            return rrc_params(sizes, self.scale, self.ratio, generator)
        return short_side_jitter_params(sizes, self.size, self.short_side, generator)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 sizes: torch.Tensor | None = None) -> torch.Tensor:
        x, sizes, unfold = _fold_views(x, sizes)
        x = _as_float(crop_boxes(x, self.boxes(frame_sizes(x, sizes), generator), self.size))
        if self.flip:
            x = horizontal_flip(x, 0.5, generator)
        if self.jitter and self.jitter_p > 0:
            x = color_jitter(x, *self.jitter, p=self.jitter_p, generator=generator)
        if self.grayscale_p > 0:
            x = random_grayscale(x, self.grayscale_p, generator)
        if self.blur_p > 0:
            x = gaussian_blur(x, self.blur_sigma, self.blur_p, generator)
        return unfold(normalize(x, self.mean, self.std))

    def __repr__(self) -> str:
        crop = f"scale={self.scale}, ratio={self.ratio}" if self.crop == "rrc" else f"short_side={self.short_side}"
        return (f"TrainAugment(size={self.size}, crop={self.crop!r}, {crop}, flip={self.flip}, "
                f"jitter={self.jitter}, jitter_p={self.jitter_p}, grayscale_p={self.grayscale_p}, "
                f"blur_p={self.blur_p}, blur_sigma={self.blur_sigma})")


class EvalTransform:
    """Short side -> ``short_side`` (default ``int(size / 0.875)``, SEVERE's 128 for 112), then one
    centre crop or three crops spanning the long side (:func:`vssl.data.crops.eval_boxes`), then
    normalize. Clips decoded at ``short_side`` are cut without resampling.

    (B, C, T, H, W) -> float (B*crops, C, T, size, size), the crops of a clip adjacent;
    (B, V, C, T, H, W) -> (B*V*crops, ...), the views then crops of a video adjacent.
    """

    def __init__(self, size: int = 112, short_side: int | None = None, crops: int = 1,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        if crops not in (1, 3):
            raise ValueError(f"EvalTransform: crops must be 1 or 3, got {crops}")
        self.size, self.crops = size, crops
        self.short_side = short_side or int(size / 0.875)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: torch.Tensor, sizes: torch.Tensor | None = None) -> torch.Tensor:
        x, sizes, _ = _fold_views(x, sizes)
        boxes = eval_boxes(frame_sizes(x, sizes), self.size, self.short_side, self.crops)
        index = torch.arange(x.shape[0]).repeat_interleave(self.crops)
        return normalize(crop_boxes(x, boxes, self.size, index), self.mean, self.std)

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size}, short_side={self.short_side}, crops={self.crops})"
