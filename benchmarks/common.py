"""Shared helpers for the benchmark scripts: hardware line, timing with device sync, peak memory, tables.

Every benchmark measures its baseline in the same process and run as the candidate and reports the
ratio, since absolute numbers on a shared 2-core machine move by 5-10 % between runs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "src"))


def hardware() -> str:
    """One line: CPU model and cores usable, GPU (if any), torch version."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {cores} cores usable, {gpu}, torch {torch.__version__}, torch threads {torch.get_num_threads()}"


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# The clock of time_calls. ``use_cpu_time()`` switches it to the process's CPU time: with one thread
# pinned to one core that is the step's compute time without the moments other processes hold the
# core (a shared 2-core machine). Never for CUDA (the host waits in sync, its CPU time is not the step).
_clock = time.perf_counter


def use_cpu_time(enabled: bool = True) -> str:
    global _clock
    _clock = time.process_time if enabled else time.perf_counter
    return "process CPU time" if enabled else "wall time"


def time_calls(fn, steps: int, warmup: int, device) -> list[float]:
    """Seconds (wall, or CPU after ``use_cpu_time``) of each of ``steps`` calls after ``warmup``
    calls, synchronising the device."""
    for _ in range(warmup):
        fn()
    sync(device)
    clock = _clock if torch.device(device).type == "cpu" else time.perf_counter
    times = []
    for _ in range(steps):
        t0 = clock()
        fn()
        sync(device)
        times.append(clock() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the high-water mark (cannot be reset)
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak memory of a block: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the peak process
    RSS sampled every millisecond by a thread, minus the RSS when the block started (ru_maxrss
    cannot be reset between cases, so it would only ever show the largest case). With ``base``
    (from :meth:`current` before a case was built) the case's parameters, optimizer state and
    activations are counted and memory held by other, earlier cases is not."""

    def __init__(self, device, base: int | None = None):
        self.device = torch.device(device)
        self.peak = 0
        self._base = base  # subtract this instead of the usage at entry (e.g. taken before a model was built)

    @staticmethod
    def current(device) -> int:
        """Bytes in use now: allocated on CUDA, RSS on CPU."""
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated()
        return _rss_bytes()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = self._base if self._base is not None else 0
        else:
            self.base = self._base if self._base is not None else _rss_bytes()
            self._stop = threading.Event()
            self._max = self.base
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.001):
            self._max = max(self._max, _rss_bytes())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, _rss_bytes()) - self.base
        return False

    @property
    def label(self) -> str:
        return "peak alloc" if self.device.type == "cuda" else "RSS delta"


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def markdown_table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2))
