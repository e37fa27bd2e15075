"""ClipDataset: item layout, labels, test clips, bad videos skipped and counted (workers too),
determinism under (seed, epoch), path resolution."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import moving_square_frames

from vssl.config import DataConfig
from vssl.data.collate import collate_clips
from vssl.data.dataset import ClipDataset, collect_failures, encode_label, resolve_video_path
from vssl.errors import VsslError


def video_list(paths, labels=None, task="classification", classes=("a", "b", "c")):
    labels = labels if labels is not None else [i % len(classes) for i in range(len(paths))]
    return SimpleNamespace(records=[SimpleNamespace(path=str(p), label=l) for p, l in zip(paths, labels)],
                           classes=list(classes), task=task)


def cfg(**kw):
    base = dict(num_frames=8, stride=2, load_size=32, backend="pyav")
    base.update(kw)
    return DataConfig(**base)


@pytest.fixture
def tree(make_video, tmp_path):
    for i in range(4):
        make_video(f"videos/v{i}.mp4", num_frames=40, seed=i)
    return tmp_path / "videos"


def test_items_train_and_test(tree):
    """48x64 videos decoded at short side 32 keep their 4:3 frame: 32 x round(64 * 32 / 48) = 32 x 43."""
    vl = video_list([f"v{i}.mp4" for i in range(4)])
    item = ClipDataset(vl, tree, cfg())[1]
    assert item["video"].shape == (3, 8, 32, 43) and item["video"].dtype == torch.uint8
    assert item["label"].dtype == torch.long and int(item["label"]) == 1 and item["index"] == 1
    two = ClipDataset(vl, tree, cfg(), num_clips=2)[0]["video"]
    assert two.shape == (2, 3, 8, 32, 43)
    test = ClipDataset(vl, tree, cfg(), train=False, test_clips=3)[0]["video"]
    assert test.shape == (3, 3, 8, 32, 43)
    # uniform test clips start at 0 and end at the last frame: first and last views differ
    assert not torch.equal(test[0], test[2])
    seg = ClipDataset(vl, tree, cfg(sampling="segment"), train=False, test_clips=2)[0]["video"]
    assert seg.shape == (2, 3, 8, 32, 43)
    fps = ClipDataset(vl, tree, cfg(num_frames=16, fps=16.0))[0]["video"]
    assert fps.shape == (3, 16, 32, 43)


def test_the_whole_frame_reaches_the_crops(make_video):
    """A 16:9 video keeps all its columns (a square centre pre-crop dropped 44 % of them), and a batch
    of 16:9, 4:3 and portrait videos stacks with each clip's frame size."""
    wide = moving_square_frames(12, 36, 64)
    wide[:, :, :8] = (255, 0, 0)  # a red band on the left edge, outside any centred square
    root = make_video("v/wide.mp4", frames=wide).parent
    make_video("v/four_three.mp4", num_frames=12, height=48, width=64)
    make_video("v/portrait.mp4", num_frames=12, height=64, width=36)
    vl = video_list(["wide.mp4", "four_three.mp4", "portrait.mp4"])
    ds = ClipDataset(vl, root, cfg(num_frames=4, load_size=36))
    item = ds[0]["video"]
    assert item.shape == (3, 4, 36, 64)
    assert (item[0, :, :, :6].float().mean() > 200) and (item[1:, :, :, :6].float().mean() < 60)
    batch = collate_clips([ds[i] for i in range(3)])
    assert batch["video"].shape == (3, 3, 4, 64, 64)
    assert batch["frame_size"].tolist() == [[36, 64], [36, 48], [64, 36]]


def test_per_clip_strides_with_jitter_and_clamp(make_video):
    """Tubelet-Contrast's RandomFrameSampler: each clip draws its stride from {1, 2, 3, 4} and every
    index gets + randint(0, stride - 1), so index i = start + i * stride + j_i (0 <= j_i < stride); the
    span idx[15] - idx[0] = 15 * stride + j_15 - j_0 lies in [14 s + 1, 16 s - 1], which names s."""
    frames = np.repeat(np.repeat((np.arange(80) * 3).astype(np.uint8)[:, None, None, None], 16, 1), 16, 2)
    root = make_video("idx/v.mp4", frames=np.repeat(frames, 3, 3), gop=80).parent
    ds = ClipDataset(video_list(["v.mp4"] * 48), root, cfg(num_frames=16, load_size=16, strides=[1, 2, 3, 4],
                                                           jitter=True), pad="clamp")
    strides = []
    for i in range(48):
        idx = np.round(ds[i]["video"][0, :, 8, 8].float().numpy() / 3).astype(int)  # the frame index
        span = idx[-1] - idx[0]
        s = int(round(span / 15))
        assert 14 * s + 1 <= span <= 16 * s - 1 or s == 1 and span == 15
        steps = np.diff(idx)
        assert steps.min() >= 1 and steps.max() <= 2 * s - 1  # s + j_{i+1} - j_i
        strides.append(s)
    assert set(strides) == {1, 2, 3, 4}
    # the two views of a pair are two items: their strides differ for most pairs (3/4 expected)
    assert np.mean([a != b for a, b in zip(strides[::2], strides[1::2])]) > 0.5
    with pytest.raises(VsslError, match="unknown pad mode"):
        ClipDataset(video_list(["v.mp4"]), root, cfg(), pad="mirror")


