"""Issue 8.4: untrusted checkpoints. Random bytes, cut-off files and pickles that would run code on
load are refused by every entry point with a one-line error naming the file, and the payload never
runs (it would create a marker file)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.reliability_cases import TOY, untrusted_files  # noqa: E402
from vssl.cli import main  # noqa: E402
from vssl.errors import CheckpointError  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("untrusted")
    marker = folder / "PAYLOAD_RAN"
    return untrusted_files(folder / "files", marker), marker


def _python_loaders(tmp: Path):
    from vssl.models import build_backbone, load_backbone_weights
    from vssl.serialization import load_checkpoint

    return {
        "load_checkpoint": load_checkpoint,
        "build_backbone(checkpoint=)": lambda p: build_backbone("r2plus1d_tiny", checkpoint=str(p)),
        "load_backbone_weights": lambda p: load_backbone_weights(build_backbone("r2plus1d_tiny"), p),
    }


def _cli_loaders(tmp: Path):
    def resume(path):  # a damaged/malicious last.pt in a run directory, then --resume
        run = tmp / f"resume-{path.stem}"
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, run / "checkpoints" / "last.pt")
        return ["pretrain", "--config", str(TOY), "--out", str(run), "--resume"]

    (tmp / "data").mkdir(exist_ok=True)
    return {
        "vssl weights inspect": lambda p: ["weights", "inspect", str(p)],
        "vssl weights convert": lambda p: [
            "weights", "convert", str(p), str(tmp / "out.safetensors"), "--from", "moco"],
        "vssl pretrain --set model.checkpoint=": lambda p: [
            "pretrain", "--config", str(TOY), "--out", str(tmp / "run"), "--set", f"model.checkpoint={p}"],
        "vssl severe --checkpoint": lambda p: [
            "severe", "--backbone", "r2plus1d_tiny", "--checkpoint", str(p), "--data-root", str(tmp / "data"),
            "--out", str(tmp / "severe")],
        "vssl pretrain --resume": resume,
    }


def test_every_loader_refuses_every_untrusted_file(files, tmp_path, capsys):
    paths, marker = files
    refused = 0
    for loader_name, load in _python_loaders(tmp_path).items():
        for kind, path in paths.items():
            with pytest.raises(CheckpointError) as err:
                load(path)
            text = str(err.value)
            assert "\n" not in text and path.name in text, (loader_name, kind, text)
            assert "weights_only=False" not in text and "will likely succeed" not in text  # no unsafe advice
            refused += 1
    for loader_name, argv in _cli_loaders(tmp_path).items():
        for kind, path in paths.items():
            rc = main(argv(path))
            err = capsys.readouterr().err.strip().splitlines()
            assert rc == 1, (loader_name, kind, err)
            assert err[-1].startswith("vssl: error: ") and "Traceback" not in "\n".join(err), (loader_name, kind, err)
            assert path.name in err[-1] or "last.pt" in err[-1], (loader_name, kind, err)
            refused += 1
    assert not marker.exists(), "a payload ran"
    assert refused == 8 * len(paths)


def test_payload_is_named_in_the_refusal(files):
    from vssl.serialization import load_checkpoint

    paths, marker = files
    with pytest.raises(CheckpointError, match=r"refusing to unpickle (posix|os)\.system"):
        load_checkpoint(paths["pickle (protocol 2) running os.system"])
    with pytest.raises(CheckpointError, match=r"refusing to unpickle (builtins\.)?exec\b"):
        load_checkpoint(paths["state dict with a payload value"])
    assert not marker.exists()


def test_a_damaged_last_checkpoint_falls_back_to_an_older_copy(tmp_path, capsys):
    """``last.pt`` replaced by garbage: resume warns, uses the newest numbered copy that loads."""
    import torch

    run = ["finetune", "--config", str(TOY), "--out", str(tmp_path), "--set", "train.ckpt_every=2",
           "--set", "train.deterministic=false"]
    assert main([*run, "--set", "train.max_steps=6"]) == 0  # checkpoints at steps 2, 4, 6 (2 copies kept)
    ckpt = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpt.glob("step_*.pt")) == ["step_00000004.pt", "step_00000006.pt"]
    data = (ckpt / "last.pt").read_bytes()
    with open(ckpt / "last.pt", "r+b") as f:  # cut in place: its hard-linked step_6 copy is cut too
        f.truncate(len(data) // 3)
    capsys.readouterr()
    assert main([*run, "--set", "train.max_steps=8", "--resume"]) == 0
    out = capsys.readouterr()
    assert "trying an older checkpoint" in out.err and "resuming from" in out.out and "(step 4)" in out.out
    assert torch.load(tmp_path / "final.pt", weights_only=True)["step"] == 8
