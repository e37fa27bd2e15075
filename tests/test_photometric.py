"""Pretraining photometric ops against hand computations and scipy: MoCo v2's Gaussian blur and
Tubelet-Contrast's three colour ops; the Tubelet-Contrast pretraining backbone's BN eps and init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from vssl.data.photometric import gaussian_blur, tubelet_color_ops
from vssl.data.transforms import TrainAugment


def _fixed_rand(monkeypatch, values):
    """Make the next ``torch.rand(n, generator=...)`` calls return ``values`` in order (each (n,))."""
    queue = [torch.tensor(v, dtype=torch.float32) for v in values]
    real = torch.rand

    def fake(*size, generator=None, **kw):
        return queue.pop(0) if queue else real(*size, generator=generator, **kw)

    monkeypatch.setattr(torch, "rand", fake)


def test_gaussian_blur_matches_scipy_with_replicated_edges():
    from scipy.ndimage import gaussian_filter

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 2, 20, 24, generator=g)
    g = torch.Generator().manual_seed(1)
    out = gaussian_blur(x, (0.1, 2.0), p=1.0, generator=g)
    g = torch.Generator().manual_seed(1)
    torch.rand(3, generator=g)  # the activity draws
    sigmas = 0.1 + 1.9 * torch.rand(3, generator=g)
    for b in range(3):
        s = float(sigmas[b])
        # radius 6 = ceil(3 x the largest sigma); scipy's radius is int(truncate * sigma + 0.5)
        ref = gaussian_filter(x[b].double().numpy(), sigma=(0, 0, s, s), mode="nearest", truncate=6 / s)
        np.testing.assert_allclose(out[b].numpy(), ref, atol=2e-6)
    assert torch.equal(gaussian_blur(x, (0.1, 2.0), p=0.0), x)


def test_blur_probability_is_per_clip():
    x = torch.rand(4000, 1, 1, 5, 5)
    out = gaussian_blur(x, (1.0, 2.0), p=0.5, generator=torch.Generator().manual_seed(0))
    blurred = (out - x).abs().flatten(1).amax(1) > 0
    assert abs(blurred.float().mean().item() - 0.5) < 0.03
    aug = TrainAugment(5, scale=(1, 1), flip=False, jitter=None, blur_p=0.5)
    assert aug.blur_p == 0.5 and "blur_p=0.5" in repr(aug)


def test_tubelet_brightness_and_contrast_by_hand(monkeypatch):
    x = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1, 1).repeat(2, 1, 1, 1, 1)
    # draws: 3 flags (clip 0 on for all ops, clip 1 off), brightness U, contrast U, hue U, saturation U
    _fixed_rand(monkeypatch, [[0.1, 0.9], [0.1, 0.9], [0.9, 0.9], [0.75, 0.5], [1.0, 0.5], [0.5, 0.5],
                              [0.5, 0.5]])
    out = tubelet_color_ops(x, p=0.2)
    # brightness delta = -32 + 64 * 0.75 = +16 / 255; contrast x exp(-0.2 + 0.4 * 1.0) = exp(0.2); clip at 1
    expected = ((torch.tensor([0.2, 0.5, 0.9]) + 16 / 255) * math.exp(0.2)).clamp(0, 1)
    torch.testing.assert_close(out[0].flatten(), expected)
    torch.testing.assert_close(out[1], x[1])  # its flags are off


def test_tubelet_hue_saturation_by_hand(monkeypatch):
    # RGB (1, 0.5, 0): hue 30 deg, saturation 1, value 1; and RGB (1, 0.125, 0): hue 7.5 deg
    x = torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.125, 0.0]]).view(2, 3, 1, 1, 1)
    # flags: only hue/saturation on; hue U = 1.0 -> +24 deg for clip 0, U = 0 -> -24 deg for clip 1;
    # saturation U = 0 -> x exp(-0.1) for both
    _fixed_rand(monkeypatch, [[0.9, 0.9], [0.9, 0.9], [0.1, 0.1], [0.5, 0.5], [0.5, 0.5], [1.0, 0.0],
                              [0.0, 0.0]])
    out = tubelet_color_ops(x, p=0.2)
    # clip 0: hue 54 deg, s = exp(-0.1), v = 1 -> C = s, X = C * (1 - |54/60 mod 2 - 1|) = 0.9 C, m = 1 - C
    c = math.exp(-0.1)
    torch.testing.assert_close(out[0].flatten(), torch.tensor([1.0, 0.9 * c + 1 - c, 1 - c]))
    # clip 1: 7.5 - 24 deg is clipped to 0 (OpenCV's uint8 hue is clipped, not wrapped): pure red hue
    torch.testing.assert_close(out[1].flatten(), torch.tensor([1.0, 1 - c, 1 - c]))


def test_tubelet_ops_fire_independently_with_probability_p():
    x = torch.full((20000, 3, 1, 1, 1), 0.5)
    x[:, 0] = 0.7
    g = torch.Generator().manual_seed(0)
    out = tubelet_color_ops(x, p=0.2, generator=g)
    changed = (out - x).abs().flatten(1).amax(1) > 1e-6
    # P(no op) = 0.8^3 = 0.512 (brightness and contrast always change a mid-grey clip)
    assert abs(changed.float().mean().item() - (1 - 0.8 ** 3)) < 0.015


def test_tubelet_pretraining_backbone_bn_eps_and_pytorch_init():
    from vssl.models import build_backbone

    torch.manual_seed(0)
    net = build_backbone("r2plus1d_18", bn_eps=1e-3, init="pytorch")
    assert {m.eps for m in net.modules() if isinstance(m, nn.BatchNorm3d)} == {1e-3}
    torch.manual_seed(0)  # the stem's first conv is the first module built: PyTorch's own default init
    ref = nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
    torch.testing.assert_close(net.stem[0].weight, ref.weight)
    default = build_backbone("r2plus1d_18")
    assert {m.eps for m in default.modules() if isinstance(m, nn.BatchNorm3d)} == {1e-5}
    with pytest.raises(ValueError, match="init"):
        build_backbone("r2plus1d_tiny", init="xavier")
