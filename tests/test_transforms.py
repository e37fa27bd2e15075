"""Batched video transforms: shapes, per-clip parameters shared by all frames, parity with
torchvision's per-image ops, normalize/denormalize, CPU device handling."""

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


def test_crop_boxes_exact_crop_and_resize():
    x = clip_batch()
    boxes = torch.tensor([[0, 0, 56, 40], [8, 4, 40, 36], [10, 0, 42, 32], [0, 8, 32, 40]], dtype=torch.float32)
    y = T.crop_boxes(x, boxes[1:2].expand(4, 4), (32, 32))  # box size == output size: exact crop
    assert y.dtype == torch.uint8 and torch.equal(y, x[..., 4:36, 8:40])
    z = T.crop_boxes(x.float(), boxes, 20)
    assert z.shape == (4, 3, 6, 20, 20) and z.dtype == torch.float32


def test_random_resized_crop_shapes_and_shared_params():
    x = clip_batch()
    g = torch.Generator().manual_seed(0)
    y = T.random_resized_crop(x, 24, generator=g)
    assert y.shape == (4, 3, 6, 24, 24) and y.dtype == torch.uint8
    assert same_across_time(y.float())
    boxes = T.rrc_params(1000, 40, 56, generator=torch.Generator().manual_seed(1))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 56).all() and (boxes[:, 3] <= 40).all()
    area = w * h / (40 * 56)
    assert area.min() >= 0.07 and area.max() <= 1.0 and area.std() > 0.1  # scale (0.08, 1)
    assert (w / h).min() >= 0.7 and (w / h).max() <= 1.4  # ratio (3/4, 4/3), up to rounding


def test_rrc_is_deterministic_under_a_generator():
    x = clip_batch()
    a = T.random_resized_crop(x, 16, generator=torch.Generator().manual_seed(3))
    b = T.random_resized_crop(x, 16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_multi_scale_crop_boxes_follow_videomae():
    boxes = T.msc_params(2000, 128, 171, 112, generator=torch.Generator().manual_seed(0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    sides = [int(128 * s) for s in (1, 0.875, 0.75, 0.66)]
    sides = [112 if abs(s - 112) < 3 else s for s in sides]
    iw = torch.tensor([sides.index(int(v)) for v in w])
    ih = torch.tensor([sides.index(int(v)) for v in h])
    assert ((iw - ih).abs() <= 1).all()  # max_distort = 1
    x_step, y_step = (171 - w) // 4, (128 - h) // 4
    qx = torch.where(x_step > 0, boxes[:, 0] / x_step.clamp(min=1), torch.zeros_like(x_step))
    assert torch.equal(qx, qx.round()) and qx.max() <= 4  # offsets on the quarter grid
    assert (boxes[:, 2] <= 171).all() and (boxes[:, 3] <= 128).all()
    assert len({(int(a), int(b)) for a, b in zip(w, h)}) == 10  # 4 scales, |i-j|<=1 -> 10 pairs


def test_multi_scale_crop_and_random_crop():
    x = clip_batch(b=8, h=48, w=64)
    y = T.multi_scale_crop(x, 32, generator=torch.Generator().manual_seed(0))
    assert y.shape == (8, 3, 6, 32, 32) and same_across_time(y.float())
    z = T.random_crop(x, (20, 30), generator=torch.Generator().manual_seed(0))
    assert z.shape == (8, 3, 6, 20, 30)
    # a random crop without resize is an exact sub-window of the clip somewhere
    found = any(torch.equal(z[0], x[0, ..., i:i + 20, j:j + 30]) for i in range(29) for j in range(35))
    assert found


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


def test_resize_center_and_three_crop():
    x = clip_batch(b=2, h=40, w=80)
    r = T.resize_short_side(x, 20)
    assert r.shape == (2, 3, 6, 20, 40) and r.dtype == torch.uint8
    c = T.center_crop(x, 40)
    assert torch.equal(c, x[..., :, 20:60])
    three = T.three_crop(x, 40).view(2, 3, 3, 6, 40, 40)
    assert torch.equal(three[:, 0], x[..., :40]) and torch.equal(three[:, 1], x[..., 20:60])
    assert torch.equal(three[:, 2], x[..., 40:])
    tall = T.three_crop(x.transpose(-1, -2), 40)
    assert tall.shape == (6, 3, 6, 40, 40)


def test_composites_shapes_and_views():
    x = clip_batch(b=2, h=48, w=64)
    aug = T.TrainAugment(size=32, grayscale_p=0.5)
    y = aug(x, torch.Generator().manual_seed(0))
    assert y.shape == (2, 3, 6, 32, 32) and y.dtype == torch.float32
    v = aug(torch.stack([x, x], 1))  # (B, V, C, T, H, W): two independent views per video
    assert v.shape == (2, 2, 3, 6, 32, 32) and not torch.allclose(v[:, 0], v[:, 1])
    e1 = T.EvalTransform(size=32)
    assert e1.short_side == 36 and e1(x).shape == (2, 3, 6, 32, 32)
    e3 = T.EvalTransform(size=32, short_side=32, crops=3)(x)
    assert e3.shape == (6, 3, 6, 32, 32)
    with pytest.raises(ValueError):
        T.EvalTransform(size=32, crops=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_transforms_follow_the_batch_device():
    x = clip_batch().cuda()
    assert T.TrainAugment(size=24)(x).device == x.device
    assert T.EvalTransform(size=24, crops=3)(x).device == x.device
    assert T.multi_scale_crop(x, 24).device == x.device
