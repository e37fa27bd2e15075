"""``vssl viz tubelets``: tubelet-contrast pairs exactly as a pretraining recipe makes them.

The config is read and built the way ``vssl pretrain`` does (``vssl.engine.run``: the training
dataset, the backbone, the method), and the pairs are ``TubeletContrast.make_views`` of one batch
of training clips: per-clip crop and flip, the same tubelets pasted on clip ``i`` and on clip
``partner[i]``, the shared colour jitter. Only the final ImageNet normalisation is undone for
display. The synthesizer reports every tubelet's box centre per frame (``info["centres"]``, in the
pixels of the cropped views), which the ``--trajectories`` overlay draws.

Outputs in ``--out``: ``pair_XX.gif`` per pair (view 1 | view 2, every frame), ``tubelets.png``
(a contact sheet: two rows per pair, up to 8 evenly spaced frames) and ``tubelets.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vssl.errors import ConfigError, VsslError
from vssl.viz.common import (TUBELET_COLOURS, grid, hstack, panel_offsets, pick_frames, save_gif, save_png,
                             to_frames, upscale, with_header, zoom_for)


def make_pairs(config: str | os.PathLike, n: int = 8, seed: int = 0, overrides: Sequence[str] = (),
               device: str = "cpu") -> dict:
    """One batch of tubelet pairs from a ``tubelet_contrast`` run config.

    Args:
        config: the YAML recipe (or a run's resolved ``config.yaml``).
        n: pairs (= clips in the batch, at least 2: each view 2 is another clip of the batch).
        seed: picks the clips and seeds every random draw (the same pairs every time).
        overrides: ``--set`` strings (e.g. the data paths of a recipe that leaves them ``SET_ME``).
        device: where the views are made.

    Returns:
        ``view1``, ``view2``: uint8 (n, T, S, S, 3); ``centres`` (n, N, T, 2) box centres in view
        pixels (x, y); ``sizes`` (n, N, 2); ``alpha`` (n, N, T, S, S) tubelet masks; ``items`` and
        ``partner_items``: dataset indices of the clips behind each view (the ones served: an
        unreadable video is replaced by the next); ``skipped``: [(path, reason)] of the unreadable
        videos; ``cfg``: the run config.
    """
    import torch

    from vssl.config import load_config
    from vssl.data.dataset import collect_failures
    from vssl.distributed import resolve_device, seed_everything
    from vssl.engine.run import build_backbone, build_dataset
    from vssl.methods import METHODS, build_method

    cfg = load_config(config, list(overrides))
    if cfg.method.name != "tubelet_contrast":
        raise ConfigError(f"{config}: method.name is {cfg.method.name!r}; "
                          "`viz tubelets` needs a tubelet_contrast recipe")
    if n < 2:
        raise VsslError("--n: a tubelet pair needs at least 2 clips (view 2 is always another video)")
    seed_everything(seed)
    try:
        dataset, *_ = build_dataset(cfg, num_clips=1, method_cls=METHODS[cfg.method.name])
    except (OSError, VsslError) as e:
        if isinstance(e, ConfigError):
            raise
        raise VsslError(f"{config}: cannot read the training videos ({e}); set data.annotations and data.root "
                        "with --set, or pass the config.yaml of a pretraining run") from None
    if len(dataset) < 2:
        raise VsslError(f"{config}: the training set has {len(dataset)} video(s); pairs need at least 2")
    n = min(n, len(dataset))
    requested = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    from vssl.data.collate import collate_clips

    served = [dataset[i] for i in requested]  # an unreadable video is replaced by the next one
    items = [s["index"] for s in served]  # so rows are labelled with the clip actually shown
    batch = collate_clips(served)  # the (uint8) batch the loader would give
    dev = resolve_device(device)
    method = build_method(cfg, build_backbone(cfg)).to(dev)
    seed_everything(seed)
    v1, v2, info = method.make_views(batch["video"].to(dev), batch["frame_size"])
    from vssl.data.transforms import denormalize

    partner = info["partner"].cpu().tolist()
    return {"view1": np.stack([to_frames(v) for v in denormalize(v1).clamp(0, 1)]),
            "view2": np.stack([to_frames(v) for v in denormalize(v2).clamp(0, 1)]),
            "centres": info["centres"].cpu().numpy(), "sizes": info["sizes"].cpu().numpy(),
            "alpha": info["alpha"].cpu().numpy(),
            "items": items, "partner_items": [items[p] for p in partner], "cfg": cfg,
            "skipped": collect_failures(dataset)}


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a bool mask (H, W): inside, with a 4-neighbour outside (or the border)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def draw_trajectories(frames: np.ndarray, centres: np.ndarray, zoom: int, frame_index: Sequence[int],
                      alpha: np.ndarray | None = None) -> np.ndarray:
    """Draw each tubelet's path (a line through its centres over the whole clip), its current centre
    (a dot) and, given ``alpha``, its outline (alpha > 0.5) on already upscaled frames.

    Args:
        frames: uint8 (K, H*zoom, W*zoom, 3), K frames of one view.
        centres: (N, T, 2) centres in un-zoomed pixels (x, y), pixel i covering [i, i + 1).
        zoom: the upscaling factor of ``frames``.
        frame_index: the clip frame (0..T-1) each of the K frames shows.
        alpha: optional (N, T, H, W) tubelet alpha masks.
    """
    from PIL import Image, ImageDraw

    out = []
    r = max(2, zoom)
    for img, t in zip(frames, frame_index):
        img = img.copy()
        for k in range(len(centres) if alpha is not None else 0):
            edge = outline(upscale((alpha[k, t] > 0.5)[..., None], zoom)[..., 0])
            img[edge] = TUBELET_COLOURS[k % len(TUBELET_COLOURS)]
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        for k, path in enumerate(centres):
            colour = TUBELET_COLOURS[k % len(TUBELET_COLOURS)]
            pts = [(float(x) * zoom, float(y) * zoom) for x, y in path]
            draw.line(pts, fill=colour, width=max(1, zoom // 2))
            x, y = pts[t]
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(0, 0, 0))
        out.append(np.asarray(pil))
    return np.stack(out)


def render_pairs(pairs: dict, out_dir: str | os.PathLike, trajectories: bool = False, fps: float = 8.0,
                 sheet_frames: int = 8) -> dict:
    """Write the GIFs, the contact sheet and ``tubelets.json`` for :func:`make_pairs`' output.

    Sizes (S-pixel views, zoom ``z = zoom_for(S, 128)`` for GIFs and ``zoom_for(S, 96)`` for the sheet):
    a GIF frame is ``HEADER + 2 * GAP + S z + TIME_BAR`` high and ``3 * GAP + 2 S z`` wide; the sheet
    is a :func:`vssl.viz.common.grid` of ``2 n`` rows and ``min(T, sheet_frames)`` columns.

    Returns:
        ``{"sheet": Path, "gifs": [Path], "json": Path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    v1, v2, centres = pairs["view1"], pairs["view2"], pairs["centres"]
    n, t, s = v1.shape[:3]
    gifs = []
    z = zoom_for(s, 128)
    for i in range(n):
        a, b = upscale(v1[i], z), upscale(v2[i], z)
        if trajectories:
            a = draw_trajectories(a, centres[i], z, range(t), pairs["alpha"][i])
            b = draw_trajectories(b, centres[i], z, range(t), pairs["alpha"][i])
        labels = [f"view 1: clip #{pairs['items'][i]}", f"view 2: clip #{pairs['partner_items'][i]}"]
        xs = panel_offsets([s * z, s * z])
        frames = [with_header(hstack([a[f], b[f]]), labels, xs, [s * z] * 2) for f in range(t)]
        gifs.append(save_gif(frames, out / f"pair_{i:02d}.gif", fps))

    z = zoom_for(s, 96)
    cols = pick_frames(t, sheet_frames)
    rows, names = [], []
    for i in range(n):
        for view, tag, item in ((v1, "view 1", pairs["items"][i]), (v2, "view 2", pairs["partner_items"][i])):
            tiles = upscale(view[i][cols], z)
            if trajectories:
                tiles = draw_trajectories(tiles, centres[i], z, cols, pairs["alpha"][i])
            rows.append(list(tiles))
            names.append(f"pair {i} {tag} #{item}")
    sheet = save_png(grid(rows, names, [f"t={f}" for f in cols]), out / "tubelets.png")
    meta = [{"pair": i, "clip": pairs["items"][i], "partner_clip": pairs["partner_items"][i],
             "centres_xy": np.round(centres[i], 3).tolist(), "sizes_wh": np.round(pairs["sizes"][i], 3).tolist()}
            for i in range(n)]
    js = out / "tubelets.json"
    skipped = [{"video": p, "reason": r} for p, r in pairs.get("skipped", [])]
    js.write_text(json.dumps({"frame_size": s, "num_frames": t, "pairs": meta, "skipped": skipped}, indent=1))
    return {"sheet": sheet, "gifs": gifs, "json": js}


def render_tubelet_sheet(config_path: str | os.PathLike, out_dir: str | os.PathLike, n: int = 8, seed: int = 0,
                         overrides: Sequence[str] = (), trajectories: bool = False, device: str = "cpu") -> Path:
    """The demo's entry point: pairs of a tubelet-contrast recipe -> ``out_dir/tubelets.png`` (also
    writes the per-pair GIFs). ``overrides`` as ``vssl pretrain --set``; returns the sheet's path."""
    pairs = make_pairs(config_path, n, seed, overrides, device)
    return render_pairs(pairs, out_dir, trajectories)["sheet"]
