"""A tiny random-clip dataset for tests and smoke runs (``data.dataset: random``).

Items are a pure function of ``(seed, index)``, so any process, worker or resumed run reads the same
clip for the same index. Each class adds its own brightness offset to one colour channel, which makes
the labels learnable in a few steps (a smoke run whose loss goes down).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class RandomClipDataset(Dataset):
    """Deterministic uint8 clips with integer labels.

    Args:
        n: number of items.
        num_classes: labels are ``index % num_classes`` (balanced).
        shape: clip shape (C, T, H, W).
        num_clips: clips per item; > 1 gives ``video`` of shape (V, C, T, H, W) (two views of one
            underlying clip, each with its own noise, as video contrast expects).
        seed: changes every clip.

    Items: ``{"video": uint8 tensor, "label": int, "index": int}``.
    """

    def __init__(self, n: int = 64, num_classes: int = 4, shape: tuple[int, int, int, int] = (3, 8, 32, 32),
                 num_clips: int = 1, seed: int = 0):
        if n < 1 or num_classes < 1 or num_clips < 1 or len(shape) != 4:
            raise ValueError(f"RandomClipDataset: bad arguments n={n} num_classes={num_classes} "
                             f"shape={shape} num_clips={num_clips}")
        self.n, self.num_classes, self.shape = n, num_classes, tuple(shape)
        self.num_clips, self.seed = num_clips, seed
        self.labels = [i % num_classes for i in range(n)]
        self.classes = [f"class_{c}" for c in range(num_classes)]
        self.task = "classification"

    def __len__(self) -> int:
        return self.n

    def _clip(self, g: torch.Generator, label: int) -> torch.Tensor:
        c = self.shape[0]
        clip = torch.randint(0, 160, self.shape, generator=g, dtype=torch.int16)
        clip[label % c] += 32 * (1 + label // c)  # the class signal
        return clip.clamp_(0, 255).to(torch.uint8)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} items")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        label = self.labels[index]
        clips = [self._clip(g, label) for _ in range(self.num_clips)]
        video = clips[0] if self.num_clips == 1 else torch.stack(clips)
        return {"video": video, "label": label, "index": index}
