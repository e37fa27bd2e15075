"""Visualisations (issue 9): tubelet sheets, VideoMAE reconstructions / SIGMA prototype maps, saliency.

Fast tests check the pieces on constructed cases (exact figure sizes, a perfect prediction
reconstructs the clip, Grad-CAM and gradient saliency land on the only region a model reads,
recomputed attention matches the block); the slow ones run the three commands end to end on
checkpoints written by a step of `vssl pretrain`'s own code with the tiny recipes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vssl.cli import main
from vssl.config import RECIPES
from vssl.viz import common
from vssl.viz.common import GAP, HEADER, LABEL_W, TIME_BAR

CONFIGS = RECIPES / "pretrain"
TINY = ["data.dataset=random", "data.random_size=8", "data.num_frames=8", "data.batch_size=4", "data.num_workers=0",
        "train.max_steps=1", "train.ckpt_every=0", "train.tensorboard=false", "train.progress=false",
        "train.device=cpu"]


def grid_size(rows: int, cols: int, tile: int) -> tuple[int, int]:
    """(width, height) of a labelled ``common.grid`` of square tiles."""
    return LABEL_W + GAP + cols * (tile + GAP), HEADER + GAP + rows * (tile + GAP)


def gif_size(panels: int, tile: int) -> tuple[int, int]:
    """(width, height) of a GIF frame with ``panels`` square panels side by side under a header."""
    return GAP + panels * (tile + GAP), HEADER + 2 * GAP + tile + TIME_BAR


def decoded(path: Path) -> tuple[tuple[int, int], int]:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as im:
        im.load()
        return im.size, getattr(im, "n_frames", 1)


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------

def test_grid_png_and_gif_have_the_documented_sizes_and_frame_counts(tmp_path):
    tile = np.zeros((10, 12, 3), np.uint8)
    img = common.grid([[tile] * 3, [tile] * 3], ["a row label that wraps", "b"], ["t=0", "t=1", "t=2"])
    assert img.shape == (HEADER + GAP + 2 * (10 + GAP), LABEL_W + GAP + 3 * (12 + GAP), 3)
    assert decoded(common.save_png(img, tmp_path / "g.png")) == ((img.shape[1], img.shape[0]), 1)
    frames = [np.full((20, 30, 3), 77, np.uint8)] * 5  # identical frames must stay 5 frames
    assert decoded(common.save_gif(frames, tmp_path / "a.gif")) == ((30, 20 + TIME_BAR), 5)


def test_colours_heat_overlay_and_frame_picking():
    ids = np.arange(40)
    colours = common.category_colours(ids)
    assert len({tuple(c) for c in colours}) == 40  # distinct prototypes, distinct colours
    assert (common.category_colours(np.array([7, -1]))[0] == colours[7]).all()  # the same id, the same colour
    assert tuple(common.category_colours(np.array([-1]))[0]) == (128, 128, 128)
    frames = np.full((2, 4, 4, 3), 100, np.uint8)
    heat = np.zeros((2, 4, 4))
    heat[1, 2, 3] = 1.0
    out = common.overlay(frames, heat)
    assert (out[0] == 100).all() and (out[1, 2, 3] != 100).any()  # cold pixels keep the clip's colours
    assert common.pick_frames(16, 8, step=2) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert common.pick_frames(30, 4) == [0, 10, 19, 29]
    assert common.zoom_for(32, 96) == 3 and common.zoom_for(224, 96) == 1


# --------------------------------------------------------------------------------------------------
# Reconstruction pieces
# --------------------------------------------------------------------------------------------------

def test_a_perfect_prediction_reconstructs_the_clip_and_metrics_agree():
    from vssl.methods.masking import gather_tokens, patchify, pixel_targets, tube_mask
    from vssl.viz.reconstruct import compose_reconstruction, psnr, unpatchify

    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 16, 16)
    assert torch.equal(unpatchify(patchify(x, 2, 8), (4, 16, 16), 2, 8), x)
    mask = tube_mask(2, (2, 2, 2), 0.5)
    for normalized in (True, False):
        target = gather_tokens(pixel_targets(x, 2, 8, normalized), mask)  # what the decoder is trained to output
        recon = compose_reconstruction(x, mask, target, 2, 8, normalized)
        assert torch.allclose(recon, x, atol=1e-5)
    assert psnr(x, x) == float("inf")
    # predicting 0 in normalised units is predicting each masked tube's per-channel mean
    recon = compose_reconstruction(x, mask, torch.zeros_like(target), 2, 8, True)
    tubes, rec_tubes = patchify(x, 2, 8), patchify(recon, 2, 8)
    assert torch.allclose(rec_tubes[mask], tubes[mask].mean(dim=1, keepdim=True).expand_as(tubes[mask]), atol=1e-6)
    assert torch.equal(rec_tubes[~mask], tubes[~mask])  # visible tubes are the input's
    assert abs(psnr(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.1)) - 20.0) < 1e-5


def test_prototype_assignment_is_argmax_or_sinkhorn():
    from vssl.methods.sigma import sinkhorn_labels
    from vssl.viz.reconstruct import assign_prototypes

    scores = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(assign_prototypes(scores, "argmax"), scores.argmax(1))
    assert torch.equal(assign_prototypes(scores, "sinkhorn", 0.05, 10), sinkhorn_labels(scores, 0.05, 10))
    # all rows preferring prototype 0: argmax collapses, Sinkhorn's equipartition spreads them
    collapsed = torch.zeros(64, 8)
    collapsed[:, 0] = 1.0
    collapsed += 0.01 * scores
    assert assign_prototypes(collapsed, "argmax").unique().numel() == 1
    assert assign_prototypes(collapsed, "sinkhorn").unique().numel() > 4


# --------------------------------------------------------------------------------------------------
# Saliency on constructed models
# --------------------------------------------------------------------------------------------------

REGION = (slice(4, 8), slice(8, 16), slice(16, 24))  # (t, y, x) of a 16 x 32 x 32 clip


def region_mask(shape=(16, 32, 32)) -> torch.Tensor:
    m = torch.zeros(shape, dtype=torch.bool)
    m[REGION] = True
    return m


class RegionCNN(nn.Module):
    """A 'backbone' that only ever reads one spatio-temporal box of its input."""

    feature_dim = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3, padding=1, bias=False)

    def forward_features(self, x):
        return F.avg_pool3d(F.relu(self.conv(x * region_mask(x.shape[-3:]).to(x))), (2, 4, 4))

    def forward(self, x):
        return self.forward_features(x).mean(dim=(2, 3, 4))


def mass_inside(sal: torch.Tensor, margin: tuple[int, int, int] = (0, 0, 0)) -> float:
    """Fraction of the saliency inside ``REGION`` grown by ``margin`` voxels (t, y, x) on each side."""
    inside = torch.zeros(sal.shape[-3:], dtype=torch.bool)
    inside[tuple(slice(s.start - m, s.stop + m) for s, m in zip(REGION, margin))] = True
    return float(sal[..., inside].sum() / sal.sum())


def test_grad_cam_lands_on_the_only_region_the_network_reads():
    from vssl.viz.saliency import SaliencyModel, grad_cam

    torch.manual_seed(0)
    net = RegionCNN().eval()
    x = torch.rand(2, 3, 16, 32, 32)
    sal = grad_cam(net, x, lambda pooled: pooled.norm(dim=1).sum())
    assert sal.shape == (2, 16, 32, 32) and float(sal.amax()) == pytest.approx(1.0)
    # the box is 1.6 % of the clip; the map has the last block's resolution (cells of 2 x 4 x 4 voxels),
    # and the 3x3x3 conv reads one voxel around the box, so mass reaches the next cell when upsampled
    assert mass_inside(sal) > 0.35 and mass_inside(sal, margin=(2, 4, 4)) > 0.9
    for s in sal:
        peak = np.unravel_index(int(s.argmax()), s.shape)
        assert all(r.start <= p < r.stop for p, r in zip(peak, REGION))
    model = SaliencyModel("region", net, head=nn.Linear(8, 3))
    sal2, how = model.saliency(x)
    assert how == "grad-cam (class)" and mass_inside(sal2, margin=(2, 4, 4)) > 0.9


def test_vit_gradient_saliency_lands_on_the_only_tokens_the_network_reads():
    from vssl.models.vit import VisionTransformer
    from vssl.viz.saliency import SaliencyModel

    class RegionViT(VisionTransformer):  # no blocks: a token depends on its own tube only
        def forward_tokens(self, x, visible=None):
            keep = region_mask(x.shape[-3:])[::2, ::8, ::8].flatten().to(x)  # the tubes inside the box
            return super().forward_tokens(x, visible) * keep[None, :, None]

    torch.manual_seed(0)
    vit = RegionViT(patch_size=8, embed_dim=24, depth=0, num_heads=3).eval()
    sal, how = SaliencyModel("vit", vit).saliency(torch.randn(1, 3, 16, 32, 32))
    assert how == "gradient x input (norm)" and sal.shape == (1, 16, 32, 32)
    assert mass_inside(sal) > 0.999  # token maps are shown over their tubes, and the box is 8 whole tubes


def test_recomputed_attention_matches_the_block_and_uniform_attention_rolls_out_flat():
    from vssl.models import build_backbone
    from vssl.viz.saliency import attention_probs, attention_rollout

    torch.manual_seed(0)
    vit = build_backbone("vit_tiny").eval()
    x = torch.randn(2, 3, 8, 32, 32)
    attn = vit.blocks[1].attn
    seen = {}
    handle = attn.register_forward_hook(lambda m, inp, out: seen.update(inp=inp[0], out=out))
    with torch.no_grad():
        vit.forward_tokens(x)
    handle.remove()
    p = attention_probs(attn, seen["inp"])
    b, n, c = seen["inp"].shape
    assert torch.allclose(p.sum(-1), torch.ones(b, attn.num_heads, n), atol=1e-5)
    v = F.linear(seen["inp"], attn.qkv.weight[2 * c:], attn.v_bias).view(b, n, attn.num_heads, -1).transpose(1, 2)
    out = attn.proj((p @ v).transpose(1, 2).reshape(b, n, c))
    assert torch.allclose(out, seen["out"], atol=1e-5)
    with torch.no_grad():  # zero queries: every token attends uniformly, so no token stands out
        for blk in vit.blocks:
            blk.attn.qkv.weight[:c].zero_()
            blk.attn.q_bias.zero_()
    sal = attention_rollout(vit, x)
    assert sal.shape == (2, 8, 32, 32) and float(sal.amax() - sal.amin()) < 1e-5


# --------------------------------------------------------------------------------------------------
# Tubelets
# --------------------------------------------------------------------------------------------------

def test_synthesizer_centres_are_where_the_tubelets_are():
    """The trajectory overlay draws ``info["centres"]``: the centroid of each tubelet's mask."""
    from vssl.methods.tubelets import TubeletConfig, TubeletSynthesizer

    torch.manual_seed(0)
    cfg = TubeletConfig(num_tubelets=2, scales=[0.25], ratios=[1.0], scale_jitter=0.0, shape_probs=[1, 0, 0],
                        soft_edge_prob=0.0, opacity=[1.0, 1.0], motion="linear", transform="none")
    _, _, info = TubeletSynthesizer(cfg)(torch.rand(4, 3, 8, 64, 64))
    alpha = info["alpha"]  # (B, N, T, H, W)
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    mass = alpha.sum((-2, -1))
    centroid = torch.stack([(alpha * xs).sum((-2, -1)) / mass, (alpha * ys).sum((-2, -1)) / mass], -1)
    c, half = info["centres"], info["sizes"][:, :, None] / 2
    inside = ((c - half >= 0) & (c + half <= 64)).all(-1)  # boxes not cut by the border
    assert inside.float().mean() > 0.5
    assert (centroid - c)[inside].abs().max() < 0.75


