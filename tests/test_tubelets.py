"""Tubelet synthesis: shapes, shared tubelets across two different videos, motion and transformations."""

from __future__ import annotations

import pytest
import torch

from vssl.errors import ConfigError
from vssl.methods.tubelets import (TubeletConfig, TubeletSynthesizer, interpolate_key_frames, render_examples,
                                   sample_key_frames)


def clips(b=4, t=8, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g)


def opaque(**kw) -> TubeletConfig:
    """Hard-edged, fully opaque tubelets: alpha is exactly 0 or 1."""
    return TubeletConfig(opacity=[1.0, 1.0], soft_edge_prob=0.0, **kw)


def test_shapes_partner_is_another_video_and_every_sample_gets_tubelets():
    torch.manual_seed(0)
    x = clips(b=16)
    v1, v2, info = TubeletSynthesizer(TubeletConfig(num_tubelets=3))(x)
    assert v1.shape == v2.shape == x.shape and v1.dtype == torch.float32
    assert info["alpha"].shape == (16, 3, 8, 32, 32)
    assert info["centres"].shape == (16, 3, 8, 2) and info["angle"].shape == (16, 3, 8)
    assert sorted(info["partner"].tolist()) == list(range(16))  # a permutation ...
    assert (info["partner"] != torch.arange(16)).all()  # ... without fixed points: always another video
    assert (info["alpha"].flatten(1).sum(1) > 0).all()  # every sample carries tubelets
    assert torch.isfinite(v1).all() and torch.isfinite(v2).all()


def test_views_share_tubelet_pixels_where_alpha_is_one_and_keep_their_backgrounds_elsewhere():
    torch.manual_seed(1)
    x = clips()
    v1, v2, info = TubeletSynthesizer(opaque())(x)
    cover = info["alpha"].amax(1).unsqueeze(1).expand_as(x)  # (B, C, T, H, W)
    assert cover.sum() > 0 and (cover == 0).sum() > 0
    inside, outside = cover == 1, cover == 0
    torch.testing.assert_close(v1[inside], v2[inside])  # identical tubelet pixels on both videos
    torch.testing.assert_close(v1[outside], x[outside])  # untouched backgrounds
    torch.testing.assert_close(v2[outside], x[info["partner"]][outside])
    assert (v1[outside] - v2[outside]).abs().mean() > 0.1  # different videos elsewhere


def test_motion_none_keeps_the_box_static_and_pastes_the_patch_where_it_was_cut():
    torch.manual_seed(2)
    x = clips(b=6)
    v1, _, info = TubeletSynthesizer(opaque(motion="none", transform="none"))(x)
    c = info["centres"]
    assert torch.equal(c, c[:, :, :1].expand_as(c))
    a = info["alpha"]
    assert torch.equal(a, a[:, :, :1].expand_as(a))  # same mask in every frame
    # the static patch is cut from frame s at the very box it is pasted into: at frame s clip 1 is
    # unchanged, also for boxes that stick out of the frame (the reference's misaligned paste bug)
    s = info["source_frame"][:, 0]
    rows = torch.arange(6)
    if info["sizes"].shape[1] == 2:  # with two tubelets the other one is pasted on top from its own frame
        s = torch.where(info["source_frame"][:, 0] == info["source_frame"][:, 1], s, -1)
    keep = s >= 0
    if keep.any():
        got = v1.permute(0, 2, 1, 3, 4)[rows[keep], s[keep]]
        want = x.permute(0, 2, 1, 3, 4)[rows[keep], s[keep]]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_single_static_tubelet_reproduces_its_source_frame():
    torch.manual_seed(3)
    x = clips(b=8)
    v1, _, info = TubeletSynthesizer(opaque(motion="none", transform="none", num_tubelets=1))(x)
    s = info["source_frame"][:, 0]
    got = v1.permute(0, 2, 1, 3, 4)[torch.arange(8), s]
    torch.testing.assert_close(got, x.permute(0, 2, 1, 3, 4)[torch.arange(8), s], atol=1e-5, rtol=0)
    assert (v1 - x).abs().amax() > 0.1  # ... while the other frames do show the pasted patch


def test_linear_motion_has_constant_velocity_and_nonlinear_motion_does_not():
    torch.manual_seed(4)
    x = clips(b=8, t=16)
    _, _, lin = TubeletSynthesizer(TubeletConfig(motion="linear"))(x)
    acc = lin["centres"].diff(dim=2).diff(dim=2)
    assert acc.abs().amax() < 1e-3 and lin["centres"].diff(dim=2).abs().amax() > 0.1
    _, _, non = TubeletSynthesizer(TubeletConfig(motion="nonlinear"))(x)
    assert non["centres"].diff(dim=2).diff(dim=2).abs().amax() > 0.05


