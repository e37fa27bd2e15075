"""SEVERE's clip pipelines under ``--protocol paper``: SEVERE's recognition recipe and PySlowFast's Charades
pipeline (severe-protocols.md §2.2, §6), precise-BN, and the Charades pipeline run end to end at toy size."""

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from vssl.severe.evaluate import eval_transform, precise_bn
from vssl.severe.experiments import EXPERIMENTS
from vssl.severe.protocols import PROTOCOLS


def test_charades_recipe_is_pyslowfasts():
    """fmthoker/SEVERE-BENCHMARK configs/Charades/VSSL/32x8_112x112_R18_*.yaml: TRAIN_JITTER_SCALES
    [256, 340], INV_UNIFORM_SAMPLE, TRAIN_CROP_SIZE / TEST_CROP_SIZE 112, NUM_SPATIAL_CROPS 3, no colour
    augmentation; slowfast/config/defaults.py: DATA.MEAN 0.45, DATA.STD 0.225, RANDOM_FLIP; BN
    USE_PRECISE_STATS with NUM_BATCHES_PRECISE 200."""
    c = PROTOCOLS["paper"].recipe(EXPERIMENTS["charades"])
    assert (c.train_crop, c.short_side, c.crop_size, c.jitter_p) == ("short_side_jitter", (256, 340), 112, 0.0)
    assert (c.load_size, c.test_crops, c.mean, c.std, c.precise_bn) == (112, 3, (0.45,) * 3, (0.225,) * 3, 200)
    assert c.train_size >= 340  # decoded at least at the largest jitter scale: no training crop is upsampled
    t = eval_transform(c)
    assert (t.size, t.short_side, t.crops, t.mean, t.std) == (112, 112, 3, (0.45,) * 3, (0.225,) * 3)
    # the other experiments keep SEVERE's recipe: RRC (0.08, 1) of clips decoded at 256, ImageNet statistics,
    # test short side 128, no precise-BN
    g = PROTOCOLS["paper"].recipe(EXPERIMENTS["gym99"])
    assert (g.train_crop, g.crop_scale, g.train_size, g.load_size, g.precise_bn) == ("rrc", (0.08, 1.0), 256, 128, 0)
    assert g.mean == (0.485, 0.456, 0.406) and g.std == (0.229, 0.224, 0.225) and g.jitter_p is None


class _Items(Dataset):
    def __init__(self, videos):
        self.videos = videos

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, i):
        return {"video": self.videos[i], "label": torch.tensor(0)}


class _Net(nn.Module):
    """A BatchNorm over 2 channels, fed with the clips as they are (``augment`` = to float)."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm3d(2)

    @staticmethod
    def augment(video, sizes=None):
        return video.float()

    def forward(self, x):
        return self.bn(x)


def test_precise_bn_averages_the_statistics_of_each_batch():
    """fvcore's update_bn_stats (PySlowFast): running mean = the mean over batches of each batch's mean,
    running var = the mean over batches of each batch's unbiased variance. With batch size 1 every
    batch is one clip, so the result does not depend on the shuffled order when all batches are used."""
    g = torch.Generator().manual_seed(0)
    clips = [torch.randn(2, 3, 4, 5, generator=g) * (i + 1) + i for i in range(4)]
    net = _Net()
    net.bn.running_mean.fill_(7.0)
    used = precise_bn(net, _Items(clips), batches=200, batch_size=1, device=torch.device("cpu"))
    assert used == 4
    mean = torch.stack([c.mean((1, 2, 3)) for c in clips]).mean(0)
    var = torch.stack([c.flatten(1).var(1, unbiased=True) for c in clips]).mean(0)
    assert torch.allclose(net.bn.running_mean, mean, atol=1e-5) and torch.allclose(net.bn.running_var, var, atol=1e-4)
    # fewer batches than the loader holds: only that many clips count (min(200, len(loader)) in PySlowFast)
    net2 = _Net()
    assert precise_bn(net2, _Items(clips), batches=2, batch_size=1, device=torch.device("cpu"), seed=3) == 2
    pairs = [torch.stack([clips[a].mean((1, 2, 3)), clips[b].mean((1, 2, 3))]).mean(0)
             for a in range(4) for b in range(a + 1, 4)]
    assert any(torch.allclose(net2.bn.running_mean, p, atol=1e-5) for p in pairs)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from vssl.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, "tiny", seed=0, workers=1, progress=False,
             sizes={"pretrain": (1, 1), "samples_a": (1, 1), "samples_b": (1, 1), "domain_a": (1, 1),
                    "domain_b": (1, 1), "actions_1": (1, 1), "actions_2": (1, 1), "counting": (1, 1),
                    "multilabel": (8, 4)})
    return root


def test_paper_charades_pipeline_end_to_end(synth_root, tmp_path, monkeypatch):
    """The multi-label experiment under `paper` takes PySlowFast's pipeline: short-side-jitter crops in
    training, precise-BN over the train batches, 3 test crops with the 0.45 / 0.225 statistics."""
    from vssl.data import transforms
    from vssl.severe.runner import run_severe

    calls = {"jitter": 0, "rrc": 0}
    jitter, rrc = transforms.short_side_jitter_params, transforms.rrc_params

    def spy(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(transforms, "short_side_jitter_params", spy("jitter", jitter))
    monkeypatch.setattr(transforms, "rrc_params", spy("rrc", rrc))
    (result,) = run_severe("r2plus1d_tiny", None, synth_root, tmp_path / "out", ["multilabel"], "paper", seeds=[0],
                           overrides=["steps=2", "batch_size=4", "num_frames=4", "train_size=40", "load_size=32",
                                      "crop_size=32", "short_side=[36, 44]", "test_clips=1", "num_workers=0"],
                           log=lambda s: None)
    assert calls["jitter"] >= 2 and calls["rrc"] == 0
    assert result.timings["precise_bn_batches"] == 2  # 8 train videos / batch 4: min(200, 2)
    assert 0 <= result.metrics["map"] <= 100
