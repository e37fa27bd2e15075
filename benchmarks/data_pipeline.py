"""Which video files vssl reads frame-accurately, and how fast, per CPU core: the compatibility table.

For every file (by default generated in the formats SEVERE's datasets come in; or yours, with
``--files``) and its ``vssl data prepare`` output, every reader decodes the same random clips:

- ``vssl-pyav``, ``vssl-torchcodec``, ``vssl-decord``: ``vssl.data.video.VideoReader`` with that backend
  (the optional ones when importable; "-> pyav" in the table where vssl fell back to PyAV);
- ``pyav-plain`` (baseline): the loop most code uses, in the same process: seek to the first wanted
  frame's time, decode forward, frame index = round(time x fps), ``to_ndarray`` per wanted frame
  resized by swscale to the same size;
- ``decord-plain`` (baseline): ``decord.VideoReader(path, num_threads=1).get_batch(indices)`` at the
  native size, then ``resize_short_side`` in torch.

A clip is what a dataset item costs: open the file, 16 frames at stride 4 (``random_clip``), decoded
at the short side, centre square crop (as ``ClipDataset``), then a random resized crop to
``crop`` and a flip (``vssl.data.transforms``). Rates are clips per CPU-second of the process, pinned
to one core with one torch thread (time another process holds the core does not count); readers are
timed round-robin, one clip each, on the same clip; ratios are medians of the per-clip ratios.

Frame accuracy: every returned frame is compared with a sequential PyAV decode of the file (what a
player shows, frame ``i`` = the ``i``-th decoded). PyAV readers use the same swscale resize and must
match bit for bit (pyav-plain: unless its packed-RGB resize rounds differently, counted as wrong
frames only when another frame is nearer); the others (another FFmpeg, a torch resize) must be
nearest to the right frame
among its neighbours. A reader that returns another size (ignoring rotation or the sample aspect
ratio) is not accurate either.

Usage:
    python benchmarks/data_pipeline.py                      # generated 10 s 320x240 files, raw + prepared
    python benchmarks/data_pipeline.py --files a.avi b.mkv  # your files (each also prepared)
    python benchmarks/data_pipeline.py --tiny               # fewer clips
"""

from __future__ import annotations

import argparse
import os
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

# name: (file, encoder, codec context settings, encoder options); 320x240 at 25 fps
FORMATS = {
    "h264 mp4 (web, default GOP)": ("h264.mp4", "libx264", {}, {}),
    "MPEG-4 ASP AVI, B-frames (UCF101/HMDB51)": ("xvid.avi", "mpeg4", {"codec_tag": "XVID", "max_b_frames": 2,
                                                                       "bit_rate": 1_500_000}, {}),
    "VP9 webm (SSv2)": ("vp9.webm", "libvpx-vp9", {"gop_size": 48, "bit_rate": 600_000}, {"deadline": "realtime"}),
    "HEVC mp4, B-pyramid": ("hevc.mp4", "libx265", {}, {"x265-params": "log-level=error"}),
    "MPEG-2 PS (.mpg)": ("mpeg2.mpg", "mpeg2video", {"max_b_frames": 2, "bit_rate": 2_000_000}, {}),
    "h264 MPEG-TS": ("h264.ts", "libx264", {"gop_size": 50}, {}),
}
CLIP, STRIDE = 16, 4


