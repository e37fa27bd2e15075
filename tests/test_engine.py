"""Engine pieces: schedules, optimizer groups, sampler, accumulation, atomic checkpoints, logs."""

from __future__ import annotations

import json
import math
import os
import signal
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vssl.config import RECIPES, RunConfig, ScheduleConfig
from vssl.engine import Trainer, build_scheduler, lr_factor
from vssl.engine.checkpoint import numbered_checkpoints, remove_stale_temporaries, save_training_checkpoint
from vssl.engine.data_order import EpochBatchSampler, SeededItems
from vssl.engine.toy import RandomClipDataset
from vssl.errors import CheckpointError, ConfigError
from vssl.methods import Method
from vssl.methods.contract import decay_groups
from vssl.serialization import atomic_save, load_checkpoint

SHAPE = (3, 4, 8, 8)


class TinyMethod(nn.Module):
    """Linear classifier on raw pixels: no BatchNorm, no randomness, so runs compare exactly."""

    @dataclass
    class Config:
        pass

    num_clips = 1

    def __init__(self, num_classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), 6))
        self.head = nn.Linear(6, num_classes)
        self.steps_seen: list[int] = []

    def training_step(self, batch):
        logits = self.head(torch.tanh(self.backbone(batch["video"].float() / 255)))
        loss = F.cross_entropy(logits, batch["label"])
        return loss, {"acc": (logits.argmax(1) == batch["label"]).float().mean().item()}

    def after_optimizer_step(self, step: int) -> None:
        self.steps_seen.append(step)


def tiny_cfg(**train) -> RunConfig:
    cfg = RunConfig()
    cfg.data.batch_size, cfg.data.num_workers = 8, 0
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay = "sgd", 0.5, 0.0
    cfg.optim.momentum = 0.0
    cfg.schedule.name = "constant"
    cfg.train.max_steps, cfg.train.ckpt_every = 3, 0
    cfg.train.progress, cfg.train.tensorboard = False, False
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_lr_factor_warmup_cosine_step():
    cos = ScheduleConfig(name="cosine", warmup_steps=4, min_lr=0.1)
    assert [lr_factor(s, cos, 14, 1.0) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(9, cos, 14, 1.0) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: mean of max and min
    assert lr_factor(14, cos, 14, 1.0) == pytest.approx(0.1) and lr_factor(99, cos, 14, 1.0) == pytest.approx(0.1)
    step = ScheduleConfig(name="step", milestones=[3, 5], gamma=0.1)
    assert [lr_factor(s, step, 10, 1.0) for s in (0, 2, 3, 4, 5, 9)] == pytest.approx([1, 1, .1, .1, .01, .01])
    with pytest.raises(ConfigError, match="schedule.name"):
        lr_factor(0, ScheduleConfig(name="linear"), 10, 1.0)


def test_scheduler_steps_every_group_once_per_optimizer_step():
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr": 1.0},
              {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.1}]  # a method's own group lr is kept
    opt = torch.optim.SGD(groups, lr=1.0)
    sched = build_scheduler(ScheduleConfig(name="cosine", warmup_steps=2), opt, max_steps=6, base_lr=1.0)
    seen = []
    for _ in range(6):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx([0.5, 0.05]) and seen[1] == pytest.approx([1.0, 0.1])
    assert seen[-1][0] < seen[2][0] and seen[-1][1] == pytest.approx(seen[-1][0] / 10)


def test_trainer_refuses_a_module_that_is_not_a_method(tmp_path):
    with pytest.raises(TypeError, match="Linear is not a training method"):
        Trainer(tiny_cfg(), nn.Linear(2, 2), RandomClipDataset(16, 3, SHAPE), tmp_path)
    assert isinstance(TinyMethod(), Method) and not isinstance(nn.Linear(2, 2), Method)


def test_decay_groups_skip_decay_on_biases_and_1d():
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Linear(4, 2))
    decay, no_decay = decay_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2, 5}
    assert all(p.ndim == 1 for p in no_decay["params"]) and len(no_decay["params"]) == 4


