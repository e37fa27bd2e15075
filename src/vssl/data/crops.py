"""Crop boxes drawn per clip over the whole frame, and one batched crop-and-resize.

Clips keep their aspect ratio from decoding to here (no square pre-crop), so the boxes of every
reference pipeline cover the full width of a 16:9 video as the reference does. A batch of videos with
different frame sizes arrives padded to a common canvas (``vssl.data.collate``) with each clip's own
``sizes`` = (h, w); every sampler below draws its boxes inside each clip's own frame.

Samplers return (B, 4) float boxes (x1, y1, x2, y2) in the pixels of the decoded frame; random
parameters are drawn once per clip on the CPU from ``generator`` (the global RNG when None):

* :func:`rrc_params` — SEVERE fine-tuning (``RandomResizedCrop`` on native frames, severe-protocols.md §2.2);
* :func:`msc_params` — VideoMAE / SIGMA ``GroupMultiScaleCrop`` (13 fixed offsets, sigma-videomae.md §1.8);
* :func:`rescale_crop_params` — Tubelet-Contrast ``GroupScale`` to a fixed (w, h) then a random crop
  (tubelet-contrast.md §3);
* :func:`short_side_jitter_params` — PySlowFast (SEVERE's Charades code): inverse-uniform short side,
  random crop (severe-protocols.md §6);
* :func:`eval_boxes` — test crops after a short-side resize: one centre crop (SEVERE) or three crops
  spanning the long side (PySlowFast ``uniform_crop``).

A box drawn on a frame rescaled to some size maps back to the decoded frame by that rescale's
factors, so one ``roi_align`` resamples straight from the decoded pixels (:func:`crop_boxes`).
"""

from __future__ import annotations

import math

import torch
from torchvision.ops import roi_align


def _pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))


def frame_sizes(x: torch.Tensor, sizes: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2) int64 (h, w) of each clip of ``x`` (B, ..., H, W) on the CPU: ``sizes`` when given, else
    the tensor's own (H, W) for every clip."""
    if sizes is None:
        return torch.tensor([x.shape[-2:]], dtype=torch.long).expand(x.shape[0], 2)
    sizes = sizes.to("cpu", torch.long).reshape(-1, 2)
    if len(sizes) != x.shape[0]:
        raise ValueError(f"frame sizes: {len(sizes)} sizes for a batch of {x.shape[0]} clips")
    return sizes


def _uniform_int(n: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """An integer uniform in [0, n) per entry of ``n`` (>= 1), as float."""
    return (torch.rand(n.shape, generator=generator, dtype=torch.float64) * n).floor()


# --------------------------------------------------------------------------------------------------
# Training samplers
# --------------------------------------------------------------------------------------------------

def rrc_params(sizes: torch.Tensor, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator: torch.Generator | None = None,
               attempts: int = 10) -> torch.Tensor:
    """Boxes of ``RandomResizedCrop.get_params`` (torchvision; SEVERE's ``video_transforms`` copy): up to
    10 tries of area ``U(scale)`` x frame area and log-uniform aspect ``ratio``, position uniform over
    the frame; fallback = the whole frame clipped to the ratio range, centred."""
    h, w = sizes[:, 0:1].double(), sizes[:, 1:2].double()
    target = h * w * (scale[0] + (scale[1] - scale[0]) * torch.rand(len(sizes), attempts, generator=generator,
                                                                     dtype=torch.float64))
    log_r = torch.rand(len(sizes), attempts, generator=generator, dtype=torch.float64)
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * log_r)
    bw, bh = torch.sqrt(target * aspect).round(), torch.sqrt(target / aspect).round()
    ok = (bw > 0) & (bw <= w) & (bh > 0) & (bh <= h)
    first = ok.double().argmax(1, keepdim=True)  # the first valid try (0 when none)
    bw, bh, h, w = bw.gather(1, first)[:, 0], bh.gather(1, first)[:, 0], h[:, 0], w[:, 0]
    in_ratio = w / h
    fw = torch.where(in_ratio > max(ratio), (h * max(ratio)).round(), w)
    fh = torch.where(in_ratio < min(ratio), (w / min(ratio)).round(), h)
    found = ok.any(1)
    bw, bh = torch.where(found, bw, fw), torch.where(found, bh, fh)
    y0 = torch.where(found, _uniform_int(h - bh + 1, generator), ((h - bh) / 2).floor())
    x0 = torch.where(found, _uniform_int(w - bw + 1, generator), ((w - bw) / 2).floor())
    return torch.stack([x0, y0, x0 + bw, y0 + bh], 1).float()


