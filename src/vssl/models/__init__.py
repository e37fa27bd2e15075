"""Video backbones (R(2+1)D/R3D, VideoMAE ViTs) and reported loading of their weights.

``import vssl.models`` imports torch, torchvision's video ResNet blocks and timm layers, never transformers.
"""

from vssl.models.backbones import BACKBONES, build_backbone
from vssl.models.resnet3d import VideoResNet
from vssl.models.vit import Attention, Block, VisionTransformer, init_weights, sinusoid_table
from vssl.models.weights import LoadReport, load_backbone_weights

__all__ = [
    "BACKBONES", "build_backbone", "VideoResNet", "VisionTransformer", "Attention", "Block", "sinusoid_table",
    "init_weights", "LoadReport", "load_backbone_weights",
]
