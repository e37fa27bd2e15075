"""Crop geometry over the whole frame, checked against the reference samplers derived by hand.

On a 16:9 frame the references put 38-46 % of their crop centres in the outer thirds of the width
(SEVERE's random resized crop 38.7 %, VideoMAE's multi-scale crop 46.2 %); a square centre pre-crop
left 44 % of the columns unseen and 0-1 % of the centres there. Each test derives the reference's
distribution (torchvision's ``RandomResizedCrop.get_params``, which SEVERE's ``video_transforms`` copies,
or an enumeration of the reference's offsets) and compares vssl's boxes with it.
"""

import math

import numpy as np
import torch
from torchvision.ops import roi_align
from torchvision.transforms import RandomResizedCrop

from vssl.data import crops as C
from vssl.data.collate import collate_clips, pad_frames
from vssl.data.transforms import EvalTransform, TrainAugment, denormalize

H, W = 180, 320  # a 16:9 frame
N = 20000


def sizes(n=N, h=H, w=W):
    return torch.tensor([[h, w]]).expand(n, 2)


def outer_thirds(centres, width=W) -> float:
    """Fraction of centres strictly inside the outer thirds (float32 boxes: a centre exactly on a third
    counts as the middle, as in the hand counts)."""
    c = np.asarray(centres, dtype=np.float64) / width
    return float(((c < 1 / 3 - 1e-6) | (c > 2 / 3 + 1e-6)).mean())


def centres_x(boxes) -> np.ndarray:
    return ((boxes[:, 0] + boxes[:, 2]) / 2).numpy()


