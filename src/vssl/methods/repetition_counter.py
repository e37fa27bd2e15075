"""The context-aware, scale-insensitive repetition counter that SEVERE fine-tunes for UCF-RC.

Zhang, Xu, Han, He, "Context-Aware and Scale-Insensitive Temporal Repetition Counting", CVPR 2020
(``Xiaodomgdomg/Deep-Temporal-Repetition-Counting``), in SEVERE's version on R(2+1)D-18
(``fmthoker/SEVERE-BENCHMARK: Repetition-Counting/``: ``model.py``, ``opts.py``, ``train_2stream.py``,
``utils/myutils.py``; severe-protocols.md §5). Test-time counting is :mod:`vssl.severe.counting`.

A *state* ``(lp, mp, rp)`` holds frame positions in a video: ``[lp, mp]`` is the current estimate of the
cycle that ends at ``mp`` (the "left" cycle), ``[mp + 1, rp]`` of the next one (the "right" cycle). The
network sees ``clip_frames`` = 32 frames (:func:`context_indices`): 16 spread over the left cycle and one
cycle of context before it, 16 over the right cycle and one cycle after it. Two heads (left, right) each
score 7 anchors ``a_k * L`` (L = the current cycle length; ``a`` = 0.5 ... 2): is the true period within
IoU 0.5 of the anchor (two-way softmax), and by how much (``log(period / anchor)``)? The best-scoring
anchor's ``exp(box) * a_k`` rescales the cycle.

Training (:class:`RepetitionCounter`) tracks a batch of samples for up to 11 optimizer steps: the state
starts from a heuristic guess, and after every step ``mp`` jumps ahead by ``length / U(5, 20)`` frames and
both cycles take the predicted lengths; a state that finishes the sample or shrinks below 4 frames is
drawn again. Loss: cross-entropy of both anchor heads (targets at IoU 0.5, :func:`anchor_targets`) plus
50 x smooth-L1 of the offsets (:func:`counter_loss`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vssl.errors import ConfigError

if TYPE_CHECKING:
    from vssl.config import RunConfig

#: cycle-length anchors (``opts.py --anchors``); index 3 (ratio 1) is the one the coarse search scores
ANCHORS = (0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0)
#: ``state_init``'s log-spaced scales (fractions of the sample length), shared with the test-time search
MIN_SCALE, MAX_SCALE, NUM_SCALES = 0.03, 0.35, 30
MIN_CYCLE = 4  # frames: a shorter cycle ends a training state (and is the floor of test-time lengths)


def context_indices(lp, mp, rp, num_frames, clip_frames: int = 32, left_context: float = 1.0,
                    right_context: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """The frames the network sees for states ``(lp, mp, rp)`` (arrays (N,)): ``update_inputs_2stream``.

    Left half: ``clip_frames / 2`` indices spread over ``[trunc(lp - (mp - lp + 1) * left_context), mp]``;
    right half over ``[mp + 1, trunc(rp + (rp - mp) * (right_context - 1))]``; index ``j`` of a half is
    ``round(pos - 0.5 + j * (pos2 - pos + 1) / (half - 1))`` (half to even, as Python's ``round``) kept in
    ``[pos, pos2]``. Returns int64 indices (N, clip_frames) and whether each lies inside the video
    (``0 <= i < num_frames``; the reference shows a constant frame elsewhere).
    """
    lp, mp, rp = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (lp, mp, rp))
    half = clip_frames // 2
    j = np.arange(half, dtype=np.float64)

    def spread(pos: np.ndarray, pos2: np.ndarray) -> np.ndarray:
        steps = (pos2 - pos + 1) / (half - 1)
        p = np.round(pos[:, None] - 0.5 + j * steps[:, None])
        return np.maximum(pos[:, None], np.minimum(pos2[:, None], p))  # max(pos, min(pos2, p))

    left = spread(np.trunc(lp - (mp - lp + 1) * left_context), np.trunc(mp))
    start = np.trunc(mp + 1)
    right = spread(start, np.trunc(rp + (rp - start + 1) * (right_context - 1)))
    idx = np.concatenate([left, right], 1).astype(np.int64)
    n = np.asarray(num_frames).reshape(-1, 1)
    return idx, (idx >= 0) & (idx < n)


def anchor_targets(offsets: np.ndarray, position, cycle, num_frames, anchors=ANCHORS,
                   iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets of one anchor head (``train_2stream.update_labels``).

    Args:
        offsets: (N, D) per-frame labels of N samples: UCFRep's ``offset_pre_estimate`` for the left head
            (read at ``mp``) or ``offset_next_estimate`` for the right head (read at ``mp + 1``); the true
            period at a frame is ``offset + 1``, -1 = unknown.
        position: (N,) the frame each state is read at; cycle: (N,) the current cycle length L
            (``mp - lp + 1`` left, ``rp - mp`` right); num_frames: (N,) sample lengths.

    Returns:
        ``cls`` (N, A) int64: 1 where ``min(g, a_k L) / max(g, a_k L) >= iou`` for the true period g, else
        0, and -1 (ignored) for every anchor when the position is outside the sample or its label is -1;
        ``box`` (N, A) float32 ``log(g / (a_k L))``; ``box_mask`` (N, A): where ``box`` is a target
        (the positive anchors).
    """
    position = np.asarray(position, dtype=np.int64).reshape(-1)
    cycle = np.asarray(cycle, dtype=np.float64).reshape(-1)
    n = len(position)
    inside = (position >= 0) & (position < np.asarray(num_frames).reshape(-1))
    label = np.full(n, -1, dtype=np.int64)
    label[inside] = np.asarray(offsets)[np.nonzero(inside)[0], position[inside]]
    known = label != -1
    period = (label + 1).astype(np.float64)[:, None]
    anchor = np.asarray(anchors, dtype=np.float64)[None] * cycle[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        overlap = np.minimum(period, anchor) / np.maximum(period, anchor)
        box = np.log(period / anchor)
    cls = np.where(overlap >= iou, 1, 0)
    cls[~known] = -1
    mask = cls == 1
    return cls, np.where(mask, box, 0.0).astype(np.float32), mask


def counter_loss(out, targets, box_weight: float = 50.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``CE(cls_1) + CE(cls_2) + box_weight * (SmoothL1(box_1) + SmoothL1(box_2))`` (``train_2stream.py``).

    ``out``: (cls_1 (N, 2, A), box_1 (N, A), cls_2, box_2); ``targets``: ((cls, box, box_mask) left,
    (cls, box, box_mask) right) as :func:`anchor_targets`, tensors on the outputs' device. The
    cross-entropy averages over the anchors that are not ignored (a batch with none contributes 0, where
    the reference's mean would be NaN); the smooth-L1 (beta 1) averages over all N x A entries, the
    ignored ones set to the detached prediction, as the reference does. Returns (cls loss, box loss).
    """
    cls_loss = box_loss = 0.0
    for (logits, box), (t_cls, t_box, t_mask) in zip(((out[0], out[1]), (out[2], out[3])), targets):
        count = (t_cls != -1).sum().clamp_min(1)
        cls_loss = cls_loss + F.cross_entropy(logits.float(), t_cls, ignore_index=-1, reduction="sum") / count
        target = torch.where(t_mask, t_box, box.detach().float())
        box_loss = box_loss + F.smooth_l1_loss(box.float(), target)
    return cls_loss, box_weight * box_loss


class CounterHead(nn.Module):
    """``model.Head``: four parallel linear layers on the pooled features (anchor scores and offsets of
    the left and the right cycle); PyTorch's default init."""

    def __init__(self, feature_dim: int, num_anchors: int = len(ANCHORS)):
        super().__init__()
        self.num_anchors = num_anchors
        self.fc_cls_1 = nn.Linear(feature_dim, 2 * num_anchors)
        self.fc_box_1 = nn.Linear(feature_dim, num_anchors)
        self.fc_cls_2 = nn.Linear(feature_dim, 2 * num_anchors)
        self.fc_box_2 = nn.Linear(feature_dim, num_anchors)

    def forward(self, x: torch.Tensor):
        a = self.num_anchors
        return (self.fc_cls_1(x).reshape(-1, 2, a), self.fc_box_1(x),
                self.fc_cls_2(x).reshape(-1, 2, a), self.fc_box_2(x))


def initial_state(first_offset: int, count: float, length: int, rng: random.Random = random) -> tuple[int, int, int]:
    """A training state ``(lp, mp, rp)`` for a sample (``state_init`` and the loop around it).

    ``lp`` falls in the first cycle (``first_offset`` + 1 frames when known, ``length / count`` otherwise);
    the left cycle is that cycle's length times 2^U(-1, 1) (p 1/4), times about 1/2, 1 or 2 (p 1/4), or
    one of the test-time search's 30 log-spaced scales of the sample length (p 1/2); the right cycle
    starts as long as the left one. Guesses that do not fit are drawn again.
    """
    for _ in range(1000):
        lp2, rp2 = (0, length / count - 1) if first_offset == -1 else (0, first_offset - 1)
        lp = lp2 + int(rng.random() * (rp2 - lp2 + 1))
        magic = rng.random()
        if magic < 0.25:
            seg = (rp2 - lp2 + 1) * 2 ** ((rng.random() - 0.5) * 2)
        elif magic > 0.75:
            seg = (rp2 - lp2 + 1) * (2 ** rng.randint(-1, 1) + (rng.random() - 0.5) * 0.1)
        else:
            k = rng.randint(0, NUM_SCALES)
            seg = length * MIN_SCALE * (MAX_SCALE / MIN_SCALE) ** (k / (NUM_SCALES - 1))
        rp = max(lp + int(seg - 1), lp)
        if rp >= length:
            lp, rp = 0, length / count - 1
        if rp * 2 + 1 >= length:
            lp, rp = 0, length / 2 - 1
        lp, mp = int(lp), int(rp)
        right = mp + (mp - lp + 1)
        if right != 0 and right < length:
            return lp, mp, right
    raise ValueError(f"no training state fits a sample of {length} frames")


class RepetitionCounter(nn.Module):
    """Backbone + :class:`CounterHead`, trained by tracking cycles through a batch of samples.

    ``batch["video"]``: uint8 (B, C, D, S, S), samples of D frames (zero-padded after their length);
    ``batch["label"]``: ``{"next", "pre"}`` (B, D) per-frame offsets, ``"count"`` (B,), ``"length"`` (B,)
    (:class:`vssl.severe.counting.RepetitionSamples`). A batch starts a tracking episode of up to
    ``track_steps`` optimizer steps; ``needs_batch`` tells the engine when the next one is due (until
    then it calls ``training_step(None)``). An interrupted episode is not resumed: a resumed run starts
    with the next batch.
    """

    @dataclass
    class Config:
        anchors: list[float] = field(default_factory=lambda: list(ANCHORS))
        clip_frames: int = 32  # basic_duration
        left_context: float = 1.0  # l_context_ratio
        right_context: float = 2.0  # r_context_ratio
        iou: float = 0.5  # iou_ubound = iou_lbound: no ignore band
        box_weight: float = 50.0
        box_clamp: float = 2.0  # |log ratio| used to move the training state
        track_steps: int = 11  # early_stop 10: a batch is tracked for at most 11 optimizer steps
        sample_frames: int = 300  # sample_duration: training samples are at most this long
        samples_per_video: int = 10  # drawn once per run (n_samples_for_each_video)
        flip: bool = True  # one horizontal flip draw per sample
        mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
        std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])

    num_clips = 1

    def __init__(self, cfg: Config, backbone: nn.Module, run: RunConfig):
        super().__init__()
        if cfg.clip_frames < 4 or cfg.clip_frames % 2 or len(cfg.anchors) < 1 or cfg.track_steps < 1:
            raise ConfigError("method: clip_frames must be even and >= 4, anchors non-empty, track_steps >= 1")
        if 1.0 not in cfg.anchors:
            raise ConfigError("method.anchors: must contain 1.0 (the anchor the test-time search scores)")
        self.cfg, self.backbone = cfg, backbone
        self.head = CounterHead(backbone.feature_dim, len(cfg.anchors))
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1, 1), persistent=False)
        self._episode: dict | None = None
        self.rng = random  # the engine seeds and checkpoints Python's generator

    @staticmethod
    def training_set(videos, root, run: RunConfig, failure_log=None):
        """What this method trains on: :class:`vssl.data.repetition.RepetitionSamples` drawn from the
        counting ``videos`` (UCFRep records), seeded by ``train.seed`` (``vssl finetune`` uses it too)."""
        from vssl.config import method_config
        from vssl.data.repetition import RepetitionSamples, draw_samples

        cfg = method_config(run)
        samples = draw_samples(videos, cfg.samples_per_video, cfg.sample_frames, np.random.default_rng(run.train.seed))
        if not len(samples):
            raise ConfigError(f"{videos.name} {videos.split}: no video has the 3 cycle bounds a sample needs")
        return RepetitionSamples(samples, root, run.data, cfg.sample_frames, seed=run.train.seed,
                                 failure_log=failure_log)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """One group: the reference's Adam decays every parameter (biases and norms too)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]

    def forward(self, x: torch.Tensor):
        """Normalised clips (N, C, clip_frames, S, S) -> (cls_1 (N, 2, A), box_1 (N, A), cls_2, box_2)."""
        return self.head(self.backbone(x))

    def clips(self, video: torch.Tensor, lengths, lp, mp, rp) -> torch.Tensor:
        """Normalised network inputs (N, C, clip_frames, S, S) for states of the samples ``video``
        (uint8 (N, C, D, S, S), or one (C, D, S, S) shared by all states). Frames outside a sample are
        the normalisation mean itself (in normalised units), as the reference pads."""
        cfg = self.cfg
        idx, valid = context_indices(lp, mp, rp, lengths, cfg.clip_frames, cfg.left_context, cfg.right_context)
        n = idx.shape[0]
        idx_t = torch.as_tensor(np.clip(idx, 0, video.shape[-3] - 1), device=video.device)
        if video.dim() == 4:
            frames = video[:, idx_t].permute(1, 0, 2, 3, 4)  # (N, C, T, S, S)
        else:
            frames = video[torch.arange(n, device=video.device)[:, None], :, idx_t].permute(0, 2, 1, 3, 4)
        x = (frames.float() / 255 - self.mean) / self.std
        inside = torch.as_tensor(valid, device=video.device).view(n, 1, -1, 1, 1)
        return torch.where(inside, x, self.mean.expand_as(x))

    @torch.no_grad()
    def state_scores(self, video: torch.Tensor, length: int, lp, mp, rp):
        """Positive-anchor probabilities and offsets of both heads for states of one video (C, D, S, S):
        four float64 arrays (N, A) (softmax over the two classes, its class-1 column; raw offsets)."""
        cls_1, box_1, cls_2, box_2 = self(self.clips(video, length, lp, mp, rp))
        p_1, p_2 = cls_1.float().softmax(1)[:, 1], cls_2.float().softmax(1)[:, 1]
        return tuple(t.float().cpu().numpy().astype(np.float64) for t in (p_1, box_1, p_2, box_2))

    # -- training: one tracking episode per batch ----------------------------------------------------

    @property
    def needs_batch(self) -> bool:
        return self._episode is None

    def training_step(self, batch: dict | None) -> tuple[torch.Tensor, dict[str, float]]:
        if batch is not None:
            self._start(batch)
        elif self._episode is None:
            raise ValueError("repetition_counter: training_step(None) without a tracking episode in progress")
        ep = self._episode
        lp, mp, rp, n = ep["lp"], ep["mp"], ep["rp"], ep["length"]
        x = self.clips(ep["video"], n, lp, mp, rp)
        targets = [self._targets(ep["pre"], mp, mp - lp + 1, n, x.device),
                   self._targets(ep["next"], mp + 1, rp - mp, n, x.device)]
        out = self(x)
        loss_cls, loss_box = counter_loss(out, targets, self.cfg.box_weight)
        self._advance(out)
        loss = loss_cls + loss_box
        return loss, {"loss": loss.item(), "loss_cls": loss_cls.item(), "loss_box": loss_box.item(),
                      "positive": float(sum(t[2].float().mean() for t in targets) / 2)}

    def _targets(self, offsets, position, cycle, lengths, device):
        cls, box, mask = anchor_targets(offsets, position, cycle, lengths, self.cfg.anchors, self.cfg.iou)
        return (torch.as_tensor(cls, device=device), torch.as_tensor(box, device=device),
                torch.as_tensor(mask, device=device))

    def _start(self, batch: dict) -> None:
        video, label = batch["video"], batch["label"]
        if video.dim() != 5 or not isinstance(label, dict):
            raise ValueError("repetition_counter expects samples (B, C, D, S, S) with offset labels "
                             "(vssl.severe.counting.RepetitionSamples)")
        if self.cfg.flip:
            flip = (torch.rand(video.shape[0]) < 0.5).to(video.device).view(-1, 1, 1, 1, 1)
            video = torch.where(flip, video.flip(-1), video)
        ep = {"video": video, "steps": 0, **{k: label[k].cpu().numpy() for k in ("next", "pre")},
              "count": label["count"].cpu().numpy().astype(np.float64),
              "length": label["length"].cpu().numpy().astype(np.int64)}
        states = [self._new_state(ep, j) for j in range(video.shape[0])]
        ep["lp"], ep["mp"], ep["rp"] = (np.array(s, dtype=np.int64) for s in zip(*states))
        ep["done"] = np.zeros(video.shape[0], dtype=bool)
        self._episode = ep

    def _new_state(self, ep: dict, j: int) -> tuple[int, int, int]:
        return initial_state(int(ep["next"][j][0]), float(ep["count"][j]), int(ep["length"][j]), self.rng)

    @torch.no_grad()
    def _advance(self, out) -> None:
        """Move every state as ``train_2stream.py`` does after its optimizer step (same predictions)."""
        ep, cfg = self._episode, self.cfg
        anchors = np.asarray(cfg.anchors)
        ratios = []
        for cls, box in ((out[0], out[1]), (out[2], out[3])):
            best = cls.float().softmax(1)[:, 1].argmax(1).cpu().numpy()
            box = box.float().clamp(-cfg.box_clamp, cfg.box_clamp).cpu().numpy()
            ratios.append(np.exp(box[np.arange(len(best)), best]) * anchors[best])
        for j in range(len(ep["lp"])):
            n = int(ep["length"][j])
            step = int(max(n / (5 + self.rng.random() * 15), 1))
            lp, mp, rp = int(ep["lp"][j]), int(ep["mp"][j]), int(ep["rp"][j])
            left, right = (mp - lp + 1) * ratios[0][j], (rp - mp) * ratios[1][j]
            mp = int(mp + step)
            lp, rp = int(mp - left + 1), int(mp + right)
            done = mp >= n
            if done or mp - lp + 1 < MIN_CYCLE or rp - mp < MIN_CYCLE:
                lp, mp, rp = self._new_state(ep, j)
            ep["lp"][j], ep["mp"][j], ep["rp"][j] = lp, mp, rp
            ep["done"][j] |= done
        ep["steps"] += 1
        if ep["done"].all() or ep["steps"] >= cfg.track_steps:
            self._episode = None


__all__ = ["ANCHORS", "context_indices", "anchor_targets", "counter_loss", "CounterHead", "initial_state",
           "RepetitionCounter"]
