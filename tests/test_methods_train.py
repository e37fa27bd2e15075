"""Every pretraining method trains through the engine on tiny CPU data: the loss falls, never NaN;
checkpoints resume; the exported backbone loads with no missing keys; one step runs under 2-process
gloo DDP (shuffle-BN, all-gathered queue, global Sinkhorn)."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from vssl.config import RECIPES as SHIPPED, RunConfig
from vssl.engine import Trainer
from vssl.engine.toy import RandomClipDataset
from vssl.methods import METHODS, Method, build_method
from vssl.models import build_backbone

TESTS = Path(__file__).resolve().parent

SETUPS = {
    # learnable in 30 steps: a fast key encoder (m 0.9, not 0.999), mild augmentation, and large
    # opaque tubelets (the paper's small ones need thousands of steps, see the pilot study)
    "video_contrast": ("r2plus1d_tiny", {"queue_size": 32, "momentum": 0.9, "crop_scale": [0.6, 1.0],
                                         "jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0}),
    "tubelet_contrast": ("r2plus1d_tiny", {"queue_size": 32, "momentum": 0.9, "color_p": 0.0,
                                           "tubelets": {"scales": [0.6, 0.7], "opacity": [1.0, 1.0],
                                                        "soft_edge_prob": 0.0}}),
    "videomae": ("vit_tiny", {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2}),
    "sigma": ("vit_tiny", {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2, "num_prototypes": 16,
                           "mlp_dims": [32, 16]}),
}


class SmoothVideos(RandomClipDataset):
    """Videos that augmentation cannot confuse: a smooth random colour field per video (4 x 4 colours
    upsampled) plus pixel noise. With ``num_clips == 2`` both clips are the same video (views differ by
    augmentation only), so every method has something learnable in a few dozen steps."""

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        g = torch.Generator().manual_seed(1000 + index)
        c, t, h, w = self.shape
        field = torch.nn.functional.interpolate(torch.rand(1, c, 4, 4, generator=g), size=(h, w), mode="bilinear")
        clip = field[0].unsqueeze(1).expand(c, t, h, w) * 200 + torch.rand(c, t, h, w, generator=g) * 40
        clip = clip.to(torch.uint8)
        item["video"] = clip.expand(2, -1, -1, -1, -1).clone() if self.num_clips == 2 else clip
        return item


def tiny_run(name: str, max_steps: int = 30, batch_size: int = 8) -> RunConfig:
    backbone, params = SETUPS[name]
    cfg = RunConfig()
    cfg.method.name, cfg.method.params = name, dict(params)
    cfg.model.backbone = backbone
    cfg.data.num_frames, cfg.data.load_size, cfg.data.crop_size = 8, 32, 32
    cfg.data.batch_size, cfg.data.num_workers = batch_size, 0
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay = "adamw", 2e-3, 0.0
    cfg.schedule.name = "constant"
    cfg.train.max_steps, cfg.train.ckpt_every, cfg.train.log_every = max_steps, max_steps // 2, 5
    cfg.train.progress, cfg.train.tensorboard, cfg.train.seed = False, False, 0
    return cfg


def dataset(name: str, n: int = 32) -> RandomClipDataset:
    return SmoothVideos(n, 4, (3, 8, 32, 32), num_clips=METHODS[name].num_clips)


def train(name: str, out: Path, max_steps: int = 30, resume: bool = False) -> list[float]:
    torch.manual_seed(0)
    cfg = tiny_run(name, max_steps)
    method = build_method(cfg, build_backbone(cfg.model.backbone))
    Trainer(cfg, method, dataset(name), out, resume=resume).fit()
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SETUPS))
def test_method_trains_resumes_and_exports_its_backbone(name, tmp_path):
    losses = train(name, tmp_path, max_steps=30)
    assert len(losses) == 30 and all(torch.isfinite(torch.tensor(losses)))
    if "queue_size" in SETUPS[name][1]:
        # InfoNCE first *rises* while the queue fills (random initial keys are easy negatives); an
        # uninformative embedding scores log(1 + K): the loss must fall well below that chance level
        chance = math.log(1 + SETUPS[name][1]["queue_size"])
        assert sum(losses[-10:]) / 10 < chance - 0.3, f"{name}: loss stays at chance {chance:.2f}: {losses}"
        logs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        acc = sum(r["acc_batch"] for r in logs[-10:]) / 10  # chance: 1/8; tubelet matching learns slower
        assert acc >= (0.25 if name == "video_contrast" else 0.15), f"{name}: in-batch retrieval top-1 {acc}"
    else:
        first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
        assert last < first - 0.02, f"{name}: loss did not fall: {losses}"
    # the engine checkpoints the whole method (queue, key encoder, prototypes...) and resumes it
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 30
    more = train(name, tmp_path, max_steps=32, resume=True)
    assert len(more) == 32 and all(torch.isfinite(torch.tensor(more[-2:])))
    # backbone.pt loads into a fresh backbone with no missing or unexpected keys
    model = build_backbone(SETUPS[name][0], checkpoint=tmp_path / "backbone.pt")
    assert model.load_report.ok, str(model.load_report)
    trained = torch.load(tmp_path / "backbone.pt", weights_only=True)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, trained[k])


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    """One process of a torchrun-like launch: the Trainer starts the gloo group from the environment."""
    from vssl import distributed as D

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        for name in SETUPS:
            torch.manual_seed(0)
            cfg = tiny_run(name, max_steps=1, batch_size=4)
            cfg.train.ckpt_every = 1
            method = build_method(cfg, build_backbone(cfg.model.backbone))
            summary = Trainer(cfg, method, dataset(name, 16), f"{out}/{name}").fit()
            assert summary["step"] == 1 and math.isfinite(summary["loss"]), summary
            if hasattr(method, "queue_ptr"):
                assert int(method.queue_ptr) == 8, int(method.queue_ptr)  # both ranks' keys were enqueued
                torch.save(method.queue, f"{out}/{name}/queue_{rank}.pt")
                # shuffle-BN sends each clip through another rank's BN batch and un-shuffles the keys:
                # with BN in eval mode the result must equal the plain per-rank keys
                method.key_backbone.eval()
                for buf in method.key_backbone.buffers():  # running stats differ per rank until DDP's
                    D.broadcast(buf)                       # next buffer broadcast
                x = torch.randn(4, 3, 8, 32, 32, generator=torch.Generator().manual_seed(rank))
                shuffled = method.embed_key(x)
                method.bn = "none"
                torch.testing.assert_close(shuffled, method.embed_key(x), rtol=1e-4, atol=1e-5)
    finally:
        D.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_every_method_steps_under_two_gloo_processes(tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)  # the forked children set their own
    # fork: the children need no re-import of torch and vssl (seconds each on a busy machine)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    for name in SETUPS:
        assert (tmp_path / name / "backbone.pt").is_file()
    for name in ("video_contrast", "tubelet_contrast"):  # identical queues on both ranks
        q0, q1 = (torch.load(tmp_path / name / f"queue_{r}.pt", weights_only=True) for r in (0, 1))
        torch.testing.assert_close(q0, q1)


RECIPES = sorted((SHIPPED / "pretrain").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_pretrain_recipes_load_and_tiny_ones_take_a_step(path):
    from vssl.config import load_config

    cfg = load_config(path)
    assert cfg.method.name in METHODS
    if not path.stem.endswith("_tiny") or cfg.method.name == "supervised":
        return
    torch.manual_seed(0)
    method = build_method(cfg, build_backbone(cfg.model.backbone))
    assert isinstance(method, Method)
    shape = (2, METHODS[cfg.method.name].num_clips, 3, cfg.data.num_frames, cfg.data.load_size, cfg.data.load_size)
    video = torch.randint(0, 256, shape, dtype=torch.uint8)
    loss, logs = method.training_step({"video": video if shape[1] == 2 else video[:, 0]})
    assert torch.isfinite(loss) and logs["loss"] == pytest.approx(loss.item())
