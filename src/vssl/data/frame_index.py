"""Which frames a video displays, and where to seek for each: one index per file, built once, cached.

vssl numbers frames the way a player shows them: frame ``i`` is the ``i``-th frame a sequential
decode from the start of the file outputs, and ``num_frames`` is how many it outputs. Containers
disagree with that count in many real files: an AVI header counts its null (repeat) frames, an mp4
cut with ``ffmpeg -ss ... -c copy`` keeps the samples before its edit list's start, an MPEG-TS cut
mid-GOP holds frames that cannot be decoded, and Matroska, TS and PS store no count at all. Frame
*times* are no better guide: VFR files and null frames leave gaps, and the timestamps of AVI
B-frame streams are decode slots that FFmpeg shifts by the reorder delay.

:func:`scan_packets` therefore reads the packets (demuxing only, no decoding) and
:func:`index_from_packets` predicts the display order from their timestamps (``mode="pts"``):

- packets before the first keyframe (a stream cut mid-GOP) and packets the demuxer marks as
  discarded (before an edit list's start) are not displayed; empty packets (AVI null frames) are
  not frames; the rest, sorted by presentation timestamp, are the frames in display order.
- every keyframe is a seek point; it serves the frames from its own timestamp on (the leading
  B-frames of an open GOP belong to the previous keyframe's decode).

Where packet timestamps cannot give the order, the index comes from one full decode instead
(``mode="decoded"``): MPEG-PS and raw elementary streams (timestamps partly or wholly guessed by
FFmpeg), MPEG-4 ASP with "packed" B-frames (DivX/XviD: frames leave the decoder in display order
but with permuted timestamps), and missing or repeated timestamps. Each decoded frame is labelled
with the timestamp the decoder gave it; keyframes are seek points, and after a seek the reader
places itself by the first frame whose label no other frame has and counts frames from there.
MPEG-1/2 video needs no label: each picture header holds the picture's type and its display
position in its GOP, and each GOP header a time code; where that decode shows every picture at
its GOP's base plus its position and the time codes tell GOPs apart, the index keeps each GOP's
base (``gops``), and the reader knows every packet's frame before decoding it
(:mod:`vssl.data.mpeg12`). Without keyframes past the first, ``mode="sequential"``: the reader
decodes from the start and counts. The reader also falls back to a decoded index when decoding
contradicts a predicted one, to one without GOP bases when decoding contradicts those, and to
sequential reading when it contradicts a decoded one. A file whose container index lists
packets past its end (a truncated mp4 or AVI) gets no index: :func:`truncation` says why.

Indices are cached per file (path, size and modification time) in memory and in a directory
(``$VSSL_INDEX_CACHE``, default ``~/.cache/vssl/frame-index``; ``off`` disables it), so a dataset
is scanned once, not once per epoch or per DataLoader worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vssl.data.mpeg12 import MPEG12, gop_bases, numbered_decode

log = logging.getLogger("vssl.data")

INDEX_VERSION = 3  # entries written by another version are rebuilt
# Demuxers whose seeks compare presentation timestamps (mov adjusts its DTS index by the composition
# offsets, Matroska's cues hold keyframe PTS); the others (AVI slots, MPEG-TS/PS, FLV) compare DTS.
SEEK_BY_PTS = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"}
# Demuxers whose packet timestamps are partly FFmpeg's guesses: the MPEG-PS muxer stamps only some
# packets (the rest, guessed, repeat or skip values near GOP ends), elementary streams stamp none.
GUESSED_TIMESTAMPS = {"mpeg", "mpegvideo", "m4v", "h264", "hevc"}
NO_LABEL = int(np.iinfo(np.int64).min)  # a decoded frame without a timestamp
_DIVX_PACKED = re.compile(rb"DivX\d+(?:b|Build)\d+p")  # the user data FFmpeg reads as "packed B-frames"


@dataclass
class FrameIndex:
    """The displayed frames of one video stream.

    Attributes:
        num_frames: frames a sequential decode outputs.
        mode: "pts" (from packet timestamps), "decoded" (from one full decode) or "sequential"
            (timestamps unusable: decode from the start and count).
        labels: the timestamp of frame ``i`` (stream time base): in "pts" mode its presentation
            timestamp, in "decoded" mode the one the decoder gave it; empty in "sequential".
        key_frames: sorted frame indices the seek points serve from (frame 0 first; in "decoded"
            and "sequential" modes frame 0 is served by reopening the file).
        key_targets: the timestamp to pass to ``container.seek`` for each seek point.
        time_base, fps: seconds per timestamp unit; displayed frames per second on average.
        rotation: counter-clockwise degrees to rotate a decoded frame for display (its display matrix).
        height, width, sar: stored frame size and sample aspect ratio (1.0 when unknown).
        codec, container: FFmpeg's codec and demuxer names.
        gops: MPEG-1/2 "decoded" indices: GOP time code -> the frame index of the GOP's temporal
            reference 0 (a picture with temporal reference ``t`` is frame ``base + t``); empty
            when picture headers do not place frames.
    """

    num_frames: int
    mode: str
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    key_frames: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    key_targets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    time_base: float = 0.0
    fps: float = 0.0
    rotation: int = 0
    height: int = 0
    width: int = 0
    sar: float = 1.0
    codec: str = ""
    container: str = ""
    gops: dict = field(default_factory=dict)
    _lookup: dict | None = field(default=None, init=False, repr=False, compare=False)

    def frame_of(self, label) -> int | None:
        """The frame a decoded frame's timestamp ``label`` identifies: None when no frame, or more
        than one, has that label."""
        if self._lookup is None:
            counts = Counter(self.labels.tolist())
            self._lookup = {v: i for i, v in enumerate(self.labels.tolist()) if counts[v] == 1 and v != NO_LABEL}
        return self._lookup.get(label)

    def seek_point(self, frame: int) -> int:
        """Position (in ``key_frames``) of the last seek point serving ``frame``."""
        return max(int(np.searchsorted(self.key_frames, frame, side="right")) - 1, 0)

    def to_json(self) -> dict:
        return {"version": INDEX_VERSION, "num_frames": self.num_frames, "mode": self.mode,
                "labels": _runs(self.labels), "key_frames": self.key_frames.tolist(),
                "key_targets": self.key_targets.tolist(), "time_base": self.time_base, "fps": self.fps,
                "rotation": self.rotation, "height": self.height, "width": self.width, "sar": self.sar,
                "codec": self.codec, "container": self.container, "gops": sorted(self.gops.items())}

    @classmethod
    def from_json(cls, data: dict) -> "FrameIndex":
        return cls(num_frames=int(data["num_frames"]), mode=str(data["mode"]), labels=_unruns(data["labels"]),
                   key_frames=np.asarray(data["key_frames"], np.int64),
                   key_targets=np.asarray(data["key_targets"], np.int64),
                   time_base=float(data["time_base"]), fps=float(data["fps"]), rotation=int(data["rotation"]),
                   height=int(data["height"]), width=int(data["width"]), sar=float(data["sar"]),
                   codec=str(data["codec"]), container=str(data["container"]),
                   gops={int(code): int(base) for code, base in data["gops"]})

    def describe(self, container, stream) -> "FrameIndex":
        """Fill in the stream facts the optional backends are checked against; returns self."""
        cc = stream.codec_context
        sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
        self.height, self.width = int(cc.height), int(cc.width)
        self.sar = float(sar) if sar else 1.0
        self.codec, self.container = cc.name, container.format.name
        return self


def display_size(height: int, width: int, sar: float, rotation: int, short_side: int) -> tuple[int, int]:
    """(height, width) of frames as a player shows them, for a stream stored ``height`` x ``width``
    with sample aspect ratio ``sar`` and display rotation ``rotation`` (degrees).

    With ``short_side`` > 0 the displayed shape (pixels ``sar`` wide, then rotated) is resized to that
    short side, aspect kept. With 0 the stored pixels are returned, rotated: no resampling at all.
    """
    turned = rotation % 180 == 90
    if short_side <= 0:
        return (width, height) if turned else (height, width)
    h, w = float(height), width * (sar if sar > 0 else 1.0)
    if turned:
        h, w = w, h
    if h <= w:
        return short_side, max(1, round(w * short_side / h))
    return max(1, round(h * short_side / w)), short_side


def _runs(values: np.ndarray) -> list[list[int]]:
    """Arithmetic runs ``[[start, step, count], ...]``: a constant-rate video stores one run."""
    runs: list[list[int]] = []
    for v in values.tolist():
        if runs and runs[-1][2] == 1:
            runs[-1][1], runs[-1][2] = v - runs[-1][0], 2
        elif runs and runs[-1][0] + runs[-1][1] * runs[-1][2] == v:
            runs[-1][2] += 1
        else:
            runs.append([v, 0, 1])
    return runs


def _unruns(runs: list[list[int]]) -> np.ndarray:
    if not runs:
        return np.zeros(0, np.int64)
    return np.concatenate([start + step * np.arange(count, dtype=np.int64) for start, step, count in runs])


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------

class IndexBuildError(Exception):
    """Raised by the builders with a reason; the reader turns it into a VideoDecodeError."""


def _average_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _fps_from_labels(labels: np.ndarray, time_base: float, fallback: float) -> float:
    """Frames per second over the displayed span: (n - 1) intervals between the first and last frame."""
    if len(labels) >= 2 and time_base > 0 and labels[-1] > labels[0]:
        return float((len(labels) - 1) / ((labels[-1] - labels[0]) * time_base))
    return fallback


def is_divx_packed(packet_bytes: bytes) -> bool:
    """Does an MPEG-4 ASP packet carry the DivX user data that announces packed B-frames?"""
    return _DIVX_PACKED.search(packet_bytes) is not None


@dataclass
class Packets:
    """Timestamps and flags of a stream's non-empty packets, in file (decode) order."""

    pts: list
    dts: list
    keys: list
    shown: list  # False for packets the demuxer marks as discarded (before an edit list's start)
    divx_packed: bool = False