#: GroupMultiScaleCrop's 13 offsets in quarters of the free space (x, y): corners, centre, edge
#: midpoints, quarter points (VideoMAE ``fill_fix_offset`` with ``more_fix_crop``)
_MSC_GRID = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3))


def msc_params(sizes: torch.Tensor, size, scales=(1, 0.875, 0.75, 0.66), max_distort: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Boxes of VideoMAE's ``GroupMultiScaleCrop``: crop sides ``int(short_side * s)`` for s in
    ``scales`` (snapped to the output size within 3 px), a (w, h) pair whose scale indices differ by at
    most ``max_distort``, at one of 13 offsets on a ((W-w)//4, (H-h)//4) grid of the whole frame."""
    oh, ow = _pair(size)
    pairs = [(i, j) for j in range(len(scales)) for i in range(len(scales)) if abs(i - j) <= max_distort]
    pick = torch.randint(len(pairs), (len(sizes),), generator=generator)
    where = torch.randint(len(_MSC_GRID), (len(sizes),), generator=generator)
    boxes = []
    for (height, width), p, g in zip(sizes.tolist(), pick.tolist(), where.tolist()):
        sides = [int(min(height, width) * s) for s in scales]
        i, j = pairs[p]
        cw = ow if abs(sides[i] - ow) < 3 else sides[i]
        ch = oh if abs(sides[j] - oh) < 3 else sides[j]
        x0, y0 = _MSC_GRID[g][0] * ((width - cw) // 4), _MSC_GRID[g][1] * ((height - ch) // 4)
        boxes.append((x0, y0, x0 + cw, y0 + ch))
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


#: Tubelet-Contrast ``GroupScale`` sizes (w, h) for a 112 crop (configs/moco/*/pretraining_mini_kinetics.py)
TUBELET_SCALES = ((149, 112), (171, 128), (192, 144))


def rescale_crop_params(sizes: torch.Tensor, size: int, scales=TUBELET_SCALES, reference: int = 112,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Boxes of Tubelet-Contrast's ``GroupScale`` + ``GroupRandomCrop``: the whole frame is resized to a
    fixed (w, h) drawn from ``scales`` (w and h swapped for portrait frames; the aspect ratio is not
    kept), then a ``size`` square is cropped at a uniform position. ``scales`` are given for a
    ``reference`` crop and scaled by ``size / reference`` (32 px clips keep the reference's geometry)."""
    table = torch.tensor(scales, dtype=torch.float64) * size / reference
    pick = table[torch.randint(len(scales), (len(sizes),), generator=generator)].round()
    h, w = sizes[:, 0].double(), sizes[:, 1].double()
    portrait = h > w
    sw = torch.where(portrait, pick[:, 1], pick[:, 0])
    sh = torch.where(portrait, pick[:, 0], pick[:, 1])
    y0 = _uniform_int(sh - size + 1, generator)
    x0 = _uniform_int(sw - size + 1, generator)
    fx, fy = w / sw, h / sh
    return torch.stack([x0 * fx, y0 * fy, (x0 + size) * fx, (y0 + size) * fy], 1).float()


def _rescaled(sizes: torch.Tensor, short: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, w) of frames whose short side is resized to ``short`` as PySlowFast does: the long side is
    ``floor(long / short_side * short)``; a frame whose short side already matches is left as is."""
    h, w = sizes[:, 0].double(), sizes[:, 1].double()
    portrait = w < h
    new_h = torch.where(portrait, (h / w * short).floor(), short)
    new_w = torch.where(portrait, short, (w / h * short).floor())
    same = torch.minimum(h, w) == short
    return torch.where(same, h, new_h), torch.where(same, w, new_w)


def short_side_jitter_params(sizes: torch.Tensor, size: int, short_side=(256, 340),
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """Boxes of PySlowFast's training ``spatial_sampling`` with ``INV_UNIFORM_SAMPLE``: short side
    ``round(1 / U(1/max, 1/min))``, then a ``size`` crop whose offsets are ``randint(0, side - size)``
    (numpy: the last position is never drawn; 0 when the side equals ``size``)."""
    lo, hi = short_side
    u = torch.rand(len(sizes), generator=generator, dtype=torch.float64)
    short = (1.0 / (1.0 / hi + u * (1.0 / lo - 1.0 / hi))).round()
    new_h, new_w = _rescaled(sizes, short)
    y0 = torch.where(new_h > size, _uniform_int((new_h - size).clamp(min=1), generator), torch.zeros_like(new_h))
    x0 = torch.where(new_w > size, _uniform_int((new_w - size).clamp(min=1), generator), torch.zeros_like(new_w))
    fy, fx = sizes[:, 0].double() / new_h, sizes[:, 1].double() / new_w
    return torch.stack([x0 * fx, y0 * fy, (x0 + size) * fx, (y0 + size) * fy], 1).float()


# --------------------------------------------------------------------------------------------------
# Test crops
# --------------------------------------------------------------------------------------------------

def eval_boxes(sizes: torch.Tensor, size: int, short_side: int, crops: int = 1) -> torch.Tensor:
    """(B * crops, 4) test boxes, the crops of a clip adjacent.

    The frame's short side is resized to ``short_side`` (long side ``round``-ed; unchanged when it
    already matches), then ``crops=1``: the centre ``size`` square at ``round((side - size) / 2)``
    (SEVERE / torchvision ``CenterCrop``); ``crops=3``: PySlowFast ``uniform_crop`` — offsets 0,
    ``ceil((L - size) / 2)`` and ``L - size`` along the long side, centred on the short one.
    """
    if crops not in (1, 3):
        raise ValueError(f"eval_boxes: crops must be 1 or 3, got {crops}")
    h, w = sizes[:, 0].double(), sizes[:, 1].double()
    short = torch.minimum(h, w)
    scale = short_side / short
    rh = torch.where(h == short, torch.full_like(h, short_side), (h * scale).round())
    rw = torch.where(w == short, torch.full_like(w, short_side), (w * scale).round())
    if (torch.minimum(rh, rw) < size).any():
        raise ValueError(f"eval_boxes: a {size} crop does not fit a short side of {short_side}")
    if crops == 1:
        tops, lefts = [((rh - size) / 2).round()], [((rw - size) / 2).round()]
    else:
        ch, cw = ((rh - size) / 2).ceil(), ((rw - size) / 2).ceil()
        tall = rh > rw
        zero = torch.zeros_like(rh)
        tops = [torch.where(tall, t, ch) for t in (zero, ch, rh - size)]
        lefts = [torch.where(tall, cw, x) for x in (zero, cw, rw - size)]
    fy, fx = h / rh, w / rw
    boxes = [torch.stack([x * fx, y * fy, (x + size) * fx, (y + size) * fy], 1) for y, x in zip(tops, lefts)]
    return torch.stack(boxes, 1).reshape(-1, 4).float()


# --------------------------------------------------------------------------------------------------
# Crop and resize
# --------------------------------------------------------------------------------------------------

def crop_boxes(x: torch.Tensor, boxes: torch.Tensor, size, index: torch.Tensor | None = None) -> torch.Tensor:
    """Crop box ``k`` (x1, y1, x2, y2 in pixels) from clip ``index[k]`` (default: clip ``k``) and resize
    it to ``size``.

    (B, C, T, H, W) and (N, 4) boxes -> (N, C, T, h, w) in the input's dtype (uint8 is rounded back).
    Boxes of the output's size at integer offsets are exact crops (sliced). Otherwise one ``roi_align``
    call (aligned, adaptive sampling: averages when shrinking, like an antialiased resize) reads, per
    box, only the window of pixels its bilinear samples touch (a one-pixel margin), so the float copy
    is the size of the boxes rather than of the whole (padded) frames; the result equals
    ``roi_align`` over the whole frames.
    """
    b, c, t, height, width = x.shape
    oh, ow = _pair(size)
    boxes = boxes.detach().to("cpu", torch.float64).reshape(-1, 4)
    rows = list(range(b)) if index is None else index.reshape(-1).tolist()
    if len(rows) != len(boxes):
        raise ValueError(f"crop_boxes: {len(boxes)} boxes for {len(rows)} clips")
    exact = torch.equal(boxes, boxes.round()) and bool(((boxes[:, 2] - boxes[:, 0]) == ow).all()
                                                       and ((boxes[:, 3] - boxes[:, 1]) == oh).all())
    if exact:
        corners = boxes[:, :2].long().tolist()
        return torch.stack([x[i, ..., y0:y0 + oh, x0:x0 + ow] for i, (x0, y0) in zip(rows, corners)])
    lo = (boxes[:, :2].floor() - 1).clamp(min=0)
    hi = torch.minimum(boxes[:, 2:].ceil() + 1, torch.tensor([width, height], dtype=torch.float64))
    ww, wh = (hi - lo).max(0).values.long().tolist()
    starts = torch.minimum(lo, torch.tensor([width - ww, height - wh], dtype=torch.float64)).clamp(min=0)
    windows = torch.stack([x[i, ..., y0:y0 + wh, x0:x0 + ww] for i, (x0, y0) in zip(rows, starts.long().tolist())])
    n = len(rows)
    flat = windows.reshape(n, c * t, wh, ww)
    flat = flat if flat.is_floating_point() else flat.float()
    rois = torch.cat([torch.arange(n, dtype=torch.float64)[:, None], boxes - starts.repeat(1, 2)], 1)
    out = roi_align(flat, rois.to(flat.device, flat.dtype), (oh, ow), spatial_scale=1.0, sampling_ratio=-1,
                    aligned=True).reshape(n, c, t, oh, ow)
    return out.round().clamp_(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else out


def center_crop(x: torch.Tensor, size) -> torch.Tensor:
    """The central ``size`` crop (offsets rounded like torchvision's ``center_crop``)."""
    oh, ow = _pair(size)
    h, w = x.shape[-2:]
    if oh > h or ow > w:
        raise ValueError(f"center_crop: crop {oh}x{ow} is larger than the frames {h}x{w}")
    top, left = int(round((h - oh) / 2.0)), int(round((w - ow) / 2.0))
    return x[..., top:top + oh, left:left + ow]


def random_resized_crop(x: torch.Tensor, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), sizes=None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """RandomResizedCrop per clip over its whole frame (SEVERE train: 112, scale (0.08, 1), §2.2)."""
    return crop_boxes(x, rrc_params(frame_sizes(x, sizes), scale, ratio, generator), size)


def multi_scale_crop(x: torch.Tensor, size, scales=(1, 0.875, 0.75, 0.66), max_distort: int = 1, sizes=None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``GroupMultiScaleCrop`` per clip over its whole frame, resized to ``size``."""
    return crop_boxes(x, msc_params(frame_sizes(x, sizes), size, scales, max_distort, generator), size)
