"""Issue 8.7: a full disk. A checkpoint write that fails with ENOSPC leaves the previous checkpoint
intact (and no temporary behind), the run says so and goes on, retrying at the next checkpoint; if
the final weights cannot be written the run stops with one line naming the intact checkpoint.
The disk is simulated: the checkpoint module's ``torch.save`` writes 100 bytes, then raises."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.reliability_cases import TOY, TinyMethod, full_disk, tiny_data, tiny_run_config  # noqa: E402
from vssl.engine import Trainer  # noqa: E402
from vssl.serialization import load_checkpoint  # noqa: E402
from vssl.errors import CheckpointError  # noqa: E402


class Watcher(TinyMethod):
    """Reads ``last.pt`` after every step: what a resume would find at that moment."""

    def __init__(self, ckpt_dir: Path):
        super().__init__()
        self.ckpt_dir, self.seen = ckpt_dir, {}

    def after_optimizer_step(self, step: int) -> None:
        super().after_optimizer_step(step)
        last = self.ckpt_dir / "last.pt"
        self.seen[step] = load_checkpoint(last)["step"] if last.exists() else None


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*tmp*"))


def test_full_disk_keeps_the_previous_checkpoint_and_the_run_goes_on(tmp_path, capsys):
    method = Watcher(tmp_path / "checkpoints")
    with full_disk(at_steps={4}) as failed:
        summary = Trainer(tiny_run_config(max_steps=8, ckpt_every=2), method, tiny_data(), tmp_path).fit()
    assert failed == [4] and summary["checkpoint_failures"] == 1 and summary["step"] == 8
    assert method.seen[5] == 2  # after the failed write, last.pt is still the step-2 checkpoint, and loads
    assert method.seen[7] == 6  # the next write succeeded
    err = capsys.readouterr().err
    assert "checkpoint at step 4 not written" in err and "No space left on device" in err
    assert "the previous one (step 2) is intact" in err
    assert _leftovers(tmp_path) == [] and load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 8


def test_disk_full_to_the_end_stops_with_the_intact_checkpoint_named(tmp_path):
    with full_disk(at_steps={4, 6, 8, None}):
        with pytest.raises(CheckpointError) as err:
            Trainer(tiny_run_config(max_steps=8, ckpt_every=2), TinyMethod(), tiny_data(), tmp_path).fit()
    text = str(err.value)
    assert "final weights not written" in text and "last checkpoint (step 2) is intact" in text and "\n" not in text
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2
    assert not (tmp_path / "backbone.pt").exists() and _leftovers(tmp_path) == []


def test_other_write_errors_stop_at_once(tmp_path):
    with full_disk(at_steps={4}, code=errno.EIO):
        with pytest.raises(CheckpointError, match=r"checkpoint at step 4 not written .*the previous one \(step 2\)"):
            Trainer(tiny_run_config(max_steps=8, ckpt_every=2), TinyMethod(), tiny_data(), tmp_path).fit()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2 and _leftovers(tmp_path) == []


def test_metrics_log_on_a_full_disk_does_not_end_the_run(tmp_path, monkeypatch, capsys):
    from vssl.engine import trainer

    class FullFile:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, text):
            self.writes += 1
            if self.writes in (2, 3):
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(text)

        def close(self):
            self.f.close()

    init = trainer.MetricsLogger.__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.file = FullFile(self.file)

    monkeypatch.setattr(trainer.MetricsLogger, "__init__", patched)
    Trainer(tiny_run_config(max_steps=5, ckpt_every=0), TinyMethod(), tiny_data(), tmp_path).fit()
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 4, 5] and "cannot write metrics.jsonl" in capsys.readouterr().err
    assert (tmp_path / "backbone.pt").exists()


def test_cli_reports_a_full_disk_in_one_line(tmp_path, capsys):
    from vssl.cli import main

    args = ["finetune", "--config", str(TOY), "--out", str(tmp_path), "--set", "train.max_steps=4",
            "--set", "train.ckpt_every=2", "--set", "train.deterministic=false"]
    with full_disk(at_steps={4, None}):
        rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("vssl: error: final weights not written") and len(err) == 2, err
    assert "vssl: warning: checkpoint at step 4 not written" in err[0]
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
