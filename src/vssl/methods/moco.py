"""MoCo-style video contrast (He et al., CVPR 2020; MoCo v2, Chen et al., 2020) and the MoCo
machinery that tubelet contrast reuses.

Video contrast: the positive pair is two clips of the same video, each with its own random resized
crop, flip, colour jitter and grayscale; the negatives are a queue of keys from past batches.
Defaults are the settings of Tubelet-Contrast's MoCo (``fmthoker/tubelet-contrast: model.py``,
tubelet-contrast.md §4.1): queue 16384, key-encoder momentum 0.999, temperature 0.2, MLP head
D -> D -> ReLU -> 128 with L2-normalised outputs, one direction (query = view 1, key = view 2).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from vssl import distributed as D
from vssl.errors import ConfigError

if TYPE_CHECKING:
    from vssl.config import RunConfig


class ProjectionHead(nn.Sequential):
    """MoCo v2 head: Linear(D, hidden) -> ReLU -> Linear(hidden, out), no BN (tubelet-contrast.md §4.1)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """EMA of the parameters: ``theta_k = m * theta_k + (1 - m) * theta_q`` (MoCo, m = 0.999).
    Buffers (BN statistics) are not averaged: the key encoder keeps its own, as in MoCo.

    One fused ``_foreach_lerp_`` (``theta_k += (1 - m) * (theta_q - theta_k)``) instead of two kernels
    per tensor: on one CPU core for R(2+1)D-18's 31 M parameters 26 ms instead of 34-40 ms (same run,
    max difference 3e-8); on a GPU it replaces ~2 launches per parameter tensor with a few."""
    keys = [p.detach() for p in target.parameters()]
    queries = [p.detach() for p in online.parameters()]
    if len(keys) != len(queries):
        raise ValueError("momentum_update: online and target have different parameter lists")
    if keys:
        torch._foreach_lerp_(keys, queries, 1.0 - momentum)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2):
    """MoCo's InfoNCE: cross-entropy with the positive ``q . k`` at index 0 against ``q . queue``.

    Args:
        q: (B, d) L2-normalised queries (with gradient).
        k: (B, d) L2-normalised keys of the same samples (no gradient).
        queue: (K, d) L2-normalised negatives.
        temperature: tau (0.2 in Tubelet-Contrast / MoCo v2).

    Returns:
        (loss, logits (B, 1 + K)), computed in float32.
    """
    with torch.autocast(q.device.type, enabled=False):  # logits / 0.2 in bf16 would lose the ranking
        q, k, queue = q.float(), k.float(), queue.float()
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], dim=1) / temperature
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, labels), logits


class GraphedForward:
    """``fn(x)`` replayed from a CUDA graph captured once per input shape (CUDA only).

    One graph launch replaces the forward's ~100 kernel launches, which matters when the host's
    launch latency, not the GPU, bounds a forward. The graph reads the modules' parameters at their
    addresses, so in-place updates between replays (the momentum encoder's ``lerp_``) are seen; a
    module moved or cast to new storage is captured again. The input is copied into a static buffer
    and the output cloned out of the graph's memory pool. ``fn`` must be free of host
    synchronisation, collectives and randomness, and run with gradients off. The warm-up calls
    before a capture (cuDNN autotuning, lazy allocations) would update the modules' buffers (BN
    running statistics) a few extra times, so the buffers are restored after them.
    """

    def __init__(self, fn, modules: list[nn.Module]):
        self.fn, self.modules = fn, modules
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _tensors(self) -> list[torch.Tensor]:
        return [t for m in self.modules for t in (*m.parameters(), *m.buffers())]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        amp = torch.is_autocast_enabled(x.device.type), torch.get_autocast_dtype(x.device.type)
        key = (tuple(x.shape), x.stride(), x.dtype, x.device, amp, tuple(t.data_ptr() for t in self._tensors()))
        if key not in self.graphs:
            self.graphs[key] = self._capture(x, amp)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

    def _capture(self, x: torch.Tensor, amp: tuple[bool, torch.dtype]):
        static_in = x.clone()
        buffers = [b for m in self.modules for b in m.buffers()]
        saved = [b.clone() for b in buffers]
        # autocast's cast cache would hand the graph casts made outside it: off while capturing
        with torch.autocast(x.device.type, dtype=amp[1], enabled=amp[0], cache_enabled=False):
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.fn(static_in)
            torch.cuda.current_stream(x.device).wait_stream(side)
            for b, v in zip(buffers, saved):
                b.copy_(v)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.fn(static_in)
        return graph, static_in, static_out


