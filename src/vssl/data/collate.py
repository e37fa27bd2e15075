"""Batches of clips whose frames differ in size.

Clips keep their aspect ratio from decoding (a 16:9, a 4:3 and a portrait video give three frame
sizes at the same short side), so a batch cannot simply be stacked. :func:`collate_clips` pads every
clip to the batch's largest (H, W) and records each clip's own (h, w) in ``batch["frame_size"]``; the
crop samplers (:mod:`vssl.data.crops`) then draw boxes inside each clip's own frame.

Padding replicates a clip's last row and column rather than adding zeros: bilinear sampling at a
frame's border reads one pixel past it, and ``roi_align`` clamps to the edge of an unpadded tensor, so a
replicated border gives exactly the values a clip cropped on its own would get.
"""

from __future__ import annotations

import torch
from torch.utils.data import default_collate


def pad_frames(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., h, w) -> (..., height, width): the last row and column repeated into the new space."""
    h, w = video.shape[-2:]
    if (h, w) == (height, width):
        return video
    out = video.new_empty(*video.shape[:-2], height, width)
    out[..., :h, :w] = video
    out[..., :h, w:] = video[..., :, w - 1:w]
    out[..., h:, :] = out[..., h - 1:h, :]
    return out


def collate_clips(items: list):
    """``default_collate`` for items ``{"video": (..., h, w), ...}`` whose frame sizes may differ:
    videos padded to the largest (H, W) of the batch, ``"frame_size"`` (B, 2) int64 = each clip's
    (h, w). Items without a ``"video"`` tensor are collated as they are."""
    if not items or not isinstance(items[0], dict) or not isinstance(items[0].get("video"), torch.Tensor):
        return default_collate(items)
    sizes = torch.tensor([tuple(item["video"].shape[-2:]) for item in items], dtype=torch.long)
    height, width = sizes.max(0).values.tolist()
    if not bool((sizes == sizes[0]).all()):
        items = [{**item, "video": pad_frames(item["video"], height, width)} for item in items]
    batch = default_collate(items)
    batch["frame_size"] = sizes
    return batch

