"""Video ResNets (R(2+1)D, R3D) with torchvision's layout and state-dict keys, without ``fc``.

The blocks are torchvision's (``torchvision.models.video.resnet.BasicBlock``) so that torchvision's and
SEVERE's R(2+1)D-18 checkpoints load key for key (``stem.{0,1,3,4}``, ``layerL.B.convJ.0.{0,1,3}``,
``layerL.B.convJ.1``, ``layerL.0.downsample.{0,1}``). What torchvision does not offer — other widths,
separate temporal/spatial strides, no classifier — is a constructor argument here.

- R(2+1)D: Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR 2018
  (R(2+1)D-18: 31.3 M parameters, 512-d features; total stride 8 in time and 16 in space).
- SEVERE (Thoker et al., ECCV 2022) evaluates every method on R(2+1)D-18; TCLR (Dave et al., CVIU 2022)
  replaces ``layer4[0].conv1`` by a dilated full 3-D conv so that layer4 keeps its temporal resolution
  (severe-protocols.md §4.3), built here as ``r2plus1d_18_tclr``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.video.resnet import BasicBlock

Stride = int | tuple[int, int]  # s, or (temporal, spatial)


def _split(stride: Stride) -> tuple[int, int]:
    return (stride, stride) if isinstance(stride, int) else (int(stride[0]), int(stride[1]))


def conv2plus1d(in_planes: int, out_planes: int, midplanes: int, stride: Stride = 1) -> nn.Sequential:
    """torchvision's ``Conv2Plus1D`` (same submodule indices) with separate temporal and spatial strides."""
    st, ss = _split(stride)
    return nn.Sequential(
        nn.Conv3d(in_planes, midplanes, (1, 3, 3), stride=(1, ss, ss), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(midplanes),
        nn.ReLU(inplace=True),
        nn.Conv3d(midplanes, out_planes, (3, 1, 1), stride=(st, 1, 1), padding=(1, 0, 0), bias=False),
    )


def conv3d(in_planes: int, out_planes: int, midplanes: int | None = None, stride: Stride = 1) -> nn.Conv3d:
    """torchvision's ``Conv3DSimple`` (a full 3x3x3 conv) with separate temporal and spatial strides."""
    st, ss = _split(stride)
    return nn.Conv3d(in_planes, out_planes, 3, stride=(st, ss, ss), padding=1, bias=False)


def r2plus1d_stem(width: int = 64, mid: int | None = None) -> nn.Sequential:
    """(1x7x7, stride 1x2x2) then (3x1x1); 45 middle channels for width 64 as in torchvision."""
    mid = mid or max(1, width * 45 // 64)
    return nn.Sequential(
        nn.Conv3d(3, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, width, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def r3d_stem(width: int = 64) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


class VideoResNet(nn.Module):
    """A torchvision video ResNet trunk: ``stem``, ``layer1..4``; no avgpool module, no ``fc``.

    Args:
        conv: "r2plus1d" (Conv2Plus1D blocks) or "r3d" (3x3x3 blocks).
        widths: channels of layer1..4 (stem output = widths[0]); torchvision: (64, 128, 256, 512).
        layers: BasicBlocks per stage; ResNet-18: (2, 2, 2, 2).
        strides: spatial stride of each stage (torchvision: 1, 2, 2, 2).
        temporal_strides: temporal stride of each stage (default = ``strides``, as torchvision).
        channels_last: keep weights and activations in ``torch.channels_last_3d`` (CPU and CUDA).
        bn_eps: BatchNorm eps; torchvision 1e-5, Tubelet-Contrast's pretraining backbone 1e-3
            (``fmthoker/tubelet-contrast: pyvrl/models/backbones/r3d.py``).
        init: "torchvision" (Kaiming fan-out convs, unit BN) or "pytorch" (each module's own default
            init: Tubelet-Contrast's MoCo never calls its backbone's ``init_weights``).
    """

    def __init__(
        self,
        conv: str = "r2plus1d",
        widths: Sequence[int] = (64, 128, 256, 512),
        layers: Sequence[int] = (2, 2, 2, 2),
        strides: Sequence[int] = (1, 2, 2, 2),
        temporal_strides: Sequence[int] | None = None,
        channels_last: bool = False,
        bn_eps: float = 1e-5,
        init: str = "torchvision",
    ) -> None:
        super().__init__()
        if conv not in ("r2plus1d", "r3d"):
            raise ValueError(f"conv must be 'r2plus1d' or 'r3d', got {conv!r}")
        if init not in ("torchvision", "pytorch"):
            raise ValueError(f"init must be 'torchvision' or 'pytorch', got {init!r}")
        if not (len(widths) == len(layers) == len(strides) == 4):
            raise ValueError("widths, layers and strides need 4 entries (layer1..layer4)")
        temporal_strides = tuple(strides) if temporal_strides is None else tuple(temporal_strides)
        builder = conv2plus1d if conv == "r2plus1d" else conv3d
        self.stem = r2plus1d_stem(widths[0]) if conv == "r2plus1d" else r3d_stem(widths[0])
        inplanes = widths[0]
        for i, (planes, blocks, ss, st) in enumerate(zip(widths, layers, strides, temporal_strides), start=1):
            setattr(self, f"layer{i}", self._make_layer(builder, inplanes, planes, blocks, (st, ss)))
            inplanes = planes
        self.feature_dim = int(widths[-1])
        self.channels_last = False
        for m in self.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.eps = bn_eps
        if init == "torchvision":
            self._init_weights()
        if channels_last:
            self.set_channels_last(True)

    @staticmethod
    def _make_layer(builder, inplanes: int, planes: int, blocks: int, stride: tuple[int, int]) -> nn.Sequential:
        downsample = None
        if stride != (1, 1) or inplanes != planes:
            st, ss = stride
            downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes, 1, stride=(st, ss, ss), bias=False), nn.BatchNorm3d(planes)
            )
        layers = [BasicBlock(inplanes, planes, builder, stride, downsample)]
        layers += [BasicBlock(planes, planes, builder) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:  # torchvision's VideoResNet init
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def set_channels_last(self, enabled: bool = True) -> VideoResNet:
        """Store weights in channels_last_3d and convert inputs on the fly (cuDNN/oneDNN prefer NDHWC)."""
        self.channels_last = enabled
        return self.to(memory_format=torch.channels_last_3d if enabled else torch.contiguous_format)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> (B, D, T', H', W'), the map before pooling."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> (B, D): global average pooling of ``forward_features``."""
        return self.forward_features(x).mean(dim=(2, 3, 4))


def tclr_layer4(model: VideoResNet) -> VideoResNet:
    """TCLR's layer4 (severe-protocols.md §4.3): no temporal downsampling in layer4.

    ``layer4[0].conv1[0]`` becomes a dilated full 3-D conv (256->512, k3, stride (1,2,2), padding (2,1,1),
    dilation (2,1,1)) and the shortcut a 1x1x1 conv with stride (1,2,2).
    """
    block = model.layer4[0]
    cin, cout = block.downsample[0].in_channels, block.downsample[0].out_channels
    block.conv1[0] = nn.Conv3d(cin, cout, 3, stride=(1, 2, 2), padding=(2, 1, 1), dilation=(2, 1, 1), bias=False)
    block.downsample[0] = nn.Conv3d(cin, cout, 1, stride=(1, 2, 2), bias=False)
    for conv in (block.conv1[0], block.downsample[0]):
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if model.channels_last:
        model.set_channels_last(True)
    return model


# Named variants ------------------------------------------------------------------------------------

def r2plus1d_18(**kwargs) -> VideoResNet:
    """R(2+1)D-18 as torchvision's ``r2plus1d_18`` (31.3 M parameters), the SEVERE backbone."""
    return VideoResNet(**{"conv": "r2plus1d", **kwargs})


def r2plus1d_18_tclr(**kwargs) -> VideoResNet:
    """R(2+1)D-18 with TCLR's layer4 (temporal stride 4 instead of 8)."""
    return tclr_layer4(VideoResNet(**{"conv": "r2plus1d", **kwargs}))


def r3d_18(**kwargs) -> VideoResNet:
    """R3D-18 as torchvision's ``r3d_18`` (33.2 M parameters)."""
    return VideoResNet(**{"conv": "r3d", **kwargs})


def r2plus1d_tiny(**kwargs) -> VideoResNet:
    """R(2+1)D with widths (16, 32, 64, 128), 1 block per stage (~0.8 M parameters) for CPU tests/demos.

    Spatial strides (1, 2, 2, 2) and temporal strides (1, 1, 2, 2): a 16x32x32 clip gives a 128x4x2x2 map,
    so a quarter of the temporal resolution survives (motion matters for SEVERE-style tasks).
    """
    defaults = dict(conv="r2plus1d", widths=(16, 32, 64, 128), layers=(1, 1, 1, 1),
                    strides=(1, 2, 2, 2), temporal_strides=(1, 1, 2, 2))
    return VideoResNet(**{**defaults, **kwargs})
