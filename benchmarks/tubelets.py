"""Tubelet synthesis throughput: vssl's batched ``TubeletSynthesizer`` against a per-sample baseline.

The baseline is written here the straightforward way the reference code (``fmthoker/tubelet-contrast:
tubelets.py``, ``tubelet_transformation.py``) does the pasting: a Python loop over samples, tubelets
and frames; the patch is cropped from a source frame, resized to the frame's box size and rotated
with PIL (the reference uses OpenCV the same way), then alpha-blended into clip i and into its
partner clip with numpy, clipped at the frame border. Trajectories are smoothed random paths, angles
a random walk, as in vssl, so both sides do the same amount of work per tubelet.

Both sides produce two views per clip. Rows: vssl on the CPU, vssl on the GPU (when there is one,
float clips already on the device), the baseline on the CPU (for the GPU row, plus the copies to and
from the host that a loader-side implementation implies). The ratio is clips/s over the baseline's.

Usage:
    python benchmarks/tubelets.py --tiny          # CPU, batch 8, 16x112x112
    python benchmarks/tubelets.py                 # batch 32, 16x112x112, CPU and GPU
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

try:
    from benchmarks.common import hardware, markdown_table, median, time_calls, use_cpu_time, write_json
except ImportError:  # run as a script
    from common import hardware, markdown_table, median, time_calls, use_cpu_time, write_json

from vssl.methods.tubelets import TubeletConfig, TubeletSynthesizer

SIZES = {"full": (32, 16, 112), "tiny": (8, 16, 112), "smoke": (2, 8, 32)}  # batch, frames, side


def _smooth_path(rng: np.random.Generator, frames: int, cfg: TubeletConfig) -> np.ndarray:
    pts = rng.random((2, cfg.traj_points))
    radius = min(int(4 * cfg.traj_sigma + 0.5), cfg.traj_points - 1)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / cfg.traj_sigma) ** 2)
    k /= k.sum()
    pts = np.stack([np.convolve(np.pad(p, radius, mode="reflect"), k, mode="valid") for p in pts])
    pts = (pts - pts.min(1, keepdims=True)) / np.maximum(np.ptp(pts, 1, keepdims=True), 1e-6)
    pick = np.linspace(0, cfg.traj_points - 1, frames).round().astype(int)
    return pts[:, pick].T  # (T, 2) in [0, 1]


def baseline_tubelets(clips: np.ndarray, cfg: TubeletConfig, rng: np.random.Generator):
    """Per-sample, per-tubelet, per-frame pasting. ``clips`` float32 (B, C, T, H, W) in [0, 1]."""
    b, c, t, h, w = clips.shape
    partner = np.roll(rng.permutation(b), 1)
    view1, view2 = clips.copy(), clips[partner].copy()
    base = min(h, w)
    for i in range(b):
        for _ in range(cfg.num_tubelets):
            s = rng.choice(cfg.scales) * np.exp(rng.uniform(-cfg.scale_jitter, cfg.scale_jitter))
            r = rng.choice(cfg.ratios)
            bw = int(np.clip(s * np.sqrt(r) * base, 2, w - 1))
            bh = int(np.clip(s / np.sqrt(r) * base, 2, h - 1))
            src = rng.integers(t)
            y0, x0 = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
            patch = (clips[i, :, src, y0:y0 + bh, x0:x0 + bw].transpose(1, 2, 0) * 255).astype(np.uint8)
            patch_img = Image.fromarray(patch)
            extent = rng.uniform(*cfg.traj_extent) * base
            path = _smooth_path(rng, t, cfg) * extent + rng.random(2) * max(base - extent, 0)
            angle = np.cumsum(rng.uniform(-cfg.rotation_velocity, cfg.rotation_velocity, t))
            opacity = rng.uniform(*cfg.opacity)
            for f in range(t):
                grow = np.exp(rng.uniform(-cfg.scale_velocity, cfg.scale_velocity, 2))
                size = (max(2, int(bw * grow[0])), max(2, int(bh * grow[1])))
                frame_patch = patch_img.resize(size, Image.BILINEAR)
                mask_img = Image.new("L", size, 255)
                frame_patch = frame_patch.rotate(float(angle[f]), Image.BILINEAR, expand=True)
                mask_img = mask_img.rotate(float(angle[f]), Image.BILINEAR, expand=True)
                p = np.asarray(frame_patch, dtype=np.float32).transpose(2, 0, 1) / 255
                a = np.asarray(mask_img, dtype=np.float32) / 255 * opacity
                ph, pw = a.shape
                cx, cy = path[f]
                top, left = int(cy - ph / 2), int(cx - pw / 2)
                y1, y2, x1, x2 = max(top, 0), min(top + ph, h), max(left, 0), min(left + pw, w)
                if y1 >= y2 or x1 >= x2:
                    continue
                pa = a[y1 - top:y2 - top, x1 - left:x2 - left]
                pp = p[:, y1 - top:y2 - top, x1 - left:x2 - left]
                for view in (view1, view2):
                    region = view[i, :, f, y1:y2, x1:x2]
                    view[i, :, f, y1:y2, x1:x2] = region * (1 - pa) + pp * pa
    return view1, view2, partner


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tiny", action="store_true")
    g.add_argument("--smoke", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where vssl's synthesizer runs besides the CPU row")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--cpu-time", action="store_true",
                   help="time CPU cases by process CPU time (use with --threads 1 on a shared machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = use_cpu_time(args.cpu_time)
    size_name = "smoke" if args.smoke else "tiny" if args.tiny else "full"
    batch, frames, side = SIZES[size_name]
    steps = args.steps or (3 if size_name == "smoke" else 5)
    cfg = TubeletConfig()
    synth = TubeletSynthesizer(cfg, window=True)  # explicit: the default (None) picks the whole frame on CUDA
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    clips = torch.rand(batch, 3, frames, side, side)
    clips_np = clips.numpy()
    print(f"# tubelets ({size_name}: batch {batch}, {frames}x{side}x{side}, {cfg.num_tubelets} tubelets, "
          f"{cfg.motion} motion, {cfg.transform}, timed by {clock}) on {hardware()}", flush=True)

    # interleave the CPU rows so that machine load hits both alike
    full = TubeletSynthesizer(cfg, window=False)  # the whole-frame path (vssl before the windows)
    times = {"vssl_cpu": [], "baseline_cpu": [], "full_frame_cpu": []}
    synth(clips), full(clips), baseline_tubelets(clips_np, cfg, rng)  # warm-up
    for _ in range(steps):
        times["vssl_cpu"] += time_calls(lambda: synth(clips), 1, 0, "cpu")
        times["baseline_cpu"] += time_calls(lambda: baseline_tubelets(clips_np, cfg, rng), 1, 0, "cpu")
        times["full_frame_cpu"] += time_calls(lambda: full(clips), 1, 0, "cpu")
    rows = [{"impl": "baseline (per-sample numpy/PIL)", "device": "cpu", "s": median(times["baseline_cpu"])},
            {"impl": "vssl TubeletSynthesizer", "device": "cpu", "s": median(times["vssl_cpu"])}]
    # vssl's windowed synthesis against its own whole-frame path (window=False), same run
    whole = [{"device": "cpu", "windowed_ms": rows[1]["s"] * 1e3, "whole_frame_ms": median(times["full_frame_cpu"]) * 1e3}]
    device = torch.device(args.device)
    if device.type == "cuda":
        on_dev = clips.to(device)

        def baseline_roundtrip():
            v1, v2, _ = baseline_tubelets(on_dev.cpu().numpy(), cfg, rng)
            torch.from_numpy(v1).to(device), torch.from_numpy(v2).to(device)

        gpu = time_calls(lambda: synth(on_dev), steps * 4, 3, device)
        gpu_full = time_calls(lambda: full(on_dev), steps * 4, 3, device)
        rt = time_calls(baseline_roundtrip, steps, 1, device)
        rows += [{"impl": "baseline + host copies", "device": "cpu<->cuda", "s": median(rt)},
                 {"impl": "vssl TubeletSynthesizer", "device": "cuda", "s": median(gpu)}]
        whole.append({"device": "cuda", "windowed_ms": median(gpu) * 1e3, "whole_frame_ms": median(gpu_full) * 1e3})
    base = rows[0]["s"]
    for r in rows:
        r["clips_s"] = batch / r["s"]
        r["speedup"] = base / r["s"]
        r["ms_per_batch"] = r["s"] * 1e3
    print(markdown_table(["implementation", "device", "ms/batch", "clips/s", "vs baseline (CPU)"],
                         [[r["impl"], r["device"], f"{r['ms_per_batch']:.1f}", f"{r['clips_s']:.1f}",
                           f"{r['speedup']:.2f}x"] for r in rows]))
    for r in whole:
        r["speedup"] = r["whole_frame_ms"] / r["windowed_ms"]
    print(markdown_table(["vssl synthesis", "device", "windowed ms/batch", "whole frame (window=False) ms/batch",
                          "windowed vs whole frame"],
                         [["TubeletSynthesizer", r["device"], f"{r['windowed_ms']:.1f}", f"{r['whole_frame_ms']:.1f}",
                           f"{r['speedup']:.2f}x"] for r in whole]))
    write_json(args.json, {"benchmark": "tubelets", "size": size_name, "batch": batch, "hardware": hardware(),
                           "clock": clock, "rows": rows, "whole_frame": whole, "times": times})
    return rows


if __name__ == "__main__":
    main()
