"""``vssl data summary | check | prepare`` through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import ANNOTATIONS as ANN
from conftest import usable_backends
from vssl.cli import main

real = pytest.mark.usefixtures("real_annotations")  # fails, never skips, without ../shared


def summary_json(*args: str) -> dict:
    """Run ``python -m vssl.cli data summary ... --json`` in a subprocess; stdout must be one JSON object."""
    proc = subprocess.run([sys.executable, "-m", "vssl.cli", "data", "summary", *args, "--json"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@real
def test_summary_json_real_annotations_subprocess():
    assert summary_json("--dataset", "ucf101", "--annotations", str(ANN / "ucf101"), "--split", "2") == {
        "dataset": "ucf101", "num_classes": 101, "splits": {"train": 9586, "test": 3734}}
    ssv2 = summary_json("--dataset", "ssv2", "--annotations", str(ANN / "ssv2"))
    assert ssv2["num_classes"] == 174 and ssv2["splits"] == {"train": None, "validation": 24777}
    assert ssv2["missing"]["train"].endswith("something-something-v2-train.json")


@real
@pytest.mark.parametrize("dataset,folder,num_classes,splits", [
    ("gym99_1k", "finegym", 99, {"train": 1089, "val": 8521}),
    ("ub_s1", "finegym", 15, {"train": 3511, "val": 1471}),
    ("ucfrep", "ucfrep", 23, {"train": 421, "val": 105}),
    ("mini_kinetics", "mini_kinetics", 200, {"train": 77266, "val": 4907}),
])
def test_summary_json_in_process(capsys, dataset, folder, num_classes, splits):
    assert main(["data", "summary", "--dataset", dataset, "--annotations", str(ANN / folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"dataset": dataset, "num_classes": num_classes, "splits": splits}


@real
def test_summary_table(capsys):
    assert main(["data", "summary", "--dataset", "hmdb51", "--annotations", str(ANN / "hmdb51")]) == 0
    out = capsys.readouterr().out
    assert "3,570" in out and "1,530" in out and "51" in out


def test_summary_counting_manifest_has_null_classes(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("path,count\na.mp4,3\nb.mp4,4\n")
    (tmp_path / "val.csv").write_text("path,count\nc.mp4,5\n")
    assert main(["data", "summary", "--dataset", "csv", "--annotations", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"dataset": "csv", "num_classes": None,
                                                   "splits": {"train": 2, "val": 1}}


def test_summary_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "classInd.txt").write_text("1 Jump\n")
    (tmp_path / "trainlist01.txt").write_text("Jump/a.avi 1\nJump\n")
    (tmp_path / "testlist01.txt").write_text("Jump/b.avi\n")
    assert main(["data", "summary", "--dataset", "ucf101", "--annotations", str(tmp_path), "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "trainlist01.txt:2:" in err
    assert main(["data", "summary", "--dataset", "ucf101", "--annotations", str(tmp_path / "nope")]) == 1
    assert "classInd.txt: annotation file not found" in capsys.readouterr().err
    assert main(["data", "summary", "--dataset", "nope", "--annotations", str(tmp_path)]) == 1
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def _manifest(folder: Path) -> None:
    (folder / "train.csv").write_text("path,label\ngood.mp4,a\nbroken.mp4,b\n")
    (folder / "test.csv").write_text("path,label\ngood.mp4,a\n")


@pytest.mark.parametrize("backend", usable_backends())
def test_check_command_real_videos(tmp_path, make_video, capsys, backend):
    """The real checker through the CLI (a pool of 2 workers): a broken file is listed with its reason, the
    good one is not, the exit status says whether any video is unreadable."""
    video_root = make_video("good.mp4").parent
    (video_root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom not really a video")
    ann = tmp_path / "ann"
    ann.mkdir()
    _manifest(ann)
    args = ["data", "check", "--dataset", "csv", "--annotations", str(ann), "--root", str(video_root),
            "--workers", "2", "--backend", backend]
    rc = main(args)
    out = capsys.readouterr().out
    assert rc == 1 and "csv train: 1/2 readable" in out and "csv test: 1/1 readable" in out
    assert "  broken.mp4: " in out and "good.mp4:" not in out
    (ann / "train.csv").write_text("path,label\ngood.mp4,a\n")
    assert main(args) == 0


def test_prepare_command_passes_options(monkeypatch, capsys):
    seen = {}

    failed = []

    def prepare_tree(src, dst, short_side, gop, workers, crf):
        if src == "missing":
            raise FileNotFoundError("missing: source directory not found")
        seen.update(src=src, dst=dst, short_side=short_side, gop=gop, workers=workers, crf=crf)
        return types.SimpleNamespace(converted=3, skipped=1, failed=failed)

    monkeypatch.setitem(sys.modules, "vssl.data.prepare", types.SimpleNamespace(prepare_tree=prepare_tree))
    assert main(["data", "prepare", "in", "out", "--short-side", "128", "--gop", "8", "--crf", "20"]) == 0
    assert seen == {"src": "in", "dst": "out", "short_side": 128, "gop": 8, "workers": 0, "crf": 20}
    assert "converted 3, up to date 1, failed 0" in capsys.readouterr().out
    failed.append(("in/a.avi", "invalid data"))
    assert main(["data", "prepare", "in", "out", "--short-side", "128"]) == 1
    assert "in/a.avi: invalid data" in capsys.readouterr().out
    assert main(["data", "prepare", "missing", "out", "--short-side", "128"]) == 1
    assert capsys.readouterr().err.strip() == "vssl: error: missing: source directory not found"


def test_prepare_then_summary_paths_still_resolve(tmp_path_factory, make_video, capsys):
    """A re-encoded tree keeps relative paths (.avi -> .mp4): the annotations still find every video."""
    from vssl.data.datasets import ADAPTERS
    from vssl.data.datasets.base import video_exists

    src = make_video("Jump/v_Jump_g01_c01.mp4", height=64, width=80).parent.parent  # the fixture's tmp_path
    ann, small = tmp_path_factory.mktemp("ann"), tmp_path_factory.mktemp("small")
    (ann / "train.csv").write_text("path,label\nJump/v_Jump_g01_c01.avi,Jump\n")
    assert main(["data", "prepare", str(src), str(small), "--short-side", "32", "--workers", "1"]) == 0
    videos = ADAPTERS["csv"](ann, "train", root=small)
    assert len(videos) == 1 and video_exists(small, videos.records[0].path)
