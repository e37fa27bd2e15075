"""Data pipeline throughput per CPU core: decode + sample + augment of 16-frame clips from mp4 files.

Writes test videos into a temporary folder (10 s at 25 fps, H.264 via PyAV: 320x240 and 456x256,
each with libx264's default GOP, which leaves one or two keyframes, and with a 16-frame GOP), then for
each file and each reader measures clips/s on ONE core (the process pins itself to one CPU and sets
``torch.set_num_threads(1)``). A clip is what a map-style dataset item costs: open the file, draw a
random 16-frame clip at stride 4 (``vssl.data.sampling.random_clip``), decode those frames at the
short side (128 for the 320x240 files, 256 for the 456x256 ones), centre-crop it square as
``ClipDataset`` does, then augment: random resized crop to 112 (resp. 224) and a horizontal flip
(``vssl.data.transforms``; in training vssl runs this part batched on the GPU).

Readers, all in the same run, timed round-robin one clip at a time, every reader of a round
decoding the same random clip. The rate is clips per CPU-second of the process (1 / median
``time.process_time`` per clip; wall clips/s are printed too), so that another process holding the
core does not count; the ratio is the median of the per-clip ratios:
- ``vssl-pyav``, ``vssl-torchcodec``, ``vssl-decord``: ``vssl.data.video.VideoReader`` with that
  backend (the optional ones only when importable) and ``short_side``;
- ``vssl-pyav-dts-index``: vssl-pyav with the keyframe index as it was before issue 7's fix (MP4
  index DTS read as PTS: keyframes 2 frames early with libx264's B-frames), the baseline of that fix;
  the PyAV rows also report the frames decoded per clip (``VideoReader.last_decoded``);
- ``decord-plain`` (the baseline): ``decord.VideoReader(path, num_threads=1).get_batch(indices)`` at
  the native size, then the same crop and augmentation.

``--profile`` adds a cProfile of vssl-pyav on the default-GOP file (where the time goes).

Usage:
    python benchmarks/data_pipeline.py --tiny        # fewer clips per reader, about a minute
    python benchmarks/data_pipeline.py --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

try:
    from benchmarks.common import hardware, markdown_table, write_json
except ImportError:  # run as a script
    from common import hardware, markdown_table, write_json

from vssl.data import transforms as TF
from vssl.data.sampling import random_clip
from vssl.data.video import VideoReader

FILES = [  # name, (width, height), gop (None = libx264 default), short side, crop
    ("320x240_gopdef", (320, 240), None, 128, 112),
    ("320x240_gop16", (320, 240), 16, 128, 112),
    ("456x256_gopdef", (456, 256), None, 256, 224),
    ("456x256_gop16", (456, 256), 16, 256, 224),
]


def write_test_video(path: Path, width: int, height: int, gop: int | None, seconds: float = 10.0,
                     fps: int = 25) -> None:
    """H.264 mp4 of FFmpeg's ``testsrc2`` pattern (moving content) plus a little noise, via PyAV."""
    import av

    frames = int(seconds * fps)
    src = av.open(f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}", format="lavfi")
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop is not None:
            stream.gop_size = gop
        for i, frame in enumerate(src.decode(video=0)):
            if i >= frames:
                break
            rgb = frame.to_ndarray(format="rgb24")
            rgb = np.clip(rgb.astype(np.int16) + rng.integers(-8, 9, rgb.shape, dtype=np.int16), 0, 255)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    src.close()


def available_backends() -> list[str]:
    names = ["pyav"]
    for name, module in (("torchcodec", "torchcodec.decoders"), ("decord", "decord")):
        try:
            __import__(module)
            names.append(name)
        except Exception:  # noqa: BLE001 - ImportError, or OSError when torchcodec's FFmpeg is missing
            pass
    return names


def augment(frames: torch.Tensor, load: int, crop: int) -> torch.Tensor:
    """(T, H, W, C) uint8 -> centre square ``load`` (ClipDataset) -> random resized crop + flip."""
    h, w = frames.shape[1:3]
    top, left = (h - load) // 2, (w - load) // 2
    clip = frames[:, top:top + load, left:left + load].permute(3, 0, 1, 2)[None]  # (1, C, T, S, S)
    clip = TF.random_resized_crop(clip, crop, (0.08, 1.0))
    return TF.horizontal_flip(clip, 0.5)


