"""Safe checkpoint loading, reports, VideoMAE/SIGMA/HF converters and the weights CLI (the SEVERE R(2+1)D
formats: test_converters.py)."""

import argparse

import numpy as np
import pytest
import torch

from vssl.cli import main
from vssl.config import RECIPES
from vssl.errors import CheckpointError
from vssl.models import build_backbone, load_backbone_weights
from vssl.models.convert import guess_format
from vssl.serialization import load_checkpoint, save_backbone_file

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tv_sd():
    """A torchvision-layout R(2+1)D-18 state dict (random weights) with its Kinetics fc."""
    torch.manual_seed(0)
    sd = build_backbone("r2plus1d_18").state_dict()
    sd["fc.weight"], sd["fc.bias"] = torch.randn(400, 512), torch.randn(400)
    return sd


def test_tclr_cli_convert_then_build(tmp_path, capsys):
    torch.manual_seed(0)
    sd = build_backbone("r2plus1d_18_tclr").state_dict()
    assert sd["layer4.0.conv1.0.weight"].shape == (512, 256, 3, 3, 3)
    src = tmp_path / "tclr.pth"
    torch.save({"state_dict": {**{f"module.0.{k}": v for k, v in sd.items()},
                               "module.1.weight": torch.ones(3)}, "args": argparse.Namespace(lr=0.1)}, src)
    assert main(["weights", "inspect", str(src)]) == 0
    assert "--from tclr" in capsys.readouterr().out
    out = tmp_path / "tclr.safetensors"
    assert main(["weights", "convert", str(src), str(out), "--from", "tclr"]) == 0
    assert "module.1.weight" in capsys.readouterr().out  # dropped keys are listed
    model = build_backbone("r2plus1d_18_tclr", checkpoint=out)
    assert model.load_report.ok
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    with pytest.raises(CheckpointError, match="r2plus1d_18_tclr"):
        build_backbone("r2plus1d_18", checkpoint=out)


def test_safe_load_reports_and_refuses(tmp_path, tv_sd):
    model = build_backbone("r2plus1d_18")
    with pytest.raises(CheckpointError, match=r"unexpected keys: fc\.weight"):
        load_backbone_weights(model, tv_sd)
    report = load_backbone_weights(model, tv_sd, allow_unexpected=("fc.",))
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight"] and not report.missing
    partial = {k: v for k, v in tv_sd.items() if not k.startswith("layer4.")}
    with pytest.raises(CheckpointError, match=r"missing keys: layer4\.0"):
        load_backbone_weights(model, partial, allow_unexpected=("fc.",))
    tiny = build_backbone("r2plus1d_tiny")
    bad = dict(tiny.state_dict())
    bad["stem.0.weight"] = torch.zeros(3, 3, 1, 7, 7)
    with pytest.raises(CheckpointError, match=r"stem\.0\.weight \[3, 3, 1, 7, 7\] vs model \[11, 3, 1, 7, 7\]"):
        load_backbone_weights(tiny, bad)
    before = tiny.stem[0].weight.clone()
    report = load_backbone_weights(tiny, bad, strict_shapes=False)
    assert report.mismatched[0][0] == "stem.0.weight" and torch.equal(tiny.stem[0].weight, before)
    moco = {"state_dict": {f"module.encoder_{q}.{k}": v for k, v in tv_sd.items() for q in "qk"}}
    with pytest.raises(CheckpointError, match="--from moco"):  # third-party layout: hint to convert
        load_backbone_weights(model, moco)


