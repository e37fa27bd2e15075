"""SEVERE's checkpoint formats, each built from the public code's module layout, converted and compared.

Each checkpoint below is the ``state_dict()`` of modules laid out as the method's public code lays them out
(attribute names, wrappers, heads, buffers, the dict the training script saves), filled with random
weights; nothing is produced by inverting vssl's renames. A conversion passes when the vssl backbone built
from it computes what the public backbone computes on the same clip.

Sources (read for names and structure only): facebookresearch/moco-style builders in tinapan-pt/VideoMoCo
``moco/builder.py`` (encoder_q/encoder_k, mlp fc, queue buffers; DDP ``module.``; ``{"state_dict"}``);
facebookresearch/selavi and facebookresearch/GDT ``model.py`` (``video_network.base`` = torchvision R(2+1)D-18
with ``fc = Identity``; ``audio_network.base`` = a 1-channel ResNet-18; ``mlp_v``/``mlp_a``; ``{"model"}``);
facebookresearch/AVID-CMA ``models/av_wrapper.py`` (``video_model``, ``audio_model``, ``video_proj``,
``audio_proj``); PeihaoChen/RSPNet ``moco/split_wrapper.py`` (``encoder`` + ``fc1``/``fc2`` heads inside a MoCo
``encoder_q``; the R(2+1)D ``base_network`` is inferred from SEVERE's loader, RSPNet's public code has no
R(2+1)D-18); BestJuly/Pretext-Contrastive-Learning ``models/network.py`` (``base_network`` = torchvision
children but fc, ``projector``, ``fc_seq``, ``fc_speed``; saved plain from DataParallel); DAVEISHAN/TCLR
``tclr_pretraining/model.py`` + ``mlp.py`` (``Sequential(backbone, mlp)`` in DataParallel, layer4 with a
dilated full 3-D conv); fmthoker/tubelet-contrast ``pyvrl/models/backbones/r3d.py`` (mmaction-style
R(2+1)D: ``conv_s``/``bn_s``/``relu_s``/``conv_t`` blocks, ``bn1``/``bn2``, ``downsample.conv`` +
``downsample_bn``, BN eps 1e-3) and ``pretraining/tubeletcontrast/model.py`` (``backbone``, ``key_encoder``,
``fc``, ``key_fc``, ``queue``; mmcv ``{"state_dict", "meta"}``).
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.video import r2plus1d_18

from vssl.cli import main
from vssl.errors import CheckpointError
from vssl.models import build_backbone, load_backbone_weights
from vssl.models.convert import CONVERTERS, guess_format

torch.set_num_threads(1)
CLIP = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))


class Wrapped(nn.Module):
    """What DDP / DataParallel add to every key: ``module.``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module


def randomised(build, *args) -> nn.Module:
    """``build(*args)`` with random weights and BN statistics everywhere, so that a misplaced tensor changes
    the output (built on the meta device first: torchvision's own initialisation would be overwritten)."""
    with torch.device("meta"):
        model = build(*args)
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                t.zero_()
            elif "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model.eval()


def tv_features() -> nn.Module:
    """torchvision's R(2+1)D-18 without its classifier (``fc = Identity``, as SeLaVi/GDT build it)."""
    model = r2plus1d_18()
    model.fc = nn.Identity()
    return model


def moco(make_encoder) -> nn.Module:
    """A MoCo v2 model: query/key encoders with the 2-layer mlp fc, queue buffers."""
    model = nn.Module()
    for name in ("encoder_q", "encoder_k"):
        enc = make_encoder()
        enc.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))
        setattr(model, name, enc)
    model.register_buffer("queue", torch.randn(128, 16))
    model.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
    return model


def audio_visual(video_attr: str, base: bool) -> nn.Module:
    """SeLaVi/GDT (``video_network.base``, ``audio_network.base``, ``mlp_v``/``mlp_a``) or AVID-CMA
    (``video_model``, ``audio_model``, ``video_proj``/``audio_proj``)."""
    audio = resnet18()
    audio.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    audio.fc = nn.Identity()
    model = nn.Module()
    if base:
        for attr, net in ((video_attr, tv_features()), ("audio_network", audio)):
            holder = nn.Module()
            holder.base = net
            setattr(model, attr, holder)
        model.mlp_v, model.mlp_a = nn.Linear(512, 256), nn.Linear(512, 256)
    else:
        setattr(model, video_attr, tv_features())
        model.audio_model = audio
        model.video_proj = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))
        model.audio_proj = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))
    return model


def children_but_fc() -> nn.Sequential:
    """``Sequential(*list(r2plus1d_18().children())[:-1])``: stem, layer1-4, avgpool."""
    return nn.Sequential(*list(r2plus1d_18().children())[:-1])