def encode_test_video(path: Path, codec: str = "libx264", settings: dict | None = None, options: dict | None = None,
                      width: int = 320, height: int = 240, seconds: float = 10.0, fps: int = 25) -> None:
    """FFmpeg's moving ``testsrc2`` pattern plus a little noise, encoded by PyAV's FFmpeg with
    ``codec`` (``settings``: codec context attributes, ``options``: encoder options) into ``path``'s
    container."""
    import av

    rng = np.random.default_rng(0)
    source = av.open(f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}", format="lavfi")
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for key, value in (settings or {}).items():
            setattr(stream.codec_context, key, value)
        stream.options = options or {}
        for frame in source.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24").astype(np.int16) + rng.integers(-12, 13, (height, width, 3))
            picture = av.VideoFrame.from_ndarray(np.clip(rgb, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    source.close()


def write_test_video(path: Path, width: int, height: int, gop: int | None, seconds: float = 10.0,
                     fps: int = 25) -> None:
    """An H.264 mp4 test video with keyframes every ``gop`` frames (None: libx264's default)."""
    encode_test_video(path, "libx264", {} if gop is None else {"gop_size": gop}, {}, width, height, seconds, fps)


def write_formats(folder: Path, seconds: float, names) -> list[Path]:
    """The generated test files of ``FORMATS`` (existing ones are kept)."""
    paths = []
    for name in names:
        file, codec, settings, options = FORMATS[name]
        paths.append(folder / file)
        if not paths[-1].exists():
            encode_test_video(paths[-1], codec, settings, options, seconds=seconds)
    return paths


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


def vssl_clip(path: str, backend: str, indices, load: int, stats: dict) -> torch.Tensor:
    with VideoReader(path, backend, threads=0, short_side=load) as reader:
        frames = reader.get_frames(indices)
        stats["decoder"] = reader.decoder
        if reader.decoder == "pyav":
            stats.setdefault("decoded", []).append(reader.last_decoded)
    return frames


def plain_pyav_clip(path: str, indices, load: int, stats: dict) -> torch.Tensor:
    """Seek to the first frame's time, decode forward; a frame's index is round(time x fps)."""
    import av

    from vssl.data.video import scaled_size

    wanted = sorted(set(int(i) for i in indices))
    frames, decoded = {}, 0
    with av.open(path) as c:
        s = c.streams.video[0]
        fps, tb, start = float(s.average_rate or s.guessed_rate), float(s.time_base), s.start_time or 0
        h, w = scaled_size(s.codec_context.height, s.codec_context.width, load)
        c.seek(start + int(wanted[0] / fps / tb), backward=True, stream=s)
        for frame in c.decode(s):
            decoded += 1
            i = round((frame.pts - start) * tb * fps)
            if i in wanted and i not in frames:
                frames[i] = frame.to_ndarray(format="rgb24", width=w, height=h)
            if i >= wanted[-1]:
                break
    stats.setdefault("decoded", []).append(decoded)
    if not frames:
        raise RuntimeError("no frame")
    last = frames[max(frames)]
    return torch.from_numpy(np.stack([frames.get(int(i), last) for i in indices]))


def decord_plain_clip(path: str, indices, load: int, stats: dict) -> torch.Tensor:
    import decord

    vr = decord.VideoReader(path, num_threads=1)
    frames = torch.from_numpy(vr.get_batch([min(int(i), len(vr) - 1) for i in indices]).asnumpy())
    del vr
    x = TF.resize_short_side(frames.permute(3, 0, 1, 2)[None], load)[0]
    return x.permute(1, 2, 3, 0).contiguous()


def reference(path: Path, wanted: set[int], load: int) -> dict[int, np.ndarray]:
    """Frames ``wanted`` of a sequential PyAV decode, at vssl's display size for ``load``."""
    import av

    with VideoReader(path, short_side=load) as r:
        h, w, turns = r.height, r.width, r._impl.index.rotation // 90
    th, tw = (h, w) if turns % 2 == 0 else (w, h)
    out = {}
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(c.streams.video[0])):
            if i in wanted:  # swscale's output as vssl asks for it: planar RGB when resizing
                fmt = "gbrp" if (frame.height, frame.width) != (th, tw) else "rgb24"
                out[i] = np.rot90(frame.to_ndarray(format=fmt, width=tw, height=th), turns)
    return out


def wrong_frames(frames: np.ndarray, indices, ref: dict, exact: bool) -> int:
    """How many returned frames are not the frame asked for (a whole clip of another size: all)."""
    if frames.shape[1:3] != ref[int(indices[0])].shape[:2]:
        return len(indices)
    wrong = 0
    for frame, i in zip(frames, indices):
        if exact:
            wrong += not np.array_equal(frame, ref[i])  # a Python bool
            continue
        err = {j: np.abs(ref[j].astype(np.float32) - frame).mean() for j in range(i - 2, i + 3) if j in ref}
        wrong += bool(err[i] > min(err.values()) + 1e-6)
    return int(wrong)


def pin_one_core(core: int | None = None) -> str:
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0)) if core is None else core
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}, 1 torch thread"
    return "not pinned (no sched_setaffinity), 1 torch thread"


