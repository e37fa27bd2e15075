"""The order in which a run reads its data, fixed so that ``--resume`` continues exactly.

:class:`EpochBatchSampler` cuts every epoch's seeded permutation into per-rank batches;
:class:`SeededItems` reads every item under its own seeds, so random clip sampling does not depend
on the worker that reads it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vssl.distributed import seed_everything


class EpochBatchSampler:
    """Yields this rank's batches of one epoch, in an order fixed by ``(seed, epoch)``.

    The whole dataset is permuted with a generator seeded from ``seed`` and ``epoch``; it is then
    cut into global batches of ``batch_size * world_size`` indices, and rank ``r`` takes the
    ``r``-th slice of each. So a run on W processes sees exactly the global batches of a
    one-process run with a W-times larger batch, and a resumed run skips exactly the batches it
    had consumed (``start``). The last, incomplete global batch is dropped.

    Args:
        n: dataset length.
        batch_size: per-rank batch size.
        seed: run seed.
        epoch: epoch number (a new order each epoch).
        rank, world_size: this process's shard.
        start: number of (per-rank) batches of this epoch already consumed.
        shuffle: permute, or keep index order.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, start: int = 0, shuffle: bool = True):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.rank, self.world_size, self.start, self.shuffle = rank, world_size, start, shuffle

    @property
    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        glob = self.batch_size * self.world_size
        for b in range(self.start, self.batches_per_epoch):
            lo = b * glob + self.rank * self.batch_size
            yield order[lo:lo + self.batch_size]


class SeededItems(Dataset):
    """Reads every item under RNG streams seeded by ``(seed, epoch, index)``.

    Random clip sampling inside a dataset then depends on what is read, not on which worker reads it
    or how many items were read before, which is what makes a mid-epoch resume exact with any number
    of workers. The caller's RNG states are restored afterwards.
    """

    def __init__(self, dataset: Dataset, seed: int, epoch: int):
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item_seed = ((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index) % 2**62
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            seed_everything(item_seed)
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])
