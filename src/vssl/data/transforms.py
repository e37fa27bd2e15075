"""Batched, device-agnostic video transforms on (B, C, T, H, W) tensors.

Every random parameter is drawn once per clip and shared by all its frames (SEVERE §2.2,
VideoMAE ``Group*`` transforms), on the CPU from ``generator`` (a ``torch.Generator``; the global
RNG when None), then applied in one op on whatever device the batch lives on:

* crops with resize are one ``torchvision.ops.roi_align`` call, frames and channels folded into the
  channel axis, one box per clip (adaptive sampling averages when shrinking, like an antialiased
  resize; a box the size of the output is an exact crop);
* colour ops are per-clip factors broadcast over (C, T, H, W).

dtype: geometric ops return the input dtype (uint8 is rounded back). Colour ops and the composites
work in float [0, 1]; ``normalize`` maps uint8 or [0, 1] floats to ImageNet-normalised floats.
The composites also accept (B, V, C, T, H, W) and treat the V clips of a video independently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from vssl.data.photometric import gaussian_blur, hsv_to_rgb, per_clip, rgb_to_hsv

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def _pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))


def _rand(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


def _like(y: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Back to ``ref``'s dtype: uint8 inputs stay uint8 (values on the 0-255 scale)."""
    return y.round().clamp_(0, 255).to(torch.uint8) if ref.dtype == torch.uint8 else y


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------

def crop_boxes(x: torch.Tensor, boxes: torch.Tensor, size) -> torch.Tensor:
    """Crop box ``b`` = (x1, y1, x2, y2) in pixels from clip ``b`` and resize it to ``size``.

    One ``roi_align`` call for the whole batch: (B, C, T, H, W) -> (B, C, T, h, w).
    """
    b, c, t, h, w = x.shape
    oh, ow = _pair(size)
    rois = torch.cat([torch.arange(b, dtype=torch.float32)[:, None], boxes.float()], 1).to(x.device)
    flat = x.reshape(b, c * t, h, w)
    flat = flat.float() if not flat.is_floating_point() else flat
    out = roi_align(flat, rois.to(flat.dtype), (oh, ow), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return _like(out.reshape(b, c, t, oh, ow), x)


def rrc_params(batch: int, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
               generator: torch.Generator | None = None, attempts: int = 10) -> torch.Tensor:
    """(B, 4) boxes drawn as torchvision's ``RandomResizedCrop.get_params``: up to 10 tries of area
    ``U(scale)`` x image area and log-uniform aspect ``ratio``; fallback = the whole image clipped
    to the ratio range, centred."""
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(batch, attempts, generator=generator))
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(
        batch, attempts, generator=generator)
    aspect = torch.exp(log_r)
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.float().argmax(1)  # first valid attempt (0 when none)
    rows = torch.arange(batch)
    w, h = w[rows, first], h[rows, first]
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    any_ok = ok.any(1)
    w = torch.where(any_ok, w, torch.full_like(w, fw))
    h = torch.where(any_ok, h, torch.full_like(h, fh))
    u = torch.rand(batch, 2, generator=generator)
    y0 = torch.where(any_ok, (u[:, 0] * (height - h + 1)).floor(), ((height - h) / 2).floor())
    x0 = torch.where(any_ok, (u[:, 1] * (width - w + 1)).floor(), ((width - w) / 2).floor())
    return torch.stack([x0, y0, x0 + w, y0 + h], 1)


