"""Re-encode a tree of videos for fast training-time decoding (``vssl data prepare``).

Random clip access costs a decode from the keyframe before the clip: with libx264's default GOP
(keyint 250) a short web video holds a single keyframe, so every clip decodes from the start
(reference/environment.md §2.1 and the clip-level decode baseline). Re-encoding once with a short
GOP and the short side the loader needs removes most of that cost for every backend.

``prepare_tree(src, dst, short_side)`` writes ``dst/<relative path>.mp4`` for every video under
``src`` (H.264 yuv420p, fixed GOP, no audio, even frame sizes, frame rate kept), in parallel, with
a progress bar. It is idempotent and resumable: an output newer than its source is skipped, and
outputs are written under a temporary name then renamed, so a killed run leaves no partial file.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from vssl.data.video import VIDEO_EXTENSIONS, scaled_size


@dataclass
class PrepareReport:
    """What ``prepare_tree`` did: counts and the (source path, reason) of every failure."""

    converted: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.converted + self.skipped + len(self.failed)


def even_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Output (height, width): short side = ``short_side`` (aspect kept), both rounded down to even
    numbers as yuv420p requires (minimum 2)."""
    h, w = scaled_size(height, width, short_side)
    return max(2, h - h % 2), max(2, w - w % 2)


def find_videos(src: str | Path) -> list[Path]:
    """Video files under ``src`` (extensions mp4/avi/webm/mkv/mov, any case), sorted."""
    src = Path(src)
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def output_path(src_root: Path, dst_root: Path, video: Path) -> Path:
    return (dst_root / video.relative_to(src_root)).with_suffix(".mp4")


def is_up_to_date(source: Path, target: Path) -> bool:
    return target.is_file() and target.stat().st_size > 0 and target.stat().st_mtime >= source.stat().st_mtime


def reencode(source: str | Path, target: str | Path, short_side: int, gop: int = 16, crf: int = 23) -> None:
    """Decode ``source`` and write it to ``target`` as H.264 with a fixed GOP of ``gop`` frames
    (scene-cut keyframes off, so seeks cost at most ``gop`` frames) and the given short side."""
    import av

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial{os.getpid()}.mp4")
    try:
        with av.open(str(source)) as inp, av.open(str(partial), mode="w") as out:
            if not inp.streams.video:
                raise ValueError("no video stream")
            stream_in = inp.streams.video[0]
            rate = stream_in.average_rate or stream_in.guessed_rate or Fraction(25)
            h, w = even_size(stream_in.codec_context.height, stream_in.codec_context.width, short_side)
            stream = out.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.time_base = 1 / stream.codec_context.framerate
            stream.gop_size = gop
            stream.options = {"crf": str(crf), "preset": "veryfast",
                              "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
            frames = 0
            for frame in inp.decode(stream_in):
                small = frame.reformat(width=w, height=h, format="yuv420p", interpolation="AREA")
                small.pts, small.time_base = frames, stream.codec_context.time_base  # constant rate out
                for packet in stream.encode(small):
                    out.mux(packet)
                frames += 1
            for packet in stream.encode():
                out.mux(packet)
            if frames == 0:
                raise ValueError("no decodable frame")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _job(source: str, target: str, short_side: int, gop: int, crf: int) -> tuple[str, str | None]:
    """Worker entry: (source, None) on success, (source, reason) on failure; never raises."""
    try:
        reencode(source, target, short_side, gop, crf)
        return source, None
    except Exception as e:  # noqa: BLE001 - one bad file is reported, the others go on
        return source, f"{type(e).__name__}: {e}".replace("\n", " ")


def prepare_tree(src: str | Path, dst: str | Path, short_side: int, gop: int = 16, workers: int = 0,
                 crf: int = 23, progress: bool = True) -> PrepareReport:
    """Re-encode every video under ``src`` into ``dst`` (same relative path, ``.mp4``).

    Args:
        short_side: output short side in pixels (e.g. 128 for 112 crops, SEVERE §2.2).
        gop: keyframe interval (16 keeps a random seek under ~16 decoded frames).
        workers: processes; 0 = all cores, 1 = in this process.
        crf: x264 quality (lower is better; 23 is x264's default).
        progress: show a rich progress bar.
    Returns a :class:`PrepareReport`; failures are listed there, not raised.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source directory not found")
    if short_side < 2:
        raise ValueError(f"short_side must be >= 2, got {short_side}")
    report = PrepareReport()
    jobs = []
    for video in find_videos(src):
        target = output_path(src, dst, video)
        if is_up_to_date(video, target):
            report.skipped += 1
        else:
            jobs.append((str(video), str(target), short_side, gop, crf))
    workers = workers or os.cpu_count() or 1
    for source, reason in run_in_pool(_job, jobs, workers, progress, "re-encoding"):
        if reason is None:
            report.converted += 1
        else:
            report.failed.append((source, reason))
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
