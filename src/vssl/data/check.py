"""Find unreadable videos before a run (``vssl data check``).

``check_videos`` opens every video of a VideoList, reads its metadata and decodes its first and last
frames (a truncated file usually opens but cannot reach its end), in a process pool with a
progress bar. Training would skip such videos anyway (``ClipDataset``); checking first tells you
how many there are and which.
"""

from __future__ import annotations

import os
from pathlib import Path

from vssl.data.dataset import resolve_video_path
from vssl.data.prepare import run_in_pool
from vssl.data.video import VideoReader


def check_video(path: str | Path, backend: str = "pyav") -> str | None:
    """None when ``path`` opens and its first and last frames decode, else the reason."""
    try:
        with VideoReader(path, backend=backend) as reader:
            last = reader.num_frames - 1
            frames = reader.get_frames([0, last])  # raises on a truncated file
            if frames.shape[0] != 2 or frames.shape[-1] != 3:
                return f"unexpected frame shape {tuple(frames.shape)}"
    except ImportError:
        raise  # a missing backend is the user's setup, not a bad video
    except Exception as e:  # noqa: BLE001 - report any failure as a reason
        return str(getattr(e, "reason", None) or f"{type(e).__name__}: {e}").replace("\n", " ")
    return None


def _check_job(record_path: str, full_path: str, backend: str) -> tuple[str, str | None]:
    return record_path, check_video(full_path, backend)


def check_videos(videos, root: str | Path, backend: str = "pyav", workers: int = 0,
                 progress: bool = True) -> list[tuple[str, str]]:
    """[(path, reason)] for every unreadable video of ``videos`` (paths as in the annotations).

    Args:
        videos: a VideoList (any object with ``.records`` of objects with ``.path``).
        root: the video directory (a listed .avi may be found as .mp4, see ``resolve_video_path``).
        backend: decoder to check with ("pyav", "torchcodec", "decord").
        workers: processes; 0 = all cores, 1 = in this process.
    """
    paths = list(dict.fromkeys(r.path for r in videos.records))
    jobs = [(p, str(resolve_video_path(root, p)), backend) for p in paths]
    workers = workers or os.cpu_count() or 1
    bad = [(path, reason) for path, reason in run_in_pool(_check_job, jobs, workers, progress, "checking")
           if reason is not None]
    order = {p: i for i, p in enumerate(paths)}
    return sorted(bad, key=lambda item: order[item[0]])
