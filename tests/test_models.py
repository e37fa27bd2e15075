"""Backbones: shapes, torchvision key parity, channels_last, ViT token gathering and the sinusoid table."""

import math

import numpy as np
import pytest
import torch
import torchvision.models.video as tvv

from vssl.models import BACKBONES, Block, build_backbone, sinusoid_table
from vssl.models.vit import position_table

torch.set_num_threads(1)


@pytest.mark.parametrize("name, shape, fmap", [
    ("r2plus1d_18", (1, 3, 8, 32, 32), (512, 1, 2, 2)),
    ("r3d_18", (1, 3, 8, 32, 32), (512, 1, 2, 2)),
    ("r2plus1d_18_tclr", (1, 3, 8, 32, 32), (512, 2, 2, 2)),  # TCLR: no temporal stride in layer4
    ("r2plus1d_tiny", (2, 3, 16, 32, 32), (128, 4, 2, 2)),  # keeps T/4 for motion
])
def test_cnn_shapes(name, shape, fmap):
    model = build_backbone(name).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        f = model.forward_features(x)
        y = model(x)
    assert f.shape == (shape[0], *fmap)
    assert y.shape == (shape[0], model.feature_dim) and model.feature_dim == fmap[0]
    torch.testing.assert_close(y, f.mean((2, 3, 4)))
    assert not any(k.startswith("fc.") for k in model.state_dict())


def test_tiny_param_count_and_widths():
    n = sum(p.numel() for p in build_backbone("r2plus1d_tiny").parameters())
    assert 0.7e6 < n < 0.9e6  # environment.md §3.2: 0.78 M
    assert build_backbone("r2plus1d_tiny", widths=(8, 16, 32, 64)).feature_dim == 64


@pytest.mark.parametrize("name, tv", [("r2plus1d_18", tvv.r2plus1d_18), ("r3d_18", tvv.r3d_18)])
def test_torchvision_key_and_shape_parity(name, tv):
    ours = {k: v.shape for k, v in build_backbone(name).state_dict().items()}
    theirs = {k: v.shape for k, v in tv().state_dict().items() if not k.startswith("fc.")}
    assert ours == theirs


def test_torchvision_weights_give_torchvision_features():
    ref = tvv.r2plus1d_18().eval()
    ref.fc = torch.nn.Identity()
    model = build_backbone("r2plus1d_18").eval()
    report = __import__("vssl.models.weights", fromlist=["x"]).load_backbone_weights(
        model, ref.state_dict(), allow_unexpected=("fc.",))
    assert report.ok and len(report.loaded) == len(model.state_dict())
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)


