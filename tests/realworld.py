"""Tiny videos in the formats real datasets hold, written by the ffmpeg CLI (as users' files are).

Every frame of the source carries its number in a band of 8 black/white blocks (bit b of frame t in
block b), large enough to survive lossy coding, so a decoded frame says which source frame it is
(:func:`frame_number`). ``FORMATS`` maps a name to the file name and the ffmpeg arguments that
write it from ``source.rgb`` (or from another format's file); :func:`displayed` decodes a file with
the ffmpeg CLI, the player reference: what a viewer sees, upright, frame by frame.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FRAMES, FPS = 64, 48, 50, 25
ROTATED = {"mp4_rotated_90": 90, "mp4_rotated_270": 270}

_RAW = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "source.rgb"]
_X264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "2", "-g", "12"]
_DROP_EVERY_5TH = ["-vf", r"select='not(eq(mod(n\,5)\,2))'", "-fps_mode", "vfr"]

# name: (file, ffmpeg arguments; "<name>" as the first argument reads that format's file)
FORMATS: dict[str, tuple[str, list[str]]] = {
    "avi_mpeg4_bframes": ("xvid.avi", _RAW + ["-c:v", "mpeg4", "-vtag", "XVID", "-bf", "2", "-g", "12", "-q:v", "4"]),
    "avi_divx_packed": ("divx.avi", _RAW + ["-c:v", "libxvid", "-bf", "2", "-g", "12"]),
    "mpeg_ps": ("ps.mpg", _RAW + ["-c:v", "mpeg2video", "-bf", "2", "-g", "12", "-f", "mpeg"]),
    "ts_full": ("full.ts", _RAW + _X264),
    "ts_cut_mid_gop": ("cut.ts", ["<ts_full>"]),  # the back 60 % of full.ts, cut at a TS packet
    "mp4_vfr_dropped": ("vfr.mp4", _RAW + _DROP_EVERY_5TH + _X264),
    "avi_null_frames": ("null.avi", _RAW + _DROP_EVERY_5TH + ["-c:v", "cinepak"]),
    "mp4_h264": ("h264.mp4", _RAW + _X264),
    "mp4_edit_list": ("edit.mp4", ["<mp4_h264>", "-ss", "1.1", "-c", "copy"]),
    "mp4_rotated_90": ("rot90.mp4", ["<mp4_h264>", "-c", "copy", "-metadata:s:v:0", "rotate=90"]),
    "mp4_rotated_270": ("rot270.mp4", ["<mp4_h264>", "-c", "copy", "-metadata:s:v:0", "rotate=270"]),
    "mp4_full_range": ("full_range.mp4", _RAW + ["-c:v", "libx264", "-pix_fmt", "yuvj420p", "-bf", "2", "-g", "12"]),
    "mp4_sar_4_3": ("sar.mp4", _RAW + _X264 + ["-vf", "setsar=4/3"]),
    "mp4_bt709": ("bt709.mp4", _RAW + _X264 + ["-vf", "scale=out_color_matrix=bt709:out_range=tv", "-colorspace",
                                               "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]),
    "webm_vp9": ("vp9.webm", _RAW + ["-c:v", "libvpx-vp9", "-g", "12", "-b:v", "300k", "-deadline", "realtime"]),
    "mp4_hevc_bframes": ("hevc.mp4", _RAW + ["-c:v", "libx265", "-pix_fmt", "yuv420p",
                                              "-x265-params", "bframes=4:b-pyramid=1:keyint=12:log-level=error"]),
    "mkv_h264": ("h264.mkv", ["<mp4_h264>", "-c", "copy"]),
}


def source_frames() -> np.ndarray:
    """uint8 (FRAMES, HEIGHT, WIDTH, 3): frame number in the top band, a moving square below."""
    frames = np.empty((FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(FRAMES):
        frames[t] = (40 + 3 * t) % 200
        for b in range(8):
            frames[t, :16, b * 8:(b + 1) * 8] = 235 if (t >> b) & 1 else 16
        x = (3 * t) % (WIDTH - 12)
        frames[t, 24:36, x:x + 12] = (250, 200, 40)
    return frames


def frame_number(frame: np.ndarray) -> int:
    """The source frame number an upright-in-storage frame (H, W, 3) at full size shows."""
    gray = frame.astype(np.float32).mean(-1)
    return sum(int(gray[3:13, b * 8 + 2:b * 8 + 6].mean() > 128) << b for b in range(8))


def ffmpeg(*args: str, cwd: Path) -> None:
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("these tests need the ffmpeg CLI (apt-get install -y ffmpeg; .ci/run installs it)")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], cwd=cwd, check=True)


def write_formats(folder: Path, names=None) -> dict[str, Path]:
    """Write the requested formats (all by default) under ``folder``; {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    source_frames().tofile(folder / "source.rgb")
    paths: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name in paths:
            return paths[name]
        file, args = FORMATS[name]
        if name == "ts_cut_mid_gop":
            data = make("ts_full").read_bytes()
            packets = len(data) // 188
            (folder / file).write_bytes(data[(packets * 4 // 10) * 188:])
        else:
            if args[0].startswith("<"):
                args = ["-i", make(args[0][1:-1]).name, *args[1:]]
            ffmpeg(*args, file, cwd=folder)
        paths[name] = folder / file
        return paths[name]

    for name in names or FORMATS:
        make(name)
    return {name: paths[name] for name in (names or FORMATS)}


def displayed(path: Path, rotation: int = 0) -> np.ndarray:
    """The frames the ffmpeg CLI shows (autorotated, every decoded frame once), uint8 (T, H, W, 3);
    ``rotation`` is the file's display rotation (a 90 or 270 degree turn swaps height and width)."""
    out = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                           check=True).stdout.split()[0].split(",")
    w, h = int(probe[0]), int(probe[1])
    if rotation % 180:
        w, h = h, w
    return np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)