def scan_packets(container, stream) -> Packets:
    """Demux (not decode) every packet of ``stream``."""
    found = Packets([], [], [], [])
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet, or an AVI null frame (the previous picture repeats)
            continue
        if not found.pts and stream.codec_context.name == "mpeg4":
            found.divx_packed = is_divx_packed(bytes(packet))
        found.pts.append(packet.pts)
        found.dts.append(packet.dts)
        found.keys.append(packet.is_keyframe)
        found.shown.append(not packet.is_discard)
    if not found.pts:
        raise IndexBuildError("no video packets")
    return found


def index_from_packets(packets: Packets, container, stream) -> FrameIndex | None:
    """A "pts" index from the packets' timestamps, or None when they cannot order the frames."""
    pts, dts, keys = packets.pts, packets.dts, packets.keys
    if packets.divx_packed or not any(keys) or container.format.name in GUESSED_TIMESTAMPS:
        return None
    first = keys.index(True)
    start = pts[first]
    shown_pts = [p for p, s in zip(pts[first:], packets.shown[first:]) if s]
    if start is None or not shown_pts or None in shown_pts:
        return None
    labels = np.array(sorted(p for p in shown_pts if p >= start), np.int64)
    if len(labels) == 0 or np.any(np.diff(labels) <= 0):  # repeated timestamps: guessed, not stored
        return None
    by_dts = container.format.name not in SEEK_BY_PTS
    seeks: dict[int, int] = {}
    for p, d, k in zip(pts[first:], dts[first:], keys[first:]):
        if k and p is not None:
            seeks[int(np.searchsorted(labels, p, side="left"))] = d if by_dts and d is not None else p
    frames = sorted(f for f in seeks if f < len(labels))
    if not frames or frames[0] != 0:
        return None
    time_base = float(stream.time_base) if stream.time_base else 0.0
    return FrameIndex(num_frames=len(labels), mode="pts", labels=labels, key_frames=np.array(frames, np.int64),
                      key_targets=np.array([seeks[f] for f in frames], np.int64), time_base=time_base,
                      fps=_fps_from_labels(labels, time_base, _average_fps(stream)))


