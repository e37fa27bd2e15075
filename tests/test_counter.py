"""The UCF-RC repetition counter (Zhang et al., CVPR 2020, as SEVERE's Repetition-Counting code runs it):
network inputs, anchor targets, loss and count aggregation against hand computations from the reference
(``train_2stream.py``, ``val_2stream.py``, ``utils/myutils.py``), the tracking episodes, and end-to-end
training on SynthSEVERE's counting task."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vssl.config import RunConfig
from vssl.methods.repetition_counter import RepetitionCounter, anchor_targets, context_indices, counter_loss
from vssl.models import build_backbone
from vssl.severe.counting import aggregate_count, count_repetitions

UCFREP = Path(__file__).resolve().parents[2] / "shared" / "annotations" / "ucfrep"


def test_network_inputs_follow_update_inputs_2stream():
    # (lp, mp, rp) = (8, 15, 23): left cycle 8 frames + 8 of context = frames 0..15, right cycle 16..23
    # + one more cycle = 16..31: 16 frames each, one per frame
    idx, valid = context_indices([8], [15], [23], [40])
    assert idx.tolist() == [list(range(32))] and valid.all()
    # (20, 39, 59): left span [0, 39], 40 frames on 16 slots: round(-0.5 + j * 40 / 15) kept in [0, 39]
    idx, _ = context_indices([20], [39], [59], [200])
    assert idx[0, :16].tolist() == [0, 2, 5, 8, 10, 13, 16, 18, 21, 24, 26, 29, 32, 34, 37, 39]
    # right span [40, 59 + 20 = 79], 40 frames: the same spacing from 40
    assert idx[0, 16:].tolist() == [40 + i for i in idx[0, :16].tolist()]
    # near the ends: left context before frame 0 and right context past the last frame are padding
    idx, valid = context_indices([3], [10], [17], [24])  # left span [trunc(3 - 8), 10] = [-5, 10]
    assert idx[0, 0] == -5 and not valid[0, 0] and valid[0, 15]
    assert idx[0, 31] == 24 and not valid[0, 31]  # right span [11, 17 + 7 = 24], 24 is past the end
    # float states (the test-time search) are truncated like int(): mid 50.5, half-width 10.25
    idx, _ = context_indices([40.25], [50.5], [61.75], [101])
    assert idx[0, 0] == 29 and idx[0, 15] == 50 and idx[0, 16] == 51 and idx[0, 31] == 73


def _baby_crawling():
    from vssl.data.datasets import ADAPTERS

    videos = ADAPTERS["ucfrep"](UCFREP, "train")
    (r,) = [r for r in videos.records if r.path.endswith("v_BabyCrawling_g01_c01.avi")]
    return r


def test_anchor_targets_on_real_ucfrep_labels():
    r = _baby_crawling()
    assert r.meta["temporal_bound"] == [1, 29, 64, 105, 155]
    pre, nxt = np.array([r.meta["offset_pre"]]), np.array([r.meta["offset_next"]])
    assert pre[0, 40] == 30 and nxt[0, 41] == 37 and pre[0, 10] == -1  # true periods 31 and 38 frames
    n = [155]
    # left head at mp = 40 with a 20-frame cycle: anchors 10, 13.4, 16, 20, 25, 30, 40 frames against 31
    cls, box, mask = anchor_targets(pre, [40], [20], n)
    assert cls.tolist() == [[0, 0, 1, 1, 1, 1, 1]]  # 10/31 and 13.4/31 < 0.5; 16/31 = 0.516
    np.testing.assert_allclose(box[0, 2:], np.log(31 / np.array([16, 20, 25, 30, 40])), rtol=1e-6)
    assert mask.tolist() == [[False, False, True, True, True, True, True]] and box[0, :2].tolist() == [0, 0]
    # right head at mp + 1 = 41 with a 20-frame cycle against 38: 16/38 = 0.42 < 0.5 < 20/38
    cls, box, _ = anchor_targets(nxt, [41], [20], n)
    assert cls.tolist() == [[0, 0, 0, 1, 1, 1, 1]]
    np.testing.assert_allclose(box[0, 3:], np.log(38 / np.array([20, 25, 30, 40])), rtol=1e-6)
    # IoU exactly 0.5 is a positive (iou_ubound 0.5): a 31-frame cycle, anchors 0.5 and 2.0 give 15.5 and 62
    assert anchor_targets(pre, [40], [31], n)[0].tolist() == [[1] * 7]
    # no label (first cycle) or a position past the sample: every anchor ignored
    assert anchor_targets(pre, [10], [20], n)[0].tolist() == [[-1] * 7]
    assert anchor_targets(pre, [155], [20], n)[0].tolist() == [[-1] * 7]


def test_loss_is_cross_entropy_plus_50_smooth_l1_with_ignored_anchors():
    cls_1 = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # (N=1, 2 classes, A=2)
    box_1 = torch.tensor([[0.3, -2.5]])
    cls_2, box_2 = torch.zeros(1, 2, 2), torch.tensor([[0.1, 0.2]])
    left = (torch.tensor([[1, -1]]), torch.tensor([[0.5, 0.0]]), torch.tensor([[True, False]]))
    right = (torch.tensor([[0, 0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[False, False]]))
    loss_cls, loss_box = counter_loss((cls_1, box_1, cls_2, box_2), [left, right])
    # left: anchor 0 is class 1 with logits (2, 0): -log(e^0 / (e^2 + e^0)); anchor 1 ignored
    # right: two class-0 anchors with logits (0, 0): -log(1/2) each, mean over the two
    assert loss_cls.item() == pytest.approx(math.log(1 + math.exp(2)) + math.log(2), rel=1e-6)
    # left box: smooth-L1 of 0.3 vs 0.5 = 0.5 * 0.2^2, the ignored anchor contributes 0; mean over 2
    # entries; right: no positive anchor, 0
    assert loss_box.item() == pytest.approx(50 * (0.5 * 0.2 ** 2) / 2, rel=1e-6)
    # a batch without any labelled anchor adds 0 (the reference's mean over nothing is NaN)
    none = (torch.full((1, 2), -1), torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.bool))
    loss_cls, _ = counter_loss((cls_1, box_1, cls_2, box_2), [none, none])
    assert loss_cls.item() == 0


def test_count_aggregation_by_hand():
    # four final states in a 100-frame video: contexts [lp - (mp - lp + 1), rp + (rp - mp)]
    lp, mp, rp = [5, 30, 60, 88], [14, 39, 69, 94], [24, 49, 79, 99]
    # windows: [-5, 34] (starts before 0), [20, 59], [50, 89], [81, 104] (ends past 99): 2 valid states,
    # cycles 10 and 10, 10 and 10 -> 100 * (0.5 * (1/10 + 1/10) + 0.5 * (1/10 + 1/10)) / 2 = 10
    assert aggregate_count(lp, mp, rp, 100, period=20) == 10
    # unequal cycles: 10 left / 12 right and 8 left / 9 right (windows [20, 63], [54, 87]):
    # 100 * (0.5 * (1/10 + 1/8) + 0.5 * (1/12 + 1/9)) / 2 = 10.49
    assert aggregate_count([30, 62], [39, 69], [51, 78], 100, period=20) == 10
    # rounding is half to even, as Python's round: two 2-frame cycles in 125 frames, 62.5 -> 62
    assert aggregate_count([0], [1], [3], 125, period=0, left_context=0, right_context=1) == 62
    # no state with its context inside the video: the coarse period decides, round(100 / (20 + 1)) = 5
    assert aggregate_count([5], [14], [24], 30, period=20) == 1
    assert aggregate_count([0], [14], [24], 100, period=20) == 5


def perfect_predictor(period: float):
    """A network that knows the period: full score on the anchor nearest to period / L, exact offsets."""
    anchors = np.array([0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0])

    def predict(lp, mp, rp):
        lp, mp, rp = (np.trunc(np.atleast_1d(np.asarray(v, dtype=np.float64))) for v in (lp, mp, rp))
        out = []
        for cycle in (mp - lp + 1, rp - mp):
            ratio = period / np.maximum(cycle, 1)
            best = np.argmin(np.abs(np.log(ratio[:, None] / anchors)), 1)
            scores = np.zeros((len(cycle), 7))
            scores[np.arange(len(cycle)), best] = 1
            out += [scores, np.log(ratio)[:, None] - np.log(anchors)]
        return tuple(out)

    return predict


@pytest.mark.parametrize("length, period, count", [(200, 20, 10), (300, 12, 25), (150, 50, 3), (843, 17, 50)])
def test_search_and_merge_find_the_period_of_a_perfect_network(length, period, count):
    assert count_repetitions(perfect_predictor(period), length) == count == round(length / period)


def tiny_counter(**kw) -> RepetitionCounter:
    run = RunConfig()
    run.data.crop_size = 16
    torch.manual_seed(0)
    return RepetitionCounter(RepetitionCounter.Config(**kw), build_backbone("r2plus1d_tiny"), run)


def periodic_batch(batch=2, frames=60, period=10, size=16):
    """Samples of a bright bar that cycles every ``period`` frames, with UCFRep-style offset labels."""
    t = torch.arange(frames)
    video = torch.zeros(batch, 3, frames, size, size, dtype=torch.uint8)
    for i in range(frames):
        video[:, :, i, :, (i % period) * size // period] = 255
    nxt = torch.where(t < frames - period, torch.full_like(t, period - 1), torch.full_like(t, -1))
    pre = torch.where(t >= period, torch.full_like(t, period - 1), torch.full_like(t, -1))
    label = {"next": nxt.repeat(batch, 1), "pre": pre.repeat(batch, 1),
             "count": torch.full((batch,), frames / period), "length": torch.full((batch,), frames)}
    return {"video": video, "label": label}


def test_a_batch_is_tracked_for_eleven_steps():
    import random

    random.seed(0)
    m = tiny_counter()
    batch = periodic_batch(frames=300)
    assert m.needs_batch
    for step in range(11):
        loss, logs = m.training_step(batch if step == 0 else None)
        assert torch.isfinite(loss) and {"loss_cls", "loss_box", "positive"} <= set(logs)
        assert m.needs_batch == (step == 10)  # early_stop 10: at most 11 steps per batch
        if not m.needs_batch:
            ep = m._episode
            assert (ep["mp"] - ep["lp"] >= 3).all() and (ep["rp"] - ep["mp"] >= 4).all() and (ep["mp"] < 300).all()
    with pytest.raises(ValueError, match="without a tracking episode"):
        m.training_step(None)
    groups = m.param_groups(1e-3)  # the reference's Adam decays every parameter
    assert len(groups) == 1 and len(groups[0]["params"]) == len(list(m.parameters()))
    # test-time scores of one video: class-1 probabilities in [0, 1]
    p_1, box_1, p_2, box_2 = m.state_scores(batch["video"][0], 300, [10, 20], [19, 29], [29, 39])
    assert p_1.shape == box_2.shape == (2, 7) and ((p_1 >= 0) & (p_1 <= 1)).all()
    x = m.clips(batch["video"][0], 300, [0], [9], [19])  # left context before frame 0: the mean itself
    torch.testing.assert_close(x[0, :, 0], m.mean[0, :, 0].expand(3, 16, 16))


def test_samples_are_drawn_as_make_dataset_does():
    from vssl.data.repetition import draw_samples

    r = _baby_crawling()
    from vssl.data.datasets.base import VideoList

    videos = VideoList("ucfrep", "train", [r], ["BabyCrawling"], task="counting")
    samples = draw_samples(videos, 200, 300, np.random.default_rng(0))
    bounds = r.meta["temporal_bound"]
    assert len(samples) == 200
    for s in samples.records:
        begin, end, count = s.meta["begin"], s.meta["end"], int(s.label)
        assert 2 <= count <= len(bounds)  # at least 2 cycles, q - p
        # the start is the first frame or inside the cycle before the first counted bound
        assert begin == 1 or any(bounds[p - 1] <= begin <= bounds[p] for p in range(1, len(bounds) - 2))
        assert s.meta["offset_pre"] == r.meta["offset_pre"][begin - 1:end]
        assert len(s.meta["offset_next"]) == end - begin + 1
    short = draw_samples(videos, 50, 40, np.random.default_rng(1))
    assert max(s.meta["end"] - s.meta["begin"] + 1 for s in short.records) == 40  # sample_duration cap


def test_counter_trains_end_to_end_on_synthsevere(tmp_path):
    """Paper protocol on SynthSEVERE's counting task at tiny size: samples, tracking episodes through the
    engine, the test-time count, a stored result, and a config.yaml that loads again."""
    from vssl.config import load_config
    from vssl.data.synth import generate
    from vssl.severe.runner import run_severe

    root = tmp_path / "synth"
    sizes = {d: (0, 0) for d in ("pretrain", "samples_a", "domain_a", "domain_b", "multilabel")}
    generate(root, "tiny", seed=0, workers=1, progress=False, sizes={**sizes, "counting": (8, 4)})
    (result,) = run_severe("r2plus1d_tiny", None, root, tmp_path / "out", "counting", "paper", seeds=[1],
                           overrides=["steps=13", "batch_size=4", "crop_size=32", "num_workers=0"], device="cpu",
                           log=lambda _: None)
    assert result.metric == "mae" and math.isfinite(result.primary) and result.extra["num_test"] == 4
    assert result.timings["train_steps"] == 13 and result.timings["train_samples"] == 80
    assert result.extra["recipe"]["counting_method"] == "repetition_counter"
    (saved,) = (tmp_path / "out").rglob("config.yaml")
    cfg = load_config(saved)
    assert cfg.method.name == "repetition_counter" and cfg.method.params["track_steps"] == 11
    assert len((saved.parent / "metrics.jsonl").read_text().splitlines()) == 13


def test_the_engine_draws_a_batch_per_tracking_episode(tmp_path):
    """13 optimizer steps = one 11-step episode and 2 steps of the next: 2 batches are loaded, not 13."""
    from torch.utils.data import Dataset

    from vssl.engine import Trainer

    class Samples(Dataset):
        loads = 0

        def __len__(self):
            return 8

        def __getitem__(self, i):
            Samples.loads += 1
            one = periodic_batch(batch=1, frames=300)
            return {"video": one["video"][0], "label": {k: v[0] for k, v in one["label"].items()}, "index": i}

    m = tiny_counter()
    run = RunConfig()
    run.data.batch_size, run.data.num_workers = 2, 0
    run.train.max_steps, run.train.ckpt_every, run.train.progress, run.train.tensorboard = 13, 0, False, False
    run.train.device = "cpu"
    summary = Trainer(run, m, Samples(), tmp_path).fit()
    assert summary["step"] == 13 and Samples.loads == 4


def test_counter_config_trains_through_vssl_finetune(tmp_path):
    """The saved method loads and trains again through the config path (``vssl finetune``), which asks the
    method for its training set."""
    from vssl.config import load_config
    from vssl.data.synth import generate
    from vssl.engine.run import train_from_config

    root = tmp_path / "synth"
    sizes = {d: (0, 0) for d in ("pretrain", "samples_a", "domain_a", "domain_b", "multilabel")}
    generate(root, "tiny", seed=0, workers=1, progress=False, sizes={**sizes, "counting": (4, 0)})
    config = tmp_path / "counter.yaml"
    config.write_text(f"""
method: {{name: repetition_counter, samples_per_video: 2, sample_frames: 64}}
model: {{backbone: r2plus1d_tiny}}
data: {{dataset: ucfrep, annotations: {root / 'counting' / 'annotations'}, root: {root / 'counting' / 'videos'},
        split: train, crop_size: 32, batch_size: 4, num_workers: 0}}
optim: {{name: adam, lr: 5.0e-5, weight_decay: 1.0e-3}}
schedule: {{name: constant}}
train: {{max_steps: 3, ckpt_every: 0, progress: false, tensorboard: false}}
""")
    summary = train_from_config(load_config(config), tmp_path / "run")
    assert summary["step"] == 3 and summary["failures"] == 0
    assert load_config(tmp_path / "run" / "config.yaml").method.params["samples_per_video"] == 2
