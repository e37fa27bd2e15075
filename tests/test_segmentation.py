"""DAVIS-2017 J / F / unsupervised matching on constructed masks, SynthSEVERE's --masks output, and
`vssl viz segment` end to end (random-init ViT k-means, SIGMA prototype assignment)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vssl.config import RECIPES
from vssl.data import davis as layout
from vssl.viz import davis as D

H = W = 100   # diagonal 141.4 -> tolerance ceil(0.008 * 141.4) = 2 px


def rect(r0, r1, c0, c1, shape=(H, W)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


# --- J and F --------------------------------------------------------------------------------------

def test_ground_truth_scores_one():
    gt = rect(30, 60, 20, 60)
    assert D.db_eval_iou(gt, gt) == 1.0 and D.f_measure(gt, gt) == 1.0
    empty = np.zeros_like(gt)
    assert D.db_eval_iou(empty, empty) == 1.0 and D.f_measure(empty, empty) == 1.0   # official empty cases
    assert D.db_eval_iou(gt, empty) == 0.0 and D.f_measure(empty, gt) == 0.0


def test_boundary_map_is_the_perimeter_of_the_box_grown_up_left():
    # seg2bmap marks inside pixels of the last row/column and outside pixels above/left of the mask:
    # the perimeter of rows r0-1..r1-1, columns c0-1..c1-1 (a (h+1) x (w+1) box), 2h + 2w pixels
    b = D.seg2bmap(rect(30, 60, 20, 60))
    box = rect(29, 60, 19, 60)
    perimeter = box & ~rect(30, 59, 20, 59)
    assert np.array_equal(b, perimeter) and b.sum() == 2 * 30 + 2 * 40


def test_dilation_is_the_disk_dilation():
    from scipy.ndimage import binary_dilation

    rng = np.random.default_rng(0)
    b = rng.random((40, 50)) < 0.02
    for r in (1, 2, 3, 8):
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        disk = xx ** 2 + yy ** 2 <= r ** 2          # skimage.morphology.disk(r)
        assert np.array_equal(D.dilate(b, r), binary_dilation(b, structure=disk))


@pytest.mark.parametrize("k", [5, 10])
def test_shifted_rectangle_known_j_and_f(k):
    """A 30 x 40 rectangle (h x w) shifted right by k > d = 2 px (tolerance), w - k > d.

    J = (w - k) h / ((w + k) h). F by hand: both boundaries are (h+1) x (w+1) box perimeters with 2h + 2w
    pixels. A predicted boundary pixel matches when within d of the annotated one: the top and bottom
    rows up to d past the annotated right edge, w + 1 + d - k each; the predicted left column
    (k > d away from the annotated one, w - k > d from its right one) only within d of the top and
    bottom rows, 2d; the predicted right column never. Precision = recall by symmetry, so
    F = (2 (w + 1 + d - k) + 2 d) / (2 h + 2 w)."""
    h, w, d = 30, 40, 2
    assert D.bound_pixels((H, W)) == d
    gt = rect(30, 30 + h, 20, 20 + w)
    pred = rect(30, 30 + h, 20 + k, 20 + w + k)
    assert D.db_eval_iou(gt, pred) == pytest.approx((w - k) / (w + k))
    assert D.f_measure(pred, gt) == pytest.approx((2 * (w + 1 + d - k) + 2 * d) / (2 * h + 2 * w))
    assert D.f_measure(pred, gt) == pytest.approx({5: 80 / 140, 10: 70 / 140}[k])


def test_shift_within_tolerance_keeps_f_and_far_shift_zeroes_both():
    gt = rect(30, 60, 20, 60)
    near = rect(30, 60, 22, 62)                       # 2 px = the tolerance: every boundary pixel matches
    assert D.f_measure(near, gt) == 1.0 and D.db_eval_iou(gt, near) == pytest.approx(38 / 42)
    far = rect(30, 60, 20 + 45, 60 + 45 - 5)          # no overlap, > d away: J = F = 0
    assert D.db_eval_iou(gt, far) == 0.0 and D.f_measure(far, gt) == 0.0


def test_statistics_mean_recall_decay():
    m, r, dec = D.db_statistics(np.array([1, 1, 1, 1, 0, 0, 0, 0.0]))
    assert (m, r, dec) == (0.5, 0.5, 1.0)   # bins [0:3], .., [5:8]: first quarter 1, last 0


# --- unsupervised matching ------------------------------------------------------------------------

def test_hungarian_beats_greedy():
    score = np.array([[0.9, 0.8], [0.85, 0.1]])      # greedy: (0,0)+(1,1) = 1.0; optimum (0,1)+(1,0) = 1.65
    rows, cols = D.match_segments(score)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}


def test_unsupervised_matches_permuted_segments_and_ignores_extra_ones():
    gt = np.zeros((4, H, W), np.uint8)
    gt[:, 30:60, 20:60] = 1
    gt[:, 5:15, 5:15] = 2
    pred = np.zeros_like(gt)
    pred[gt == 1] = 7
    pred[gt == 2] = 3
    pred[:, 80:90, 80:90] = 5                          # a spurious segment, left unmatched
    pred[pred == 0] = 9                                # and a background segment
    res = D.evaluate_unsupervised(gt, pred)
    assert res["match"] == {1: 7, 2: 3} and res["proposals"] == 4
    assert np.all(res["J"] == 1) and np.all(res["F"] == 1)
    s = D.summarize({"v": res})["overall"]
    assert s["J&F-Mean"] == s["J-Mean"] == s["F-Mean"] == s["J-Recall"] == 1.0 and s["J-Decay"] == 0.0
    # the segment that covers most of object 1 and all of object 2 goes where the total is best
    pred2 = np.where(gt > 0, 4, 0).astype(np.uint8)
    pred2[:, 30:60, 20:50] = 6
    res2 = D.evaluate_unsupervised(gt, pred2)
    assert res2["match"] == {1: 6, 2: 4}


def test_unsupervised_missing_proposals_score_zero_and_limit():
    gt = np.zeros((2, H, W), np.uint8)
    gt[:, 10:20, 10:20] = 1
    gt[:, 50:60, 50:60] = 2
    pred = np.where(gt == 1, 1, 0).astype(np.uint8)
    res = D.evaluate_unsupervised(gt, pred)
    assert res["match"] == {1: 1, 2: None} and res["J"][1].sum() == 0 and res["F"][1].sum() == 0
    many = np.arange(H * W).reshape(1, H, W) % 21 + 1
    with pytest.raises(ValueError, match="21 proposals"):
        D.evaluate_unsupervised(np.ones((1, H, W), np.uint8), many.astype(np.uint8))


def test_palette_png_roundtrip(tmp_path):
    from PIL import Image

    ids = np.zeros((8, 10), np.uint8)
    ids[2:4, 2:5] = 2
    ids[5, 5] = layout.VOID
    layout.write_annotation(tmp_path / "a" / "00000.png", ids)
    with Image.open(tmp_path / "a" / "00000.png") as img:
        assert img.mode == "P" and img.getpalette()[3:9] == [128, 0, 0, 0, 128, 0]
    back = layout.read_annotation(tmp_path / "a" / "00000.png")
    assert back[5, 5] == 0 and np.array_equal(back[2:4, 2:5], np.full((2, 3), 2))


# --- SynthSEVERE --masks -----------------------------------------------------------------------

def _generate(out: Path, masks) -> dict:
    from vssl.data.synth import DATASETS, generate

    sizes = {d: (0, 0) for d in DATASETS}
    sizes.update(multilabel=(1, 3), samples_a=(0, 2))
    return generate(out, "tiny", seed=5, workers=1, sizes=sizes, progress=False, masks=masks)


@pytest.fixture(scope="module")
def synth_davis(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_masks")
    _generate(out, True)
    return out


def test_synth_masks_write_the_davis_layout(synth_davis, tmp_path):
    from PIL import Image

    desc = json.loads((synth_davis / "synthsevere.json").read_text())
    root = synth_davis / "davis"
    assert desc["davis"]["source"] == "multilabel/test" and desc["davis"]["videos"] == 3
    names = (root / "ImageSets" / "2017" / "val.txt").read_text().split()
    assert sorted(names) == layout.list_sequences(root)
    assert len(names) == 3
    for v in names:
        frames, ids = layout.read_sequence(root, v)
        assert frames.shape == (32, 32, 32, 3) and ids.shape == (32, 32, 32)
        assert (root / "JPEGImages" / "480p" / v / "00000.jpg").is_file()
        with Image.open(root / "Annotations" / "480p" / v / "00031.png") as img:
            assert img.mode == "P" and img.size == (32, 32)
        assert set(np.unique(ids)) == {0, 1, 2, 3}      # multi-label videos always have 3 objects
        area = [(ids == i).mean() for i in (1, 2, 3)]
        assert all(0.003 < a < 0.12 for a in area)
        # objects are where the frame differs from the background's colour
        bg = np.median(frames[ids == 0].reshape(-1, 3), axis=0)
        diff = np.abs(frames.astype(float) - bg).sum(-1)
        assert diff[ids > 0].mean() > 2 * diff[ids == 0].mean()
    # the ground truth as a result scores 1 (J = F = 1 on the built-in data)
    res = D.evaluate_folder(root, root / "Annotations" / "480p")
    assert res["overall"]["J&F-Mean"] == 1.0 and res["overall"]["objects"] == 9
    # masks off: no davis folder, the same videos byte for byte
    plain = tmp_path / "plain"
    desc2 = _generate(plain, False)
    assert "davis" not in desc2 and not (plain / "davis").exists()
    for f in sorted((synth_davis / "multilabel" / "videos").glob("*.mp4")):
        assert f.read_bytes() == (plain / "multilabel" / "videos" / f.name).read_bytes()


def test_synth_masks_option_and_cli_flag(monkeypatch, tmp_path):
    from vssl import cli
    from vssl.data.synth import benchmark as synthetic
    from vssl.errors import VsslError

    with pytest.raises(VsslError, match="dataset/split"):
        synthetic._mask_split("nothing/test")
    assert synthetic._mask_split("domain_a/train") == ("domain_a", "train")
    seen = {}

    def fake(out, **kw):
        seen.update(kw)
        return {"datasets": {}, "generation_seconds": 0.0}

    monkeypatch.setattr(synthetic, "generate", fake)
    assert cli.main(["synth", str(tmp_path / "x"), "--masks"]) == 0
    assert seen["masks"] is True


# --- vssl viz segment ------------------------------------------------------------------------------

def test_segment_random_vit_end_to_end(synth_davis, tmp_path):
    from PIL import Image

    from vssl import cli
    from vssl.viz.segment import sheet_size

    out = tmp_path / "seg"
    assert cli.main(["viz", "segment", "--backbone", "vit_tiny", "--davis", str(synth_davis / "davis"),
                     "--out", str(out), "--device", "cpu", "--max-videos", "2"]) == 0
    res = json.loads((out / "segment.json").read_text())
    o = res["overall"]
    assert o["videos"] == 2 and o["objects"] == 6 and res["settings"]["assign"] == "kmeans"
    assert 0.0 <= o["J-Mean"] <= 1.0 and 0.0 <= o["F-Mean"] <= 1.0
    assert o["J&F-Mean"] == pytest.approx((o["J-Mean"] + o["F-Mean"]) / 2)
    for v in res["per_video"].values():
        assert v["proposals"] <= 4                     # k = 3 objects + 1
    with Image.open(out / "segments.png") as img:
        assert img.size == sheet_size(2, (32, 32)) == (48 + 4 * 96, 2 * 3 * 96)
    assert (out / "segments.png").stat().st_size > 1000
    # the written masks are a DAVIS results folder that evaluates to the same numbers
    again = D.evaluate_folder(synth_davis / "davis", out / "masks")
    assert again["overall"]["J&F-Mean"] == pytest.approx(o["J&F-Mean"])


def test_segment_sigma_prototypes(synth_davis, tmp_path):
    import torch
    import torch.nn.functional as F

    from vssl.config import config_to_dict, load_config
    from vssl.methods import build_method
    from vssl.models import build_backbone
    from vssl.viz.segment import SegmentSettings, load_model, segment_davis

    cfg = load_config(RECIPES / "pretrain/sigma_mlp_tiny.yaml")
    torch.manual_seed(0)
    method = build_method(cfg, build_backbone(cfg.model.backbone)).eval()
    ckpt = tmp_path / "final.pt"
    torch.save({"model": method.state_dict(), "step": 0, "config": config_to_dict(cfg)}, ckpt)
    backbone, head, info = load_model(str(ckpt), None)
    assert info["backbone"] == "vit_tiny" and info["prototypes"] == 256
    # each token is scored as SIGMA's decoder predicts it while masked: same as the method's own predict
    x = torch.randn(1, 3, 16, 32, 32)
    scores = head(backbone, x).reshape(-1, 256)
    t, h, w = backbone.grid(x.shape)
    mask = torch.zeros(t, h, w, dtype=torch.bool)
    mask[:, 1::2, 0::2] = True                         # group 2 of the 2 x 2 lattice
    with torch.no_grad():
        pred = method.predict(x, mask.flatten()[None])[0]
        ref = F.normalize(pred, dim=1) @ F.normalize(method.prototypes, dim=1).t()
    assert torch.allclose(scores[mask.flatten()], ref, atol=1e-5)
    res = segment_davis(synth_davis / "davis", tmp_path / "out", str(ckpt), None, SegmentSettings(max_videos=1))
    (video,) = res["per_video"].values()
    assert res["settings"]["assign"] == "prototypes" and 1 <= video["proposals"] <= 20
    assert 0.0 <= res["overall"]["J&F-Mean"] <= 1.0
