"""MoCo machinery: momentum update, queue ring buffer, InfoNCE, and the two contrastive methods' steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vssl.config import RunConfig
from vssl.errors import ConfigError
from vssl.methods.moco import VideoContrast, info_nce, momentum_update
from vssl.methods.tubelet_contrast import TubeletContrast
from vssl.models import build_backbone


def run_cfg() -> RunConfig:
    run = RunConfig()
    run.data.crop_size = 32
    return run


def test_momentum_update_is_an_ema_of_the_parameters():
    torch.manual_seed(0)
    q, k = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.clone() for p in k.parameters()]
    momentum_update(q, k, 0.9)
    for pk, pk0, pq in zip(k.parameters(), before, q.parameters()):
        torch.testing.assert_close(pk, 0.9 * pk0 + 0.1 * pq)


def test_info_nce_matches_the_formula():
    torch.manual_seed(1)
    q, k, queue = (F.normalize(torch.randn(n, 8), dim=1) for n in (4, 4, 16))
    loss, logits = info_nce(q, k, queue, 0.2)
    pos = (q * k).sum(1) / 0.2
    neg = q @ queue.t() / 0.2
    want = -(pos - torch.logsumexp(torch.cat([pos[:, None], neg], 1), 1)).mean()
    torch.testing.assert_close(loss, want)
    assert logits.shape == (4, 17)


def test_queue_is_a_checkpointed_ring_buffer():
    torch.manual_seed(2)
    m = VideoContrast(VideoContrast.Config(queue_size=10, proj_dim=8), build_backbone("r2plus1d_tiny"), run_cfg())
    assert {"queue", "queue_ptr"} <= set(m.state_dict())
    assert m.queue.shape == (10, 8)
    keys = [F.normalize(torch.randn(4, 8), dim=1) for _ in range(3)]
    for k in keys:
        m.enqueue(k)
    assert int(m.queue_ptr) == 12 % 10
    torch.testing.assert_close(m.queue[0:2], keys[2][2:4])  # wrapped around
    torch.testing.assert_close(m.queue[2:4], keys[0][2:4])  # oldest surviving entries
    torch.testing.assert_close(m.queue[4:8], keys[1])
    torch.testing.assert_close(m.queue[8:10], keys[2][0:2])


def test_key_encoder_is_frozen_and_updated_before_the_key_forward():
    torch.manual_seed(3)
    m = VideoContrast(VideoContrast.Config(queue_size=16, momentum=0.0), build_backbone("r2plus1d_tiny"), run_cfg())
    assert not any(p.requires_grad for p in m.key_backbone.parameters())
    assert all(id(p) not in {id(q) for q in m.key_backbone.parameters()} for p in m.backbone.parameters())
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(0.01)  # as if the optimizer had stepped
    video = torch.randint(0, 256, (4, 2, 3, 8, 32, 32), dtype=torch.uint8)
    loss, logs = m.training_step({"video": video})
    assert torch.isfinite(loss) and {"acc_queue", "acc_batch"} <= set(logs)
    for pq, pk in zip(m.backbone.parameters(), m.key_backbone.parameters()):  # m = 0: copied first
        torch.testing.assert_close(pq, pk)
    assert int(m.queue_ptr) == 4
    loss.backward()
    assert all(p.grad is None for p in m.key_backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.parameters())


def test_tubelet_contrast_views_share_tubelets_on_different_backgrounds():
    torch.manual_seed(4)
    cfg = TubeletContrast.Config(queue_size=16, jitter_p=0.0)
    cfg.tubelets.opacity, cfg.tubelets.soft_edge_prob = [1.0, 1.0], 0.0
    m = TubeletContrast(cfg, build_backbone("r2plus1d_tiny"), run_cfg())
    video = torch.randint(0, 256, (4, 3, 8, 40, 40), dtype=torch.uint8)
    v1, v2, info = m.make_views(video)
    assert v1.shape == v2.shape == (4, 3, 8, 32, 32)
    inside = info["alpha"].amax(1).unsqueeze(1).expand_as(v1) == 1
    torch.testing.assert_close(v1[inside], v2[inside])
    assert (v1[~inside] - v2[~inside]).abs().mean() > 0.1
    loss, logs = m.training_step({"video": video})
    assert torch.isfinite(loss) and 0 <= logs["acc_batch"] <= 1


def test_shared_colour_jitter_keeps_the_tubelets_identical():
    torch.manual_seed(5)
    cfg = TubeletContrast.Config(queue_size=16, jitter_p=1.0, jitter=[0.4, 0.0, 0.4, 0.0])
    cfg.tubelets.opacity, cfg.tubelets.soft_edge_prob = [1.0, 1.0], 0.0
    m = TubeletContrast(cfg, build_backbone("r2plus1d_tiny"), run_cfg())
    v1, v2, info = m.make_views(torch.randint(0, 256, (4, 3, 8, 32, 32), dtype=torch.uint8))
    inside = info["alpha"].amax(1).unsqueeze(1).expand_as(v1) == 1
    # brightness and saturation act per pixel: one parameter draw for both views keeps them equal
    # (contrast blends with the frame's mean grey, which differs between the two backgrounds)
    torch.testing.assert_close(v1[inside], v2[inside])


def test_bn_option_is_validated_and_sync_falls_back_without_cuda(monkeypatch):
    with pytest.raises(ConfigError, match="method.bn"):
        VideoContrast(VideoContrast.Config(bn="batch"), build_backbone("r2plus1d_tiny"), run_cfg())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="shuffle"):
        m = VideoContrast(VideoContrast.Config(queue_size=8, bn="sync"), build_backbone("r2plus1d_tiny"), run_cfg())
    assert m.bn == "shuffle" and not any(isinstance(x, nn.SyncBatchNorm) for x in m.modules())
