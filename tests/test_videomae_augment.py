"""VideoMAE/SIGMA fine-tuning augmentation against timm (the library the reference's rand_augment.py and
mixup come from) and hand checks; the ViT recipe SEVERE's paper protocol gives ViTs."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from vssl.data.videomae_augment import INCREASING_OPS, apply_op, mixup_clips, op_argument, rand_augment, random_erasing


class Draws:
    """A ``random`` stand-in whose ``random()`` returns a fixed value (timm negates when it is > 0.5)."""

    def __init__(self, value: float):
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize("negate", [0.2, 0.9])
def test_op_arguments_match_timm_level_functions(negate, monkeypatch):
    import timm.data.auto_augment as A

    monkeypatch.setattr(A.random, "random", lambda: negate)
    assert set(INCREASING_OPS) == set(A._RAND_INCREASING_TRANSFORMS)
    for name in INCREASING_OPS:
        for level in (0.0, 2.5, 7.0, 9.3, 10.0):
            level_fn = A.LEVEL_TO_ARG[name]
            expected = level_fn(level, {"translate_pct": 0.45})[0] if level_fn else None
            assert op_argument(name, level, Draws(negate)) == pytest.approx(expected), (name, level)


def _image(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 100 * np.sin(xx / 7.0 + c) * np.cos(yy / 9.0 - c) for c in range(3)], -1)
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", INCREASING_OPS)
def test_ops_match_timm_pil_ops(name):
    """Each op on a (T, C, H, W) tensor against timm's PIL op on the frame (bicubic, grey 128 fill, as
    SIGMA's create_random_augment configures them): pixel ops agree to 1 grey level; geometric ops to
    bicubic-kernel differences (PIL a = -0.5, torch a = -0.75) and the edge of the fill."""
    import timm.data.auto_augment as A
    from PIL import Image

    img = _image()
    frames = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)  # two identical frames
    for level in (3.0, 7.0, 9.5):
        arg = op_argument(name, level, Draws(0.9))
        fn = A.NAME_TO_OP[name]
        pil = Image.fromarray(img)
        ref = fn(pil) if arg is None else fn(pil, arg, fillcolor=(128, 128, 128), resample=Image.BICUBIC)
        ours = apply_op(frames, name, arg)
        assert torch.equal(ours[0], ours[1])  # every frame of a clip gets the same op
        diff = np.abs(np.asarray(ref).astype(int) - ours[0].permute(1, 2, 0).numpy().astype(int))
        if name in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"):
            assert np.median(diff) <= 1 and diff.mean() < 2.5, (name, level, diff.mean())
        else:
            assert diff.max() <= 1, (name, level, diff.max())


def test_rand_augment_draws_per_clip_with_probability_half():
    clips = torch.from_numpy(_image(16, 16)).permute(2, 0, 1)[:, None].repeat(1, 4, 1, 1)[None].repeat(3, 1, 1, 1, 1)
    out = rand_augment(clips, num_ops=4, rng=random.Random(0))
    assert out.shape == clips.shape and out.dtype == torch.uint8
    for clip in out:  # the same ops on every frame of a clip
        assert all(torch.equal(clip[:, 0], clip[:, t]) for t in range(4))
    unchanged = sum(torch.equal(rand_augment(clips[:1], rng=random.Random(s)), clips[:1]) for s in range(400))
    # no op passes its draw with probability 0.5^4 (a few passing ops are identities: Solarize at level 0, ...)
    assert 400 * 0.0625 * 0.5 < unchanged < 400 * 0.0625 * 2
    with pytest.raises(ValueError, match="uint8"):
        rand_augment(clips.float())


def test_cube_erasing_is_one_box_for_all_frames():
    x = torch.zeros(200, 3, 4, 20, 30)
    out = random_erasing(x, p=0.25, rng=random.Random(0))
    erased = (out != 0).any(1)  # (B, T, H, W)
    hit = erased.flatten(1).any(1)
    assert abs(hit.float().mean().item() - 0.25) < 0.08
    for mask in erased[hit]:
        assert all(torch.equal(mask[0], mask[t]) for t in range(4))  # the same box in every frame
        area = mask[0].sum().item() / 600
        assert 0.02 * 0.5 <= area <= 1 / 3 * 1.5  # 2-33 % of the frame, up to box rounding
    values = out[hit][:, :, :, :, :].flatten()
    values = values[values != 0]
    assert abs(values.std().item() - 1) < 0.05  # N(0, 1) noise, fresh per pixel


def test_cutmix_box_is_shared_by_all_frames_and_targets_are_smoothed():
    from timm.data import Mixup

    np.random.seed(0)
    mixer = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, mode="batch", label_smoothing=0.1, num_classes=4)
    x = torch.stack([torch.full((3, 4, 16, 16), float(i)) for i in range(4)])
    mixed, soft = mixup_clips(x, torch.tensor([0, 1, 2, 3]), mixer)
    changed = mixed[0] != 0  # clip 0 gets a box from clip 3 (the flipped batch)
    assert changed.any() and all(torch.equal(changed[:, 0], changed[:, t]) for t in range(4))
    lam = 1 - changed[0, 0].float().mean().item()
    off, on = 0.1 / 4, 1 - 0.1 + 0.1 / 4
    torch.testing.assert_close(soft[0], torch.tensor([lam * on + (1 - lam) * off, off, off,
                                                      lam * off + (1 - lam) * on]), atol=1e-5, rtol=0)


def test_supervised_with_the_videomae_recipe_options():
    from vssl.config import RunConfig
    from vssl.methods.supervised import Supervised
    from vssl.models import build_backbone

    run = RunConfig()
    run.data.crop_size, run.data.batch_size = 32, 4
    torch.manual_seed(0)
    cfg = Supervised.Config(num_classes=5, layer_decay=0.75, label_smoothing=0.1, mixup=0.8, cutmix=1.0,
                            erase_p=0.25, randaug_ops=4, head_init_scale=0.001, jitter_p=0.0, scale=[0.25, 1.0])
    m = Supervised(cfg, build_backbone("vit_tiny", drop_path_rate=0.1), run)
    assert m.head.weight.abs().max() < 0.002 * 2 and not m.head.bias.any()  # trunc-normal(0.02) x 0.001
    video = torch.randint(0, 256, (4, 3, 4, 40, 40), dtype=torch.uint8)
    loss, logs = m.training_step({"video": video, "label": torch.tensor([0, 1, 2, 3])})
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    with pytest.raises(Exception, match="even data.batch_size"):
        run.data.batch_size = 3
        Supervised(cfg, build_backbone("vit_tiny"), run)


def test_paper_protocol_gives_vits_sigmas_finetuning_recipe():
    from vssl.severe.experiments import EXPERIMENTS
    from vssl.severe.protocols import PROTOCOLS

    paper = PROTOCOLS["paper"]
    for name in ("ucf101_1k", "gym99", "gym99_1k", "fx_s1", "ub_s1"):
        r = paper.recipe(EXPERIMENTS[name], backbone="vit_b")
        assert (r.num_frames, r.stride, r.fps, r.crop_size, r.load_size) == (16, 4, 0.0, 224, 224)
        assert (r.optimizer, r.weight_decay, r.layer_decay, r.lr_schedule, r.warmup_epochs) == ("adamw", 0.05, 0.75,
                                                                                                "cosine", 5.0)
        assert r.lr == pytest.approx(1.25e-4) and r.batch_size == 32  # base 1e-3 x 32 / 256
        assert (r.mixup, r.cutmix, r.label_smoothing, r.erase_p, r.randaug_ops, r.drop_path) == (0.8, 1.0, 0.1,
                                                                                                 0.25, 4, 0.1)
        assert (r.test_clips, r.test_crops, r.crop_scale, r.epochs) == (5, 3, (0.25, 1.0), 30)
        cnn = paper.recipe(EXPERIMENTS[name], backbone="r2plus1d_18")
        assert (cnn.num_frames, cnn.crop_size, cnn.optimizer, cnn.layer_decay) == (32, 112, "adam", 1.0)
    ssv2 = paper.recipe(EXPERIMENTS["ssv2"], backbone="vit_s")
    assert (ssv2.epochs, ssv2.sampling, ssv2.test_clips, ssv2.flip) == (40, "segment", 2, False)
    # overrides still win; UCF-RC and Charades stay SEVERE's own code paths
    assert paper.recipe(EXPERIMENTS["gym99"], ["epochs=3"], backbone="vit_b").epochs == 3
    assert paper.recipe(EXPERIMENTS["charades"], backbone="vit_b").crop_size == 112


def test_vit_recipe_fine_tunes_end_to_end(tmp_path):
    """The ViT recipe through the runner at tiny size: UCF-format data, RandAugment, erasing, mixup,
    layer decay, warm-up + cosine, drop path; the run's config.yaml loads again."""
    from vssl.config import load_config
    from vssl.data.synth import generate
    from vssl.severe.experiments import EXPERIMENTS
    from vssl.severe.protocols import PROTOCOLS
    from vssl.severe.caches import Caches
    from vssl.severe.plan import ExperimentRun
    from vssl.severe.runner import run_experiment

    root = tmp_path / "synth"
    sizes = {d: (0, 0) for d in ("pretrain", "domain_a", "domain_b", "counting", "multilabel")}
    generate(root, "tiny", seed=0, workers=1, progress=False, sizes={**sizes, "samples_a": (8, 4)})
    exp = replace(EXPERIMENTS["ucf101_1k"], dataset="ucf101", subset="", annotations=str(root / "samples_a" /
                  "annotations"), videos=str(root / "samples_a" / "videos"))
    recipe = PROTOCOLS["paper"].recipe(exp, ["steps=3", "batch_size=4", "crop_size=32", "load_size=32",
                                             "num_frames=8", "stride=2", "test_clips=1", "num_workers=0"],
                                       backbone="vit_tiny")
    metrics, timings, extra = run_experiment(ExperimentRun(exp, recipe, "vit_tiny", None, root, 1, "cpu", tmp_path / "run",
                                                           Caches(tmp_path / "features", tmp_path / "clips")))
    assert 0 <= metrics["top1"] <= 100 and timings["train_steps"] == 3
    cfg = load_config(tmp_path / "run" / "config.yaml")
    assert cfg.method.params["mixup"] == 0.8 and cfg.schedule.name == "cosine" and cfg.optim.name == "adamw"