def test_sampler_shards_global_batches_and_skips_consumed():
    single = list(EpochBatchSampler(20, 4, seed=3, epoch=1))
    assert len(single) == 5 and sorted(sum(single, [])) == list(range(20))
    ranks = [list(EpochBatchSampler(20, 2, seed=3, epoch=1, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == single  # W processes = one process with W x batch
    assert list(EpochBatchSampler(20, 4, seed=3, epoch=1, start=3)) == single[3:]
    assert list(EpochBatchSampler(20, 4, seed=3, epoch=2)) != single  # new order every epoch


def test_seeded_items_do_not_depend_on_read_order_and_keep_caller_rng():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(3)

    items = SeededItems(Noisy(), seed=1, epoch=0)
    torch.manual_seed(5)
    forward = [items[i] for i in range(4)]
    after = torch.rand(1)
    torch.manual_seed(5)
    backward = [items[i] for i in reversed(range(4))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward))
    assert torch.equal(after, torch.rand(1))  # the caller's stream was not consumed
    assert not torch.equal(items[0], SeededItems(Noisy(), seed=1, epoch=1)[0])


def test_random_clip_dataset_is_deterministic_per_index():
    ds = RandomClipDataset(10, 3, SHAPE, num_clips=2, seed=4)
    a, b = ds[7], RandomClipDataset(10, 3, SHAPE, num_clips=2, seed=4)[7]
    assert a["video"].shape == (2, *SHAPE) and a["video"].dtype == torch.uint8
    assert torch.equal(a["video"], b["video"]) and a["label"] == 7 % 3
    assert not torch.equal(ds[6]["video"], a["video"])


def test_grad_accumulation_matches_one_big_batch(tmp_path):
    data = RandomClipDataset(16, 3, SHAPE)
    runs = {}
    for bs, accum in ((8, 1), (4, 2)):
        cfg = tiny_cfg(grad_accum=accum)
        cfg.data.batch_size = bs
        method = TinyMethod()
        Trainer(cfg, method, data, tmp_path / f"b{bs}").fit()
        runs[bs] = method.state_dict()
        assert method.steps_seen == [1, 2, 3]
    for k in runs[8]:
        torch.testing.assert_close(runs[8][k], runs[4][k], rtol=1e-5, atol=1e-6)
    assert not torch.equal(runs[8]["head.weight"], TinyMethod().state_dict()["head.weight"])


def test_fit_writes_logs_checkpoints_and_plain_backbone(tmp_path):
    cfg = tiny_cfg(max_steps=4, ckpt_every=2, keep_checkpoints=1, tensorboard=True, log_every=2)
    cfg.optim.name, cfg.train.clip_grad = "adamw", 1.0
    save_training_checkpoint(tmp_path / "checkpoints", {"step": 99}, 99, keep=1)  # an older run's
    with pytest.raises(CheckpointError, match=r"already holds a run \(checkpoints up to step 99\)"):
        Trainer(cfg, TinyMethod(), RandomClipDataset(16, 3, SHAPE), tmp_path).fit()
    # started over on purpose, the older run's checkpoints go: a later --resume must not find step 99
    summary = Trainer(cfg, TinyMethod(), RandomClipDataset(16, 3, SHAPE), tmp_path, overwrite=True).fit()
    assert summary["step"] == 4 and summary["epoch"] == 1  # epoch 1 is done, epoch 2 not begun
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and {"loss", "acc", "lr", "grad_norm", "data_time", "clips_per_s"} <= set(rows[0])
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert [p.name for p in numbered_checkpoints(tmp_path / "checkpoints")] == ["step_00000004.pt"]
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 4 and {"optimizer", "scheduler", "scaler", "rng", "epoch"} <= set(state)
    backbone = torch.load(tmp_path / "backbone.pt", weights_only=True)
    assert set(backbone) == {"1.weight", "1.bias"}
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "final.pt").is_file()


def test_atomic_save_never_leaves_a_torn_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_save({"w": torch.ones(3)}, path)

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"w": torch.zeros(3)}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))  # the old one survives intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind
    (tmp_path / ".last.pt.tmp123").write_bytes(b"left by a SIGKILL")
    remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_numbered_checkpoints_are_pruned_and_bad_files_reported(tmp_path):
    for step in (2, 4, 6):
        save_training_checkpoint(tmp_path, {"step": step}, step, keep=2)
    assert [p.name for p in numbered_checkpoints(tmp_path)] == ["step_00000004.pt", "step_00000006.pt"]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 6
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("task", ["classification", "multilabel"])
def test_supervised_step_on_a_real_backbone(task):
    from vssl.config import load_config
    from vssl.engine.run import build_backbone
    from vssl.methods import build_method

    toy = RECIPES / "finetune" / "toy.yaml"
    cfg = load_config(toy, ["method.num_classes=4", "method.label_smoothing=0.1", f"method.task={task}"])
    method = build_method(cfg, build_backbone(cfg))
    label = torch.tensor([0, 3]) if task == "classification" else torch.tensor([[1., 0, 1, 0], [0, 0, 0, 1]])
    batch = {"video": torch.randint(0, 255, (2, 3, 8, 32, 32), dtype=torch.uint8), "label": label}
    loss, logs = method.training_step(batch)
    loss.backward()
    assert math.isfinite(logs["loss"]) and method.head.out_features == 4
    assert method.head.weight.grad is not None and method.backbone.stem[0].weight.grad is not None
    assert ("acc" in logs) == (task == "classification")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(tmp_path, precision):
    method = TinyMethod()
    before = method.head.weight.detach().clone()
    Trainer(tiny_cfg(max_steps=2, precision=precision), method, RandomClipDataset(16, 3, SHAPE), tmp_path).fit()
    assert torch.isfinite(method.head.weight).all() and not torch.equal(before, method.head.weight)


