"""What each pretraining method does with its clips: crops over each clip's whole frame in a padded
batch of mixed aspect ratios, and the reference's rule for videos shorter than a clip."""

from types import SimpleNamespace

import pytest
import torch

from vssl.config import RunConfig
from vssl.data import crops as C
from vssl.data.collate import collate_clips
from vssl.methods import METHODS, build_method
from vssl.models import build_backbone


def test_each_method_pads_short_videos_like_its_reference():
    """VideoMAE / SIGMA: hold the last frame reached; Tubelet-Contrast: clamp to the last frame; the others
    (SEVERE fine-tuning, MoCo) cycle as SEVERE's pad_missing (vssl.data.sampling)."""
    pads = {name: getattr(cls, "pad", "cycle") for name, cls in METHODS.items()}
    assert pads["videomae"] == pads["sigma"] == "hold" and pads["tubelet_contrast"] == "clamp"
    assert pads["supervised"] == pads["video_contrast"] == "cycle"


@pytest.mark.parametrize("method", ["tubelet_contrast", "videomae", "supervised"])
def test_training_builds_the_dataset_with_the_methods_pad(method, tmp_path, monkeypatch):
    from vssl.data import dataset as D
    from vssl.data.datasets import ADAPTERS
    from vssl.engine.run import train_from_config

    seen = {}

    class Stop(Exception):
        pass

    def capture(self, *args, pad="cycle", **kwargs):
        seen["pad"] = pad
        raise Stop

    videos = SimpleNamespace(records=[SimpleNamespace(path="a.mp4", label=0)], classes=["a"], task="classification")
    monkeypatch.setitem(ADAPTERS, "fake", lambda *a, **k: videos)
    monkeypatch.setattr(D.ClipDataset, "__init__", capture)
    cfg = RunConfig()
    cfg.method.name = method
    cfg.data.dataset, cfg.data.annotations, cfg.data.root = "fake", str(tmp_path), str(tmp_path)
    with pytest.raises(Stop):
        train_from_config(cfg, tmp_path / "run")
    assert seen["pad"] == getattr(METHODS[method], "pad", "cycle")


def mixed_batch(t=4):
    """A padded batch of a 16:9, a 4:3 and a portrait clip at short side 32."""
    g = torch.Generator().manual_seed(0)
    shapes = [(32, 57), (32, 43), (57, 32)]
    return collate_clips([{"video": torch.randint(0, 256, (3, t, h, w), generator=g, dtype=torch.uint8),
                           "label": torch.tensor(0)} for h, w in shapes])


def test_tubelet_contrast_rescales_each_whole_frame_in_a_mixed_batch():
    cfg = RunConfig()
    cfg.method.name, cfg.method.params = "tubelet_contrast", {"queue_size": 16}
    cfg.data.crop_size = 32
    method = build_method(cfg, build_backbone("r2plus1d_tiny"))
    batch = mixed_batch()
    boxes = method.background_boxes(batch["frame_size"])
    for (h, w), box in zip(batch["frame_size"].tolist(), boxes.tolist()):
        assert 0 <= box[0] and box[2] <= w + 1e-4 and 0 <= box[1] and box[3] <= h + 1e-4
        # the rescaled frame's width: (149, 171, 192) x 32 / 112, or the heights for a portrait frame
        assert round(32 * w / (box[2] - box[0])) in ((43, 49, 55) if w >= h else (32, 37, 41))
    v1, v2, _ = method.make_views(batch["video"], batch["frame_size"])
    assert v1.shape == v2.shape == (3, 3, 4, 32, 32)
    loss, logs = method.training_step(batch)
    assert torch.isfinite(loss)


def test_videomae_crops_each_whole_frame_in_a_mixed_batch():
    cfg = RunConfig()
    cfg.method.name, cfg.method.params = "videomae", {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2}
    cfg.data.crop_size = 32
    method = build_method(cfg, build_backbone("vit_tiny"))
    batch = mixed_batch()
    torch.manual_seed(0)
    got = method.augment(batch["video"], batch["frame_size"])
    torch.manual_seed(0)
    boxes = C.msc_params(batch["frame_size"], 32)
    assert torch.equal(got, C.crop_boxes(batch["video"], boxes, 32).float() / 255)
    for (h, w), box in zip(batch["frame_size"].tolist(), boxes.tolist()):
        assert box[2] <= w and box[3] <= h and box[2] - box[0] >= int(0.66 * min(h, w))
    loss, _ = method.training_step(batch)
    assert torch.isfinite(loss)


def test_rand_augment_works_on_each_clips_own_frame():
    """VideoMAE's RandAugment in a padded batch: each clip is augmented on its own frame (rotation centre,
    translation, histograms), as the same clip alone; the padding is re-made from the augmented border."""
    import random

    from vssl.data import videomae_augment as VA

    batch = mixed_batch(t=2)
    together = VA.rand_augment(batch["video"], 4, 9.0, 0.0, p=1.0, rng=random.Random(0), sizes=batch["frame_size"])
    rng = random.Random(0)
    for i, (h, w) in enumerate(batch["frame_size"].tolist()):
        alone = VA.rand_augment(batch["video"][i:i + 1, ..., :h, :w], 4, 9.0, 0.0, p=1.0, rng=rng)[0]
        assert torch.equal(together[i, ..., :h, :w], alone)
        width = together.shape[-1]
        assert torch.equal(together[i, ..., :h, w:], alone[..., -1:].expand(*alone.shape[:-1], width - w))