def measure(path: Path, label: str, backends: list[str], clips: int, load: int, crop: int, seed: int) -> list[dict]:
    """One row per reader for one file."""
    with VideoReader(path) as r:  # builds (and caches) the frame index before any timing
        n = r.num_frames
    rng = np.random.default_rng(seed)
    plan = [random_clip(n, CLIP, STRIDE, rng) for _ in range(clips)]
    ref = reference(path, {j for c in plan for i in c for j in range(i - 2, i + 3)}, load)
    readers = {f"vssl-{b}": (lambda idx, st, b=b: vssl_clip(str(path), b, idx, load, st)) for b in backends}
    readers["pyav-plain"] = lambda idx, st: plain_pyav_clip(str(path), idx, load, st)
    if "decord" in backends:
        readers["decord-plain"] = lambda idx, st: decord_plain_clip(str(path), idx, load, st)
    stats = {r: {} for r in readers}
    times = {r: [] for r in readers}
    wrong = {r: 0 for r in readers}
    failed: dict[str, str] = {}
    for name, fn in readers.items():  # warm-up: imports, first open
        try:
            fn(plan[0], {})
        except Exception as e:  # noqa: BLE001 - a baseline that cannot read the file is a table entry
            failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:60]}"
    for indices in plan:
        for name, fn in readers.items():
            if name in failed:
                continue
            t0 = time.process_time()
            frames = fn(indices, stats[name])
            augment(frames, min(load, *frames.shape[1:3]), crop)
            times[name].append(time.process_time() - t0)
            wrong[name] += wrong_frames(frames.numpy(), indices, ref,
                                        exact=name == "vssl-pyav" or stats[name].get("decoder") == "pyav")
    rows = []
    for name in readers:
        t = np.array(times[name])
        row = {"file": path.name, "format": label, "reader": name, "short_side": load, "crop": crop}
        if name in failed:
            rows.append({**row, "error": failed[name]})
            continue
        decoder = stats[name].get("decoder")
        row.update(clips_s=1.0 / float(np.median(t)), ms_clip=1e3 * float(np.median(t)),
                   wrong=wrong[name], frames=clips * CLIP, fallback=decoder == "pyav" and name != "vssl-pyav",
                   decoded_per_clip=float(np.mean(stats[name]["decoded"])) if "decoded" in stats[name] else None)
        for base in ("pyav-plain", "decord-plain"):
            if base in times and base not in failed:
                row[f"vs_{base}"] = float(np.median(np.array(times[base]) / t))
        rows.append(row)
    return rows


