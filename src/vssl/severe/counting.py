"""UCF-RC with the repetition counter of Zhang et al. (CVPR 2020), as SEVERE runs it (severe-protocols.md §5):
the test-time multi-scale search and merge, and the experiment (train on samples, then count every test
video). The training samples are :mod:`vssl.data.repetition`.

- :func:`count_repetitions`: ``val_2stream.py`` on one whole video: a coarse search over 30 log-spaced
  cycle lengths at the middle of the video, 4 refinements there, then 32 positions refined and merged
  over 4 levels, and ``count = length x mean(1 / cycle)`` over the positions whose context lies inside
  the video, rounded.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from vssl.data.dataset import record_failures, resolve_video_path
from vssl.data.datasets.base import VideoList
from vssl.data.repetition import load_segment
from vssl.engine import Trainer
from vssl.methods.repetition_counter import ANCHORS, MAX_SCALE, MIN_CYCLE, MIN_SCALE, NUM_SCALES, RepetitionCounter
from vssl.severe.plan import ExperimentRun
from vssl.severe.protocols import steps_per_epoch

#: test-time settings of ``val_2stream.py`` for UCFRep
MIN_CYCLES, MERGE_WEIGHT, MERGE_LEVELS, TEST_BOX_CLAMP = 2, 0.5, 5, 0.5


def count_repetitions(predict, length: int, anchors=ANCHORS, *, min_cycles: int = MIN_CYCLES,
                      merge_w: float = MERGE_WEIGHT, levels: int = MERGE_LEVELS, box_clamp: float = TEST_BOX_CLAMP,
                      left_context: float = 1.0, right_context: float = 2.0) -> int:
    """The repetition count of one video of ``length`` frames (``val_2stream.py``).

    ``predict(lp, mp, rp)`` maps states (arrays (N,)) to ``(p_1, box_1, p_2, box_2)``, each (N, A): the
    class-1 softmax of each anchor and its raw offset, left and right head
    (:meth:`vssl.methods.repetition_counter.RepetitionCounter.state_scores`).
    """
    n, cap, w = float(length), length / min_cycles, merge_w
    anchors = np.asarray(anchors, dtype=np.float64)
    unit = int(np.flatnonzero(anchors == 1.0)[0])
    mid = n / 2

    # 1. coarse: 30 half-widths around the middle, only the ratio-1 anchor; keep the best-scoring period
    half = n * MIN_SCALE * (MAX_SCALE / MIN_SCALE) ** (np.arange(NUM_SCALES) / (NUM_SCALES - 1))
    p_1, box_1, _, _ = predict(mid - half, np.full(NUM_SCALES, mid), mid + half + 1)
    period = half * np.exp(np.clip(box_1[:, unit], -box_clamp, box_clamp)) * anchors[unit]
    best_score, best = -1e6, 0
    for k in range(NUM_SCALES):
        if p_1[k, unit] > best_score and MIN_CYCLE <= period[k] < cap:
            best_score, best = p_1[k, unit], int(period[k])
    # 2. four refinements at the middle, each blended half-way into the estimate
    for _ in range(4):
        _, box_1, _, _ = predict(np.array([mid - best]), np.array([mid]), np.array([mid + best + 1]))
        candidate = best * math.exp(float(np.clip(box_1[0, unit], -box_clamp, box_clamp))) * anchors[unit]
        if MIN_CYCLE <= candidate < cap:
            best = round(best * (1 - w) + candidate * w)
    # 3. 2^levels positions, refined and merged level by level
    lp, rp, mp = _merge(predict, n, cap, best, anchors, levels, w, box_clamp)
    # 4. the count over the positions whose context window lies inside the video
    return aggregate_count(lp, mp, rp, length, best, left_context, right_context)


def aggregate_count(lp, mp, rp, length: int, period: int, left_context: float = 1.0,
                    right_context: float = 2.0) -> int:
    """``length x mean(1 / cycle)`` over the final states ``(lp, mp, rp)`` (arrays) whose context window
    ``[trunc(lp - (mp - lp + 1) * left_context), trunc(rp + (rp - mp) * (right_context - 1))]`` lies
    inside the video, each state contributing ``0.5 / (mp - lp + 1) + 0.5 / (rp - mp)``; rounded (half to
    even, as Python's ``round``). With no such state: ``round(length / (period + 1))`` for the coarse
    period. (States with an empty cycle, on which the reference would divide by zero, are left out.)
    """
    lp, mp, rp = (np.asarray(v, dtype=np.float64) for v in (lp, mp, rp))
    left, right = mp - lp + 1, rp - mp
    first = np.trunc(lp - left * left_context)
    last = np.trunc(rp + right * (right_context - 1))
    valid = (first >= 0) & (last < length) & (left > 0) & (right > 0)
    if not valid.any():
        return round(length / (period + 1))
    return round(float(length * (0.5 * np.sum(1 / left[valid]) + 0.5 * np.sum(1 / right[valid])) / valid.sum()))


def _merge(predict, n, cap, best, anchors, levels, w, box_clamp):
    """Level-by-level refinement of 2^levels positions; returns the last level's averaged left/right
    bounds and the positions (float arrays). Each position keeps one estimate from the refined position
    on its left (``*_l``) and one from the one on its right (``*_r``)."""
    size = 2 ** levels
    mp = np.array([int(n / (size + 1) * (i + 0.5)) for i in range(size)], dtype=np.float64)
    lp_l, rp_l = mp - best, mp + best + 1
    lp_r, rp_r = lp_l.copy(), rp_l.copy()
    for level in range(1, levels):
        steps = 2 ** (levels - level - 1)
        pos = np.arange(steps, size, 2 * steps)
        load_mp = mp[pos]
        load_lp, load_rp = np.round((lp_l[pos] + lp_r[pos]) / 2), np.round((rp_l[pos] + rp_r[pos]) / 2)
        save_lp, save_rp = load_lp, load_rp
        for i in range({1: 4, 2: 2}.get(level, 1)):
            if i:
                load_lp, load_rp = np.round(save_lp * w + load_lp * (1 - w)), np.round(save_rp * w + load_rp * (1 - w))
            p_1, box_1, p_2, box_2 = predict(load_lp, load_mp, load_rp)
            left = np.clip((load_mp - load_lp + 1) * _ratio(p_1, box_1, anchors, box_clamp), MIN_CYCLE, cap)
            right = np.clip((load_rp - load_mp) * _ratio(p_2, box_2, anchors, box_clamp), MIN_CYCLE, cap)
            new_lp, new_rp = np.trunc(load_mp - left + 1), np.trunc(load_mp + right)
            fail = (load_mp - new_lp + 1 < MIN_CYCLE) | (new_rp - load_mp < MIN_CYCLE)
            save_lp, save_rp = np.where(fail, load_lp, new_lp), np.where(fail, load_rp, new_rp)
        l_seg, r_seg = save_lp * w + load_lp * (1 - w), save_rp * w + load_rp * (1 - w)
        prev = (lp_l.copy(), rp_l.copy(), lp_r.copy(), rp_r.copy())
        for i, p in enumerate(pos):
            shared = level <= 2 or level == levels - 1
            before, after = slice(p - steps, p), slice(p, p + steps)
            # positions left of p take p's bounds (as offsets from it) as their right-hand estimate, right
            # of p (and p itself) as their left-hand one; the reference's integer arrays truncate
            to_lp, to_rp = l_seg[i] - mp[p], r_seg[i] - mp[p]
            lp_r[before], rp_r[before] = np.trunc(mp[before] + to_lp), np.trunc(mp[before] + to_rp)
            lp_l[after], rp_l[after] = np.trunc(mp[after] + to_lp), np.trunc(mp[after] + to_rp)
            if shared or i == 0:
                lp_l[before], rp_l[before] = lp_r[before], rp_r[before]
            else:
                lp_l[before], rp_l[before] = prev[0][before], prev[1][before]
            if shared or i == len(pos) - 1:
                lp_r[after], rp_r[after] = lp_l[after], rp_l[after]
            else:
                lp_r[after], rp_r[after] = prev[2][after], prev[3][after]
    return np.round((lp_l + lp_r) / 2), np.round((rp_l + rp_r) / 2), mp


def _ratio(p, box, anchors, box_clamp):
    """``exp(box_k) * anchor_k`` of each state's highest-scoring anchor (the first one on ties)."""
    best = np.argmax(p, axis=1)
    return np.exp(np.clip(box[np.arange(len(best)), best], -box_clamp, box_clamp)) * anchors[best]


# --------------------------------------------------------------------------------------------------
# the experiment: train on samples of the train split, then count every test video
# --------------------------------------------------------------------------------------------------
def train_counter(run: ExperimentRun, net, train: VideoList):
    """Fine-tune ``net`` as :class:`~vssl.methods.repetition_counter.RepetitionCounter` through the engine.

    An epoch is one pass over the samples in batches, each tracked for ``track_steps`` optimizer steps,
    so ``recipe.epochs`` epochs are ``epochs x (samples // batch) x track_steps`` steps (``recipe.steps``
    wins when set); checkpoints once per epoch, resumed after a kill. Returns (method, timings).
    """
    recipe, data = run.recipe, run.data_config()
    params = RepetitionCounter.Config(clip_frames=recipe.num_frames, samples_per_video=recipe.train_clips_per_video,
                                      flip=run.experiment.flip and recipe.flip)

    def run_config(max_steps: int, milestones, ckpt_every: int):
        return recipe.run_config("repetition_counter", params, run.backbone, data, run.seed, run.device, max_steps,
                                 milestones, 0, ckpt_every=ckpt_every)

    dataset = RepetitionCounter.training_set(train, run.video_root, run_config(1, [], 0), failure_log=run.failure_log)
    per_epoch = steps_per_epoch(len(dataset), recipe.batch_size) * params.track_steps
    epoch_based = recipe.steps == 0
    engine_run = run_config(recipe.steps or recipe.epochs * per_epoch,
                            [int(m * per_epoch) for m in recipe.milestones] if epoch_based else [],
                            per_epoch if epoch_based else 0)
    method = RepetitionCounter(params, net, engine_run)
    t = time.perf_counter()
    summary = Trainer(engine_run, method, dataset, run.workdir, resume=epoch_based).fit()
    return method, {"train_s": time.perf_counter() - t, "train_steps": summary["step"],
                    "final_loss": summary.get("loss"), "train_samples": len(dataset)}


@torch.no_grad()
def count_videos(method, test: VideoList, root, data, device, failure_log: Path):
    """Counts (K,) and true counts (K,) of the K test videos that decode, each counted whole (start to end
    frame), and the paths of the others: an unreadable video is left out (never replaced) and recorded in
    ``failure_log``; the run reports it."""
    method = method.to(device).eval()
    amp = device.type == "cuda"
    preds, labels, dropped = [], [], []
    for r in test.records:
        path = resolve_video_path(root, r.path)
        try:
            video = load_segment(path, int(r.meta["start_frame"]), int(r.meta["end_frame"]), data.crop_size,
                                 data.backend).to(device)
        except Exception as e:  # noqa: BLE001 - a broken video must not end the run
            record_failures(failure_log, [(r.path, str(getattr(e, "reason", e)).replace("\n", " "))])
            dropped.append(r.path)
            continue
        n = video.shape[1]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            count = count_repetitions(lambda lp, mp, rp: method.state_scores(video, n, lp, mp, rp), n,
                                      method.cfg.anchors, left_context=method.cfg.left_context,
                                      right_context=method.cfg.right_context)
        preds.append(float(count))
        labels.append(float(r.label))
    return torch.tensor(preds), torch.tensor(labels), dropped
