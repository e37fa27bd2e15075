"""VideoMAE pieces: tube masks, per-tube per-channel pixel targets, visible-only encoder, masked-only decoder."""

from __future__ import annotations

import torch

from vssl.config import RunConfig
from vssl.methods.masking import gather_tokens, patchify, pixel_targets, tube_mask
from vssl.methods.videomae import VideoMAE
from vssl.models import build_backbone


def tiny_mae(**kw) -> VideoMAE:
    run = RunConfig()
    run.data.crop_size = 32
    cfg = VideoMAE.Config(**{"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2, **kw})
    return VideoMAE(cfg, build_backbone("vit_tiny"), run)


def test_tube_mask_ratio_count_and_same_spatial_mask_over_time():
    torch.manual_seed(0)
    mask = tube_mask(6, (8, 14, 14), 0.9)
    assert mask.shape == (6, 8 * 196) and mask.dtype == torch.bool
    assert (mask.sum(1) == 8 * 176).all()  # int(0.9 * 196) = 176 per slot: 1408 masked, 160 visible
    per_slot = mask.view(6, 8, 196)
    assert (per_slot == per_slot[:, :1]).all()  # the same positions in every temporal slot
    assert not torch.equal(per_slot[0, 0], per_slot[1, 0])  # a different mask per sample
    m = tube_mask(4000, (1, 2, 2), 0.5)
    freq = m.float().mean(0)
    assert (freq - 0.5).abs().max() < 0.05  # uniform over positions


def test_pixel_targets_match_the_direct_per_tube_per_channel_formula():
    torch.manual_seed(1)
    video = torch.rand(2, 3, 4, 8, 8)
    target = pixel_targets(video, tubelet_size=2, patch_size=4)
    assert target.shape == (2, 2 * 2 * 2, 2 * 4 * 4 * 3)
    # token (t=1, h=0, w=1) of sample 1, in "(p c)" order
    tube = video[1, :, 2:4, 0:4, 4:8]  # (C, 2, 4, 4)
    pix = tube.permute(1, 2, 3, 0).reshape(32, 3)  # (p0*p1*p2, C)
    want = (pix - pix.mean(0)) / (pix.std(0, unbiased=True) + 1e-6)
    torch.testing.assert_close(target[1, 1 * 4 + 0 * 2 + 1], want.reshape(-1))
    raw = pixel_targets(video, 2, 4, normalize=False)
    torch.testing.assert_close(raw[1, 5], pix.reshape(-1))
    assert patchify(video, 2, 4).shape == (2, 8, 32, 3)


def test_gather_tokens_keeps_order():
    x = torch.arange(2 * 5).float().view(2, 5, 1)
    keep = torch.tensor([[True, False, True, False, False], [False, False, False, True, True]])
    assert gather_tokens(x, keep).squeeze(-1).tolist() == [[0.0, 2.0], [8.0, 9.0]]


def test_encoder_sees_visible_tokens_only_and_decoder_predicts_masked_tokens_only():
    torch.manual_seed(2)
    m = tiny_mae()
    x = torch.randn(2, 3, 8, 32, 32)
    mask = m.make_mask(x)  # grid (4, 4, 4); int(0.9 * 16) = 14 masked per slot
    seen = {}
    m.backbone.blocks[0].register_forward_pre_hook(lambda mod, inp: seen.update(n=inp[0].shape[1]))
    pred = m.predict(x, mask)
    assert seen["n"] == 4 * 2  # 2 visible positions x 4 slots
    assert pred.shape == (2, 4 * 14, 2 * 8 * 8 * 3)
    # changing masked pixels does not change the encoder's input: a masked tube is invisible
    x2 = x.clone()
    masked_tube = mask[0].view(4, 4, 4).nonzero()[0]
    t, h, w = masked_tube.tolist()
    x2[0, :, 2 * t:2 * t + 2, 8 * h:8 * h + 8, 8 * w:8 * w + 8] += 5.0
    tokens1 = m.backbone.forward_tokens(x, ~mask)
    tokens2 = m.backbone.forward_tokens(x2, ~mask)
    torch.testing.assert_close(tokens1, tokens2)


def test_training_step_loss_and_param_groups():
    torch.manual_seed(3)
    m = tiny_mae()
    video = torch.randint(0, 256, (2, 3, 8, 40, 40), dtype=torch.uint8)
    loss, logs = m.training_step({"video": video})
    assert torch.isfinite(loss) and 0.5 < logs["loss"] < 5 and logs["mask_ratio"] == 14 / 16
    loss.backward()
    assert m.mask_token.grad is not None and m.encoder_to_decoder.bias is None
    assert not any(p.requires_grad for p in m.backbone.fc_norm.parameters())  # unused: frozen for DDP
    trainable = [p for p in m.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)  # DDP needs a gradient for every trainable tensor
    groups = m.param_groups(0.05)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(m.mask_token) in no_decay and id(m.encoder_to_decoder.weight) not in no_decay
    assert sum(len(g["params"]) for g in groups) == len(trainable)