def random_resized_crop(x: torch.Tensor, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """RandomResizedCrop per clip (SEVERE train: 112, scale (0.08, 1), ratio (3/4, 4/3), §2.2)."""
    boxes = rrc_params(x.shape[0], x.shape[-2], x.shape[-1], scale, ratio, generator)
    return crop_boxes(x, boxes, size)


def msc_params(batch: int, height: int, width: int, size, scales=(1, 0.875, 0.75, 0.66), max_distort: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 4) boxes of VideoMAE/TSN ``GroupMultiScaleCrop`` (sigma-videomae.md §1.8).

    Crop sides are ``int(short_side * s)`` for s in ``scales`` (snapped to the output size when
    within 3 px); a (w, h) pair is drawn among those whose scale indices differ by at most
    ``max_distort``; the offset is one of 13 fixed positions on a ((W-w)//4, (H-h)//4) grid
    (corners, centre, edge midpoints, quarter points).
    """
    oh, ow = _pair(size)
    sides = [int(min(height, width) * s) for s in scales]
    sides_h = [oh if abs(s - oh) < 3 else s for s in sides]
    sides_w = [ow if abs(s - ow) < 3 else s for s in sides]
    pairs = [(sides_w[i], sides_h[j]) for j in range(len(sides)) for i in range(len(sides))
             if abs(i - j) <= max_distort]
    grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0),
            (1, 1), (3, 1), (1, 3), (3, 3)]  # (x, y) in quarters of the free space
    pick = torch.randint(len(pairs), (batch,), generator=generator)
    where = torch.randint(len(grid), (batch,), generator=generator)
    boxes = []
    for p, g in zip(pick.tolist(), where.tolist()):
        cw, ch = pairs[p]
        x0, y0 = grid[g][0] * ((width - cw) // 4), grid[g][1] * ((height - ch) // 4)
        boxes.append((x0, y0, x0 + cw, y0 + ch))
    return torch.tensor(boxes, dtype=torch.float32)


def multi_scale_crop(x: torch.Tensor, size, scales=(1, 0.875, 0.75, 0.66), max_distort: int = 1,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``GroupMultiScaleCrop`` per clip (boxes from :func:`msc_params`), resized to ``size``."""
    boxes = msc_params(x.shape[0], x.shape[-2], x.shape[-1], size, scales, max_distort, generator)
    return crop_boxes(x, boxes, size)


def random_crop(x: torch.Tensor, size, generator: torch.Generator | None = None) -> torch.Tensor:
    """A ``size`` crop at a uniform position per clip, no resize (Tubelet-Contrast GroupRandomCrop)."""
    b, _, _, height, width = x.shape
    oh, ow = _pair(size)
    u = torch.rand(b, 2, generator=generator)
    y0 = (u[:, 0] * (height - oh + 1)).floor()
    x0 = (u[:, 1] * (width - ow + 1)).floor()
    return crop_boxes(x, torch.stack([x0, y0, x0 + ow, y0 + oh], 1), (oh, ow))


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear (antialiased) resize of every frame to ``size`` = (h, w) or an int for a square."""
    b, c, t, h, w = x.shape
    oh, ow = _pair(size)
    if (oh, ow) == (h, w):
        return x
    y = F.interpolate(_float_for_resize(x).reshape(b, c * t, h, w), size=(oh, ow), mode="bilinear",
                      antialias=True, align_corners=False)
    return _like(y.reshape(b, c, t, oh, ow), x)


def _float_for_resize(x: torch.Tensor) -> torch.Tensor:
    return x.float() if not x.is_floating_point() else x


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the short side is ``size``, aspect kept (SEVERE test: 128 = int(112/0.875))."""
    h, w = x.shape[-2:]
    if h <= w:
        return resize(x, (size, max(1, round(w * size / h))))
    return resize(x, (max(1, round(h * size / w)), size))


def center_crop(x: torch.Tensor, size) -> torch.Tensor:
    """The central ``size`` crop (offsets rounded like torchvision's ``center_crop``)."""
    oh, ow = _pair(size)
    h, w = x.shape[-2:]
    if oh > h or ow > w:
        raise ValueError(f"center_crop: crop {oh}x{ow} is larger than the frames {h}x{w}")
    top, left = int(round((h - oh) / 2.0)), int(round((w - ow) / 2.0))
    return x[..., top:top + oh, left:left + ow]


def three_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Three ``size`` squares along the long side (left/centre/right, or top/centre/bottom),
    VideoMAE's 3-crop test (sigma-videomae.md §3.4). (B, ...) -> (B*3, ...), views of a clip
    adjacent (``out.view(B, 3, ...)``)."""
    h, w = x.shape[-2:]
    if min(h, w) < size:
        raise ValueError(f"three_crop: crop {size} is larger than the short side of {h}x{w}")
    if w >= h:
        top = (h - size) // 2
        crops = [x[..., top:top + size, left:left + size] for left in (0, (w - size) // 2, w - size)]
    else:
        left = (w - size) // 2
        crops = [x[..., top:top + size, left:left + size] for top in (0, (h - size) // 2, h - size)]
    return torch.stack(crops, 1).flatten(0, 1)


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

def _fold_views(x: torch.Tensor):
    """(B, V, C, T, H, W) -> (B*V, C, T, H, W) and a function that restores the V axis."""
    if x.dim() == 6:
        b, v = x.shape[:2]
        return x.flatten(0, 1), lambda y: y.view(b, v, *y.shape[1:])
    if x.dim() != 5:
        raise ValueError(f"expected (B, C, T, H, W) or (B, V, C, T, H, W), got shape {tuple(x.shape)}")
    return x, lambda y: y


class TrainAugment:
    """RandomResizedCrop -> horizontal flip -> colour jitter (random order) -> grayscale -> Gaussian
    blur -> normalize.

    Defaults are SEVERE's fine-tuning recipe (§2.2): 112 crop, scale (0.08, 1), ratio (3/4, 4/3),
    flip p=0.5, ColorJitter(0.4, 0.4, 0.4, 0.2) (applied with ``jitter_p``), no blur, ImageNet mean/std.
    ``blur_p`` > 0 blurs a clip with sigma ``U(blur_sigma)`` pixels (MoCo v2: p 0.5, sigma 0.1-2).
    uint8 (B, C, T, H, W) or (B, V, C, T, H, W) -> float (..., C, T, size, size).
    """

    def __init__(self, size: int = 112, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True,
                 jitter=(0.4, 0.4, 0.4, 0.2), jitter_p: float = 0.8, grayscale_p: float = 0.0,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, blur_p: float = 0.0, blur_sigma=(0.1, 2.0)):
        self.size, self.scale, self.ratio, self.flip = size, tuple(scale), tuple(ratio), flip
        self.jitter, self.jitter_p, self.grayscale_p = tuple(jitter) if jitter else None, jitter_p, grayscale_p
        self.blur_p, self.blur_sigma = blur_p, tuple(blur_sigma)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x, unfold = _fold_views(x)
        x = random_resized_crop(_as_float(x), self.size, self.scale, self.ratio, generator)
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
        return (f"TrainAugment(size={self.size}, scale={self.scale}, ratio={self.ratio}, flip={self.flip}, "
                f"jitter={self.jitter}, jitter_p={self.jitter_p}, grayscale_p={self.grayscale_p}, "
                f"blur_p={self.blur_p}, blur_sigma={self.blur_sigma})")


class EvalTransform:
    """Short side -> ``short_side`` (default ``int(size / 0.875)``, SEVERE's 128 for 112), then one
    centre crop or three crops along the long side, then normalize.

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

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = _fold_views(x)
        x = resize_short_side(_as_float(x), self.short_side)
        x = center_crop(x, self.size) if self.crops == 1 else three_crop(x, self.size)
        return normalize(x, self.mean, self.std)

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size}, short_side={self.short_side}, crops={self.crops})"
