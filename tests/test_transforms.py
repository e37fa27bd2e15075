"""Batched video transforms: flips and colour with per-clip parameters shared by all frames, parity
with torchvision's per-image ops, normalize/denormalize, the composites, CPU device handling.
(Crop geometry: tests/test_crops.py.)"""

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from vssl.data import transforms as T


def clip_batch(b=4, t=6, h=40, w=56, seed=0):
    """uint8 (B, 3, T, H, W) where every frame of a clip is the same image (so any per-frame
    difference after a transform means its parameters were not shared across T)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (b, 3, 1, h, w), generator=g, dtype=torch.uint8)
    return img.expand(b, 3, t, h, w).contiguous()


def same_across_time(y):
    return torch.allclose(y, y[:, :, :1].expand_as(y), atol=1e-5)


def test_resize_short_side_keeps_the_aspect_like_torchvision():
    x = clip_batch(b=2, h=40, w=80)
    r = T.resize_short_side(x, 20)
    assert r.shape == (2, 3, 6, 20, 40) and r.dtype == torch.uint8
    ref = TF.resize(x[0].permute(1, 0, 2, 3), [20, 40], antialias=True).permute(1, 0, 2, 3)  # frames (T, C, H, W)
    assert (r[0].int() - ref.int()).abs().max() <= 1
    assert T.resize_short_side(x.transpose(-1, -2), 20).shape == (2, 3, 6, 40, 20)


def test_flip_per_clip():
    x = clip_batch(b=64)
    y = T.horizontal_flip(x, 0.5, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(y[i], x[i].flip(-1)) for i in range(64)])
    kept = torch.tensor([torch.equal(y[i], x[i]) for i in range(64)])
    assert (flipped | kept).all() and 10 < flipped.sum() < 54


def test_color_ops_match_torchvision_per_frame():
    x = T._as_float(clip_batch(b=3, t=2))
    f = torch.tensor([0.6, 1.0, 1.3])
    shift = torch.tensor([-0.2, 0.05, 0.15])
    for ours, theirs, params in ((T.adjust_brightness, TF.adjust_brightness, f),
                                 (T.adjust_contrast, TF.adjust_contrast, f),
                                 (T.adjust_saturation, TF.adjust_saturation, f),
                                 (T.adjust_hue, TF.adjust_hue, shift)):
        y = ours(x, params)
        for i in range(3):
            frames = x[i].permute(1, 0, 2, 3)  # (T, C, H, W)
            ref = theirs(frames, float(params[i])).permute(1, 0, 2, 3)
            assert torch.allclose(y[i], ref, atol=2e-3), ours.__name__


def test_color_jitter_shared_across_time_and_varies_across_clips():
    x = clip_batch(b=16)
    y = T.color_jitter(x, 0.4, 0.4, 0.4, 0.2, p=1.0, generator=torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32 and y.min() >= 0 and y.max() <= 1
    assert same_across_time(y)
    change = (y - x.float() / 255).abs().mean(dim=(1, 2, 3, 4))
    assert (change > 1e-3).all() and change.std() > 0
    untouched = T.color_jitter(x, p=0.0)
    assert torch.allclose(untouched, x.float() / 255)


def test_grayscale_and_normalize_round_trip():
    x = clip_batch(b=8)
    g = T.random_grayscale(x, p=1.0)
    assert torch.allclose(g[:, 0], g[:, 1]) and torch.allclose(g[:, 1], g[:, 2])
    n = T.normalize(x)
    assert n.dtype == torch.float32
    assert torch.allclose(T.denormalize(n), x.float() / 255, atol=1e-6)
    mean = torch.tensor(T.IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    assert torch.allclose(T.normalize(mean.expand(1, 3, 2, 4, 4)), torch.zeros(1, 3, 2, 4, 4), atol=1e-6)


def test_composites_shapes_and_views():
    x = clip_batch(b=2, h=48, w=64)
    aug = T.TrainAugment(size=32, grayscale_p=0.5)
    y = aug(x, torch.Generator().manual_seed(0))
    assert y.shape == (2, 3, 6, 32, 32) and y.dtype == torch.float32
    v = aug(torch.stack([x, x], 1))  # (B, V, C, T, H, W): two independent views per video
    assert v.shape == (2, 2, 3, 6, 32, 32) and not torch.allclose(v[:, 0], v[:, 1])
    assert same_across_time(y)  # the crop and jitter parameters are shared by all frames of a clip
    e1 = T.EvalTransform(size=32)
    assert e1.short_side == 36 and e1(x).shape == (2, 3, 6, 32, 32)
    e3 = T.EvalTransform(size=32, short_side=32, crops=3)(x)
    assert e3.shape == (6, 3, 6, 32, 32)
    with pytest.raises(ValueError):
        T.EvalTransform(size=32, crops=2)
    with pytest.raises(ValueError, match="crop must be one of"):
        T.TrainAugment(crop="square")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_transforms_follow_the_batch_device():
    x = clip_batch().cuda()
    assert T.TrainAugment(size=24)(x).device == x.device
    assert T.EvalTransform(size=24, crops=3)(x).device == x.device
    from vssl.data.crops import multi_scale_crop
    assert multi_scale_crop(x, 24).device == x.device
