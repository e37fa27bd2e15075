"""ClipDataset: item layout, labels, test clips, bad videos skipped and counted (workers too),
determinism under (seed, epoch), path resolution."""

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader

from vssl.config import DataConfig
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
    vl = video_list([f"v{i}.mp4" for i in range(4)])
    item = ClipDataset(vl, tree, cfg())[1]
    assert item["video"].shape == (3, 8, 32, 32) and item["video"].dtype == torch.uint8
    assert item["label"].dtype == torch.long and int(item["label"]) == 1 and item["index"] == 1
    two = ClipDataset(vl, tree, cfg(), num_clips=2)[0]["video"]
    assert two.shape == (2, 3, 8, 32, 32)
    test = ClipDataset(vl, tree, cfg(), train=False, test_clips=3)[0]["video"]
    assert test.shape == (3, 3, 8, 32, 32)
    # uniform test clips start at 0 and end at the last frame: first and last views differ
    assert not torch.equal(test[0], test[2])
    seg = ClipDataset(vl, tree, cfg(sampling="segment"), train=False, test_clips=2)[0]["video"]
    assert seg.shape == (2, 3, 8, 32, 32)
    fps = ClipDataset(vl, tree, cfg(num_frames=16, fps=16.0))[0]["video"]
    assert fps.shape == (3, 16, 32, 32)


def test_labels():
    assert encode_label(2, "classification", 3).dtype == torch.long
    multi = encode_label([0, 2], "multilabel", 4)
    assert multi.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert encode_label([], "multilabel", 2).tolist() == [0.0, 0.0]
    count = encode_label(5.0, "counting", 0)
    assert count.dtype == torch.float32 and float(count) == 5.0


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
        assert torch.cat([b["video"] for b in batches]).shape == (8, 3, 8, 32, 32)
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
    assert torch.equal(batch["video"][0], ds[1]["video"]) and batch["video"].shape == (2, 3, 3, 8, 32, 32)
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
    scipy.io.savemat(tmp_path / "annotations" / "val" / "v_HandStandPushups_g01_c01.mat", {"label": {
        "start_frame": 21, "end_frame": 44, "duration": 24, "temporal_bound": [21, 29, 37, 44]}})
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
