"""VideoMAE / SIGMA fine-tuning augmentation on batched clips: RandAugment, cube random erasing, mixup/cutmix.

SIGMA fine-tunes with VideoMAE's recipe (``QUVA-Lab/SIGMA: run_class_finetuning.py``, ``kinetics.py``
``_aug_frame``, ``rand_augment.py``, ``random_erasing.py``; sigma-videomae.md §3.3):

1. RandAugment ``rand-m7-n4-mstd0.5-inc1`` on the decoded frames: 4 ops drawn with replacement from the
   15 "increasing" ops, each applied with probability 0.5 at magnitude N(7, 0.5) clipped to [0, 10], with
   the same op, magnitude and sign for every frame of a clip (:func:`rand_augment`); geometric ops use
   bicubic sampling and fill with grey 128 (its ``_FILL``: the hparams set no ``img_mean``);
2. random resized crop (scale 0.25-1, ratio 3/4-4/3) and flip, normalisation (``TrainAugment``);
3. random erasing p 0.25, one box of 2-33 % of the frame (aspect 0.3-3.3), the same box in every frame,
   filled with per-pixel N(0, 1) noise (:func:`random_erasing`, ``cube=True``);
4. mixup 0.8 / cutmix 1.0 on the batch with label smoothing 0.1 (:func:`mixup_clips`, timm's ``Mixup``).

Random draws use Python's ``random`` (op choice, probabilities, magnitudes, boxes), which the engine
seeds and checkpoints, and NumPy's (timm's ``Mixup``).
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from vssl.data.collate import pad_frames
from vssl.data.crops import frame_sizes

MAX_LEVEL = 10.0
FILL = 128  # rand_augment.py _FILL (128, 128, 128)
#: timm's ``_RAND_INCREASING_TRANSFORMS`` ("inc1")
INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                  "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                  "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


def _signed(v: float, rng) -> float:
    return -v if rng.random() > 0.5 else v


def op_argument(name: str, level: float, rng=random):
    """The argument of op ``name`` at magnitude ``level`` in [0, 10] (timm's ``*_level_to_arg``), with
    its random sign where the op has one; None for ops without an argument."""
    x = level / MAX_LEVEL
    if name == "Rotate":
        return _signed(x * 30.0, rng)  # degrees
    if name in ("ShearX", "ShearY"):
        return _signed(x * 0.3, rng)
    if name in ("TranslateXRel", "TranslateYRel"):
        return _signed(x * 0.45, rng)  # fraction of the width / height
    if name.endswith("Increasing") and name[:-10] in ("Color", "Contrast", "Brightness", "Sharpness"):
        return 1.0 + _signed(x * 0.9, rng)  # enhancement factor
    if name == "PosterizeIncreasing":
        return 4 - int(x * 4)  # bits kept
    if name == "SolarizeIncreasing":
        return 256 - int(x * 256)  # threshold
    if name == "SolarizeAdd":
        return int(x * 110)
    return None


def _warp(frames: torch.Tensor, matrix) -> torch.Tensor:
    """PIL's ``Image.transform(AFFINE, (a, b, c, d, e, f))`` on uint8 (T, C, H, W): the output pixel centred
    at (x, y) samples the input at (a x + b y + c, d x + e y + f), bicubic, grey outside."""
    t, c, h, w = frames.shape
    a, b, cc, d, e, f = matrix
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5,
                            indexing="ij")
    u, v = a * xs + b * ys + cc, d * xs + e * ys + f
    grid = torch.stack([2 * u / w - 1, 2 * v / h - 1], -1).to(frames.device, torch.float32)
    x = frames.float()
    sampled = F.grid_sample(x, grid.expand(t, h, w, 2), mode="bicubic", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(torch.ones_like(x[:, :1]), grid.expand(t, h, w, 2), mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    out = torch.where(inside > 0.5, sampled, torch.full_like(sampled, FILL))
    return out.round_().clamp_(0, 255).to(torch.uint8)


def apply_op(frames: torch.Tensor, name: str, arg) -> torch.Tensor:
    """One RandAugment op with its argument on the uint8 frames (T, C, H, W) of a clip (PIL semantics
    per frame: AutoContrast and Equalize use each frame's own histogram)."""
    h, w = frames.shape[-2:]
    if name == "AutoContrast":
        return TF.autocontrast(frames)
    if name == "Equalize":
        return TF.equalize(frames)
    if name == "Invert":
        return TF.invert(frames)
    if name == "PosterizeIncreasing":
        return frames if arg >= 8 else TF.posterize(frames, max(int(arg), 0))
    if name == "SolarizeIncreasing":
        return TF.solarize(frames, arg)
    if name == "SolarizeAdd":
        return torch.where(frames < 128, (frames.int() + arg).clamp(max=255).to(torch.uint8), frames)
    if name == "ColorIncreasing":
        return TF.adjust_saturation(frames, arg)
    if name == "ContrastIncreasing":
        return TF.adjust_contrast(frames, arg)
    if name == "BrightnessIncreasing":
        return TF.adjust_brightness(frames, arg)
    if name == "SharpnessIncreasing":
        return TF.adjust_sharpness(frames, arg)
    if name == "Rotate":  # PIL rotates counter-clockwise about the centre (w/2, h/2)
        angle = -math.radians(arg)
        cos, sin = math.cos(angle), math.sin(angle)
        cx, cy = w / 2, h / 2
        return _warp(frames, (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy))
    if name == "ShearX":
        return _warp(frames, (1, arg, 0, 0, 1, 0))
    if name == "ShearY":
        return _warp(frames, (1, 0, 0, arg, 1, 0))
    if name == "TranslateXRel":
        return _warp(frames, (1, 0, arg * w, 0, 1, 0))
    if name == "TranslateYRel":
        return _warp(frames, (1, 0, 0, 0, 1, arg * h))
    raise ValueError(f"unknown RandAugment op {name!r}")


def rand_augment(x: torch.Tensor, num_ops: int = 4, magnitude: float = 7.0, magnitude_std: float = 0.5,
                 p: float = 0.5, rng=random, sizes: torch.Tensor | None = None) -> torch.Tensor:
    """RandAugment per clip on uint8 (B, C, T, H, W): ``num_ops`` ops drawn with replacement from
    :data:`INCREASING_OPS`, each applied with probability ``p`` at magnitude ``N(magnitude,
    magnitude_std)`` clipped to [0, 10]; one draw per clip for all its frames. In a padded batch of
    frame sizes ``sizes`` (B, 2) each clip is augmented on its own frame (rotation centre, translation
    fraction, histograms), then padded again."""
    if x.dtype != torch.uint8:
        raise ValueError("rand_augment works on uint8 clips (PIL's 0-255 arithmetic)")
    height, width = x.shape[-2:]
    out = []
    for clip, (h, w) in zip(x.transpose(1, 2), frame_sizes(x, sizes).tolist()):  # (T, C, H, W)
        clip = clip[..., :h, :w]
        for name in rng.choices(INCREASING_OPS, k=num_ops):
            if rng.random() > p:
                continue
            level = rng.gauss(magnitude, magnitude_std) if magnitude_std > 0 else magnitude
            clip = apply_op(clip, name, op_argument(name, min(MAX_LEVEL, max(0.0, level)), rng))
        out.append(pad_frames(clip, height, width))
    return torch.stack(out).transpose(1, 2)


def random_erasing(x: torch.Tensor, p: float = 0.25, area=(0.02, 1 / 3), min_aspect: float = 0.3,
                   rng=random) -> torch.Tensor:
    """VideoMAE's cube random erasing on normalised float clips (B, C, T, H, W): with probability ``p``
    one box (area ``U(area)`` of the frame, aspect ``exp(U(log a, -log a))``, up to 100 tries to fit) is
    the same for every frame of a clip and filled with fresh N(0, 1) noise per pixel and frame."""
    b, c, t, h, w = x.shape
    out = x.clone()
    log_ratio = (math.log(min_aspect), math.log(1 / min_aspect))
    for i in range(b):
        if rng.random() > p:
            continue
        for _ in range(100):
            target = rng.uniform(*area) * h * w
            aspect = math.exp(rng.uniform(*log_ratio))
            bh, bw = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if bw < w and bh < h:
                top, left = rng.randint(0, h - bh), rng.randint(0, w - bw)
                out[i, :, :, top:top + bh, left:left + bw] = torch.randn(c, t, bh, bw, device=x.device,
                                                                          dtype=x.dtype)
                break
    return out


def mixup_clips(x: torch.Tensor, labels: torch.Tensor, mixer) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's ``Mixup`` (batch mode) on clips (B, C, T, H, W): frames are folded into the channels, so
    a cutmix box is the same in every frame. Returns the mixed clips and soft targets (B, classes)."""
    b, c, t, h, w = x.shape
    mixed, targets = mixer(x.reshape(b, c * t, h, w).contiguous(), labels)
    return mixed.reshape(b, c, t, h, w), targets


__all__ = ["INCREASING_OPS", "op_argument", "apply_op", "rand_augment", "random_erasing", "mixup_clips"]
