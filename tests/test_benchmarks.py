"""The benchmark scripts run at their smallest sizes on the CPU (so they do not rot), and their
baselines compute what they claim to (the reference-style VideoMAE targets equal vssl's)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def bench(name: str):
    return importlib.import_module(f"benchmarks.{name}")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The benchmarks set torch's (process-wide) thread count; give it back to the other tests."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_reference_videomae_targets_match_vssl():
    from vssl.data import transforms as TF
    from vssl.methods.masking import gather_tokens, pixel_targets, tube_mask

    ps = bench("pretrain_step")
    x01 = torch.rand(2, 3, 4, 16, 16)
    mask = tube_mask(2, (2, 2, 2), 0.75)
    ref = ps.ref_targets(TF.normalize(x01), mask, tubelet=2, patch=8)
    ours = gather_tokens(pixel_targets(x01, 2, 8), mask)
    torch.testing.assert_close(ref, ours, rtol=1e-4, atol=1e-4)


def test_reference_videomae_model_shapes():
    ps = bench("pretrain_step")
    model = ps.RefVideoMAE(32, 1, 2, 16, 1, 2, patch=8, tubelet=2, num_tokens=8)
    from vssl.methods.masking import tube_mask

    mask = tube_mask(2, (2, 2, 2), 0.75)
    out = model(torch.randn(2, 3, 4, 16, 16), mask)
    assert out.shape == (2, int(mask[0].sum()), 2 * 8 * 8 * 3)


@pytest.mark.slow
def test_pretrain_step_smoke():
    rows = bench("pretrain_step").main(["--smoke", "--device", "cpu", "--steps", "1", "--warmup", "1",
                                              "--threads", "1"])
    by = {r["case"]: r for r in rows}
    assert set(by) == {"videomae", "sigma", "ref_videomae", "tubelet_contrast", "bare_r2plus1d"}
    assert all(r["clips_s"] > 0 for r in rows)
    assert by["videomae"]["vs"] == "ref_videomae" and by["tubelet_contrast"]["vs"] == "bare_r2plus1d"
    assert 0 < by["tubelet_contrast"]["synth_frac"]


def test_tubelets_smoke(tmp_path):
    tb = bench("tubelets")
    rows = tb.main(["--smoke", "--device", "cpu", "--steps", "1", "--threads", "1",
                    "--json", str(tmp_path / "t.json")])
    assert [r["device"] for r in rows] == ["cpu", "cpu"] and all(r["clips_s"] > 0 for r in rows)
    assert (tmp_path / "t.json").exists()


def test_tubelet_baseline_pastes_the_same_pixels_on_both_views():
    import numpy as np

    tb = bench("tubelets")
    from vssl.methods.tubelets import TubeletConfig

    clips = np.random.default_rng(0).random((3, 3, 8, 32, 32), dtype=np.float32)
    v1, v2, partner = tb.baseline_tubelets(clips, TubeletConfig(), np.random.default_rng(1))
    assert v1.shape == v2.shape == clips.shape
    assert sorted(partner.tolist()) == [0, 1, 2] and all(partner != np.arange(3))
    changed1, changed2 = v1 != clips, v2 != clips[partner]
    assert changed1.any()
    np.testing.assert_array_equal(changed1, changed2)  # pasted at the same places in both views


def test_data_pipeline_smoke(tmp_path):
    """Raw and prepared files, every reader timed and checked; the plain PyAV loop returns XviD AVI
    B-frame streams a frame late, vssl does not."""
    bp = bench("data_pipeline")
    rows = bp.main(["--smoke", "--clips", "2", "--no-pin", "--dir", str(tmp_path)])
    by = {(r["file"], r["reader"]): r for r in rows}
    vssl = [r for r in rows if r["reader"] == "vssl-pyav"]
    assert [r["file"] for r in vssl] == ["h264.mp4", "xvid.avi", "h264_mp4.mp4", "xvid_avi.mp4"]
    assert all(r["wrong"] == 0 and r["clips_s"] > 0 and "vs_pyav-plain" in r for r in vssl)
    assert by[("xvid.avi", "pyav-plain")]["wrong"] > 0
    mine = bp.main(["--files", str(tmp_path / "raw" / "h264.mp4"), "--no-prepare", "--clips", "1", "--no-pin",
                    "--dir", str(tmp_path / "own")])
    assert {r["file"] for r in mine} == {"h264.mp4"} and any(r["reader"] == "vssl-pyav" for r in mine)


def test_clip_pipeline_smoke():
    rows = bench("clip_pipeline").main(["--smoke", "--steps", "1"])
    assert [r["case"] for r in rows][0] == "square" and all(r["ms"] > 0 for r in rows)
    # the baseline's whole-batch crop and vssl's windowed crop cut the same pixels (up to uint8 rounding
    # of float sums taken in another order)
    cp = bench("clip_pipeline")
    from vssl.data.crops import crop_boxes, rrc_params
    x = cp.items([(32, 57)] * 4, 2)
    video = torch.stack([i["video"] for i in x])
    boxes = rrc_params(torch.tensor([[32, 57]] * 4), generator=torch.Generator().manual_seed(0))
    diff = cp.whole_batch_crop(video, boxes, 16).int() - crop_boxes(video, boxes, 16).int()
    assert diff.abs().max() <= 1 and (diff != 0).float().mean() < 0.01


def test_run_all_report_and_gpu_script():
    ra = bench("run_all")
    text = ra.report([
        {"benchmark": "pretrain_step", "size": "smoke", "wall_s": 1.0, "hardware": "cpu", "rows": [
            {"case": "videomae", "shape": "2x3x8x32x32", "precision": "None", "ms_step": 10.0, "clips_s": 200.0,
             "peak_bytes": 2**20, "peak_kind": "RSS delta", "vs": "ref_videomae", "speedup": 2.0, "mem_ratio": 0.5}]},
        {"benchmark": "tubelets", "error": "exit 1", "wall_s": 1.0},
    ])
    assert "2.00x clips/s" in text and "failed: exit 1" in text
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")], check=True)


@pytest.mark.slow
def test_gpu_check_script_smoke(tmp_path):
    """The GPU session's one script, parts 1-5 at the smallest sizes on the CPU (part 0 is tests this
    suite runs itself): every part writes its result and the report holds every table."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OUT": str(tmp_path),
           "DEVICE": "cpu", "SIZE": "--smoke", "PARTS": "1 2 3 4 5", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ind")}
    subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, check=True, capture_output=True,
                   timeout=600)
    for name in ("levers_vit", "levers_cnn", "levers_compile", "sinkhorn", "engine_data"):
        rows = json.loads((tmp_path / f"{name}.json").read_text())["rows"]
        assert rows and not [r for r in rows if "error" in r], name
    vit = {r["case"]: r for r in json.loads((tmp_path / "levers_vit.json").read_text())["rows"]}
    assert vit["sigma:sinkhorn_bf16"]["vs_default"] > 0 and vit["sigma"]["vs_reference"] > 0
    compiled = {r["case"]: r for r in json.loads((tmp_path / "levers_compile.json").read_text())["rows"]}
    assert compiled["videomae:compile"]["vs_default"] > 0 and compiled["videomae:compile"]["setup_and_warmup_s"] > 0
    data = json.loads((tmp_path / "engine_data.json").read_text())["rows"]
    assert all(0 <= r["data_share"] < 1 and r["loader_clips_s"] > 0 for r in data)
    report = (tmp_path / "benchmarks.md").read_text()
    assert all(f"### levers: {g}" in report for g in ("vit", "cnn", "compile"))
    assert "### engine data wait" in report and "sinkhorn_labels, precision bf16" in report
