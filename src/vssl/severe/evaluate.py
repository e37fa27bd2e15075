"""Test-time passes: run a network over every view (clip x crop) of every test video.

SEVERE's dense test (severe-protocols.md §2.5): ``test_clips`` uniformly spaced clips per video, one
centre crop after resizing the short side to ``crop / 0.875``; Charades (§6): 10 clips x 3 crops. The
views' outputs become a video's score by its task's ``vssl.tasks.TaskKind.scores`` (softmax averaged,
max of the sigmoid, ``exp`` of the mean log-count).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, Dataset

from vssl.data.collate import collate_clips
from vssl.data.dataset import collate_kept
from vssl.data.transforms import EvalTransform


class Views(NamedTuple):
    """Per-view outputs (K, views, ...) of the K videos that could be decoded, their labels (K, ...) and
    their dataset indices (K,): an unreadable test video is left out, never replaced by another."""

    outputs: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor


@torch.no_grad()
def run_views(fn: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, transform, *, batch_size: int,
              device: torch.device, num_workers: int = 0) -> Views:
    """``fn`` over every view of every item that decodes (see :class:`Views`), outputs on the CPU.

    ``dataset`` items are ``{"video": uint8 (C,T,H,W) or (V,C,T,H,W), "label", "index"}`` (frame sizes may
    differ: batches are padded by ``collate_clips``), or None for a video that could not be decoded (a
    test-mode ``ClipDataset``; ``collate_kept`` leaves it out); ``transform(video, sizes)`` maps uint8
    (B, V, C, T, H, W) on ``device`` and the (B, 2) frame sizes to float (B*V*crops, C, T, s, s)
    (``EvalTransform``).
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda", collate_fn=collate_kept)
    amp = device.type == "cuda"
    outs, labels, index = [], [], []
    for batch in loader:
        if batch is None:  # every video of the batch was unreadable
            continue
        video = batch["video"].to(device, non_blocking=True)
        if video.dim() == 5:
            video = video.unsqueeze(1)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            y = fn(transform(video, batch["frame_size"]))
        outs.append(y.float().reshape(video.shape[0], -1, *y.shape[1:]).cpu())
        labels.append(batch["label"])
        index.append(torch.as_tensor(batch["index"]))
    if not outs:
        return Views(torch.empty(0), torch.empty(0), torch.empty(0, dtype=torch.long))
    return Views(torch.cat(outs), torch.cat(labels), torch.cat(index))


@torch.no_grad()
def precise_bn(model, dataset: Dataset, *, batches: int, batch_size: int, device: torch.device, num_workers: int = 0,
               seed: int = 0) -> int:
    """PySlowFast's precise-BN before testing (``BN.USE_PRECISE_STATS``, ``NUM_BATCHES_PRECISE`` 200,
    severe-protocols.md §6): every BatchNorm's running mean and variance become the averages of the
    per-batch means and variances of ``min(batches, len(loader))`` shuffled training batches, augmented by
    ``model.augment`` as in training. fvcore's ``update_bn_stats`` accumulates exactly so; here
    ``torch.optim.swa_utils.update_bn`` (momentum None: a cumulative average) does it.

    Returns:
        The number of batches used.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) >= batch_size,
                        generator=torch.Generator().manual_seed(seed), num_workers=num_workers,
                        pin_memory=device.type == "cuda", collate_fn=collate_clips)
    used = min(batches, len(loader))

    def inputs():
        for _, batch in zip(range(used), loader):
            yield model.augment(batch["video"].to(device, non_blocking=True), sizes=batch["frame_size"])

    update_bn(inputs(), model)
    return used


def frozen_features(net, pool: str = "mean") -> Callable[[torch.Tensor], torch.Tensor]:
    """The feature function of a frozen backbone for the linear/kNN probes.

    ``pool="mean"`` is the usual global average pool (``net(x)``, (B, D)). ``pool="time"`` averages over
    space only and keeps the temporal axis, (B, D * t): a linear probe on globally pooled features of
    small networks cannot read motion (reference/pilot-synthetic-tubelet.md: direction 0.27 with the
    global pool, 0.40 with the time-keeping pool), so the synthetic ``quick`` protocol keeps time.
    """
    if pool == "mean":
        return net
    if pool != "time":
        raise ValueError(f"pool must be 'mean' or 'time', got {pool!r}")

    def time_pooled(x: torch.Tensor) -> torch.Tensor:
        if hasattr(net, "forward_tokens"):  # ViT: tokens are ordered t, h, w
            t, h, w = net.grid(x.shape)
            tokens = net.forward_tokens(x)
            tokens = net.fc_norm(tokens) if hasattr(net, "fc_norm") else tokens
            return tokens.reshape(x.shape[0], t, h * w, -1).mean(2).flatten(1)
        fmap = net.forward_features(x)  # CNN: (B, D, t, h, w)
        return fmap.mean((3, 4)).transpose(1, 2).flatten(1)

    return time_pooled


def eval_transform(recipe):
    return EvalTransform(recipe.crop_size, short_side=recipe.load_size, crops=recipe.test_crops,
                         mean=recipe.mean, std=recipe.std)
