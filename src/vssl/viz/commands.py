"""``vssl viz tubelets | reconstruct | saliency | segment``: the command-line adapters of :mod:`vssl.viz`."""

from __future__ import annotations

from pathlib import Path

import torch

from vssl.viz.reconstruct import render_reconstructions
from vssl.viz.saliency import render_saliency
from vssl.viz.segment import SegmentSettings, segment_davis
from vssl.viz.tubelets import make_pairs, render_pairs


def tubelets_command(args) -> int:
    """``vssl viz tubelets --config C [--n 8] --out DIR [--trajectories] [--seed 0] [--set k=v]``."""
    pairs = make_pairs(args.config, args.n, args.seed, getattr(args, "overrides", []) or [],
                       getattr(args, "device", "cpu"))
    paths = render_pairs(pairs, args.out, args.trajectories)
    print(f"vssl: {len(paths['gifs'])} tubelet pairs -> {paths['sheet']} and {len(paths['gifs'])} GIFs in {args.out}")
    for path, reason in pairs["skipped"]:
        print(f"vssl: skipped unreadable video {path}: {reason}")
    return 0


def reconstruct_command(args) -> int:
    """``vssl viz reconstruct --checkpoint CKPT --videos V [V ...] --out DIR [--seed] [--assign]``."""
    rows = render_reconstructions(args.checkpoint, args.videos, args.out, args.seed,
                                  getattr(args, "assign", "argmax"), getattr(args, "device", "cpu"),
                                  getattr(args, "frames", None), getattr(args, "stride", None),
                                  getattr(args, "size", None))
    for r in rows:
        metrics = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r["metrics"].items())
        print(f"vssl: {r['video']}: {metrics} -> {r['png']}")
    return 0


def saliency_command(args) -> int:
    """``vssl viz saliency --checkpoint A [B ...] --videos V [V ...] --out DIR [--backbone] [--target]
    [--vit-method] [--frames] [--stride] [--size] [--device]``."""
    pngs = render_saliency(args.checkpoint, args.videos, args.out, getattr(args, "backbone", None),
                           getattr(args, "target", "auto"), getattr(args, "vit_method", "gradient"),
                           getattr(args, "device", "cpu"), getattr(args, "frames", None),
                           getattr(args, "stride", None), getattr(args, "size", None))
    print(f"vssl: saliency of {len(args.checkpoint)} checkpoint(s) on {len(pngs)} clip(s) -> {args.out}")
    return 0


def segment_command(args) -> int:
    """``vssl viz segment [--checkpoint C] [--backbone B] --davis DIR --out DIR [--assign ...]``."""
    device = getattr(args, "device", "auto") or "auto"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = SegmentSettings(assign=getattr(args, "assign", "auto"), clusters=getattr(args, "clusters", 0),
                               frames=getattr(args, "frames", 16), size=getattr(args, "size", 0),
                               max_videos=getattr(args, "max_videos", 0))
    res = segment_davis(args.davis, args.out, args.checkpoint, args.backbone, settings, device)
    o = res["overall"]
    print(f"DAVIS-2017 unsupervised ({res['settings']['assign']}): J&F {o['J&F-Mean']:.3f}  J {o['J-Mean']:.3f}  "
          f"F {o['F-Mean']:.3f}  over {o['videos']} videos / {o['objects']} objects "
          f"-> {Path(args.out) / 'segment.json'}")
    if res["skipped"]:
        print(f"vssl: {len(res['skipped'])} unreadable DAVIS videos skipped (listed in segment.json)")
    return 0