def truncation(path: str, container, stream, packets: Packets) -> str | None:
    """Why the file looks cut before its end (None when it does not): its index lists packets past
    the end of the file (mp4 with the index first, AVI), or an AVI header counts frames that
    neither the file nor an index holds (AVI writes its index last)."""
    size = os.path.getsize(path)
    entries = stream.index_entries
    beyond = sum(1 for e in entries if e.pos + e.size > size)
    if beyond:
        return f"truncated: {beyond} of the {len(entries)} indexed frames lie past the end of the file ({size} bytes)"
    if container.format.name == "avi" and len(entries) <= 1 and stream.frames > len(packets.pts):
        return (f"truncated: the AVI header lists {stream.frames} frames, the file holds {len(packets.pts)} "
                "and no index")
    return None


def index_from_decoding(container, stream) -> FrameIndex:
    """An index from one full decode, for streams whose packet timestamps cannot order the frames.

    Each frame keeps the timestamp the decoder gave it as a label (``NO_LABEL`` when none); labels may
    repeat (MPEG-PS). Keyframes are seek points ("decoded" mode): after a seek the reader places
    itself by the first frame after a keyframe whose label no other frame has, and counts frames
    from there, checking every such label. With no keyframe past the first, "sequential". MPEG-1/2
    frames are traced to their packets, whose picture headers may place them (``gops``)."""
    labels, keys, rotation = [], [], 0
    pictures = stream.codec_context.name in MPEG12
    headers, stamps, sources = [], [], []
    for frame in numbered_decode(container, stream, headers, stamps) if pictures else container.decode(stream):
        pts = frame.pts
        if pictures:
            sources.append(pts)
            pts = None if pts is None else stamps[pts]
        if not labels:
            rotation = frame_rotation(frame)
        elif frame.key_frame and pts is not None:
            keys.append((len(labels), pts))
        labels.append(NO_LABEL if pts is None else pts)
    if not labels:
        raise IndexBuildError("no frame could be decoded")
    time_base = float(stream.time_base) if stream.time_base else 0.0
    fps = _average_fps(stream)
    common = dict(num_frames=len(labels), time_base=time_base, fps=fps, rotation=rotation)
    if not keys:
        return FrameIndex(mode="sequential", **common)
    # a guessed keyframe timestamp can lie after the keyframe's packet: aim a few frames earlier
    margin = round(3 / fps / time_base) if container.format.name in GUESSED_TIMESTAMPS and fps and time_base else 0
    return FrameIndex(mode="decoded", labels=np.array(labels, np.int64),
                      key_frames=np.array([0] + [i for i, _ in keys], np.int64),
                      key_targets=np.array([0] + [label - margin for _, label in keys], np.int64),
                      gops=gop_bases(headers, sources), **common)