def test_unsafe_pickles_are_refused_namespace_allowed(tmp_path):
    ok = tmp_path / "ok.pth"
    torch.save({"model": {"w": torch.ones(1)}, "args": argparse.Namespace(model="x"), "epoch": 1,
                "best_acc": np.float64(0.5)}, ok)  # SEVERE-era files keep numpy scalars
    loaded = load_checkpoint(ok)
    assert isinstance(loaded["args"], argparse.Namespace) and loaded["best_acc"] == 0.5
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(1)}, "cb": argparse.ArgumentParser}, evil)
    with pytest.raises(CheckpointError, match="refusing to unpickle argparse.ArgumentParser"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pth")


def test_vssl_files_load_with_no_missing_keys(tmp_path):
    torch.manual_seed(0)
    model = build_backbone("vit_tiny", depth=2)
    x = torch.randn(1, 3, 4, 32, 32)
    torch.save(model.state_dict(), tmp_path / "backbone.pt")  # engine export
    torch.save({"model": {f"backbone.{k}": v for k, v in model.state_dict().items()} | {"head.w": torch.ones(1)},
                "step": 5}, tmp_path / "last.pt")  # training checkpoint
    save_backbone_file(tmp_path / "conv.pt", model.state_dict(), {"backbone": "vit_tiny", "kwargs": {"depth": 2}})
    for name in ("backbone.pt", "last.pt", "conv.pt"):
        loaded = build_backbone("vit_tiny", checkpoint=tmp_path / name, depth=2).eval()
        assert loaded.load_report.ok, name
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_videomae_and_sigma_pretrain_checkpoints(tmp_path):
    torch.manual_seed(0)
    enc = build_backbone("vit_tiny", depth=2).eval()
    raw = {f"encoder.{k}": v for k, v in enc.state_dict().items() if not k.startswith("fc_norm.")}
    raw |= {"encoder.norm.weight": torch.ones(96), "encoder.norm.bias": torch.zeros(96),
            "encoder_to_decoder.weight": torch.randn(48, 96), "mask_token": torch.zeros(1, 1, 48),
            "decoder.blocks.0.attn.qkv.weight": torch.randn(144, 48), "decoder.head.weight": torch.randn(96, 48),
            "prototypes": torch.randn(30, 96)}
    src = tmp_path / "checkpoint-799.pth"
    # VideoMAE/SIGMA record the clip size in their args: 16 frames at 32 px -> the 8x4x4 token grid
    args = argparse.Namespace(model="pretrain_videomae_tiny", num_frames=16, input_size=32)
    torch.save({"model": raw, "epoch": 799, "args": args}, src)
    out = tmp_path / "sigma.pt"
    assert main(["weights", "convert", str(src), str(out), "--from", "sigma"]) == 0
    model = build_backbone("vit", checkpoint=out).eval()  # depth 2: not a named variant
    assert model.load_report.ok and len(model.blocks) == 2 and model.num_heads == 3 and model.pos_grid == (8, 4, 4)
    x = torch.randn(2, 3, 4, 32, 32)
    torch.testing.assert_close(model.forward_tokens(x), enc.forward_tokens(x))
    assert guess_format(torch.load(src, weights_only=False)) == "sigma"


def test_hf_videomae_parity(tmp_path):
    import transformers  # a test dependency ([test] extra): its absence fails, never skips
    torch.manual_seed(0)
    cfg = transformers.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=48,
                                      num_hidden_layers=2, num_attention_heads=3, intermediate_size=192,
                                      use_mean_pooling=True, num_labels=5)
    hf = transformers.VideoMAEForVideoClassification._from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():  # non-zero q/v biases so that their mapping is exercised
        for layer in hf.videomae.encoder.layer:
            att = layer.attention.attention  # transformers 5: query/value biases; 4.x: q_bias/v_bias
            for bias in (getattr(att, "q_bias", None), getattr(att, "v_bias", None), att.query.bias, att.value.bias):
                if bias is not None:
                    bias.normal_()
        hf.fc_norm.weight.normal_()
    hf.save_pretrained(tmp_path / "hf")
    out = tmp_path / "hf.safetensors"
    assert main(["weights", "convert", str(tmp_path / "hf"), str(out), "--from", "hf"]) == 0
    model = build_backbone("vit", checkpoint=out).eval()  # architecture comes from the converted file
    assert model.load_report.ok and model.embed_dim == 48 and model.blocks[0].norm1.eps == 1e-12
    assert model.pos_grid == (2, 4, 4)  # HF's num_frames 4 and image_size 32: its table's own grid
    x = torch.randn(2, 3, 4, 32, 32)  # vssl (B, C, T, H, W); HF takes (B, T, C, H, W)
    with torch.no_grad():
        ref = hf.videomae(x.permute(0, 2, 1, 3, 4)).last_hidden_state
        torch.testing.assert_close(model.forward_tokens(x), ref, rtol=0, atol=1e-5)
        pooled_ref = hf.fc_norm(ref.mean(1))
        torch.testing.assert_close(model(x), pooled_ref, rtol=0, atol=1e-5)


def test_convert_rejects_unknown_format(tmp_path, tv_sd):
    src = tmp_path / "x.pth"
    torch.save({"w": torch.ones(1)}, src)
    assert main(["weights", "convert", str(src), str(tmp_path / "o.pt"), "--from", "nope"]) == 1
    assert main(["weights", "convert", str(src), str(tmp_path / "o.pt"), "--from", "moco"]) == 1


def test_inspect_names_the_backbone_of_vssl_run_outputs(tmp_path, capsys):
    """A pretraining's backbone.pt (architecture in the run's config.yaml) and final.pt / checkpoints
    (run config inside) are vssl files whose backbone inspect names, and that name loads them."""
    toy = RECIPES / "finetune" / "toy.yaml"
    assert main(["finetune", "--config", str(toy), "--out", str(tmp_path), "--set", "train.max_steps=2",
                 "--set", "train.ckpt_every=2", "--set", "train.deterministic=false"]) == 0
    capsys.readouterr()
    for name in ("backbone.pt", "final.pt", "checkpoints/last.pt"):
        assert main(["weights", "inspect", str(tmp_path / name)]) == 0
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert "<backbone>" not in last and "unknown" not in last, last
        assert "build_backbone('r2plus1d_tiny', checkpoint=PATH)" in last, last
        assert build_backbone("r2plus1d_tiny", checkpoint=tmp_path / name).load_report.ok
