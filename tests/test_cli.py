"""The command line: --version, and `vssl pretrain/finetune` on the toy config (in-process)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
import torch

from vssl import __version__
from vssl.cli import main
from vssl.config import RECIPES
from vssl.engine.run import class_balanced_subset
from vssl.errors import ConfigError

TOY = str(RECIPES / "finetune" / "toy.yaml")


def test_version_is_fast_and_printed():
    proc = subprocess.run([sys.executable, "-m", "vssl.cli", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"vssl {__version__}"


def test_class_balanced_subset_keeps_ceil_per_class_reproducibly():
    labels = [0] * 10 + [1] * 3 + [2] * 1
    keep = class_balanced_subset(labels, 0.25, seed=0)
    assert Counter(labels[i] for i in keep) == {0: 3, 1: 1, 2: 1}  # ceil(2.5), ceil(0.75), ceil(0.25)
    assert keep == class_balanced_subset(labels, 0.25, seed=0) != class_balanced_subset(labels, 0.25, seed=1)
    assert class_balanced_subset(labels, 1.0) == list(range(14))
    with pytest.raises(ConfigError):
        class_balanced_subset(labels, 0.0)


def test_pretrain_with_data_fraction_trains_and_saves_everything(tmp_path, capsys):
    rc = main(["pretrain", "--config", TOY, "--out", str(tmp_path), "--data-fraction", "0.5",
               "--set", "train.max_steps=3", "--set", "train.deterministic=false"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "step 3, 3 steps" in out and "backbone.pt" in out
    from vssl.models import build_backbone

    build_backbone("r2plus1d_tiny", checkpoint=str(tmp_path / "backbone.pt"))  # loads with no missing keys
    saved = (tmp_path / "config.yaml").read_text()
    assert "fraction: 0.5" in saved and "num_classes: 4" in saved  # resolved from the dataset
    assert torch.load(tmp_path / "final.pt", weights_only=True)["step"] == 3


def test_bad_data_fraction_is_a_user_error(tmp_path, capsys):
    rc = main(["pretrain", "--config", TOY, "--out", str(tmp_path), "--data-fraction", "1.5"])
    assert rc == 2 and "--data-fraction" in capsys.readouterr().err


def test_finetune_on_real_videos_through_a_csv_manifest(tmp_path, make_video, capsys):
    """The real-data path: manifest adapter -> ClipDataset (decoding mp4s) -> supervised -> backbone.pt."""
    (tmp_path / "ann").mkdir()
    rows = ["path,label"]
    for i in range(4):
        make_video(f"videos/v{i}.mp4", num_frames=12, height=36, width=40, seed=i)
        rows.append(f"v{i}.mp4,{'jump' if i % 2 else 'wave'}")
    (tmp_path / "ann" / "train.csv").write_text("\n".join(rows) + "\n")
    rc = main(["finetune", "--config", TOY, "--out", str(tmp_path / "run"), "--set", "data.dataset=csv",
               "--set", f"data.root={tmp_path / 'videos'}", "--set", f"data.annotations={tmp_path / 'ann'}",
               "--set", "data.stride=1", "--set", "train.max_steps=2", "--set", "data.batch_size=2"])
    assert rc == 0, capsys.readouterr().err
    assert "num_classes: 2" in (tmp_path / "run" / "config.yaml").read_text()
    assert (tmp_path / "run" / "backbone.pt").is_file()


@pytest.mark.parametrize("argv", [["nocmd"], ["pretrain", "--config"], ["severe", "--backbone", "x"],
                                  ["demo", "--budget", "huge"], ["synth", "out", "--seed", "x"]])
def test_bad_command_lines_exit_2_with_one_line(argv, capsys):
    """Issue 8: a bad command line is one line on stderr and exit status 2, not argparse's usage block."""
    from vssl.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error:" in err and "Traceback" not in err
