"""DAVIS-2017 video object segmentation scores: J, F and J&F, unsupervised matching (the folder
layout and its files are read and written by :mod:`vssl.data.davis`).

Follows the official evaluation (``davisvideochallenge/davis2017-evaluation``: ``davis2017/metrics.py``,
``evaluation.py``, ``utils.py``; Pont-Tuset et al., "The 2017 DAVIS Challenge on Video Object
Segmentation", arXiv 1704.00675):

- **J** (region similarity): the IoU of a predicted and an annotated mask; 1 when both are empty.
- **F** (boundary F-measure): one-pixel boundary maps of both masks (``seg2bmap``: a pixel is on the
  boundary when it differs from its east, south or south-east neighbour), each dilated by a disk of
  radius ``ceil(0.008 * image diagonal)``; precision = predicted boundary pixels within the other
  dilated boundary, recall the converse, F their harmonic mean (the official empty-boundary cases).
- **Unsupervised** task: every predicted segment ("proposal", at most 20) is scored against every
  annotated object; the Hungarian algorithm picks the one-to-one assignment with the largest mean of
  J and F over the frames; unmatched objects are scored against an empty mask.
- Per object: Mean, Recall (fraction of frames above 0.5) and Decay (first quarter minus last quarter
  of the frames); overall: means over all objects of all videos, ``J&F-Mean = (J-Mean + F-Mean) / 2``.

Deviations from the official code, on purpose: the dilation is an exact Euclidean
distance threshold (identical to OpenCV's dilation with skimage's ``disk``, without needing either);
the number of objects of a video is the largest id over *all* frames (the official reader takes the
first frame's; the same whenever every object is in the first frame, as DAVIS guarantees).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from vssl.data.davis import read_masks

BOUND_TH = 0.008      # boundary tolerance, fraction of the image diagonal
MAX_PROPOSALS = 20    # the unsupervised task's limit on predicted segments per video


# --- J and F -----------------------------------------------------------------------------------

def db_eval_iou(annotation: np.ndarray, segmentation: np.ndarray) -> np.ndarray | float:
    """J per frame: IoU over the last two axes; 1 where both masks are empty."""
    a, s = np.asarray(annotation, bool), np.asarray(segmentation, bool)
    if a.shape != s.shape:
        raise ValueError(f"annotation {a.shape} and segmentation {s.shape} differ in shape")
    inter = np.sum(a & s, axis=(-2, -1))
    union = np.sum(a | s, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float(j) if j.ndim == 0 else j


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a binary mask (official ``_seg2bmap`` at the mask's own size)."""
    seg = np.asarray(seg, bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def bound_pixels(shape: tuple[int, ...], bound_th: float = BOUND_TH) -> float:
    """Tolerance in pixels: ``bound_th`` itself when >= 1, else ceil(bound_th * diagonal)."""
    return float(bound_th) if bound_th >= 1 else float(math.ceil(bound_th * math.hypot(*shape[-2:])))


def dilate(boundary: np.ndarray, radius: float) -> np.ndarray:
    """Dilation by the disk x^2 + y^2 <= r^2 (skimage ``disk``), as an exact distance threshold."""
    from scipy.ndimage import distance_transform_edt

    if not boundary.any():
        return np.zeros_like(boundary, bool)
    return distance_transform_edt(~boundary) <= radius


def _f_from_counts(n_fg, n_gt, fg_match, gt_match):
    """Boundary F from pixel counts (broadcasting arrays or scalars), with the official empty cases:
    no predicted boundary -> precision 1, no annotated boundary -> recall 1, both empty -> F = 1."""
    n_fg, n_gt = np.asarray(n_fg, float), np.asarray(n_gt, float)
    precision = np.where(n_fg == 0, 1.0, np.asarray(fg_match, float) / np.maximum(n_fg, 1))
    recall = np.where(n_gt == 0, 1.0, np.asarray(gt_match, float) / np.maximum(n_gt, 1))
    precision = np.where((n_fg > 0) & (n_gt == 0), 0.0, precision)
    recall = np.where((n_fg == 0) & (n_gt > 0), 0.0, recall)
    total = precision + recall
    f = np.where(total == 0, 0.0, 2 * precision * recall / np.where(total == 0, 1, total))
    return float(f) if f.ndim == 0 else f


def f_measure(foreground: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """F of one frame: boundary precision/recall of ``foreground`` against ``gt`` (both (H, W))."""
    r = bound_pixels(np.shape(gt), bound_th)
    fg_b, gt_b = seg2bmap(foreground), seg2bmap(gt)
    fg_match = int(np.sum(fg_b & dilate(gt_b, r)))
    gt_match = int(np.sum(gt_b & dilate(fg_b, r)))
    return _f_from_counts(int(fg_b.sum()), int(gt_b.sum()), fg_match, gt_match)


def db_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of one object's per-frame J or F (official ``db_statistics``)."""
    v = np.asarray(per_frame, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = float(np.nanmean(v))
        recall = float(np.nanmean(v > 0.5))
        ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(int)
        bins = [v[ids[i]:ids[i + 1] + 1] for i in range(4)]
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


# --- the unsupervised task ---------------------------------------------------------------------

def _frame_boundaries(ids: np.ndarray, labels: list[int], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Boundary maps (L, H, W) of ``ids == label`` for each label, and their dilations."""
    b = np.stack([seg2bmap(ids == lab) for lab in labels]) if labels else np.zeros((0, *ids.shape), bool)
    return b, np.stack([dilate(x, radius) for x in b]) if labels else b


def pairwise_jf(gt_ids: np.ndarray, pred_ids: np.ndarray, objects: list[int], proposals: list[int],
                bound_th: float = BOUND_TH) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every (proposal, object, frame) of two id maps (T, H, W): arrays (P, O, T).

    Works frame by frame on the id maps (no (P, T, H, W) mask stack, which would not fit in memory at
    480p with 20 proposals); each mask's boundary is dilated once per frame, so P x O pairs cost P + O
    dilations. A label absent from the maps is an empty mask."""
    gt_ids, pred_ids = np.asarray(gt_ids), np.asarray(pred_ids)
    radius = bound_pixels(gt_ids.shape, bound_th)
    P, O, T = len(proposals), len(objects), len(gt_ids)
    j, f = np.zeros((P, O, T)), np.zeros((P, O, T))
    gl = np.array(objects).reshape(1, -1, 1, 1)
    pl = np.array(proposals).reshape(-1, 1, 1, 1)
    for t in range(T):
        g = gt_ids[t][None] == gl[0]                     # (O, H, W)
        p = pred_ids[t][None] == pl[:, 0]                # (P, H, W)
        inter = np.einsum("phw,ohw->po", p.astype(np.float32), g.astype(np.float32))
        union = p.sum((1, 2))[:, None] + g.sum((1, 2))[None] - inter
        j[:, :, t] = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
        gb, gd = _frame_boundaries(gt_ids[t], objects, radius)
        pb, pd = _frame_boundaries(pred_ids[t], proposals, radius)
        n_gt = gb.sum((1, 2))[None].astype(float)        # (1, O)
        n_fg = pb.sum((1, 2))[:, None].astype(float)     # (P, 1)
        fg_match = np.einsum("phw,ohw->po", pb.astype(np.float32), gd.astype(np.float32))
        gt_match = np.einsum("phw,ohw->po", pd.astype(np.float32), gb.astype(np.float32))
        f[:, :, t] = _f_from_counts(n_fg, n_gt, fg_match, gt_match)
    return j, f


def match_segments(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching: (proposal indices, object indices) maximising the total ``score`` (P, O)."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(-np.asarray(score, float))


def evaluate_unsupervised(gt_ids: np.ndarray, pred_ids: np.ndarray, bound_th: float = BOUND_TH,
                          max_proposals: int = MAX_PROPOSALS, match_on: str = "JF") -> dict:
    """Score one video's predicted segments against its annotated objects (DAVIS unsupervised).

    Args:
        gt_ids: (T, H, W) annotated object ids (1..N, 0 background).
        pred_ids: (T, H, W) predicted segment ids; every id > 0 is one proposal (0 = no proposal).
        match_on: "JF" (official: mean of J and F over the frames) or "J".

    Returns:
        ``{"objects": N, "proposals": P, "match": {object id: proposal id or None}, "J": (N, T) array,
        "F": (N, T) array}``; an object left unmatched is scored against an empty mask.
    """
    gt_ids, pred_ids = np.asarray(gt_ids), np.asarray(pred_ids)
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"annotation {gt_ids.shape} and prediction {pred_ids.shape} differ in shape")
    proposal_ids = [int(i) for i in np.unique(pred_ids) if i > 0]
    if len(proposal_ids) > max_proposals:
        raise ValueError(f"{len(proposal_ids)} proposals, more than the {max_proposals} allowed")
    n = int(gt_ids.max())
    # pad with empty proposals (an id that never occurs), as the official code pads with empty masks
    padded = proposal_ids + [-1 - i for i in range(max(0, n - len(proposal_ids)))]
    j, f = pairwise_jf(gt_ids, pred_ids, list(range(1, n + 1)), padded, bound_th)
    score = j.mean(-1) if match_on == "J" else (j.mean(-1) + f.mean(-1)) / 2
    rows, cols = match_segments(score)
    order = np.argsort(cols)
    match = {int(cols[i]) + 1: (proposal_ids[rows[i]] if rows[i] < len(proposal_ids) else None) for i in order}
    return {"objects": n, "proposals": len(proposal_ids), "match": match,
            "J": j[rows[order], cols[order]], "F": f[rows[order], cols[order]]}


def summarize(videos: dict[str, dict]) -> dict:
    """Overall and per-video statistics of ``{video: evaluate_unsupervised(...)}``.

    Overall values average over every object of every video (the official ``J-Mean`` etc.);
    a video's values average over its objects.
    """
    def stats(per_object: list[np.ndarray]) -> dict:
        s = np.array([db_statistics(v) for v in per_object]) if per_object else np.full((1, 3), np.nan)
        return {"Mean": float(np.mean(s[:, 0])), "Recall": float(np.mean(s[:, 1])), "Decay": float(np.mean(s[:, 2]))}

    def block(j_list, f_list) -> dict:
        js, fs = stats(j_list), stats(f_list)
        out = {"J&F-Mean": (js["Mean"] + fs["Mean"]) / 2}
        out.update({f"J-{k}": v for k, v in js.items()})
        out.update({f"F-{k}": v for k, v in fs.items()})
        return out

    all_j, all_f, per_video = [], [], {}
    for name, res in videos.items():
        js, fs = list(res["J"]), list(res["F"])
        all_j += js
        all_f += fs
        per_video[name] = {**block(js, fs), "objects": res["objects"], "proposals": res["proposals"],
                           "match": {str(k): v for k, v in res["match"].items()}}
    return {"overall": {**block(all_j, all_f), "videos": len(videos), "objects": len(all_j)}, "per_video": per_video}


def evaluate_folder(davis_root: str | Path, results_root: str | Path, sequences: list[str] | None = None,
                    resolution: str = "480p", bound_th: float = BOUND_TH) -> dict:
    """Evaluate a results folder in the DAVIS layout (``RESULTS/<video>/00000.png``, proposal ids)."""
    sequences = sequences or [p.name for p in sorted(Path(results_root).iterdir()) if p.is_dir()]
    out = {}
    for video in sequences:
        gt = read_masks(Path(davis_root) / "Annotations" / resolution / video)
        pred = read_masks(Path(results_root) / video, len(gt), gt.shape[1:])
        out[video] = evaluate_unsupervised(gt, pred, bound_th)
    return summarize(out)


__all__ = ["BOUND_TH", "MAX_PROPOSALS", "db_eval_iou", "seg2bmap", "bound_pixels", "dilate", "f_measure",
           "db_statistics", "pairwise_jf", "match_segments", "evaluate_unsupervised", "summarize", "evaluate_folder"]
