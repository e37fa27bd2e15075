"""SIGMA: Sinkhorn-Knopp (balanced, stable, distributed), the swapped loss and the two target variants."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from vssl.config import RECIPES, RunConfig
from vssl.methods.sigma import SIGMA, sinkhorn, swapped_prediction_loss
from vssl.models import build_backbone


def reference_sinkhorn(scores: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """SwAV's ``distributed_sinkhorn`` for one process, written plainly (no log domain)."""
    q = torch.exp(scores / eps).t()  # (K, N)
    k, n = q.shape
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= n
    q *= n
    return q.t()


def test_rows_sum_to_one_and_columns_to_n_over_k_after_convergence():
    torch.manual_seed(0)
    scores = torch.randn(60, 6).tanh()
    q = sinkhorn(scores, eps=0.1, iters=300)
    torch.testing.assert_close(q.sum(1), torch.ones(60))
    torch.testing.assert_close(q.sum(0), torch.full((6,), 10.0), atol=1e-3, rtol=0)
    assert (q >= 0).all()


def test_matches_the_plain_reference():
    torch.manual_seed(1)
    scores = torch.randn(50, 7).tanh()
    for iters in (1, 3, 10):
        torch.testing.assert_close(sinkhorn(scores, 0.05, iters), reference_sinkhorn(scores, 0.05, iters),
                                   rtol=1e-4, atol=1e-6)


