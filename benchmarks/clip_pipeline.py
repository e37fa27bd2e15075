"""Whole-frame clips: what keeping the aspect ratio costs, from the loader's collate to the crops.

One batch of B uint8 clips of T frames at short side S (the items a ``ClipDataset`` yields), then the
training crop of SEVERE's fine-tuning (random resized crop of scale 0.08-1 to 112) and the test crop
(a centre 112 after short side S; 28 of 32 with ``--smoke``). Cases, timed round-robin in one run so
that machine load hits all alike, each as collate + train crop + test crop per batch:

- ``square`` (the baseline: vssl before whole-frame crops): S x S centre squares cut at decode time,
  stacked; the training crop is one ``roi_align`` over the whole batch converted to float, the test
  crop a slice;
- ``16:9, whole-batch roi_align``: full S x 16/9 S frames, stacked, the baseline's crop code on them;
- ``16:9``: full frames through ``collate_clips`` and ``crop_boxes`` (each box reads only its window);
- ``mixed``: a third each of 16:9, 4:3 and portrait 9:16 frames: ``collate_clips`` pads them to one
  canvas (replicated borders), ``crop_boxes`` crops each inside its own frame;
- ``16:9 at short side 256``: as ``16:9`` with clips decoded at ``--train-size`` (the paper protocol's
  training clips; the test crop then shrinks a 256 frame's centre to 112).

Ratios are against ``square`` (ms per batch, process CPU time with ``--cpu-time``). A second table
times decoding a 16-frame clip from a 16:9 mp4 at short side S against ``--train-size`` (the paper
protocol decodes training clips at 256, tests at 128).

Usage:
    python benchmarks/clip_pipeline.py --threads 1 --cpu-time          # B 16, T 16, S 128
    python benchmarks/clip_pipeline.py --smoke
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import roi_align

try:
    from benchmarks.common import hardware, markdown_table, median, time_calls, use_cpu_time, write_json
except ImportError:  # run as a script
    from common import hardware, markdown_table, median, time_calls, use_cpu_time, write_json

from vssl.data.collate import collate_clips
from vssl.data.crops import center_crop, crop_boxes, eval_boxes, frame_sizes, rrc_params

SIZES = {"full": (16, 16, 128, 112), "smoke": (4, 4, 32, 28)}  # batch, frames, short side, crop


def whole_batch_crop(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """The baseline's crop: the whole (B, C*T, H, W) batch to float, one roi_align, back to uint8."""
    b, c, t, h, w = x.shape
    rois = torch.cat([torch.arange(b, dtype=torch.float32)[:, None], boxes.float()], 1)
    out = roi_align(x.reshape(b, c * t, h, w).float(), rois, (size, size), 1.0, -1, aligned=True)
    return out.reshape(b, c, t, size, size).round().clamp_(0, 255).to(torch.uint8)


def items(shapes: list[tuple[int, int]], frames: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"video": torch.randint(0, 256, (3, frames, h, w), generator=g, dtype=torch.uint8),
             "label": torch.tensor(0)} for h, w in shapes]


def case(batch_items: list[dict], how: str, short: int, crop: int):
    """One batch: collate, a training crop and the test centre crop."""
    def run():
        if how == "whole":
            x = torch.stack([i["video"] for i in batch_items])
            sizes = frame_sizes(x)
            whole_batch_crop(x, rrc_params(sizes), crop)
            center_crop(x, crop).contiguous()  # the baseline's test crop: a slice (frames already at `short`)
        else:
            batch = collate_clips(batch_items)
            x, sizes = batch["video"], batch["frame_size"]
            crop_boxes(x, rrc_params(sizes), crop)
            crop_boxes(x, eval_boxes(sizes, crop, short), crop)
    return run


def decode_rows(short: int, train_size: int, frames: int, steps: int, native=(360, 640)) -> list[dict]:
    """Decoding a clip of a 16:9 mp4 at short side ``short`` and ``train_size`` (VideoReader, PyAV)."""
    from vssl.data.video import VideoReader, write_video

    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (64, *native, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="vssl-clip-pipeline-") as tmp:
        path = Path(tmp) / "wide.mp4"
        write_video(path, video, fps=25.0, gop=16)
        indices = np.arange(0, 4 * frames, 4) % 64

        def decode(side):
            def run():
                with VideoReader(path, "pyav", 0, short_side=side) as reader:
                    reader.get_frames(indices)
            return run

        times = {side: [] for side in (short, train_size)}
        for _ in range(steps):
            for side in times:
                times[side] += time_calls(decode(side), 1, 0, "cpu")
    base = median(times[short])
    return [{"short_side": side, "ms": median(t) * 1e3, "vs": median(t) / base} for side, t in times.items()]


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--train-size", type=int, default=256)
    p.add_argument("--json", default=None)
    p.add_argument("--cpu-time", action="store_true",
                   help="time by process CPU time (use with --threads 1 on a shared machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = use_cpu_time(args.cpu_time)
    size_name = "smoke" if args.smoke else "full"
    b, t, s, crop = SIZES[size_name]
    steps = args.steps or (2 if args.smoke else 7)
    wide, four_three = (s, round(s * 16 / 9)), (s, round(s * 4 / 3))
    mixed = [[wide, four_three, wide[::-1]][i % 3] for i in range(b)]
    cases = {"square": case(items([(s, s)] * b, t), "whole", s, crop),
             "16:9, whole-batch roi_align": case(items([wide] * b, t), "whole", s, crop),
             "16:9": case(items([wide] * b, t), "windows", s, crop),
             "mixed 16:9 / 4:3 / 9:16": case(items(mixed, t), "windows", s, crop)}
    if not args.smoke:  # the paper protocol's training clips: decoded at --train-size, cropped to 112
        big = (args.train_size, round(args.train_size * 16 / 9))
        cases[f"16:9 at short side {args.train_size}"] = case(items([big] * b, t), "windows", s, crop)
    print(f"# clip pipeline ({size_name}: batch {b}, {t} frames, short side {s}, timed by {clock}) on {hardware()}",
          flush=True)
    times = {name: [] for name in cases}
    for fn in cases.values():
        fn()  # warm-up
    for _ in range(steps):
        for name, fn in cases.items():
            times[name] += time_calls(fn, 1, 0, "cpu")
    base = median(times["square"])
    rows = [{"case": name, "ms": median(ts) * 1e3, "vs_square": median(ts) / base} for name, ts in times.items()]
    print(markdown_table(["case (collate + RRC crop + test crop)", "ms/batch", "vs square"],
                         [[r["case"], f"{r['ms']:.1f}", f"{r['vs_square']:.2f}x"] for r in rows]))
    native = (72, 128) if args.smoke else (360, 640)
    dec = decode_rows(s, 48 if args.smoke else args.train_size, t, steps, native)
    what = f"decode a clip of a {native[1]}x{native[0]} mp4 at short side"
    print(markdown_table([what, "ms/clip", "vs the test size"],
                         [[r["short_side"], f"{r['ms']:.1f}", f"{r['vs']:.2f}x"] for r in dec]))
    write_json(args.json, {"benchmark": "clip_pipeline", "size": size_name, "hardware": hardware(), "clock": clock,
                           "rows": rows, "decode": dec, "times": times})
    return rows


if __name__ == "__main__":
    main()