def test_bad_optimizer_and_precision_names_are_config_errors(tmp_path):
    cfg = tiny_cfg()
    cfg.optim.name = "lamb"
    with pytest.raises(ConfigError, match="optim.name"):
        Trainer(cfg, TinyMethod(), RandomClipDataset(16, 3, SHAPE), tmp_path)
    with pytest.raises(ConfigError, match="train.precision"):
        Trainer(tiny_cfg(precision="fp8"), TinyMethod(), RandomClipDataset(16, 3, SHAPE), tmp_path)


def test_loader_workers_do_not_change_the_data(tmp_path):
    """Items are read under (seed, epoch, index) RNG streams, so 0 or 2 workers train identically."""

    class NoisyClips(RandomClipDataset):
        def __getitem__(self, index):
            item = super().__getitem__(index)
            item["video"] = item["video"] // 2 + torch.randint(0, 100, SHAPE, dtype=torch.uint8)
            return item

    weights = []
    for workers in (0, 2):
        cfg = tiny_cfg(max_steps=3)
        cfg.data.num_workers, cfg.data.batch_size = workers, 4
        method = TinyMethod()
        Trainer(cfg, method, NoisyClips(12, 3, SHAPE), tmp_path / str(workers)).fit()
        weights.append(method.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_supervised_layer_decay_scales_lr_by_depth():
    from vssl.config import RunConfig
    from vssl.methods.supervised import Supervised
    from vssl.models import build_backbone

    run = RunConfig()
    run.optim.lr, run.data.crop_size = 1.0, 32
    method = Supervised(Supervised.Config(num_classes=3, layer_decay=0.5), build_backbone("vit_tiny"), run)
    depth = len(method.backbone.blocks)
    lr_of = {id(p): g["lr"] for g in method.param_groups(0.05) for p in g["params"]}
    named = dict(method.named_parameters())
    assert lr_of[id(named["head.weight"])] == 1.0
    assert lr_of[id(named[f"backbone.blocks.{depth - 1}.mlp.fc1.weight"])] == 0.5
    assert lr_of[id(named["backbone.blocks.0.mlp.fc1.weight"])] == 0.5 ** depth
    assert lr_of[id(named["backbone.patch_embed.proj.weight"])] == 0.5 ** (depth + 1)
    assert len(lr_of) == len(named)  # every parameter in exactly one group
    flat = Supervised(Supervised.Config(num_classes=3), build_backbone("vit_tiny"), run).param_groups(0.05)
    assert len(flat) == 2 and {g["lr"] for g in flat} == {1.0}
    with pytest.raises(ConfigError, match="layer_decay"):
        Supervised(Supervised.Config(num_classes=3, layer_decay=0.5), build_backbone("r2plus1d_tiny"), run)


def test_sigterm_checkpoints_the_last_finished_step_and_stops(tmp_path):
    class Preempted(TinyMethod):
        def after_optimizer_step(self, step: int) -> None:
            if step == 3:
                os.kill(os.getpid(), signal.SIGTERM)  # what a cluster scheduler sends before preemption

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="stopped at step 3"):
        Trainer(tiny_cfg(max_steps=50, ckpt_every=20), Preempted(), RandomClipDataset(16, 3, SHAPE), tmp_path).fit()
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers are restored
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 3  # saved although 3 % 20 != 0
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
