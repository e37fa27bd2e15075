"""Video decoding and encoding.

``write_video`` encodes uint8 frames as H.264 through PyAV with a short GOP, so that later random
access (seek to the nearest keyframe, decode forward) stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0, gop: int = 16,
                crf: int = 18, codec: str = "libx264") -> None:
    """Encode frames as an H.264 mp4 (yuv420p).

    Args:
        path: output file; parent folders are created.
        frames: uint8 array (T, H, W, 3), RGB. H and W must be even (yuv420p).
        fps: frame rate written into the container.
        gop: keyframe interval; short GOPs make seeking cheap (see reference/environment.md §2.1).
        crf: x264 constant rate factor (lower = better quality).
    """
    import av

    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"write_video({path}): expected uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"write_video({path}): height and width must be even, got {h}x{w}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from fractions import Fraction

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.gop_size = gop
        stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"} if codec == "libx264" else {}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