def test_stable_for_small_eps_where_the_plain_version_overflows():
    torch.manual_seed(2)
    scores = torch.randn(40, 5).tanh()
    assert not torch.isfinite(reference_sinkhorn(scores, 0.005, 3)).all()
    q = sinkhorn(scores, eps=0.005, iters=10)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(1), torch.ones(40))
    half = sinkhorn(scores.half(), 0.05, 3)  # fp16 scores (autocast) are computed in fp32
    assert half.dtype == torch.float32 and torch.isfinite(half).all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sinkhorn_worker(rank: int, world: int, port: int, scores: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        local = scores.chunk(world)[rank]
        torch.save(sinkhorn(local, eps=0.05, iters=5), f"{out}/q{rank}.pt")  # distributed by default
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_balance_over_the_global_batch(tmp_path):
    torch.manual_seed(3)
    scores = torch.randn(24, 6).tanh()
    scores[:12] += 0.3 * torch.arange(6.0)  # the two halves are unlike: local balancing would differ
    # fork: the children need no re-import of torch and vssl (seconds each on a busy machine)
    mp.start_processes(_sinkhorn_worker, args=(2, _free_port(), scores, str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    q = torch.cat([torch.load(tmp_path / f"q{r}.pt", weights_only=True) for r in (0, 1)])
    torch.testing.assert_close(q, sinkhorn(scores, eps=0.05, iters=5, distributed=False), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(q[:12], sinkhorn(scores[:12], eps=0.05, iters=5, distributed=False), atol=1e-3)


def test_swapped_loss_uses_the_other_sides_hard_labels():
    torch.manual_seed(4)
    s_t = torch.randn(30, 5, requires_grad=True)
    s_p = torch.randn(30, 5, requires_grad=True)
    loss, logs = swapped_prediction_loss(s_t, s_p, eps=0.05, iters=10, temperature=0.1)
    y_t = sinkhorn(s_t, 0.05, 10).argmax(1)
    y_p = sinkhorn(s_p, 0.05, 10).argmax(1)
    want = (torch.nn.functional.cross_entropy(s_t / 0.1, y_p) + torch.nn.functional.cross_entropy(s_p / 0.1, y_t))
    torch.testing.assert_close(loss, want)
    assert 0 < logs["usage_entropy"] <= 1 and 0 < logs["distinct_labels"] <= 1
    assert logs["agreement"] == pytest.approx((y_t == y_p).float().mean().item())


def tiny_sigma(target: str) -> SIGMA:
    run = RunConfig()
    run.data.crop_size = 32
    cfg = SIGMA.Config(decoder_dim=32, decoder_depth=1, decoder_heads=2, target=target, num_prototypes=16,
                       mlp_dims=[32, 24], dino_model="vit_tiny_patch16_224", random_teacher=True)
    return SIGMA(cfg, build_backbone("vit_tiny"), run)


def test_dino_target_without_weights_is_refused_outside_smoke_recipes():
    """An empty dino_checkpoint would train against a random teacher: a one-line error naming the key."""
    from vssl.config import load_config
    from vssl.errors import ConfigError

    run = RunConfig()
    run.data.crop_size = 32
    cfg = SIGMA.Config(decoder_dim=32, decoder_depth=1, decoder_heads=2, target="dino", num_prototypes=16,
                       dino_model="vit_tiny_patch16_224")
    with pytest.raises(ConfigError, match="method.dino_checkpoint: empty"):
        SIGMA(cfg, build_backbone("vit_tiny"), run)
    tiny = load_config(RECIPES / "pretrain/sigma_dino_tiny.yaml")
    assert tiny.method.params["random_teacher"] is True and tiny.method.params["dino_checkpoint"] == ""


@pytest.mark.parametrize("target", ["mlp", "dino"])
def test_gradient_paths_and_unit_prototypes(target):
    torch.manual_seed(5)
    m = tiny_sigma(target)
    with torch.no_grad():
        m.prototypes.mul_(3.0)
    video = torch.randint(0, 256, (2, 3, 8, 32, 32), dtype=torch.uint8)
    loss, logs = m.training_step({"video": video})
    assert torch.isfinite(loss) and {"usage_entropy", "distinct_labels", "agreement"} <= set(logs)
    torch.testing.assert_close(m.prototypes.norm(dim=1), torch.ones(16))  # re-normalised every step
    loss.backward()
    assert m.prototypes.grad is not None and m.prototypes.grad.abs().sum() > 0
    assert m.backbone.blocks[0].mlp.fc1.weight.grad.abs().sum() > 0
    if target == "dino":
        out_dim = m.teacher.num_features
        assert all(p.grad is None and not p.requires_grad for p in m.teacher.parameters())
        assert not m.teacher.training and not hasattr(m, "projector")
        assert not any("teacher" in k for k in m.state_dict())  # rebuilt from its file, not checkpointed
        m.to(memory_format=torch.channels_last_3d)  # the engine's CUDA cast must not reach its Conv2d
    else:
        out_dim = 24
        assert m.projector[0].weight.grad.abs().sum() > 0  # the MLP learns through the target branch
    assert m.decoder.head.out_features == out_dim and m.prototypes.shape == (16, out_dim)
    m.train()
    assert target == "mlp" or not m.teacher.training  # the frozen teacher stays in eval mode


def test_prediction_branch_does_not_move_the_prototypes():
    """Only the target branch trains C: with the target term removed, C gets no gradient."""
    torch.manual_seed(6)
    m = tiny_sigma("mlp")
    video = torch.randint(0, 256, (2, 3, 8, 32, 32), dtype=torch.uint8)
    import vssl.methods.sigma as S

    original = S.swapped_prediction_loss
    captured = {}

    def pred_only(s_t, s_p, *a):
        loss, logs = original(s_t, s_p, *a)
        captured["s_p"] = s_p
        return torch.nn.functional.cross_entropy(s_p, torch.zeros(len(s_p), dtype=torch.long)), logs

    S.swapped_prediction_loss = pred_only
    try:
        loss, _ = m.training_step({"video": video})
    finally:
        S.swapped_prediction_loss = original
    loss.backward()
    assert m.prototypes.grad is None or m.prototypes.grad.abs().sum() == 0
    assert m.decoder.head.weight.grad.abs().sum() > 0


def dino_vit_state(dim: int = 192, depth: int = 12, patch: int = 16, grid: int = 14) -> dict:
    """A DINO ViT backbone's state dict in the layout of facebookresearch/dino vision_transformer.py
    (cls_token, pos_embed, patch_embed.proj, blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2},
    norm; head = Identity): the file hubconf's dino_vit* loads; random values."""
    g = torch.Generator().manual_seed(0)
    shapes = {"cls_token": (1, 1, dim), "pos_embed": (1, grid * grid + 1, dim),
              "patch_embed.proj.weight": (dim, 3, patch, patch), "patch_embed.proj.bias": (dim,),
              "norm.weight": (dim,), "norm.bias": (dim,)}
    for i in range(depth):
        b = f"blocks.{i}."
        shapes.update({b + "norm1.weight": (dim,), b + "norm1.bias": (dim,), b + "attn.qkv.weight": (3 * dim, dim),
                       b + "attn.qkv.bias": (3 * dim,), b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
                       b + "norm2.weight": (dim,), b + "norm2.bias": (dim,), b + "mlp.fc1.weight": (4 * dim, dim),
                       b + "mlp.fc1.bias": (4 * dim,), b + "mlp.fc2.weight": (dim, 4 * dim), b + "mlp.fc2.bias": (dim,)})
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


@pytest.mark.parametrize("layout", ["backbone", "full_checkpoint"])
def test_sigma_dino_loads_a_dino_checkpoint(tmp_path, layout):
    """SIGMA-DINO's teacher takes DINO's released backbone file, or the teacher of DINO's full training
    checkpoint (main_dino.py saves {"student": DDP keys, "teacher": "backbone."/"head." keys, ...}); the
    weights land in the frozen teacher, its 16 px patch grid resampled to the student's 8 px at 32 px."""
    state = dino_vit_state()
    if layout == "full_checkpoint":
        head = {"head.mlp.0.weight": torch.randn(8, 192), "head.last_layer.weight_g": torch.randn(8, 1)}
        obj = {"teacher": {**{f"backbone.{k}": v for k, v in state.items()}, **head},
               "student": {f"module.backbone.{k}": v for k, v in state.items()}, "epoch": 100}
    else:
        obj = state
    torch.save(obj, tmp_path / "dino.pth")
    run = RunConfig()
    run.data.crop_size = 32
    cfg = SIGMA.Config(decoder_dim=32, decoder_depth=1, decoder_heads=2, target="dino", num_prototypes=16,
                       dino_model="vit_tiny_patch16_224", dino_checkpoint=str(tmp_path / "dino.pth"))
    teacher = SIGMA(cfg, build_backbone("vit_tiny"), run).teacher.state_dict()
    for key in ("cls_token", "norm.weight", "blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.bias"):
        torch.testing.assert_close(teacher[key], state[key], rtol=0, atol=0)
    assert teacher["patch_embed.proj.weight"].shape == (192, 3, 8, 8)  # resampled 16 -> 8 px patches
    assert teacher["pos_embed"].shape == (1, 1 + 4 * 4, 192)  # 14 x 14 grid -> 4 x 4 at 32 px
    torch.testing.assert_close(teacher["pos_embed"][:, 0], state["pos_embed"][:, 0], rtol=0, atol=0)
