"""Tubelet-Contrast (Thoker, Doughty, Snoek, ICCV 2023, arXiv 2303.11003).

MoCo v2 whose positive pair is two clips of *different* videos carrying the same synthetic tubelets
(:mod:`vssl.methods.tubelets`), so the only thing the two views share is the tubelets' appearance
and motion. The view pipeline follows ``fmthoker/tubelet-contrast`` (tubelet-contrast.md §1, §3):

1. each background clip gets its own spatial augmentation (random crop, flip);
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
from vssl.data.photometric import tubelet_color_ops
from vssl.methods.moco import MoCo
from vssl.methods.tubelets import TubeletConfig, TubeletSynthesizer

if TYPE_CHECKING:
    from vssl.config import RunConfig


class TubeletContrast(MoCo):
    """Tubelet-contrastive learning. ``batch["video"]``: uint8 (B, C, T, H, W), B >= 2."""

    @dataclass
    class Config:
        queue_size: int = 16384
        momentum: float = 0.999
        temperature: float = 0.2
        proj_dim: int = 128
        hidden_dim: int = 0  # 0 = backbone feature_dim (Linear(512, 512) -> ReLU -> Linear(512, 128))
        bn: str = "shuffle"  # shuffle | sync | none (the reference converts to SyncBN)
        # per-clip spatial augmentation; the reference rescales to {149x112, 171x128, 192x144} and
        # crops 112x112, i.e. 45-75 % of the area with a mild aspect change
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
        cuda_graph_keys: bool = False  # replay the key encoder's forward from a CUDA graph (speed lever)

    num_clips = 1

    def __init__(self, cfg: Config, backbone: nn.Module, run: RunConfig):
        super().__init__()
        self._setup_moco(cfg, backbone, run)
        self.size = run.data.crop_size
        self.synthesize = TubeletSynthesizer(cfg.tubelets)

    @torch.no_grad()
    def make_views(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """uint8 (B, C, T, H, W) -> two normalised float views (B, C, T, S, S) and the tubelet info."""
        cfg = self.cfg
        x = video.float() / 255 if video.dtype == torch.uint8 else video.float()
        x = TF.random_resized_crop(x, self.size, tuple(cfg.crop_scale), tuple(cfg.crop_ratio))
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
        view1, view2, _ = self.make_views(video)
        return self.forward_loss(view1, view2)