def clip_batch(b=4, t=3, h=40, w=56, seed=0):
    """uint8 (B, 3, T, H, W), every frame of a clip the same random image."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, 1, h, w), generator=g, dtype=torch.uint8).expand(b, 3, t, h, w).contiguous()


# --------------------------------------------------------------------------------------------------
# crop_boxes and padded batches
# --------------------------------------------------------------------------------------------------

def test_crop_boxes_exact_crops_are_slices():
    x = clip_batch()
    boxes = torch.tensor([[8, 4, 40, 36], [0, 0, 32, 32], [24, 8, 56, 40], [10, 2, 42, 34]], dtype=torch.float32)
    y = C.crop_boxes(x, boxes, 32)
    assert y.dtype == torch.uint8
    for i, (x0, y0, _, _) in enumerate(boxes.long().tolist()):
        assert torch.equal(y[i], x[i, ..., y0:y0 + 32, x0:x0 + 32])


def test_crop_boxes_equal_roi_align_over_the_whole_frames():
    """The per-box windows give exactly what roi_align over the whole (B, C*T, H, W) tensor gives."""
    x = clip_batch(b=6, h=50, w=90).float()
    g = torch.Generator().manual_seed(1)
    lo = torch.rand(6, 2, generator=g) * torch.tensor([60.0, 30.0])
    boxes = torch.cat([lo, lo + 8 + torch.rand(6, 2, generator=g) * torch.tensor([30.0, 20.0])], 1)
    boxes[0] = torch.tensor([0.0, 0.0, 90.0, 50.0])  # whole frame
    boxes[1] = torch.tensor([61.3, 27.7, 90.0, 50.0])  # touching the right and bottom edges
    ref = roi_align(x.reshape(6, 9, 50, 90), torch.cat([torch.arange(6.0)[:, None], boxes], 1), (20, 24),
                    spatial_scale=1.0, sampling_ratio=-1, aligned=True).reshape(6, 3, 3, 20, 24)
    assert torch.allclose(C.crop_boxes(x, boxes, (20, 24)), ref, atol=1e-4)
    rounded = C.crop_boxes(x.to(torch.uint8), boxes, (20, 24)).int() - ref.round().int()
    assert rounded.abs().max() <= 1  # uint8 out: rounded (a float sum in another order may round apart)


def test_a_padded_batch_crops_each_clip_as_if_alone():
    """16:9, 4:3 and portrait clips stack (padded by edge replication); boxes up to each clip's own
    border give the values of the clip cropped on its own."""
    clips = [clip_batch(1, 2, h, w, seed=i)[0] for i, (h, w) in enumerate([(36, 64), (36, 48), (64, 36)])]
    batch = collate_clips([{"video": c, "label": torch.tensor(i)} for i, c in enumerate(clips)])
    assert batch["video"].shape == (3, 3, 2, 64, 64)
    assert batch["frame_size"].tolist() == [[36, 64], [36, 48], [64, 36]]
    boxes = torch.tensor([[40.5, 10.25, 64.0, 36.0], [0.0, 0.0, 48.0, 36.0], [3.5, 30.0, 36.0, 64.0]])
    together = C.crop_boxes(batch["video"].float(), boxes, 16)
    for i, c in enumerate(clips):
        assert torch.allclose(together[i], C.crop_boxes(c[None].float(), boxes[i:i + 1], 16)[0], atol=1e-4)
    zeros = batch["video"].clone()
    zeros[2, ..., 36:] = 0  # zero padding instead: the border of the portrait clip would darken
    assert not torch.allclose(C.crop_boxes(zeros.float(), boxes, 16)[2], together[2], atol=1.0)
    same = collate_clips([{"video": clips[0]}, {"video": clips[0]}])
    assert same["video"].shape == (2, 3, 2, 36, 64) and same["frame_size"].tolist() == [[36, 64]] * 2
    padded = pad_frames(clips[1], 40, 50)
    assert torch.equal(padded[..., :36, :48], clips[1]) and torch.equal(padded[..., 39, 49], clips[1][..., 35, 47])


# --------------------------------------------------------------------------------------------------
# Training samplers against their references on a 16:9 frame
# --------------------------------------------------------------------------------------------------

def test_rrc_is_severe_random_resized_crop_over_the_whole_frame():
    boxes = C.rrc_params(sizes(), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    img = torch.zeros(1, H, W)
    ref = np.array([RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(N)], np.float64)
    ref_centres = ref[:, 1] + ref[:, 3] / 2  # (i, j, h, w): x centre = j + w / 2
    ours, theirs = outer_thirds(centres_x(boxes)), outer_thirds(ref_centres)
    assert abs(theirs - 0.387) < 0.015  # the reference's 38-39 % on 16:9
    assert abs(ours - theirs) < 4 * math.sqrt(2 * 0.24 / N)  # same law: within 4 standard errors
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).numpy() / (H * W)
    assert abs(area.mean() - (ref[:, 2] * ref[:, 3]).mean() / (H * W)) < 0.01
    assert boxes[:, 0].min() == 0 and boxes[:, 2].max() == W  # every column can be seen


def test_msc_is_videomae_multi_scale_crop_over_the_whole_frame():
    """GroupMultiScaleCrop(112) on 180x320: sides int(180 * s) = 180, 157, 135, 118 (none within 3 px
    of 112), 10 (w, h) pairs with |i - j| <= 1, offsets on a ((320 - w) // 4, (180 - h) // 4) grid. At
    16:9 a crop at x-quarter 0 or 4 is centred in an outer third, at 1-3 it is not: 6 of the 13
    offsets, 46.2 %."""
    sides = [180, 157, 135, 118]
    grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    expected = [(gx * ((W - sides[i]) // 4), gy * ((H - sides[j]) // 4), sides[i], sides[j])
                for i in range(4) for j in range(4) if abs(i - j) <= 1 for gx, gy in grid]  # equally likely
    assert abs(outer_thirds([x0 + w / 2 for x0, _, w, _ in expected]) - 6 / 13) < 1e-9
    boxes = C.msc_params(sizes(), 112, generator=torch.Generator().manual_seed(0))
    drawn = {(int(a), int(b), int(c - a), int(d - b)) for a, b, c, d in boxes.tolist()}
    assert drawn == set(expected)
    assert abs(outer_thirds(centres_x(boxes)) - 6 / 13) < 4 * math.sqrt(0.25 / N)


def test_tubelet_rescale_crop_is_groupscale_then_random_crop():
    """GroupScale to (149, 112), (171, 128) or (192, 144) whatever the aspect ratio, then a uniform 112
    crop: x in 0..w-112. Centres in the outer thirds: none at 149, x in {0, 59} at 171 (2 of 60), x < 8 or
    x > 72 at 192 (16 of 81) -> (0 + 2/60 + 16/81) / 3."""
    boxes = C.rescale_crop_params(sizes(), 112, generator=torch.Generator().manual_seed(0))
    widths = {round(float(w), 3) for w in boxes[:, 2] - boxes[:, 0]}
    assert widths == {round(112 * W / s, 3) for s in (149, 171, 192)}
    heights = {round(float(h), 3) for h in boxes[:, 3] - boxes[:, 1]}
    assert heights == {round(112 * H / s, 3) for s in (112, 128, 144)}
    hand = (0 + 2 / 60 + 16 / 81) / 3
    assert abs(outer_thirds(centres_x(boxes)) - hand) < 4 * math.sqrt(hand * (1 - hand) / N)
    assert boxes[:, 0].min() == 0 and abs(boxes[:, 2].max() - W) < 1e-3
    tall = C.rescale_crop_params(sizes(2000, W, H), 112, generator=torch.Generator().manual_seed(1))
    assert {round(float(h), 3) for h in tall[:, 3] - tall[:, 1]} == {round(112 * W / s, 3) for s in (149, 171, 192)}
    # at 32 px the reference's geometry is kept: scales x 32/112
    small = C.rescale_crop_params(sizes(2000, 32, 32), 32, generator=torch.Generator().manual_seed(2))
    assert {round(float(w), 3) for w in small[:, 2] - small[:, 0]} == {round(32 * 32 / s, 3) for s in (43, 49, 55)}


def _pyslowfast_law(lo=256, hi=340):
    """P(short side = k) for k = round(1 / U(1/hi, 1/lo)): the length of {u : k - 0.5 <= 1/u < k + 0.5}."""
    ks = np.arange(lo, hi + 1)
    upper = np.minimum(1 / (ks - 0.5), 1 / lo)
    lower = np.maximum(1 / (ks + 0.5), 1 / hi)
    return ks, (upper - lower) / (1 / lo - 1 / hi)


def test_short_side_jitter_is_pyslowfast_spatial_sampling():
    """Charades train (PySlowFast, INV_UNIFORM_SAMPLE): short side s = round(1 / U(1/340, 1/256)), long
    side floor(320 / 180 * s), x offset randint(0, new_w - 112) (numpy: the last position excluded)."""
    boxes = C.short_side_jitter_params(sizes(), 112, (256, 340), generator=torch.Generator().manual_seed(0))
    s = (112 * H / (boxes[:, 3] - boxes[:, 1]).double())
    assert torch.allclose(s, s.round(), atol=1e-3)
    s = s.round()
    assert s.min() == 256 and s.max() == 340
    ks, p = _pyslowfast_law()
    assert abs(float(s.mean()) - float((ks * p).sum())) < 4 * float(s.std()) / math.sqrt(N)
    assert abs(float((ks * p).sum()) - 294.0) < 0.5  # inverse-uniform mean ln(340/256) / (1/256 - 1/340), not 298
    new_w = np.floor(W / H * s.numpy())
    x = boxes[:, 0].double().numpy() * new_w / W
    assert np.allclose(x, np.round(x), atol=1e-3) and (np.round(x) <= new_w - 113).all() and x.min() == 0
    hand = sum(pk * np.mean([(xo + 56) / nw < 1 / 3 or (xo + 56) / nw > 2 / 3 for xo in range(int(nw) - 112)])
               for k, pk in zip(ks, p) for nw in [math.floor(W / H * k)])
    assert abs(outer_thirds(centres_x(boxes)) - hand) < 4 * math.sqrt(0.25 / N)


# --------------------------------------------------------------------------------------------------
# Test crops
# --------------------------------------------------------------------------------------------------

def test_center_crop_rounds_like_torchvision():
    x = clip_batch(b=2, h=40, w=81)
    assert torch.equal(C.center_crop(x, 40), x[..., :, 20:60])  # round(41 / 2) = 20 (half to even)


def test_eval_boxes_centre_and_three_crops_spanning_the_long_side():
    # SEVERE: short side 128, centre 112 at round((228 - 112) / 2) = 58 on a 128x228 frame
    assert C.eval_boxes(sizes(1, 128, 228), 112, 128).tolist() == [[58, 8, 170, 120]]
    # PySlowFast uniform_crop at short side 112 on 112x199: x = 0, ceil(87 / 2) = 44, 87
    three = C.eval_boxes(sizes(1, 112, 199), 112, 112, crops=3)
    assert three[:, 0].tolist() == [0, 44, 87] and three[:, 1].tolist() == [0, 0, 0]
    tall = C.eval_boxes(sizes(1, 199, 112), 112, 112, crops=3)
    assert tall[:, 1].tolist() == [0, 44, 87] and tall[:, 0].tolist() == [0, 0, 0]
    # a clip decoded larger than the test short side: the box is the resized frame's crop scaled back
    assert C.eval_boxes(sizes(1, 256, 456), 112, 128).tolist() == [[116, 16, 340, 240]]


def test_charades_test_views_are_exact_crops_with_pyslowfast_statistics():
    x = clip_batch(b=2, t=2, h=112, w=199)
    views = EvalTransform(112, short_side=112, crops=3, mean=(0.45,) * 3, std=(0.225,) * 3)(x)
    assert views.shape == (6, 3, 2, 112, 112)
    for k, left in enumerate((0, 44, 87)):
        ref = (x[1, ..., left:left + 112].float() / 255 - 0.45) / 0.225
        assert torch.allclose(views[3 + k], ref, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# The whole pipeline on a 16:9 clip: pixels, not only boxes
# --------------------------------------------------------------------------------------------------

def column_gradient(b, h=H, w=W):
    """uint8 (B, 3, 1, h, w) whose red channel is the column's position (0 .. 255 across the width)."""
    red = (torch.arange(w, dtype=torch.float64) + 0.5) / w * 255
    x = torch.zeros(b, 3, 1, h, w, dtype=torch.uint8)
    x[:, 0] = red.round().to(torch.uint8)
    return x


def test_train_augment_sees_the_outer_thirds_like_the_reference():
    """SEVERE's train crop through TrainAugment on 16:9 frames (72x128): the red value of each crop's
    centre says where in the frame the crop was taken; the reference is torchvision's get_params."""
    h, w = 72, 128
    torch.manual_seed(0)
    img = torch.zeros(1, h, w)
    ref = np.array([RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(N)], np.float64)
    expected = outer_thirds(ref[:, 1] + ref[:, 3] / 2, w)
    y = denormalize(TrainAugment(16, jitter_p=0.0, flip=False)(column_gradient(4000, h, w),
                                                               torch.Generator().manual_seed(0)))
    centre = y[:, 0, 0, 8, 7:9].mean(1).numpy()  # the red value = the centre's fraction of the width
    assert abs(outer_thirds(centre * w, w) - expected) < 4 * math.sqrt(0.25 / 4000)


def test_charades_train_augment_has_no_colour_change():
    x = column_gradient(8)
    aug = TrainAugment(112, crop="short_side_jitter", short_side=(256, 340), jitter_p=0.0, mean=(0.45,) * 3,
                       std=(0.225,) * 3)
    y = aug(x, torch.Generator().manual_seed(0)) * 0.225 + 0.45
    assert y.shape == (8, 3, 1, 112, 112)
    assert torch.allclose(y[:, 1:], torch.zeros_like(y[:, 1:]), atol=1e-6)  # green/blue stay 0: no jitter