@dataclass
class MoCoConfig:
    """The MoCo part of a contrastive method's ``method.params`` (``Config`` classes derive from it)."""

    queue_size: int = 16384  # K (Tubelet-Contrast configs; MoCo's default 65536)
    momentum: float = 0.999  # key-encoder EMA
    temperature: float = 0.2  # tau
    proj_dim: int = 128
    hidden_dim: int = 0  # 0 = backbone feature_dim (Linear(512, 512) -> ReLU -> Linear(512, 128) on R(2+1)D-18)
    bn: str = "shuffle"  # shuffle | sync | none (the reference converts to SyncBN)
    cuda_graph_keys: bool = False  # replay the key encoder's forward from a CUDA graph (speed lever)


class MoCo(nn.Module):
    """Query encoder + head, momentum key encoder + head, queue of negatives and the InfoNCE step.

    Subclasses build the two views in ``training_step`` and call :meth:`contrast`. The queue and its
    pointer are buffers (so they are checkpointed); the key encoder is a frozen deep copy that only
    moves by :func:`momentum_update`. ``bn``: ``shuffle`` = MoCo's shuffle-BN for the key encoder
    under DDP (a no-op in one process); ``sync`` = SyncBatchNorm (CUDA only; falls back to shuffle);
    ``none`` = plain per-process BN. ``cuda_graph_keys``: the key encoder's forward replays a CUDA
    graph (:class:`GraphedForward`; CUDA only, a no-op on CPU and with SyncBN across processes,
    whose forward holds collectives).
    """

    num_clips = 2

    def _setup_moco(self, cfg: MoCoConfig, backbone: nn.Module, run: RunConfig) -> None:
        if cfg.bn not in ("shuffle", "sync", "none"):
            raise ConfigError(f"method.bn: expected shuffle, sync or none, got {cfg.bn!r}")
        if cfg.queue_size < 1 or not 0.0 <= cfg.momentum <= 1.0 or cfg.temperature <= 0:
            raise ConfigError("method: queue_size must be >= 1, momentum in [0, 1], temperature > 0")
        self.cfg = cfg
        self.bn = cfg.bn
        if cfg.bn == "sync":
            if torch.cuda.is_available() and run.train.device != "cpu":
                backbone = nn.SyncBatchNorm.convert_sync_batchnorm(backbone)
            else:
                warnings.warn("method.bn=sync needs CUDA; using shuffle-BN instead", stacklevel=3)
                self.bn = "shuffle"
        self.backbone = backbone
        dim = backbone.feature_dim
        self.head = ProjectionHead(dim, cfg.hidden_dim or dim, cfg.proj_dim)
        self.key_backbone = copy.deepcopy(backbone)
        self.key_head = copy.deepcopy(self.head)
        for p in list(self.key_backbone.parameters()) + list(self.key_head.parameters()):
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, cfg.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._graphed_key: GraphedForward | None = None  # built on first use (CUDA only)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Every trainable parameter with weight decay, as the reference's SGD (wd 1e-4 on all)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]

    def embed_query(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(x)).float(), dim=1)

    @torch.no_grad()
    def embed_key(self, x: torch.Tensor) -> torch.Tensor:
        """Keys of normalised clips; under DDP with shuffle-BN the batch is shuffled across processes
        so that BN statistics cannot leak which key belongs to which query (MoCo §3.3)."""
        shuffle = self.bn == "shuffle" and D.world_size() > 1
        if shuffle:
            n = x.shape[0]
            x_all = D.all_gather(x)
            perm = D.broadcast(torch.randperm(x_all.shape[0], device=x.device))
            x = x_all[perm[D.rank() * n:(D.rank() + 1) * n]]
        if self.cfg.cuda_graph_keys and x.is_cuda and (self.bn != "sync" or D.world_size() == 1):
            if self._graphed_key is None:
                self._graphed_key = GraphedForward(self._key_forward, [self.key_backbone, self.key_head])
            k = self._graphed_key(x)
        else:
            k = self._key_forward(x)
        if shuffle:
            k = D.all_gather(k)[perm.argsort()][D.rank() * n:(D.rank() + 1) * n]
        return k

    def _key_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.key_head(self.key_backbone(x)).float(), dim=1)

    @torch.no_grad()
    def momentum_step(self) -> None:
        momentum_update(self.backbone, self.key_backbone, self.cfg.momentum)
        momentum_update(self.head, self.key_head, self.cfg.momentum)

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor) -> None:
        """Write the keys of the whole (all-gathered) batch over the oldest queue entries (ring buffer;
        the reference's ``K % batch == 0`` requirement is not needed)."""
        keys = D.all_gather(k.contiguous())[: self.queue.shape[0]]
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % self.queue.shape[0]
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % self.queue.shape[0])

    def forward_loss(self, query_clips: torch.Tensor, key_clips: torch.Tensor
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step once the two views are built: momentum update (before the keys, as MoCo), queries,
        keys, InfoNCE and enqueue. No host synchronisation, so ``torch.compile`` can take it whole."""
        self.momentum_step()
        loss, logs = self.contrast(self.embed_query(query_clips), self.embed_key(key_clips))
        return loss, {"loss": loss.detach(), **logs}

    def contrast(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """InfoNCE of queries against their keys and the queue, then enqueue the keys.

        Logs ``acc_queue`` (the positive beats all queue negatives) and ``acc_batch`` (in-batch
        retrieval top-1: the query's nearest key among the global batch's keys is its own), as 0-dim
        tensors that the engine reads in one transfer."""
        loss, logits = info_nce(q, k, self.queue.clone().detach(), self.cfg.temperature)
        with torch.no_grad():
            k_all = D.all_gather(k)
            own = torch.arange(q.shape[0], device=q.device) + D.rank() * q.shape[0]
            acc_batch = ((q.detach() @ k_all.t()).argmax(1) == own).float().mean()
            acc_queue = (logits.argmax(1) == 0).float().mean()
        self.enqueue(k)
        return loss, {"acc_queue": acc_queue, "acc_batch": acc_batch}


class VideoContrast(MoCo):
    """MoCo v2 on videos: two clips of the same video, independently augmented, are a positive pair.

    ``batch["video"]``: uint8 (B, 2, C, T, H, W). Augmentation per clip (MoCo v2 recipe on video):
    random resized crop (scale 0.2-1), flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8,
    grayscale p 0.2, Gaussian blur with sigma U(0.1, 2) pixels and p 0.5 (MoCo v2's ``GaussianBlur``),
    ImageNet normalisation.
    """

    @dataclass
    class Config(MoCoConfig):
        crop_scale: list[float] = field(default_factory=lambda: [0.2, 1.0])
        crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
        flip: bool = True
        jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.4, 0.1])  # brightness, contrast, sat., hue
        jitter_p: float = 0.8
        grayscale_p: float = 0.2
        blur_p: float = 0.5
        blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])  # pixels, drawn per clip

    num_clips = 2

    def __init__(self, cfg: Config, backbone: nn.Module, run: RunConfig):
        super().__init__()
        self._setup_moco(cfg, backbone, run)
        from vssl.data.transforms import TrainAugment

        self.augment = TrainAugment(run.data.crop_size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, flip=cfg.flip,
                                    jitter=cfg.jitter, jitter_p=cfg.jitter_p, grayscale_p=cfg.grayscale_p,
                                    blur_p=cfg.blur_p, blur_sigma=cfg.blur_sigma)

    def training_step(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        video = batch["video"]
        if video.dim() != 6 or video.shape[1] != 2:
            raise ValueError(f"video_contrast expects (B, 2, C, T, H, W) clips, got {tuple(video.shape)}")
        x = self.augment(video, sizes=batch.get("frame_size"))  # two independently augmented clips of each video
        return self.forward_loss(x[:, 0], x[:, 1])
