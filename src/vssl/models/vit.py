"""VideoMAE-style video Vision Transformer: tube embedding, fixed sinusoid positions, pre-LN blocks.

Follows ``MCG-NJU/VideoMAE: modeling_finetune.py`` (Tong et al., "VideoMAE: Masked Autoencoders are
Data-Efficient Learners for Self-Supervised Video Pre-Training", NeurIPS 2022), which SIGMA (Salehi et al.,
ECCV 2024) reuses unchanged:

- tube embedding: Conv3d with kernel = stride = (tubelet 2, patch 16, patch 16), with bias; tokens in
  ``t*h*w + h*w + w`` order; no CLS token (16x224x224 -> 8x14x14 = 1568 tokens);
- a *fixed* 1-D sinusoid table over the flattened positions, sin on even channels and cos on odd ones
  (not a parameter: absent from state dicts). It is laid out on the token grid the model was pretrained
  on (``pos_grid``; VideoMAE/SIGMA: 16 frames at 224 px = 8x14x14); another input grid gets that table
  resampled in 3-D (:func:`position_table`), so a token keeps the position of its place in the
  pretraining grid instead of indexing the flat table in another layout;
- pre-LN blocks, ``qkv`` Linear without bias plus ``q_bias``/``v_bias`` (no key bias), exact GELU MLP
  with ratio 4, LayerNorm eps 1e-6;
- pooled output = mean over tokens -> ``fc_norm`` (``use_mean_pooling``).

ViT-S: 384/12/6 (~22 M); ViT-B: 768/12/12 (~87 M) (sigma-videomae.md §1.4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def sinusoid_table(num_positions: int, dim: int, device: torch.device | str | None = None) -> Tensor:
    """VideoMAE's ``get_sinusoid_encoding_table``: (num_positions, dim) float32.

    angle(p, j) = p / 10000^(2*floor(j/2)/dim); even j -> sin, odd j -> cos (interleaved), computed in
    float64 and cast to float32 exactly like the reference (on ``device``: CPU by default).
    """
    pos = torch.arange(num_positions, dtype=torch.float64, device=device)[:, None]
    j = torch.arange(dim, dtype=torch.float64, device=device)
    angles = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.empty(num_positions, dim, dtype=torch.float64, device=device)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


def position_table(grid: tuple[int, int, int], dim: int, pos_grid: tuple[int, int, int] | None = None,
                   device: torch.device | str | None = None) -> Tensor:
    """The fixed position embeddings (N, dim) of a token grid (t, h, w), N = t*h*w in token order.

    The sinusoid table belongs to ``pos_grid`` (default: ``grid`` itself): its N' rows are laid out as a
    (t', h', w') volume, and for another ``grid`` the volume is resampled trilinearly (``align_corners``
    False: cell centres map to cell centres) to (t, h, w). VideoMAE's fine-tuning interpolates a
    checkpoint's position table the same way, spatially per frame (``run_class_finetuning.py``); time
    is resampled here too, as SEVERE's 32-frame clips double the temporal grid.
    """
    grid = tuple(int(g) for g in grid)
    if pos_grid is None or tuple(pos_grid) == grid:
        return sinusoid_table(math.prod(grid), dim, device)
    t, h, w = (int(g) for g in pos_grid)
    volume = sinusoid_table(t * h * w, dim, device).reshape(1, t, h, w, dim).permute(0, 4, 1, 2, 3)
    out = F.interpolate(volume.double(), size=grid, mode="trilinear", align_corners=False)
    return out.permute(0, 2, 3, 4, 1).reshape(-1, dim).float()


CHECK_VISIBLE = False  # check the equal-count rule of bool masks on GPUs too (one host sync per call)


def visible_indices(keep: Tensor, n: int | None = -1) -> Tensor:
    """Indices (B, n) of the True entries of a bool (B, N) mask, in token order, without ``nonzero``.

    ``n``: the known count per row (no host synchronisation); -1 = read it from the mask (free on
    CPU, a sync on a GPU), checking that every row keeps the same count on CPU or with
    ``CHECK_VISIBLE``; None = the same without any check (under ``torch.compile``).
    A stable descending argsort puts a row's True entries first, in their original order.
    """
    if n is None or n < 0:
        check = n is not None and (keep.device.type == "cpu" or CHECK_VISIBLE)
        counts = keep.sum(1)
        if check and bool((counts != counts[0]).any()):
            raise ValueError("visible mask must keep the same number of tokens in every sample")
        n = int(counts[0]) if keep.shape[0] else 0
    return torch.argsort(keep.to(torch.uint8), dim=1, descending=True, stable=True)[:, :n]


def gather_rows(x: Tensor, idx: Tensor) -> Tensor:
    """(B, N, D) and int64 (B, n) -> (B, n, D): ``x[b, idx[b]]`` (``torch.gather``, no host sync)."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def init_weights(m: nn.Module) -> None:
    """VideoMAE's ``_init_weights``: xavier-uniform Linear, zero biases, unit LayerNorm; convs keep defaults.

    Apply with ``module.apply(init_weights)`` (the VideoMAE/SIGMA decoder uses it too).
    """
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class Attention(nn.Module):
    """Multi-head self-attention with VideoMAE's bias layout: ``qkv`` (no bias) + ``q_bias`` + ``v_bias``."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + DropPath(Attn(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden_features=int(round(dim * mlp_ratio)), act_layer=nn.GELU, drop=drop)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Tube embedding: Conv3d with kernel = stride = (tubelet, patch, patch), then (B, N, D) in t*h*w order."""

    def __init__(self, patch_size: int = 16, tubelet_size: int = 2, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """VideoMAE encoder. Input (B, C, T, H, W); tokens (B, N, D) with N = T/tubelet * H/patch * W/patch.

    Args:
        patch_size, tubelet_size: tube embedding kernel (tubelet, patch, patch).
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: transformer shape.
        drop_rate, attn_drop_rate: dropouts; drop_path_rate: stochastic depth, linear in depth from 0.
        norm_eps: eps of the blocks' LayerNorms (1e-6 in VideoMAE; HF uses ``config.layer_norm_eps``).
        fc_norm_eps: eps of the pooled ``fc_norm`` (1e-6 in VideoMAE; HF's ``fc_norm`` uses 1e-5).
        grad_checkpointing: recompute blocks in backward (saves activation memory when training).
        pos_grid: the token grid (t, h, w) the position table is laid out on, i.e. the grid of the
            pretraining clips; other input grids resample it (:func:`position_table`). None = every
            grid gets its own flat table.
    """

    def __init__(self, patch_size: int = 16, tubelet_size: int = 2, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 norm_eps: float = 1e-6, fc_norm_eps: float = 1e-6, grad_checkpointing: bool = False,
                 pos_grid: tuple[int, int, int] | list[int] | None = None) -> None:
        super().__init__()
        self.pos_grid = tuple(int(g) for g in pos_grid) if pos_grid else None
        if self.pos_grid is not None and len(self.pos_grid) != 3:
            raise ValueError(f"pos_grid must be (t, h, w), got {pos_grid!r}")
        self.patch_size, self.tubelet_size = int(patch_size), int(tubelet_size)
        self.embed_dim = self.feature_dim = int(embed_dim)
        self.num_heads, self.depth = int(num_heads), int(depth)
        self.grad_checkpointing = grad_checkpointing
        self.patch_embed = PatchEmbed(patch_size, tubelet_size, in_chans, embed_dim)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear in depth
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[i], norm_eps)
            for i in range(depth)
        ])
        self.fc_norm = nn.LayerNorm(embed_dim, eps=fc_norm_eps)
        self._pos_cache: dict[tuple, Tensor] = {}  # (grid, device, dtype) -> (1, N, D); not in state_dict
        self.apply(init_weights)

    def grid(self, x_shape) -> tuple[int, int, int]:
        """Token grid (t, h, w) for an input of shape (..., T, H, W)."""
        T, H, W = (int(s) for s in x_shape[-3:])
        if T % self.tubelet_size or H % self.patch_size or W % self.patch_size:
            raise ValueError(f"input T x H x W = {T}x{H}x{W} is not divisible by tubelet {self.tubelet_size} "
                             f"x patch {self.patch_size} x {self.patch_size}")
        return T // self.tubelet_size, H // self.patch_size, W // self.patch_size

    def pos_embed(self, grid: tuple[int, int, int], device, dtype) -> Tensor:
        if torch.compiler.is_compiling():  # built in the graph: a cache write there would be guarded on
            return position_table(grid, self.embed_dim, self.pos_grid, device).to(dtype)[None]  # (a recompile)
        key = (grid, device, dtype)
        table = self._pos_cache.get(key)
        if table is None:
            table = position_table(grid, self.embed_dim, self.pos_grid).to(device=device, dtype=dtype)[None]
            self._pos_cache[key] = table
        return table

    def forward_tokens(self, x: Tensor, visible: Tensor | None = None) -> Tensor:
        """(B, C, T, H, W) -> (B, N, D) after the last block, before any final norm.

        ``visible``: optional bool (B, N), True = keep; every sample must keep the same number of tokens
        (checked on CPU, or everywhere with ``vssl.models.vit.CHECK_VISIBLE``). Or int64 (B, n): the
        indices of the kept tokens (``visible_indices``), which needs no host synchronisation (a bool
        mask on a GPU costs one, to read the count). Kept tokens stay in token order.
        Positions are added before masking, as in VideoMAE.
        """
        grid = self.grid(x.shape)
        x = self.patch_embed(x)
        x = x + self.pos_embed(grid, x.device, x.dtype)
        if visible is not None:
            B, N, D = x.shape
            if visible.dtype != torch.bool and not visible.is_floating_point():
                if visible.dim() != 2 or visible.shape[0] != B:
                    raise ValueError(f"visible indices have shape {tuple(visible.shape)}, expected ({B}, n)")
                idx = visible.to(x.device)
            else:
                if visible.shape != (B, N):
                    raise ValueError(f"visible mask has shape {tuple(visible.shape)}, expected {(B, N)}")
                visible = visible.to(device=x.device, dtype=torch.bool)
                idx = visible_indices(visible, None if torch.compiler.is_compiling() else -1)
            x = gather_rows(x, idx)
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) -> (B, D): mean over tokens, then ``fc_norm``."""
        return self.fc_norm(self.forward_tokens(x).mean(dim=1))


# Named variants ------------------------------------------------------------------------------------

#: the token grid of VideoMAE/SIGMA pretraining: 16 frames at 224 px, tubelet 2, patch 16
VIDEOMAE_GRID = (8, 14, 14)


def vit_tiny(**kwargs) -> VisionTransformer:
    """Tiny ViT for CPU tests/demos: 96/4/3, patch 8, tubelet 2 (0.49 M params; 64 tokens at 8x32x32);
    positions laid out on the 8x4x4 grid of its 16x32x32 pretraining recipes."""
    return VisionTransformer(**{**dict(patch_size=8, embed_dim=96, depth=4, num_heads=3, pos_grid=(8, 4, 4)),
                                **kwargs})


def vit_s(**kwargs) -> VisionTransformer:
    """ViT-S/16, tubelet 2: 384/12/6 (~22 M params), VideoMAE/SIGMA ViT-S, positions on 8x14x14."""
    return VisionTransformer(**{**dict(embed_dim=384, depth=12, num_heads=6, pos_grid=VIDEOMAE_GRID), **kwargs})


def vit_b(**kwargs) -> VisionTransformer:
    """ViT-B/16, tubelet 2: 768/12/12 (~87 M params), VideoMAE/SIGMA ViT-B, positions on 8x14x14."""
    return VisionTransformer(**{**dict(embed_dim=768, depth=12, num_heads=12, pos_grid=VIDEOMAE_GRID), **kwargs})