def rspnet() -> nn.Module:
    def encoder():
        wrapper = nn.Module()  # MultiTaskWrapper: encoder + one linear head per pretext task
        wrapper.encoder = nn.Module()
        wrapper.encoder.base_network = children_but_fc()
        wrapper.encoder.fc = nn.Linear(512, 1)
        wrapper.fc1 = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(512, 128))
        wrapper.fc2 = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(512, 128))
        return wrapper

    model = nn.Module()
    model.encoder_q, model.encoder_k = encoder(), encoder()
    model.register_buffer("queue", torch.randn(128, 16))
    return model


def pretext_contrast() -> nn.Module:
    model = nn.Module()
    model.base_network = children_but_fc()
    model.projector = nn.Module()
    model.projector.mlp = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))
    model.fc_seq, model.fc_speed = nn.Linear(1024, 2), nn.Linear(1024, 4)
    return model


def tclr_backbone() -> nn.Module:
    model = r2plus1d_18()
    model.layer4[0].conv1[0] = nn.Conv3d(256, 512, kernel_size=(3, 3, 3), stride=(1, 2, 2), padding=(2, 1, 1),
                                         dilation=(2, 1, 1), bias=False)
    model.layer4[0].downsample[0] = nn.Conv3d(256, 512, kernel_size=(1, 1, 1), stride=(1, 2, 2), bias=False)
    return model


def tclr() -> nn.Module:
    head = nn.Module()  # TCLR's mlp: fc1, bn1, bn2, fc2 (no bias)
    head.fc1, head.bn1, head.bn2 = nn.Linear(512, 512), nn.BatchNorm1d(512), nn.BatchNorm1d(128)
    head.fc2 = nn.Linear(512, 128, bias=False)
    return nn.Sequential(tclr_backbone(), head)


# --- mmaction-style R(2+1)D-18 of CtP / Tubelet-Contrast ---------------------------------------------

def conv2plus1d(cin: int, cout: int, mid: int, stride: int, bias: bool = False, eps: float = 1e-3,
                stem: bool = False) -> nn.Sequential:
    parts = OrderedDict(
        conv_s=nn.Conv3d(cin, mid, (1, 7, 7) if stem else (1, 3, 3), (1, 2, 2) if stem else (1, stride, stride),
                         (0, 3, 3) if stem else (0, 1, 1), bias=bias),
        bn_s=nn.BatchNorm3d(mid, eps=eps), relu_s=nn.ReLU(),
        conv_t=nn.Conv3d(mid, cout, (3, 1, 1), (1 if stem else stride, 1, 1), (1, 0, 0), bias=bias))
    if stem:
        parts.update(bn_t=nn.BatchNorm3d(cout, eps=eps), relu_t=nn.ReLU())
    return nn.Sequential(parts)


class MMBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        mid = (3 * cin * cout * 3 * 3) // (cin * 3 * 3 + 3 * cout)
        self.conv1, self.bn1 = conv2plus1d(cin, mid=mid, cout=cout, stride=stride), nn.BatchNorm3d(cout, eps=1e-3)
        self.conv2, self.bn2 = conv2plus1d(cout, mid=mid, cout=cout, stride=1), nn.BatchNorm3d(cout, eps=1e-3)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(OrderedDict(conv=nn.Conv3d(cin, cout, 1, stride, bias=False)))
            self.downsample_bn = nn.BatchNorm3d(cout, eps=1e-3)

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        skip = x if self.downsample is None else self.downsample_bn(self.downsample(x))
        return torch.relu(out + skip)


class MMR2Plus1D(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv2plus1d(3, 64, mid=45, stride=1, stem=True)
        cin = 64
        for i, cout in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            self.add_module(f"layer{i + 1}", nn.Sequential(MMBlock(cin, cout, stride), MMBlock(cout, cout, 1)))
            cin = cout

    def forward(self, x):
        x = self.stem(x)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x.mean((2, 3, 4))


def tubelet_contrast() -> nn.Module:
    model = nn.Module()
    model.backbone, model.key_encoder = MMR2Plus1D(), MMR2Plus1D()
    model.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))
    model.key_fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))
    model.register_buffer("queue", torch.randn(128, 16))
    return model


# --- format -> (the saved checkpoint, the public backbone whose output the conversion must give) --------

def _flat(seq: nn.Module):
    return lambda x: seq(x).flatten(1)