DECODED: dict[str, list[int]] = {}  # reader -> frames decoded per clip (PyAV readers)


def dts_keyframes(impl) -> list[int]:
    """The PyAV reader's keyframe index before issue 7's fix: MP4 index DTS read as PTS (with B-frames
    the keyframes appear 2 frames early, e.g. [-2, 14, 30], and the reader re-seeks needlessly)."""
    entries = impl.stream.index_entries if impl.time_base else []
    return sorted(round((e.timestamp - impl.start_pts) * impl.time_base * impl.fps) for e in entries if e.is_keyframe)


def vssl_clip(path: str, backend: str, load: int, crop: int, rng, start: float | None = None,
              dts_index: bool = False) -> torch.Tensor:
    with VideoReader(path, backend, threads=0, short_side=load) as reader:
        if dts_index:  # the baseline of the keyframe fix: the old (DTS) keyframe index
            reader._impl._keyframe_cache = dts_keyframes(reader._impl)
        frames = reader.get_frames(clip_indices(reader.num_frames, rng, start))
        if backend == "pyav":
            DECODED.setdefault(f"vssl-pyav{'-dts-index' if dts_index else ''}", []).append(reader.last_decoded)
    return augment(frames, load, crop)


def clip_indices(num_frames: int, rng, start: float | None):
    """16 frames at stride 4: random (``random_clip``), or at ``start`` (a fraction of the possible
    start positions) so that every reader of a round decodes the same frames."""
    if start is None:
        return random_clip(num_frames, 16, 4, rng)
    span = (16 - 1) * 4 + 1
    first = int(start * max(num_frames - span, 0))
    return np.minimum(np.arange(first, first + span, 4), num_frames - 1)


def decord_plain_clip(path: str, load: int, crop: int, rng, start: float | None = None) -> torch.Tensor:
    """The baseline: decord at the native size, then resize to the short side and the same augment."""
    import decord

    vr = decord.VideoReader(path, num_threads=1)
    indices = clip_indices(len(vr), rng, start)
    frames = torch.from_numpy(vr.get_batch(list(indices)).asnumpy())
    del vr
    h, w = frames.shape[1:3]
    if min(h, w) != load:  # the baseline resizes after decoding (the same target size as vssl's)
        x = TF.resize_short_side(frames.permute(3, 0, 1, 2)[None], load)[0]
        frames = x.permute(1, 2, 3, 0)
    return augment(frames, load, crop)


