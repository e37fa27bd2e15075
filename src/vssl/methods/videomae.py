"""VideoMAE (Tong et al., "VideoMAE: Masked Autoencoders are Data-Efficient Learners for
Self-Supervised Video Pre-Training", NeurIPS 2022; ``MCG-NJU/VideoMAE: modeling_pretrain.py``,
``engine_for_pretraining.py``).

Tube masking at ratio 0.9 (the same spatial positions masked in every temporal slot), the encoder
(``backbone.forward_tokens``) sees only the visible tokens, then ``encoder.norm`` and a bias-free
``encoder_to_decoder`` projection; a narrow decoder (ViT-B: 384 wide, 4 blocks, 6 heads) with its own
sinusoid positions and a mask token predicts the masked tubes only; the target is each tube's pixels
normalised per tube and per colour channel; the loss is MSE on masked tokens (sigma-videomae.md §1).
Module names follow the original checkpoints (``encoder_to_decoder``, ``mask_token``,
``decoder.blocks.*``, ``decoder.norm``, ``decoder.head``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from vssl.data import transforms as TF
from vssl.data.crops import multi_scale_crop
from vssl.errors import ConfigError
from vssl.methods.contract import decay_groups
from vssl.methods.masking import pixel_targets, tube_mask
from vssl.models.vit import Block, gather_rows, sinusoid_table, visible_indices

if TYPE_CHECKING:
    from vssl.config import RunConfig


class Decoder(nn.Module):
    """VideoMAE's pretraining decoder: blocks -> LayerNorm -> Linear head on the last ``n`` tokens."""

    def __init__(self, dim: int, depth: int, num_heads: int, out_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, num_heads, 4.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, num_last: int) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x[:, -num_last:]))  # predict the masked tokens only


