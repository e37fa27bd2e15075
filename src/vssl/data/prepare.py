"""Re-encode a tree of videos for fast training-time decoding (``vssl data prepare``).

Random clip access costs a decode from the keyframe before the clip: with libx264's default GOP
(keyint 250) a short web video holds a single keyframe, so every clip decodes from the start
(reference/environment.md §2.1 and the clip-level decode baseline). Re-encoding once with a short
GOP and the short side the loader needs removes most of that cost for every backend.

``prepare_tree(src, dst, short_side)`` writes ``dst/<relative path>.mp4`` for every video under
``src`` (any container FFmpeg reads, by extension: ``VIDEO_EXTENSIONS``), in parallel, with a
progress bar, and keeps what a viewer of the source sees:

- the picture upright (the display rotation baked into the pixels) with square pixels (the sample
  aspect ratio applied), short side ``short_side``, even sizes;
- the colours: full-range input is converted to the limited range H.264 yuv420p uses, and the
  output is tagged with the source's colour matrix, primaries and transfer (BT.601 when the source
  says nothing, as FFmpeg's converter then assumes);
- the timing: frames are placed on a constant-rate grid by their timestamps (a frame is repeated
  over a gap left by dropped or null frames, dropped when two fall on one tick), so a VFR clip
  lasts as long as its source. The rate is ``fps``, by default the source's nominal rate.

H.264 yuv420p, a keyframe every ``gop`` frames, three unreferenced B-frames after each I/P frame,
no audio. It is idempotent and resumable: an output
newer than its source is skipped, and outputs are written under a temporary name then renamed, so a
killed run leaves no partial file. Every file it does not convert is listed with the reason.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import chain
from pathlib import Path

import numpy as np

from vssl.data.frame_index import display_size
from vssl.data.video import VIDEO_EXTENSIONS

BT601 = 6  # FFmpeg's AVCOL_SPC/PRI/TRC_SMPTE170M: what swscale assumes for untagged video
UNSPECIFIED = 2


@dataclass
class PrepareReport:
    """What ``prepare_tree`` did: counts, and the (path, reason) of every source file not converted
    (``failed``: a video that could not be re-encoded; ``ignored``: not a video by its name)."""

    converted: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.converted + self.skipped + len(self.failed)


def even_size(height: int, width: int, short_side: int, sar: float = 1.0, rotation: int = 0) -> tuple[int, int]:
    """Output (height, width): the displayed shape (``sar`` and ``rotation`` applied) with short side
    ``short_side``, both rounded down to even numbers as yuv420p requires (minimum 2)."""
    h, w = display_size(height, width, sar, rotation, short_side)
    return max(2, h - h % 2), max(2, w - w % 2)


def find_videos(src: str | Path) -> tuple[list[Path], list[Path]]:
    """(videos, other files) under ``src``, sorted; videos by extension (``VIDEO_EXTENSIONS``, any case)."""
    files = sorted(p for p in Path(src).rglob("*") if p.is_file() and ".partial" not in p.name)
    return ([p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS],
            [p for p in files if p.suffix.lower() not in VIDEO_EXTENSIONS])


def output_path(src_root: Path, dst_root: Path, video: Path) -> Path:
    return (dst_root / video.relative_to(src_root)).with_suffix(".mp4")


def is_up_to_date(source: Path, target: Path) -> bool:
    return target.is_file() and target.stat().st_size > 0 and target.stat().st_mtime >= source.stat().st_mtime


class ConstantRate:
    """Frames with timestamps in, frames on a constant-rate grid out (FFmpeg's ``fps`` filter rule):
    a frame takes the tick nearest its time and is shown until the next frame's tick, so it is
    repeated across gaps and dropped when a later frame takes the same tick."""

    def __init__(self, rate: Fraction):
        self.rate, self.next_tick, self.pending = rate, 0, None

    def push(self, time: Fraction, frame) -> list:
        tick = round(time * self.rate)
        out = self._flush(tick)
        self.pending = frame
        return out

    def finish(self, end: Fraction) -> list:
        """Ticks until ``end`` (seconds: the last frame's time plus its duration), at least one."""
        return self._flush(max(round(end * self.rate), self.next_tick + 1))

    def _flush(self, until: int) -> list:
        if self.pending is None:
            return []
        out = [self.pending] * max(until - self.next_tick, 0)
        self.next_tick += len(out)
        return out


def nominal_rate(stream, fps: float = 0.0) -> Fraction:
    """The output rate: ``fps`` when given, else the stream's base rate (FFmpeg's r_frame_rate, the
    capture rate of a VFR file with dropped frames) unless that is implausibly high, else its average."""
    if fps > 0:
        return Fraction(fps).limit_denominator(1001)
    average, base = stream.average_rate, stream.guessed_rate
    if base and (not average or base <= 1.5 * average):
        return Fraction(base).limit_denominator(1001)
    return Fraction(average or 25).limit_denominator(1001)


def frame_times(index, stream) -> list[Fraction] | None:
    """Seconds from the first frame for every frame of the index (None: timestamps unusable)."""
    if index.mode != "pts" or not stream.time_base:
        return None
    start = int(index.labels[0])
    return [(int(label) - start) * stream.time_base for label in index.labels.tolist()]


def upright_yuv420p(frame, height: int, width: int, turns: int, reformatter):
    """``frame`` as limited-range yuv420p of the displayed size, rotated ``turns`` x 90 degrees
    counter-clockwise (rotating the planes keeps 4:2:0 sampling exact for even sizes)."""
    import av
    from av.video.reformatter import ColorRange

    full = frame.color_range == ColorRange.JPEG or frame.format.name.startswith("yuvj")
    rgb = not frame.format.name.startswith("yuv")
    h, w = (height, width) if turns % 2 == 0 else (width, height)
    out = reformatter.reformat(frame, format="yuv420p", width=w, height=h, interpolation="AREA",
                               src_color_range=None if rgb else (ColorRange.JPEG if full else ColorRange.MPEG),
                               dst_color_range=ColorRange.MPEG)
    if turns == 0:
        return out
    planes = [np.rot90(np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:ph, :pw], turns)
              for p, (ph, pw) in zip(out.planes, [(h, w), (h // 2, w // 2), (h // 2, w // 2)])]
    return av.VideoFrame.from_ndarray(np.concatenate([p.ravel() for p in planes]).reshape(-1, width),
                                      format="yuv420p")


def _colour_tags(frame) -> tuple[int, int, int]:
    """(matrix, primaries, transfer) of the output: the source's where it states them, else BT.601."""
    if not frame.format.name.startswith("yuv"):  # RGB input: swscale converts with BT.601
        return BT601, BT601, BT601
    return tuple(value if value not in (UNSPECIFIED, 0) else BT601
                 for value in (int(frame.colorspace), int(frame.color_primaries), int(frame.color_trc)))


def reencode(source: str | Path, target: str | Path, short_side: int, gop: int = 16, crf: int = 23,
             fps: float = 0.0) -> None:
    """Decode ``source`` and write it to ``target`` as H.264 with a fixed GOP of ``gop`` frames
    (scene-cut keyframes off, so seeks cost at most ``gop`` frames), upright, at the given short side,
    with its colours and timing kept (see the module docstring)."""
    import av
    from av.video.reformatter import VideoReformatter

    from vssl.data.video import frame_index

    index = frame_index(source)  # the frames and their times; refuses truncated or broken files
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial{os.getpid()}.mp4")
    try:
        with av.open(str(source)) as inp, av.open(str(partial), mode="w") as out:
            stream_in = inp.streams.video[0]
            frames = inp.decode(stream_in)
            first = next(frames, None)
            if first is None:
                raise ValueError("no decodable frame")
            rate = nominal_rate(stream_in, fps)
            h, w = even_size(index.height, index.width, short_side, index.sar, index.rotation)
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            cc = stream.codec_context
            cc.time_base = 1 / rate
            cc.color_range = 1  # limited (MPEG)
            cc.colorspace, cc.color_primaries, cc.color_trc = _colour_tags(first)
            stream.gop_size = gop
            # a fixed I/P every 4th frame with 3 unreferenced B-frames between (no adaptive choice, no
            # B-pyramid): a reader skips the B-frames it does not want (stride-4 clips decode about
            # half the frames), where x264's adaptive choice left some files with P-frames only
            stream.options = {"crf": str(crf), "preset": "veryfast",
                              "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=3:b-adapt=0:"
                                             "b-pyramid=none"}
            times = frame_times(index, stream_in)
            clock, reformatter, turns = ConstantRate(rate), VideoReformatter(), index.rotation // 90
            ticks, time, frame = 0, Fraction(0), first
            for i, frame in enumerate(chain([first], frames)):
                time = times[i] if times is not None and i < len(times) else Fraction(i) / Fraction(index.fps)
                picture = upright_yuv420p(frame, h, w, turns, reformatter)
                ticks = _encode(out, stream, clock.push(time, picture), ticks)
            last = frame.duration * stream_in.time_base if frame.duration and stream_in.time_base else 1 / rate
            ticks = _encode(out, stream, clock.finish(time + last), ticks)
            for packet in stream.encode():
                out.mux(packet)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _encode(container, stream, pictures: list, tick: int) -> int:
    from av.video.frame import PictureType

    for picture in pictures:
        picture.pts, picture.time_base = tick, stream.codec_context.time_base
        picture.pict_type = PictureType.NONE  # else FFmpeg forces x264 to the source's frame type (I, P, B)
        tick += 1
        for packet in stream.encode(picture):
            container.mux(packet)
    return tick


def _job(source: str, target: str, short_side: int, gop: int, crf: int, fps: float) -> tuple[str, str | None]:
    """Worker entry: (source, None) on success, (source, reason) on failure; never raises."""
    try:
        reencode(source, target, short_side, gop, crf, fps)
        return source, None
    except Exception as e:  # noqa: BLE001 - one bad file is reported, the others go on
        reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"  # VideoDecodeError: its reason
        return source, reason.replace("\n", " ")


def prepare_tree(src: str | Path, dst: str | Path, short_side: int, gop: int = 16, workers: int = 0,
                 crf: int = 23, progress: bool = True, fps: float = 0.0) -> PrepareReport:
    """Re-encode every video under ``src`` into ``dst`` (same relative path, ``.mp4``).

    Args:
        short_side: output short side in pixels (e.g. 128 for 112 crops, SEVERE §2.2).
        gop: keyframe interval (16 keeps a random seek under ~16 decoded frames).
        workers: processes; 0 = all cores, 1 = in this process.
        crf: x264 quality (lower is better; 23 is x264's default).
        progress: show a rich progress bar.
        fps: output frame rate; 0 keeps each source's nominal rate.
    Returns a :class:`PrepareReport`; failures are listed there, not raised.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source directory not found")
    if short_side < 2:
        raise ValueError(f"short_side must be >= 2, got {short_side}")
    if fps < 0:
        raise ValueError(f"fps must be >= 0 (0 keeps the source rate), got {fps}")
    report = PrepareReport()
    videos, others = find_videos(src)
    report.ignored = [(str(p), f"not a video by its name ({p.suffix or 'no extension'})") for p in others]
    jobs, claimed = [], {}
    for video in videos:
        target = output_path(src, dst, video)
        if target in claimed:  # a.avi and a.mp4 would both become a.mp4
            report.failed.append((str(video), f"same output {target.name} as {claimed[target]}"))
        elif is_up_to_date(video, target):
            report.skipped += 1
        else:
            jobs.append((str(video), str(target), short_side, gop, crf, fps))
        claimed.setdefault(target, video.name)
    workers = workers or os.cpu_count() or 1
    for source, reason in run_in_pool(_job, jobs, workers, progress, "re-encoding"):
        if reason is None:
            report.converted += 1
        else:
            report.failed.append((source, reason))
    report.failed.sort()
    return report


def run_in_pool(fn, jobs: list[tuple], workers: int, progress: bool, label: str):
    """Yield ``fn(*job)`` for every job in completion order, in a process pool of ``workers``
    (in this process when 1), under a rich progress bar. ``fn`` must be a picklable top-level
    function that reports failures in its result rather than raising."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress or not jobs) as bar:
        task = bar.add_task(label, total=len(jobs))
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield fn(*job)
                bar.advance(task)
            return
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            for future in as_completed([pool.submit(fn, *job) for job in jobs]):
                yield future.result()
                bar.advance(task)
