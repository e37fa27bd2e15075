"""prepare_tree (re-encode: size, GOP, idempotence, failures) and check_videos (bad files found)."""

from types import SimpleNamespace

import av
import pytest

from vssl.data.check import check_video, check_videos
from vssl.data.prepare import even_size, prepare_tree
from vssl.data.video import VideoReader


def keyframe_positions(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = float(s.average_rate)
        return sorted(round(p.pts * s.time_base * rate) for p in c.demux(s) if p.is_keyframe and p.pts is not None)


def test_even_size():
    assert even_size(48, 64, 32) == (32, 42)
    assert even_size(64, 48, 31) == (40, 30)
    assert even_size(240, 320, 128) == (128, 170)


def test_prepare_tree_resizes_sets_gop_and_resumes(make_video, tmp_path):
    make_video("src/a/x.mp4", num_frames=40, height=48, width=64, gop=250)
    make_video("src/b.mkv", num_frames=20, height=64, width=48, gop=250)
    (tmp_path / "src" / "bad.avi").write_bytes(b"not a video" * 50)
    (tmp_path / "src" / "notes.txt").write_text("ignored")
    report = prepare_tree(tmp_path / "src", tmp_path / "dst", short_side=32, gop=8, workers=1, progress=False)
    assert report.converted == 2 and report.skipped == 0
    assert [p.endswith("bad.avi") for p, _ in report.failed] == [True]
    out = tmp_path / "dst" / "a" / "x.mp4"
    with VideoReader(out) as r:
        assert (r.num_frames, r.height, r.width) == (40, 32, 42) and r.fps == pytest.approx(25.0)
        assert r.get_frames([39]).shape == (1, 32, 42, 3)
    keys = keyframe_positions(out)
    assert keys[0] == 0 and max(b - a for a, b in zip(keys, keys[1:] + [40])) <= 8
    with VideoReader(tmp_path / "dst" / "b.mp4") as r:
        assert (r.height, r.width) == (42, 32)
    assert not list((tmp_path / "dst").rglob(".*partial*"))
    again = prepare_tree(tmp_path / "src", tmp_path / "dst", short_side=32, gop=8, workers=2, progress=False)
    assert again.converted == 0 and again.skipped == 2 and len(again.failed) == 1


def test_check_videos_finds_broken_ones(make_video, broken_videos, tmp_path):
    good = make_video("ok/good.mp4", num_frames=16)
    assert check_video(good) is None
    listed = [str(good)] + [str(p) for p in broken_videos.values()]
    videos = SimpleNamespace(records=[SimpleNamespace(path=p, label=0) for p in listed])
    bad = check_videos(videos, "/", workers=2, progress=False)
    assert [p for p, _ in bad] == listed[1:]
    reasons = dict(bad)
    assert "not found" in reasons[str(broken_videos["missing"])]
    assert "empty" in reasons[str(broken_videos["empty"])]


def test_check_video_reports_truncation(truncated_indexed_video):
    assert "truncated" in check_video(truncated_indexed_video)
