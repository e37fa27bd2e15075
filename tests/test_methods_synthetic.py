"""Every pretraining method trains on the SynthSEVERE pretraining corpus itself (real mp4 files through
the mini-Kinetics adapter and ClipDataset), on CPU, through the engine: finite losses that fall."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vssl.config import RunConfig
from vssl.data.datasets import load_videos
from vssl.data.dataset import ClipDataset
from vssl.engine import Trainer
from vssl.methods import METHODS, build_method
from vssl.models import build_backbone
from test_methods_train import SETUPS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from vssl.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, "tiny", seed=0, workers=1, scale=0.04, progress=False)  # 48 corpus videos
    return root / "pretrain"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SETUPS))
def test_method_trains_on_the_synthetic_corpus(name, corpus, tmp_path):
    backbone, params = SETUPS[name]
    cfg = RunConfig()
    cfg.method.name, cfg.method.params = name, dict(params)
    cfg.model.backbone = backbone
    d = cfg.data
    d.dataset, d.annotations, d.root = "mini_kinetics", str(corpus / "annotations"), str(corpus / "videos")
    d.num_frames, d.stride, d.load_size, d.crop_size, d.batch_size, d.num_workers = 8, 2, 32, 32, 8, 0
    cfg.optim.lr, cfg.optim.weight_decay, cfg.schedule.name = 2e-3, 0.0, "constant"
    cfg.train.max_steps, cfg.train.ckpt_every, cfg.train.log_every = 40, 40, 5
    cfg.train.progress, cfg.train.tensorboard, cfg.train.seed = False, False, 0
    videos = load_videos("mini_kinetics", d.annotations, "train")
    torch.manual_seed(0)
    method = build_method(cfg, build_backbone(backbone))
    Trainer(cfg, method, ClipDataset(videos, d.root, d, num_clips=METHODS[name].num_clips), tmp_path).fit()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 40 and all(math.isfinite(v) for v in losses)
    if "queue_size" in params:  # InfoNCE: the end must sit well below the chance level log(1 + K)
        assert sum(losses[-10:]) / 10 < math.log(1 + params["queue_size"]) - 0.2, losses
    else:
        assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8 - 0.02, losses
    assert (tmp_path / "backbone.pt").is_file()