def layouts(fmt: str):
    if fmt == "torchvision":
        model = randomised(r2plus1d_18)
        saved = dict(model.state_dict())
        model.fc = nn.Identity()
        return saved, model
    if fmt in ("moco", "video_moco"):
        model = randomised(moco, r2plus1d_18)
        saved = {"epoch": 200, "arch": "r2plus1d_18", "state_dict": Wrapped(model).state_dict()}
        model.encoder_q.fc = nn.Identity()
        return saved, model.encoder_q
    if fmt in ("selavi", "gdt"):
        model = randomised(audio_visual, "video_network", True)
        state = Wrapped(model).state_dict() if fmt == "selavi" else model.state_dict()
        return {"model": state, "epoch": 100}, model.video_network.base
    if fmt == "avid_cma":
        model = randomised(audio_visual, "video_model", False)
        return {"model": Wrapped(model).state_dict(), "epoch": 20}, model.video_model
    if fmt == "rspnet":
        model = randomised(rspnet)
        saved = {k: v for k, v in model.state_dict().items() if k.startswith("encoder_q")}  # as RSPNet saves
        return {"model": saved, "epoch": 200}, _flat(model.encoder_q.encoder.base_network)
    if fmt == "pretext_contrast":
        model = randomised(pretext_contrast)
        return Wrapped(model).state_dict(), _flat(model.base_network)
    if fmt == "tclr":
        model = randomised(tclr)
        saved = {"epoch": 300, "state_dict": Wrapped(model).state_dict()}
        model[0].fc = nn.Identity()
        return saved, model[0]
    if fmt in ("ctp", "tubelet_contrast"):
        model = randomised(tubelet_contrast)
        for m in model.backbone.modules():  # BN eps is a hyperparameter, not a weight: torchvision's 1e-5
            if isinstance(m, nn.BatchNorm3d):  # (SEVERE loads these weights into torchvision too)
                m.eps = 1e-5
        return {"meta": {"epoch": 100}, "state_dict": model.state_dict()}, model.backbone
    raise KeyError(fmt)


# video_moco and tubelet_contrast are the moco and ctp layouts (the same converters; the CLI test below
# converts a Tubelet-Contrast file under its own name)
FORMATS = ["torchvision", "moco", "selavi", "avid_cma", "gdt", "rspnet", "pretext_contrast", "tclr", "ctp"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_converted_backbone_computes_what_the_public_one_computes(fmt):
    saved, reference = layouts(fmt)
    assert guess_format(saved) == fmt
    converted = CONVERTERS[fmt](saved)
    model = build_backbone("r2plus1d_18_tclr" if fmt == "tclr" else "r2plus1d_18").eval()
    assert load_backbone_weights(model, converted.state_dict).ok  # every backbone tensor, and only those
    with torch.no_grad():
        torch.testing.assert_close(model(CLIP), reference(CLIP), rtol=1e-4, atol=1e-5)
    weights = next((v for v in saved.values() if isinstance(v, dict) and any(
        isinstance(t, torch.Tensor) for t in v.values())), saved)
    assert len(converted.state_dict) + len(converted.dropped) == len(weights)  # every dropped tensor is named


def test_tubelet_contrast_file_converts_through_the_cli(tmp_path, capsys):
    assert CONVERTERS["tubelet_contrast"] is CONVERTERS["ctp"] and CONVERTERS["video_moco"] is CONVERTERS["moco"]
    saved, reference = layouts("tubelet_contrast")
    src, out = tmp_path / "epoch_100.pth", tmp_path / "tubelet.safetensors"
    torch.save(saved, src)
    assert main(["weights", "inspect", str(src)]) == 0 and "--from ctp" in capsys.readouterr().out
    assert main(["weights", "convert", str(src), str(out), "--from", "tubelet_contrast"]) == 0
    assert "dropped 231 non-backbone tensors: fc.0.bias" in capsys.readouterr().out  # key encoder, heads, queue
    model = build_backbone("r2plus1d_18", checkpoint=out).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(CLIP), reference(CLIP), rtol=1e-4, atol=1e-5)


def test_avid_cmas_own_r2plus1d_is_refused_not_silently_skipped(tmp_path):
    """AVID-CMA's repository defines its own R(2+1)D (``models/video.py``: a full 3-D ``conv1`` stem,
    ``conv2x``..``conv5x`` of ``spt_conv``/``tmp_conv`` blocks). Its weights do not fit torchvision's
    R(2+1)D-18; SEVERE's ``strict=False`` load would keep none of them silently, vssl stops and says so."""
    video = nn.Module()
    video.conv1 = nn.Sequential(nn.Conv3d(3, 64, (3, 7, 7), bias=False), nn.BatchNorm3d(64))
    video.conv2x = nn.Sequential(nn.Module())
    video.conv2x[0].spt_conv1 = nn.Conv3d(64, 64, (1, 3, 3), bias=False)
    video.conv2x[0].tmp_conv1 = nn.Conv3d(64, 64, (3, 1, 1), bias=False)
    model = nn.Module()
    model.video_model = video
    src = tmp_path / "avid.pth"
    torch.save({"model": Wrapped(model).state_dict()}, src)
    with pytest.raises(CheckpointError, match=r"missing keys: .*unexpected keys: .*conv2x\.0\.spt_conv1"):
        from vssl.models.commands import convert_command
        import argparse

        convert_command(argparse.Namespace(path=str(src), out=str(tmp_path / "o.pt"), source_format="avid_cma"))