def pin_one_core(core: int | None = None) -> str:
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0)) if core is None else core
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}, 1 torch thread"
    return "not pinned (no sched_setaffinity), 1 torch thread"


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tiny", action="store_true", help="fewer clips per reader")
    g.add_argument("--smoke", action="store_true", help="2-second 320x240 files, 2 clips (tests)")
    p.add_argument("--clips", type=int, default=None, help="clips per reader and file (default 24, tiny 8)")
    p.add_argument("--profile", action="store_true", help="cProfile vssl-pyav on the default-GOP file")
    p.add_argument("--no-pin", action="store_true", help="do not pin to one core")
    p.add_argument("--core", type=int, default=None, help="the core to pin to (default: the first allowed)")
    p.add_argument("--dir", default=None, help="where to write the test videos (default: a temp dir)")
    p.add_argument("--files", default="", help="comma-separated subset of the test files (names as in the table)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    size_name = "smoke" if args.smoke else "tiny" if args.tiny else "full"
    clips = args.clips or {"smoke": 2, "tiny": 8, "full": 24}[size_name]
    pin = "not pinned" if args.no_pin else pin_one_core(args.core)
    files = FILES[:2] if args.smoke else FILES
    if args.files:
        files = [f for f in files if f[0] in args.files.split(",")]
    seconds = 2.0 if args.smoke else 10.0
    backends = available_backends()
    readers = ([f"vssl-{b}" for b in backends] + ["vssl-pyav-dts-index"]
               + (["decord-plain"] if "decord" in backends else []))
    print(f"# data_pipeline ({size_name}: {clips} clips per reader and file, {pin}) on {hardware()}", flush=True)
    print(f"  readers: {', '.join(readers)}", flush=True)
    tmp = tempfile.TemporaryDirectory(prefix="vssl-bench-") if args.dir is None else None
    root = Path(args.dir or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for name, (w, h), gop, load, crop in files:
            path = root / f"{name}.mp4"
            if not path.exists():
                write_test_video(path, w, h, gop, seconds)
            times: dict[str, list[float]] = {r: [] for r in readers}  # process CPU seconds per clip
            walls: dict[str, list[float]] = {r: [] for r in readers}
            rng = np.random.default_rng(0)
            fns = {f"vssl-{b}": (lambda s, b=b: vssl_clip(str(path), b, load, crop, rng, s)) for b in backends}
            fns["vssl-pyav-dts-index"] = lambda s: vssl_clip(str(path), "pyav", load, crop, rng, s, dts_index=True)
            if "decord-plain" in readers:
                fns["decord-plain"] = lambda s: decord_plain_clip(str(path), load, crop, rng, s)
            for fn in fns.values():  # warm-up (imports, first open)
                fn(0.5)
            DECODED.clear()
            # round-robin, one clip each, the same random clip for every reader of a round: the
            # decode cost depends on the clip's distance from its keyframe, and load changes from
            # other processes then hit every reader alike
            for start in rng.random(clips):
                for r, fn in fns.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn(float(start))
                    times[r].append(time.process_time() - c0)
                    walls[r].append(time.perf_counter() - t0)
            # clips per CPU-second of this process (the per-core rate; unlike wall time it does not
            # count the moments another process holds the core), from the median clip; the ratio
            # is the median of the per-clip ratios (paired on the same clip)
            rate = {r: 1.0 / float(np.median(t)) for r, t in times.items()}
            base = np.array(times["decord-plain"]) if "decord-plain" in times else None
            old = np.array(times["vssl-pyav-dts-index"])
            for r in readers:
                ratio = float(np.median(base / np.array(times[r]))) if base is not None else None
                decoded = DECODED.get(r)
                rows.append({"file": name, "short_side": load, "crop": crop, "reader": r, "clips_s": rate[r],
                             "ms_clip": 1e3 / rate[r], "mean_ms_clip": 1e3 * float(np.mean(times[r])),
                             "wall_clips_s": 1.0 / float(np.median(walls[r])),
                             "vs_decord_plain": ratio,
                             "vs_pyav_dts_index": float(np.median(old / np.array(times[r]))),
                             "decoded_per_clip": float(np.mean(decoded)) if decoded else None})
        if args.profile:
            name, (w, h), gop, load, crop = files[0]
            path = root / f"{name}.mp4"
            rng = np.random.default_rng(1)
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(clips):
                vssl_clip(str(path), "pyav", load, crop, rng)  # random clips, as a dataset draws them
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(14)
            print(f"## cProfile: vssl-pyav, {clips} clips of {name} (sorted by own time)")
            print("\n".join(line for line in s.getvalue().splitlines() if line.strip())[:6000])
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(markdown_table(["file", "short side -> crop", "reader", "clips per CPU-s (1 core)", "CPU ms/clip",
                          "clips/s wall", "vs decord-plain", "vs pyav-dts-index", "frames decoded/clip"],
                         [[r["file"], f"{r['short_side']} -> {r['crop']}", r["reader"], f"{r['clips_s']:.1f}",
                           f"{r['ms_clip']:.1f}", f"{r['wall_clips_s']:.1f}",
                           f"{r['vs_decord_plain']:.2f}x" if r["vs_decord_plain"] else "n/a",
                           f"{r['vs_pyav_dts_index']:.2f}x",
                           f"{r['decoded_per_clip']:.1f}" if r["decoded_per_clip"] else ""]
                          for r in rows]))
    write_json(args.json, {"benchmark": "data_pipeline", "size": size_name, "hardware": hardware(), "pin": pin,
                           "rows": rows})
    return rows


if __name__ == "__main__":
    main()