def test_labels():
    assert encode_label(2, "classification", 3).dtype == torch.long
    multi = encode_label([0, 2], "multilabel", 4)
    assert multi.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert encode_label([], "multilabel", 2).tolist() == [0.0, 0.0]
    count = encode_label(5.0, "counting", 0)
    assert count.dtype == torch.float32 and float(count) == 5.0


CHARADES_HEADER = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"


def test_charades_training_clips_get_the_actions_they_overlap(tmp_path, make_video):
    """PySlowFast labels a training clip with the union of its frames' labels (first to last frame);
    test items keep the video-level labels. Rows in the official Charades_v1 format."""
    from vssl.data.datasets import ADAPTERS

    ann = tmp_path / "ann"
    ann.mkdir()
    rows = ('46GP8,HR43,Kitchen,6,7,Yes,"s","o","d","c092 11.90 21.20;c147 0.00 12.60",24.83\n'
            'SHORT,HR43,Kitchen,6,7,Yes,"s","o","d","c001 0.00 0.50;c002 1.00 1.90;c003 2.50 3.00",3.00\n')
    for split in ("train", "test"):
        (ann / f"Charades_v1_{split}.csv").write_text(CHARADES_HEADER + rows)
    train = ADAPTERS["charades"](ann, "train")
    long_video = train.records[0]
    ds = ClipDataset(train, tmp_path, cfg(num_frames=32, fps=3.0))

    def clip(start):  # SEVERE's Charades clip: 32 frames at sampling rate 8 of the 24 fps frames
        return ((start + 8 * np.arange(32)) / 24.0)[None]

    def classes(target):
        return torch.nonzero(target).flatten().tolist()

    # frames 300..548 = 12.50..22.83 s: inside c092 (11.90-21.20) and c147 (0-12.60) by 0.1 s
    assert classes(ds.label(long_video, clip(300))) == [92, 147]
    assert classes(ds.label(long_video, clip(310))) == [92]  # 12.92 s > 12.60: c147 is over
    assert classes(ds.label(long_video, clip(0))) == [147]  # 0..10.33 s, before c092 starts
    assert classes(ds.label(long_video, clip(520))) == []  # 21.67 s on: after both
    assert classes(ds.label(long_video, np.concatenate([clip(0), clip(520)]))) == [147]  # union of views

    # end to end: a 50-frame clip of a 50-frame 25 fps video spans 0..1.96 s, so c003 (2.5-3 s) is
    # not in it, though the video-level (test) label has it
    make_video("SHORT.mp4", num_frames=50, fps=25.0)
    item = ClipDataset(train, tmp_path, cfg(num_frames=50, stride=1))[1]
    assert classes(item["label"]) == [1, 2]
    test = ADAPTERS["charades"](ann, "test")
    assert classes(ClipDataset(test, tmp_path, cfg(num_frames=50, stride=1), train=False)[1]["label"]) == [1, 2, 3]


def test_resolve_other_extension(tree):
    assert resolve_video_path(tree, "v0.avi") == tree / "v0.mp4"
    assert resolve_video_path(tree, "nope.avi") == tree / "nope.avi"
    item = ClipDataset(video_list(["v2.webm"]), tree, cfg())[0]
    assert item["index"] == 0


def test_determinism_seed_and_epoch(tree):
    vl = video_list([f"v{i}.mp4" for i in range(4)])
    a, b = ClipDataset(vl, tree, cfg(), seed=3), ClipDataset(vl, tree, cfg(), seed=3)
    assert all(torch.equal(a[i]["video"], b[i]["video"]) for i in range(4))
    before = [a[i]["video"] for i in range(4)]
    a.set_epoch(1)
    assert a.epoch == 1
    assert any(not torch.equal(before[i], a[i]["video"]) for i in range(4))