def test_rotation_changes_the_patch_over_time_and_none_does_not():
    torch.manual_seed(5)
    x = clips(b=8, t=16)
    cfg = opaque(motion="none", transform="rotation", rotation_velocity=20.0, shape_probs=[1.0, 0.0, 0.0])
    _, _, info = TubeletSynthesizer(cfg)(x)
    assert info["angle"][:, :, 0].abs().max() == 0 and info["angle"][:, :, -1].abs().max() > 5
    a = info["alpha"]
    assert (a[:, :, 0] != a[:, :, -1]).any()  # the rotated rectangle covers other pixels
    _, _, still = TubeletSynthesizer(opaque(motion="none", transform="none"))(x)
    assert still["angle"].abs().max() == 0


@pytest.mark.parametrize("transform", ["scale", "shear", "rotation+scale+shear"])
def test_other_transformations_deform_the_box(transform):
    torch.manual_seed(6)
    x = clips(b=8, t=16)
    _, _, info = TubeletSynthesizer(opaque(motion="none", transform=transform, scale_velocity=0.1,
                                           shear_velocity=0.2))(x)
    area = info["alpha"].sum((-2, -1))  # (B, N, T)
    assert (area[..., 0] != area[..., -1]).any()


def test_appearance_control_keeps_trajectory_and_alpha_but_changes_patch_pixels():
    torch.manual_seed(7)
    x = clips()
    torch.manual_seed(8)
    v1, v2, info = TubeletSynthesizer(opaque(appearance_control=True))(x)
    inside = info["alpha"].amax(1).unsqueeze(1).expand_as(x) == 1
    assert (v1[inside] - v2[inside]).abs().mean() > 0.1


def test_key_frames_and_interpolation():
    torch.manual_seed(9)
    keys = sample_key_frames(1000, 16, [0.5, 0.3, 0.2], "cpu")
    assert keys[:, 0].all() and keys[:, -1].all()
    inner = keys[:, 1:-1].sum(1)
    assert set(inner.tolist()) <= {0, 1, 2} and 0.4 < (inner == 0).float().mean() < 0.6
    k = torch.zeros(1, 5, dtype=torch.bool)
    k[0, [0, 4]] = True
    vals = torch.tensor([[[0.0, 9, 9, 9, 4.0]]])
    torch.testing.assert_close(interpolate_key_frames(vals, k), torch.tensor([[[0.0, 1, 2, 3, 4]]]))


def test_bad_config_is_rejected():
    with pytest.raises(ConfigError, match="motion"):
        TubeletSynthesizer(TubeletConfig(motion="zigzag"))
    with pytest.raises(ConfigError):
        TubeletSynthesizer(TubeletConfig(transform="rotation+twirl"))


def test_render_examples_writes_a_png(tmp_path):
    torch.manual_seed(10)
    path = tmp_path / "tubelets.png"
    render_examples((clips(b=3) * 255).to(torch.uint8), TubeletConfig(), path, num_samples=2, num_frames=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_patch_coordinates_invert_the_placement():
    from vssl.methods.tubelets import patch_coordinates

    one = lambda v: torch.tensor([[[v]]], dtype=torch.float)  # noqa: E731  (B, N, T) = (1, 1, 1)
    centres = torch.tensor([[[[16.5, 16.5]]]])
    half = torch.tensor([[[[4.0, 2.0]]]])
    u = patch_coordinates(centres, half, one(0.0), one(0.0), one(0.0), 32, 32)[0, 0, 0]  # (H, W, 2)
    torch.testing.assert_close(u[16, 20], torch.tensor([1.0, 0.0]))  # 4 px right = the right edge
    torch.testing.assert_close(u[18, 16], torch.tensor([0.0, 1.0]))  # 2 px down = the bottom edge
    u = patch_coordinates(centres, half, one(90.0), one(0.0), one(0.0), 32, 32)[0, 0, 0]
    torch.testing.assert_close(u[16, 14], torch.tensor([0.0, 1.0]), atol=1e-5, rtol=0)  # patch bottom now on the left
    u = patch_coordinates(centres, half, one(0.0), one(0.5), one(0.0), 32, 32)[0, 0, 0]
    torch.testing.assert_close(u[18, 17], torch.tensor([0.0, 1.0]))  # x-shear: bottom edge moved by 0.5 * 2 px


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_windowed_synthesis_matches_the_full_frame_reference(seed):
    cfgs = [TubeletConfig(), TubeletConfig(transform="scale+shear+rotation", num_tubelets=3),
            TubeletConfig(motion="linear", appearance_control=True), opaque(motion="none", transform="none")]
    x = clips(b=5, t=8, h=48, w=40, seed=seed)
    partner = torch.tensor([1, 2, 3, 4, 0])
    for cfg in cfgs:
        torch.manual_seed(seed)
        ref = TubeletSynthesizer(cfg, window=False)(x, partner)
        torch.manual_seed(seed)
        got = TubeletSynthesizer(cfg)(x, partner)
        assert got[2]["window"] is not None and ref[2]["window"] is None
        torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(got[1], ref[1], atol=1e-5, rtol=0)
        torch.testing.assert_close(got[2]["alpha"], ref[2]["alpha"], atol=1e-6, rtol=0)