def frame_rotation(frame) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) that put a decoded frame upright."""
    return int(round((frame.rotation or 0) / 90.0)) % 4 * 90


def first_frame_rotation(container, stream) -> int:
    """The display rotation, read from the first decoded frame (PyAV exposes the stream's display
    matrix only on frames)."""
    container.seek(0, backward=True, stream=stream)
    for frame in container.decode(stream):
        return frame_rotation(frame)
    return 0


# --------------------------------------------------------------------------------------------------
# Caching
# --------------------------------------------------------------------------------------------------

_MEMORY: dict[tuple, FrameIndex] = {}
_MEMORY_LIMIT = 8192


def cache_dir() -> Path | None:
    """The on-disk index cache (``$VSSL_INDEX_CACHE``; "off" or "" disables it)."""
    value = os.environ.get("VSSL_INDEX_CACHE")
    if value is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "vssl" / "frame-index"
    if value.strip().lower() in ("", "off", "0", "none"):
        return None
    return Path(value)


def file_key(path: str) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns)


def _cache_file(key: tuple) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha1("\0".join(map(str, key)).encode()).hexdigest()
    return folder / digest[:2] / f"{digest[2:]}.json"


def cached_index(key: tuple) -> FrameIndex | None:
    """The index of a file from memory, else from the cache directory (None when absent or stale)."""
    if key in _MEMORY:
        return _MEMORY[key]
    file = _cache_file(key)
    if file is None or not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
        if data.get("version") != INDEX_VERSION or data.get("key") != list(key):
            return None
        index = FrameIndex.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged cache entry is rebuilt
    _remember(key, index)
    return index


def store_index(key: tuple, index: FrameIndex) -> None:
    """Keep ``index`` in memory and, best effort, in the cache directory (atomic write)."""
    _remember(key, index)
    file = _cache_file(key)
    if file is None:
        return
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_name(f".{file.name}.{os.getpid()}")
        partial.write_text(json.dumps({**index.to_json(), "key": list(key)}))
        os.replace(partial, file)
    except OSError as e:  # a read-only cache costs a re-scan next time, nothing else
        log.debug("frame index cache not written (%s)", e)


def _remember(key: tuple, index: FrameIndex) -> None:
    if len(_MEMORY) >= _MEMORY_LIMIT:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[key] = index