def test_broken_videos_skipped_and_counted_with_workers(tree, broken_videos, tmp_path):
    broken = [str(broken_videos[k]) for k in ("missing", "empty", "truncated", "garbage")]
    good = [str(tree / f"v{i}.mp4") for i in range(4)]
    paths = [good[0], broken[0], broken[1], good[1], broken[2], good[2], broken[3], good[3]]
    ds = ClipDataset(video_list(paths), "/", cfg(), failure_log=tmp_path / "failures")
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    for epoch in range(2):
        ds.set_epoch(epoch)
        batches = list(loader)
        served = torch.cat([b["index"] for b in batches]).tolist()
        # every bad index is served by the next good one
        assert served == [0, 3, 3, 3, 5, 5, 7, 7]
        assert torch.cat([b["video"] for b in batches]).shape == (8, 3, 8, 32, 43)
    # the persistent workers saw epoch 1: their clips equal the main process's
    ds_main = ClipDataset(video_list(paths), "/", cfg(), failure_log=tmp_path / "other")
    ds_main.set_epoch(1)
    assert torch.equal(batches[0]["video"][0], ds_main[0]["video"])
    # per epoch: index 1 meets 2 bad files (1, 2) before 3, index 2 one, 4 one, 6 one = 5 failed loads
    assert ds.failures == 10
    assert sorted(ds.failed_paths) == sorted(broken)
    reasons = dict(collect_failures(loader))
    assert "not found" in reasons[broken[0]] and "empty" in reasons[broken[1]]


def test_all_bad_raises_clear_error(broken_videos):
    ds = ClipDataset(video_list([str(p) for p in broken_videos.values()]), "/", cfg())
    with pytest.raises(VsslError, match="could not be decoded"):
        ds[0]


def test_an_unreadable_test_video_is_dropped_never_replaced(tree, truncated_indexed_video, broken_videos):
    """In test mode a bad video's item is None and collate_kept leaves it out: the batch holds only the
    videos that decode, each with its own label and index (a substitute would be scored as another)."""
    from vssl.data.dataset import collate_kept

    paths = [str(truncated_indexed_video), str(tree / "v0.mp4"), str(broken_videos["garbage"]), str(tree / "v1.mp4")]
    vl = video_list(paths, labels=[0, 1, 2, 0])
    ds = ClipDataset(vl, "/", cfg(), train=False, test_clips=3)  # the last clip reaches frame 39
    assert ds[0] is None and ds[1]["index"] == 1
    (batch,) = DataLoader(ds, batch_size=4, collate_fn=collate_kept)
    assert batch["index"].tolist() == [1, 3] and batch["label"].tolist() == [1, 0]
    assert torch.equal(batch["video"][0], ds[1]["video"]) and batch["video"].shape == (2, 3, 3, 8, 32, 43)
    assert sorted(ds.failed_paths) == sorted([paths[0], paths[2]])
    only_bad = DataLoader(ClipDataset(video_list(paths[:1]), "/", cfg(), train=False), collate_fn=collate_kept)
    assert next(iter(only_bad)) is None  # a batch of dropped videos only


def _source_index(frame: torch.Tensor, source) -> int:
    """The source frame a decoded (C, H, W) frame shows: nearest by mean absolute difference."""
    src = torch.as_tensor(source).permute(0, 3, 1, 2).float()
    return int((src - frame.float()).abs().mean((1, 2, 3)).argmin())


def test_clips_come_from_the_annotated_frames_only(tmp_path, make_video):
    """A UCFRep record counts the cycles of frames start..end (1-based): train and test clips are drawn
    there, read through the adapter from a .mat written as UCFRep's are."""
    import scipy.io

    from conftest import moving_square_frames
    from vssl.data.datasets import ADAPTERS

    source = moving_square_frames(60, 32, 32)
    make_video("videos/HandstandPushups/v_HandStandPushups_g01_c01.mp4", frames=source, gop=4)
    (tmp_path / "annotations" / "val").mkdir(parents=True)
    offsets = [-1] * 24  # per-frame period labels (the counter's targets), not used here
    scipy.io.savemat(tmp_path / "annotations" / "val" / "v_HandStandPushups_g01_c01.mat", {"label": {
        "start_frame": 21, "end_frame": 44, "duration": 24, "temporal_bound": [21, 29, 37, 44],
        "offset_next_estimate": offsets, "offset_pre_estimate": offsets}})
    videos = ADAPTERS["ucfrep"](tmp_path, "val", root=tmp_path / "videos")
    assert videos.labels == [3.0] and videos.records[0].meta["frame_range"] == (20, 43)
    seen = set()
    for train, clips in ((True, 1), (False, 3)):
        for seed in range(4):
            ds = ClipDataset(videos, tmp_path / "videos", cfg(num_frames=6, stride=2), train=train, test_clips=clips,
                             seed=seed)
            video = ds[0]["video"].reshape(-1, 3, 6, 32, 32)
            seen |= {_source_index(video[v, :, t], source) for v in range(video.shape[0]) for t in range(6)}
    assert min(seen) == 20 and max(seen) == 43  # the test clips span the part exactly, nothing outside it