def compatibility_table(rows: list[dict]) -> str:
    """One row per file, one column per reader: "yes 8.6" (frame-accurate, clips per CPU-s), "no 5.5
    (384/384 wrong)", "-> pyav" where vssl fell back; then vssl-pyav's ratios to the baselines."""
    readers = list(dict.fromkeys(r["reader"] for r in rows))
    files = list(dict.fromkeys((r["file"], r["format"]) for r in rows))
    cell = {(r["file"], r["reader"]): r for r in rows}

    def show(r):
        if r is None:
            return ""
        if "error" in r:
            return f"fails ({r['error']})"
        ok = "yes" if r["wrong"] == 0 else "**no**"
        wrong = f" ({r['wrong']}/{r['frames']} wrong)" if r["wrong"] else ""
        return f"{ok} {r['clips_s']:.1f}{' -> pyav' if r.get('fallback') else ''}{wrong}"

    body = []
    for file, label in files:
        v = cell.get((file, "vssl-pyav"), {})
        body.append([label, *(show(cell.get((file, name))) for name in readers),
                     *(f"{v[k]:.2f}x" if k in v else "" for k in ("vs_pyav-plain", "vs_decord-plain"))])
    return markdown_table(["file", *readers, "vssl-pyav / pyav-plain", "vssl-pyav / decord-plain"], body)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tiny", action="store_true", help="8 clips per reader and file")
    g.add_argument("--smoke", action="store_true", help="2-second files of two formats, 2 clips (tests)")
    p.add_argument("--files", nargs="+", default=None, help="your own videos (default: generated ones)")
    p.add_argument("--no-prepare", action="store_true", help="do not add the `vssl data prepare` version of each file")
    p.add_argument("--clips", type=int, default=None, help="clips per reader and file (default 24, tiny 8)")
    p.add_argument("--short-side", type=int, default=128, help="decoded short side (crop = 7/8 of it)")
    p.add_argument("--no-pin", action="store_true", help="do not pin to one core")
    p.add_argument("--core", type=int, default=None, help="the core to pin to (default: the first allowed)")
    p.add_argument("--dir", default=None, help="where to write generated and prepared files (default: a temp dir)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    size_name = "smoke" if args.smoke else "tiny" if args.tiny else "full"
    clips = args.clips or {"smoke": 2, "tiny": 8, "full": 24}[size_name]
    pin = "not pinned" if args.no_pin else pin_one_core(args.core)
    load, crop = args.short_side, args.short_side * 7 // 8
    print(f"# data_pipeline ({size_name}: {clips} clips per reader and file, {pin}) on {hardware()}", flush=True)
    tmp = tempfile.TemporaryDirectory(prefix="vssl-bench-") if args.dir is None else None
    root = Path(args.dir or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        os.environ.setdefault("VSSL_INDEX_CACHE", str(root / "index-cache"))
        if args.files:
            sources = [(Path(f), Path(f).suffix.lstrip(".")) for f in args.files]
        else:
            names = list(FORMATS)[:2] if args.smoke else list(FORMATS)
            (root / "raw").mkdir(exist_ok=True)
            sources = list(zip(write_formats(root / "raw", 2.0 if args.smoke else 10.0, names), names))
        files = list(sources)
        if not args.no_prepare:
            from vssl.data.prepare import reencode

            for path, label in sources:
                target = root / "prepared" / f"{path.stem}_{path.suffix.lstrip('.')}.mp4"
                if not target.exists():
                    reencode(path, target, load)
                files.append((target, f"prepared: {label}"))
        # imported only now: decord's own FFmpeg libraries, once loaded, make PyAV's libvpx-vp9
        # encoder fail to open (EINVAL) in this process
        backends = available_backends()
        for i, (path, label) in enumerate(files):
            rows += measure(path, label, backends, clips, load, crop, seed=i)
            print(f"  measured {path.name} ({label})", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(markdown_table(
        ["file", "format", "reader", "frame-accurate", "clips per CPU-s", "vs pyav-plain", "vs decord-plain",
         "frames decoded/clip"],
        [[r["file"], r["format"], r["reader"] + (" -> pyav" if r.get("fallback") else ""),
          r["error"] if "error" in r else ("yes" if r["wrong"] == 0 else f"no ({r['wrong']}/{r['frames']} wrong)"),
          f"{r['clips_s']:.1f}" if "clips_s" in r else "",
          f"{r['vs_pyav-plain']:.2f}x" if "vs_pyav-plain" in r else "",
          f"{r['vs_decord-plain']:.2f}x" if "vs_decord-plain" in r else "",
          f"{r['decoded_per_clip']:.1f}" if r.get("decoded_per_clip") else ""] for r in rows]))
    print("\nCompatibility (docs/data.md): frame-accurate? and clips per CPU-second of one core\n")
    print(compatibility_table(rows))
    write_json(args.json, {"benchmark": "data_pipeline", "size": size_name, "hardware": hardware(), "pin": pin,
                           "rows": rows})
    return rows


if __name__ == "__main__":
    main()