def test_viz_tubelets_writes_the_recipes_pairs(tmp_path, capsys):
    config = str(CONFIGS / "tubelet_contrast_tiny.yaml")
    args = ["viz", "tubelets", "--config", config, "--n", "3", "--trajectories", "--device", "cpu"]
    sets = ["data.dataset=random", "data.random_size=6", "data.num_frames=8",
            "method.tubelets.opacity=[1.0,1.0]", "method.tubelets.soft_edge_prob=0.0"]
    for s in sets:
        args += ["--set", s]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0, capsys.readouterr().err
    out = tmp_path / "a"
    assert decoded(out / "tubelets.png") == (grid_size(6, 8, 96), 1)  # 2 rows per pair, 8 frames, 32 px x 3
    for i in range(3):
        assert decoded(out / f"pair_{i:02d}.gif") == (gif_size(2, 128), 8)
    meta = json.loads((out / "tubelets.json").read_text())
    assert [p["clip"] != p["partner_clip"] for p in meta["pairs"]] == [True] * 3  # view 2 is another video
    assert np.array(meta["pairs"][0]["centres_xy"]).shape == (2, 8, 2)

    from vssl.viz.tubelets import make_pairs

    a, b = make_pairs(config, 3, seed=1, overrides=sets), make_pairs(config, 3, seed=1, overrides=sets)
    assert np.array_equal(a["view1"], b["view1"]) and np.array_equal(a["view2"], b["view2"])  # reproducible
    # the same opaque tubelets on both views, after the same colour jitter: nearly the same pixels there
    # (the contrast op blends each frame with its own mean grey, and the backgrounds' means differ), while
    # the backgrounds (other videos) differ
    solid = (a["alpha"] == 1).any(1)  # (n, T, S, S)
    diff = np.abs(a["view1"].astype(int) - a["view2"].astype(int)).max(-1)
    assert solid.sum() > 50 and diff[solid].max() <= 2 and diff[~solid].mean() > 10

    video_contrast = str(CONFIGS / "video_contrast_tiny.yaml")
    assert main(["viz", "tubelets", "--config", video_contrast, "--out", str(tmp_path / "b")]) == 2
    assert "tubelet_contrast" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# End to end on checkpoints from the tiny recipes
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One pretraining step of the tiny VideoMAE, SIGMA-MLP and supervised recipes (random clips),
    through ``train_from_config`` as ``vssl pretrain`` runs them, and two toy videos."""
    from conftest import moving_square_frames
    from vssl.config import load_config
    from vssl.data.video import write_video
    from vssl.engine.run import train_from_config

    root = tmp_path_factory.mktemp("viz_runs")
    for recipe in ("videomae_tiny", "sigma_mlp_tiny", "supervised_tiny"):
        train_from_config(load_config(CONFIGS / f"{recipe}.yaml", TINY), root / recipe)
    for i in range(2):
        write_video(root / f"v{i}.mp4", moving_square_frames(32, 32, 48, seed=i))
    return root


@pytest.mark.slow
def test_viz_reconstruct_videomae_and_sigma(runs, tmp_path, capsys):
    from vssl.viz.reconstruct import render_reconstruction

    videos = [str(runs / "v0.mp4"), str(runs / "v1.mp4")]
    assert main(["viz", "reconstruct", "--checkpoint", str(runs / "videomae_tiny"), "--videos", *videos,
                 "--out", str(tmp_path / "mae"), "--device", "cpu"]) == 0, capsys.readouterr().err
    # 4 rows (input, masked, reconstruction, error) x 4 token slots (8 frames / tubelet 2), 32 px x 3
    for name in ("00_v0", "01_v1"):
        assert decoded(tmp_path / "mae" / f"{name}.png") == (grid_size(4, 4, 96), 1)
        assert decoded(tmp_path / "mae" / f"{name}.gif") == (gif_size(4, 128), 8)
    summary = json.loads((tmp_path / "mae" / "reconstruct.json").read_text())
    assert summary["method"] == "videomae" and summary["mask_ratio"] == 0.75
    m = summary["clips"][0]["metrics"]
    assert np.isfinite(m["loss"]) and 0 < m["psnr_masked"] < 100

    assert main(["viz", "reconstruct", "--checkpoint", str(runs / "sigma_mlp_tiny" / "final.pt"), "--videos",
                 videos[0], "--out", str(tmp_path / "sigma"), "--assign", "sinkhorn", "--device", "cpu"]) == 0
    assert decoded(tmp_path / "sigma" / "00_v0.png") == (grid_size(4, 4, 96), 1)
    m = json.loads((tmp_path / "sigma" / "reconstruct.json").read_text())["clips"][0]["metrics"]
    assert 0 <= m["agreement"] <= 1 and m["num_prototypes"] == 256 and m["assign"] == "sinkhorn"
    assert 1 <= m["prototypes_pred"] <= 96  # 8 x 4 x 4 tokens, 75 % of them masked

    png = render_reconstruction(runs / "videomae_tiny" / "final.pt", videos[1], tmp_path / "demo")
    assert png == tmp_path / "demo" / "00_v1.png" and png.stat().st_size > 0
    # a CNN run has no decoder: a one-line user error
    assert main(["viz", "reconstruct", "--checkpoint", str(runs / "supervised_tiny"), "--videos", videos[0],
                 "--out", str(tmp_path / "x")]) == 1
    assert "VideoMAE or SIGMA" in capsys.readouterr().err


@pytest.mark.slow
def test_viz_saliency_compares_checkpoints_side_by_side(runs, tmp_path, capsys):
    from vssl.viz.saliency import render_saliency

    videos = [str(runs / "v0.mp4"), str(runs / "v1.mp4")]
    cnn, vit = str(runs / "supervised_tiny" / "final.pt"), str(runs / "videomae_tiny" / "backbone.pt")
    assert main(["viz", "saliency", "--checkpoint", cnn, vit, "--videos", *videos, "--out", str(tmp_path / "s"),
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    for name in ("00_v0", "01_v1"):  # rows: input + 2 checkpoints; 8 frames
        assert decoded(tmp_path / "s" / f"{name}.png") == (grid_size(3, 8, 96), 1)
        assert decoded(tmp_path / "s" / f"{name}.gif") == (gif_size(3, 128), 8)
    summary = json.loads((tmp_path / "s" / "saliency.json").read_text())
    assert summary["names"] == ["supervised_tiny (supervised)", "videomae_tiny (videomae)"]
    assert [m["method"] for m in summary["clips"][0]["models"]] == ["grad-cam (class)", "gradient x input (norm)"]

    pngs = render_saliency([vit, "random:vit_tiny"], videos[:1], tmp_path / "r", vit_method="rollout")
    assert pngs == [tmp_path / "r" / "00_v0.png"] and decoded(pngs[0]) == (grid_size(3, 8, 96), 1)
    summary = json.loads((tmp_path / "r" / "saliency.json").read_text())
    assert summary["names"][1] == "random init (vit_tiny)" and summary["clip"]["size"] == 32  # the run's clips
    lone = tmp_path / "lone" / "weights.pt"  # a backbone file with no run config next to it
    lone.parent.mkdir()
    lone.write_bytes((runs / "videomae_tiny" / "backbone.pt").read_bytes())
    args = ["viz", "saliency", "--checkpoint", str(lone), "--videos", videos[0], "--out", str(tmp_path / "l")]
    assert main(args) == 1
    assert "--backbone" in capsys.readouterr().err
    assert main(["viz", "saliency", "--checkpoint", str(lone), "--backbone", "vit_tiny", "--videos", videos[0],
                 "--out", str(tmp_path / "l"), "--frames", "8", "--size", "32", "--stride", "1"]) == 0


@pytest.mark.slow
def test_viz_commands_skip_unreadable_videos_and_say_why(runs, tmp_path, capsys):
    """A bad video is skipped (named, with the reason, in the JSON and on stderr); the others are drawn;
    only when none can be read does the command fail."""
    good, broken = str(runs / "v0.mp4"), tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    for command, ckpt, js in (("reconstruct", [str(runs / "videomae_tiny")], "reconstruct.json"),
                              ("saliency", [str(runs / "supervised_tiny" / "final.pt")], "saliency.json")):
        out = tmp_path / command
        rc = main(["viz", command, "--checkpoint", *ckpt, "--videos", str(broken), good, good, "--out", str(out),
                   "--device", "cpu"])
        err = capsys.readouterr().err
        assert rc == 0, err
        assert f"skipping {broken}: cannot open" in err
        summary = json.loads((out / js).read_text())
        assert [c["video"] for c in summary["clips"]] == [good]  # named twice, drawn once
        assert [s["video"] for s in summary["skipped"]] == [str(broken)] and "cannot open" in summary["skipped"][0]["reason"]
        assert (out / "01_v0.png").is_file() and not (out / "00_broken.png").exists()
        assert main(["viz", command, "--checkpoint", *ckpt, "--videos", str(broken), "--out", str(tmp_path / "x"),
                     "--device", "cpu"]) == 1
        assert "none of the 1 videos could be read" in capsys.readouterr().err
        assert json.loads((tmp_path / "x" / js).read_text())["skipped"][0]["video"] == str(broken)


def test_viz_tubelets_labels_the_clip_actually_served(tmp_path, capsys):
    """A requested video that cannot be read is replaced by the next one: the rows say which was shown."""
    from conftest import moving_square_frames
    from vssl.data.video import write_video
    from vssl.viz.tubelets import make_pairs

    for i in range(4):
        write_video(tmp_path / f"v{i}.mp4", moving_square_frames(12, 32, 32, seed=i))
    (tmp_path / "v1.mp4").write_bytes(b"")  # unreadable
    (tmp_path / "train.csv").write_text("path,label\n" + "".join(f"v{i}.mp4,a\n" for i in range(4)))
    sets = ["data.dataset=csv", f"data.annotations={tmp_path}", f"data.root={tmp_path}", "data.num_frames=8",
            "data.split=train"]
    pairs = make_pairs(str(CONFIGS / "tubelet_contrast_tiny.yaml"), 4, seed=0, overrides=sets)
    assert 1 not in pairs["items"] and pairs["items"].count(2) == 2  # v1's turn served v2 (all 4 requested)
    assert [p for p, _ in pairs["skipped"]] == ["v1.mp4"]
    args = ["viz", "tubelets", "--config", str(CONFIGS / "tubelet_contrast_tiny.yaml"), "--n", "4",
            "--out", str(tmp_path / "t")] + [a for s in sets for a in ("--set", s)]
    assert main(args) == 0, capsys.readouterr().err
    assert "skipped unreadable video v1.mp4: empty file" in capsys.readouterr().out
    meta = json.loads((tmp_path / "t" / "tubelets.json").read_text())
    assert [p["clip"] for p in meta["pairs"]] == pairs["items"] and meta["skipped"][0]["video"] == "v1.mp4"