class VideoMAE(nn.Module):
    """Masked video autoencoder around a vssl ViT backbone (``vit_tiny``/``vit_s``/``vit_b``)."""

    @dataclass
    class Config:
        mask_ratio: float = 0.9  # tube masking (UCF101 script: 0.75)
        decoder_dim: int = 384  # ViT-B 384 / ViT-S 192
        decoder_depth: int = 4
        decoder_heads: int = 6  # ViT-B 6 / ViT-S 3
        normalize_target: bool = True  # per tube, per channel (unbiased std + 1e-6)
        scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])  # GroupMultiScaleCrop
        flip: bool = False  # VideoMAE: no flip, no colour jitter

    num_clips = 1
    pad = "hold"  # short videos repeat the last frame the clip reached (VideoMAE's loader)

    def __init__(self, cfg: Config, backbone: nn.Module, run: RunConfig, out_dim: int | None = None):
        super().__init__()
        if not hasattr(backbone, "forward_tokens"):
            raise ConfigError(f"{type(self).__name__} needs a ViT backbone (vit_tiny, vit_s, vit_b)")
        if not 0.0 < cfg.mask_ratio < 1.0:
            raise ConfigError(f"method.mask_ratio: expected a value in (0, 1), got {cfg.mask_ratio}")
        self.cfg, self.size = cfg, run.data.crop_size
        self.backbone = backbone
        # fc_norm (the pooled features' norm) is unused in pretraining; VideoMAE's fine-tuning starts
        # it fresh. Frozen so that DDP sees no parameter without a gradient.
        if hasattr(backbone, "fc_norm"):
            backbone.fc_norm.requires_grad_(False)
        dim, p0, p = backbone.embed_dim, backbone.tubelet_size, backbone.patch_size
        self.pixel_dim = p0 * p * p * 3  # 1536 at 2x16x16
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.encoder_to_decoder = nn.Linear(dim, cfg.decoder_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.decoder = Decoder(cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads, out_dim or self.pixel_dim)
        for m in self.decoder.modules():  # VideoMAE: xavier-uniform Linear, zero bias
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self._pos: dict[tuple, torch.Tensor] = {}

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups as VideoMAE: no decay on biases, norms (1-D) and the mask token."""
        return decay_groups(self, weight_decay, no_decay={"mask_token"})

    def augment(self, video: torch.Tensor, sizes: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 (B, C, T, H, W) (frame sizes (B, 2) of a padded batch) -> float [0, 1] (B, C, T, S, S):
        multi-scale crop over the whole frame (+ optional flip)."""
        x = multi_scale_crop(video, self.size, tuple(self.cfg.scales), sizes=sizes)
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return TF.horizontal_flip(x, 0.5) if self.cfg.flip else x

    def decoder_pos(self, num: int, device) -> torch.Tensor:
        if torch.compiler.is_compiling():  # built in the graph: a cache write there would be guarded on
            return sinusoid_table(num, self.cfg.decoder_dim, device)[None]  # (a recompile)
        key = (num, device)
        if key not in self._pos:
            self._pos[key] = sinusoid_table(num, self.cfg.decoder_dim).to(device)[None]
        return self._pos[key]

    def predict(self, x: torch.Tensor, mask: torch.Tensor, num_masked: int | None = None) -> torch.Tensor:
        """Normalised clips (B, C, T, H, W) and mask (B, N) -> decoder output for masked tokens
        (B, N_masked, out_dim), in token order.

        ``num_masked``: masked tokens per sample; None = read from the mask on CPU, else the count
        ``make_mask`` gives (no host synchronisation on a GPU; a foreign mask there must pass it).
        """
        b = x.shape[0]
        order, num_masked = self.token_order(x, mask, num_masked)
        num_visible = mask.shape[1] - num_masked
        tokens = self.encoder_norm(self.backbone.forward_tokens(x, order[:, :num_visible]))  # visible only
        tokens = self.encoder_to_decoder(tokens)
        pos = self.decoder_pos(mask.shape[1], x.device).to(tokens.dtype)[0]
        # visible tokens first, masked after, each group in original order (no unshuffle needed)
        x_dec = torch.cat([tokens + pos[order[:, :num_visible]],
                           self.mask_token.to(tokens.dtype) + pos[order[:, num_visible:]]], dim=1)
        return self.decoder(x_dec, num_masked)

    def masked_count(self, x: torch.Tensor) -> int:
        """Masked tokens per sample of ``make_mask(x)`` (``tube_mask``'s exact count)."""
        t, h, w = self.backbone.grid(x.shape)
        return t * int(self.cfg.mask_ratio * h * w)

    def token_order(self, x: torch.Tensor, mask: torch.Tensor, num_masked: int | None = None
                    ) -> tuple[torch.Tensor, int]:
        """(B, N) int64 token indices, the visible ones first then the masked ones (each in token
        order), and the masked count, without a host synchronisation when ``num_masked`` is known
        or the mask is on a GPU (then ``make_mask``'s count is assumed; checked on CPU)."""
        if num_masked is None:
            if mask.device.type == "cpu":
                counts = mask.sum(1)
                if bool((counts != counts[0]).any()):
                    raise ValueError("mask must hide the same number of tokens in every sample")
                num_masked = int(counts[0])
            else:
                num_masked = self.masked_count(x)
        order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)  # False (visible) first
        return order, num_masked

    def make_mask(self, x: torch.Tensor) -> torch.Tensor:
        return tube_mask(x.shape[0], self.backbone.grid(x.shape), self.cfg.mask_ratio, x.device)

    def training_step(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x01 = self.augment(batch["video"], batch.get("frame_size"))
        return self.forward_loss(x01, self.make_mask(x01), self.masked_count(x01))

    def forward_loss(self, x01: torch.Tensor, mask: torch.Tensor, num_masked: int
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Augmented clips in [0, 1] and their tube mask (``num_masked`` per sample) -> (loss, logs).

        No host synchronisation: tokens are gathered by index and the logs are 0-dim tensors that
        the engine reads in one transfer, so ``torch.compile`` can take it as one graph."""
        pred = self.predict(TF.normalize(x01), mask, num_masked)
        with torch.no_grad():
            target = pixel_targets(x01, self.backbone.tubelet_size, self.backbone.patch_size,
                                   self.cfg.normalize_target)
            target = gather_rows(target, visible_indices(mask, num_masked))  # the masked tubes, in order
        loss = F.mse_loss(pred.float(), target)
        return loss, {"loss": loss.detach(), "mask_ratio": mask.float().mean()}


__all__ = ["VideoMAE", "Decoder"]
