"""What a run writes as it goes: one JSON line per step (``metrics.jsonl``), TensorBoard scalars, and a
rich progress bar on a terminal (plain lines otherwise)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class MetricsLogger:
    """Appends one JSON line per optimizer step to ``metrics.jsonl``; scalars to TensorBoard.

    On resume, lines from steps after the checkpoint (written before the run was killed) are
    dropped, and TensorBoard events after it are purged, so the logs read like one run.
    """

    def __init__(self, out: Path, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None):
        self.enabled, self.file, self.writer, self.dropped = enabled, None, None, 0
        if not enabled:
            return
        path = out / "metrics.jsonl"
        out.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and path.is_file():
            keep = [ln for ln in path.read_text().splitlines() if ln.strip() and _json_step(ln) <= resume_step]
            path.write_text("".join(ln + "\n" for ln in keep))
        elif path.is_file():
            path.unlink()  # a fresh run in an old directory starts a fresh log
        self.file = open(path, "a", buffering=1)  # line-buffered: nothing finished is lost on a kill
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when used

            self.writer = SummaryWriter(str(out / "tb"), purge_step=resume_step + 1 if resume_step else None)

    def log(self, step: int, logs: dict[str, float], to_tensorboard: bool = True) -> None:
        if not self.enabled:
            return
        try:
            self.file.write(json.dumps({"step": step, **logs}) + "\n")
        except OSError as e:  # a full disk: losing log lines is better than losing the run
            self.dropped += 1
            if self.dropped == 1:
                print(f"vssl: warning: cannot write metrics.jsonl ({e.strerror or e}); "
                      "dropping log lines until it works again", file=sys.stderr)
        if self.writer is not None and to_tensorboard:
            for k, v in logs.items():
                self.writer.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:  # the last buffered line could not be written either (counted above)
                pass
        if self.writer is not None:
            self.writer.close()


def _json_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a torn last line from a killed run: drop it


class StepProgress:
    """A rich progress bar with rate and ETA on a terminal; a plain line every ``log_every`` otherwise."""

    def __init__(self, total: int, completed: int = 0, enabled: bool = True):
        self.total, self.enabled = total, enabled
        self.tty = enabled and sys.stdout.isatty()
        self.bar = None
        if self.tty:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self.task = self.bar.add_task("train", total=total, completed=completed, rate="", info="")
        self.t0, self.c0 = time.perf_counter(), completed

    def __enter__(self) -> StepProgress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, step: int, logs: dict[str, float], print_line: bool) -> None:
        if not self.enabled:
            return
        rate = (step - self.c0) / max(time.perf_counter() - self.t0, 1e-9)
        info = " ".join(f"{k} {logs[k]:.4g}" for k in ("loss", "lr") if k in logs)
        if self.bar is not None:
            self.bar.update(self.task, completed=step, rate=f"{rate:.2f} step/s", info=info)
        elif print_line or step == self.total:
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            print(f"step {step}/{self.total} {info} {rate:.2f} step/s eta {eta:.0f}s", flush=True)