def test_channels_last_3d_same_output():
    torch.manual_seed(0)
    a = build_backbone("r2plus1d_tiny").eval()
    b = build_backbone("r2plus1d_tiny", channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    assert b.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, dim, patch", [("vit_tiny", 96, 8), ("vit_s", 384, 16), ("vit_b", 768, 16)])
def test_vit_shapes(name, dim, patch):
    model = build_backbone(name).eval()
    assert (model.embed_dim, model.feature_dim, model.patch_size, model.tubelet_size) == (dim, dim, patch, 2)
    x = torch.randn(2, 3, 4, 32, 32)
    assert model.grid(x.shape) == (2, 32 // patch, 32 // patch)
    with torch.no_grad():
        tokens = model.forward_tokens(x)
        pooled = model(x)
    assert tokens.shape == (2, 2 * (32 // patch) ** 2, dim)
    torch.testing.assert_close(pooled, model.fc_norm(tokens.mean(1)))
    assert not any("pos" in k for k in model.state_dict())  # fixed table, not a parameter
    assert all(not k.endswith("attn.qkv.bias") and not k.endswith("k_bias") for k in model.state_dict())


def test_vit_visible_tokens_match_reference_gather():
    torch.manual_seed(0)
    model = build_backbone("vit_tiny", depth=2).eval()
    x = torch.randn(3, 3, 4, 32, 32)  # 2*4*4 = 32 tokens
    N = 32
    keep = torch.stack([torch.randperm(N) < 8 for _ in range(3)])  # 8 visible per sample
    with torch.no_grad():
        got = model.forward_tokens(x, visible=keep)
        # the 2x4x4 grid of 4-frame clips, positions resampled from the 8x4x4 pretraining grid
        emb = model.patch_embed.proj(x).flatten(2).transpose(1, 2) + position_table((2, 4, 4), 96, (8, 4, 4))
        ref = torch.stack([emb[i][keep[i]] for i in range(3)])
        for blk in model.blocks:
            ref = blk(ref)
    assert got.shape == (3, 8, 96)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    keep[0, keep[0].nonzero()[0]] = False  # 7 visible in sample 0
    with pytest.raises(ValueError, match="same number"):
        model.forward_tokens(x, visible=keep)


def test_sinusoid_table_equals_videomae_formula():
    def videomae(n_position, d_hid):  # MCG-NJU/VideoMAE modeling_finetune.get_sinusoid_encoding_table
        def angle_vec(pos):
            return [pos / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)]
        table = np.array([angle_vec(p) for p in range(n_position)])
        table[:, 0::2] = np.sin(table[:, 0::2])
        table[:, 1::2] = np.cos(table[:, 1::2])
        return torch.tensor(table, dtype=torch.float32)

    torch.testing.assert_close(sinusoid_table(98, 96), videomae(98, 96), rtol=0, atol=1e-6)
    model = build_backbone("vit_tiny")
    assert model.pos_embed((2, 2, 2), torch.device("cpu"), torch.float32) is \
        model.pos_embed((2, 2, 2), torch.device("cpu"), torch.float32)  # cached per grid


def test_position_table_is_resampled_in_3d_by_hand():
    table = sinusoid_table(4, 6)  # a 1 x 2 x 2 pretraining grid: rows (h, w) = 00, 01, 10, 11
    # 2 -> 4 cells with cell centres aligned: source coordinates -0.25, 0.25, 0.75, 1.25 (clamped)
    weights = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    expected = torch.stack([sum(weights[y, a] * weights[x, b] * table[2 * a + b] for a in (0, 1) for b in (0, 1))
                            for y in range(4) for x in range(4)])
    torch.testing.assert_close(position_table((1, 4, 4), 6, (1, 2, 2)), expected)
    # time: 2 frames -> 1 is the middle of the two; 2 -> 4 frames as space above
    two = sinusoid_table(2, 6)
    torch.testing.assert_close(position_table((1, 1, 1), 6, (2, 1, 1)), (two[:1] + two[1:]) / 2)
    torch.testing.assert_close(position_table((4, 1, 1), 6, (2, 1, 1)), weights @ two)
    # the same grid, or no pretraining grid: VideoMAE's flat table itself
    assert torch.equal(position_table((8, 14, 14), 12, (8, 14, 14)), sinusoid_table(1568, 12))
    assert torch.equal(position_table((16, 7, 7), 12), sinusoid_table(784, 12))
    assert position_table((16, 7, 7), 12, (8, 14, 14)).shape == (784, 12)
    # ViT-B/S keep VideoMAE's 8x14x14 layout: SEVERE's 32x112x112 clips (16x7x7) get it resampled
    vit = build_backbone("vit", embed_dim=12, depth=1, num_heads=2, pos_grid=(8, 14, 14))
    torch.testing.assert_close(vit.pos_embed((16, 7, 7), torch.device("cpu"), torch.float32)[0],
                               position_table((16, 7, 7), 12, (8, 14, 14)))
    assert build_backbone("vit_b").pos_grid == (8, 14, 14) and build_backbone("vit_tiny").pos_grid == (8, 4, 4)


def test_vit_grad_checkpointing_and_drop_path():
    torch.manual_seed(0)
    a = build_backbone("vit_tiny", depth=2)
    b = build_backbone("vit_tiny", depth=2, grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 4, 32, 32)
    a(x).sum().backward()
    b(x).sum().backward()
    torch.testing.assert_close(b.blocks[0].attn.qkv.weight.grad, a.blocks[0].attn.qkv.weight.grad)
    c = build_backbone("vit_tiny", depth=2, drop_path_rate=0.5).train()
    torch.manual_seed(1)
    y1 = c.forward_tokens(x)
    torch.manual_seed(2)
    assert not torch.allclose(y1, c.forward_tokens(x))
    c.eval()
    torch.testing.assert_close(c.forward_tokens(x), c.forward_tokens(x))


def test_block_is_reusable_and_init_is_videomae():
    assert Block(32, num_heads=4)(torch.randn(2, 5, 32)).shape == (2, 5, 32)
    blk = build_backbone("vit_tiny", embed_dim=32, num_heads=4, depth=1).blocks[0]
    assert blk.mlp.fc1.out_features == 128 and torch.all(blk.mlp.fc1.bias == 0)
    bound = math.sqrt(6 / (32 + 128))
    assert blk.mlp.fc1.weight.abs().max() <= bound  # xavier uniform
    assert blk.norm1.eps == 1e-6


def test_registry_and_light_import():
    assert {"r2plus1d_18", "r3d_18", "r2plus1d_tiny", "vit_tiny", "vit_s", "vit_b"} <= set(BACKBONES)
    from vssl.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown backbone 'resnet50'"):
        build_backbone("resnet50")
    # HF conversion reads config.json + safetensors directly: no transformers import in vssl.models
    import ast
    from pathlib import Path

    import vssl.models
    for path in Path(vssl.models.__file__).parent.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] == "transformers" for n in names), path
