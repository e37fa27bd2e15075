"""Tubelet-Contrast (Thoker, Doughty, Snoek, ICCV 2023, arXiv 2303.11003).

MoCo v2 whose positive pair is two clips of *different* videos carrying the same synthetic tubelets
(:mod:`vssl.methods.tubelets`), so the only thing the two views share is the tubelets' appearance
and motion. The view pipeline follows ``fmthoker/tubelet-contrast`` (tubelet-contrast.md §1, §3):

1. each background clip gets its own spatial augmentation: the whole frame rescaled to a fixed size
   drawn from {149x112, 171x128, 192x144}, a random 112 crop, a flip; its own temporal sampling too
   (a stride drawn from ``data.strides`` with per-index ``data.jitter``; short videos clamp to the
   last frame), so the two backgrounds of a pair play at different speeds under the same tubelets;
2. the tubelets (cut from clip 1) are pasted at identical positions on clip 1 and on a clip of
   another video of the batch;
3. the same colour ops for both views and all frames (three independent ops with p 0.2: brightness
   +-32/255, contrast x exp(U(-.2, .2)), hue +-24 degrees with saturation x exp(U(-.1, .1)),
   :func:`vssl.data.photometric.tubelet_color_ops`); ImageNet normalisation;
4. MoCo: query = view 1, key = view 2, queue 16384, m 0.999, tau 0.2, 128-d MLP head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from vssl.data import transforms as TF
from vssl.data.crops import TUBELET_SCALES, crop_boxes, frame_sizes, rescale_crop_params, rrc_params
from vssl.data.photometric import tubelet_color_ops
from vssl.errors import ConfigError
from vssl.methods.moco import MoCo, MoCoConfig
from vssl.methods.tubelets import TubeletConfig, TubeletSynthesizer

if TYPE_CHECKING:
    from vssl.config import RunConfig


class TubeletContrast(MoCo):
    """Tubelet-contrastive learning. ``batch["video"]``: uint8 (B, C, T, H, W), B >= 2."""

    @dataclass
    class Config(MoCoConfig):
        # per-clip spatial augmentation: "rescale" = the reference's GroupScale of the whole frame to a
        # (w, h) of `scales` (given for a 112 crop, scaled to data.crop_size) + a random crop;
        # "rrc" = a random resized crop of crop_scale / crop_ratio (the tiny CPU recipe's choice)
        crop: str = "rescale"
        scales: list[list[int]] = field(default_factory=lambda: [list(s) for s in TUBELET_SCALES])
        crop_scale: list[float] = field(default_factory=lambda: [0.45, 0.75])
        crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
        flip: bool = True
        # shared colour ops after the tubelets: the reference's three independent ops, each with this
        # probability (brightness +-32/255, contrast x exp(U(-.2, .2)), hue +-24 deg and saturation
        # x exp(U(-.1, .1)))
        color_p: float = 0.2
        # optional ColorJitter-style jitter (random op order, p jitter_p) instead: off in the reference
        jitter: list[float] = field(default_factory=lambda: [0.25, 0.2, 0.1, 0.067])
        jitter_p: float = 0.0
        grayscale_p: float = 0.0  # not used by the reference; a cue-removal option (pilot study)
        tubelets: TubeletConfig = field(default_factory=TubeletConfig)

    num_clips = 1
    pad = "clamp"  # RandomFrameSampler: indices past the end become the last frame

    def __init__(self, cfg: Config, backbone: nn.Module, run: RunConfig):
        super().__init__()
        if cfg.crop not in ("rescale", "rrc"):
            raise ConfigError(f"method.crop: expected rescale or rrc, got {cfg.crop!r}")
        self._setup_moco(cfg, backbone, run)
        self.size = run.data.crop_size
        self.synthesize = TubeletSynthesizer(cfg.tubelets)

    def background_boxes(self, sizes: torch.Tensor) -> torch.Tensor:
        """(B, 4) background crop boxes for clips of frame sizes (B, 2)."""
        cfg = self.cfg
        if cfg.crop == "rescale":
            return rescale_crop_params(sizes, self.size, [tuple(s) for s in cfg.scales])
        return rrc_params(sizes, tuple(cfg.crop_scale), tuple(cfg.crop_ratio))

    @torch.no_grad()
    def make_views(self, video: torch.Tensor, sizes: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """uint8 (B, C, T, H, W) (frame sizes (B, 2) of a padded batch) -> two normalised float views
        (B, C, T, S, S) and the tubelet info."""
        cfg = self.cfg
        x = crop_boxes(video, self.background_boxes(frame_sizes(video, sizes)), self.size)
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if cfg.flip:
            x = TF.horizontal_flip(x, 0.5)
        v1, v2, info = self.synthesize(x)  # same tubelets on clip i and on clip partner[i]
        t = v1.shape[2]
        both = torch.cat([v1, v2], dim=2).clamp_(0, 1)  # one clip per pair: shared jitter parameters
        if cfg.color_p > 0:
            both = tubelet_color_ops(both, cfg.color_p)
        if cfg.jitter_p > 0:
            both = TF.color_jitter(both, *cfg.jitter, p=cfg.jitter_p)
        if cfg.grayscale_p > 0:
            both = TF.random_grayscale(both, cfg.grayscale_p)
        both = TF.normalize(both)
        return both[:, :, :t], both[:, :, t:], info

    def training_step(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        video = batch["video"]
        if video.dim() != 5 or video.shape[0] < 2:
            raise ValueError(f"tubelet_contrast expects (B, C, T, H, W) clips with B >= 2, got {tuple(video.shape)}")
        view1, view2, _ = self.make_views(video, batch.get("frame_size"))
        return self.forward_loss(view1, view2)
