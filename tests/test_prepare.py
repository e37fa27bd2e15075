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
    assert [(p.endswith("notes.txt"), "not a video" in r) for p, r in report.ignored] == [(True, True)]
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


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    from realworld import write_formats

    names = ["mp4_vfr_dropped", "avi_null_frames", "mp4_rotated_90", "mp4_full_range", "mp4_sar_4_3", "mp4_bt709",
             "mpeg_ps", "mp4_h264"]
    return write_formats(tmp_path_factory.mktemp("prepare-sources"), names)


def prepared(sources, names, tmp_path, **kw):
    src = tmp_path / "src"
    src.mkdir()
    for name in names:
        (src / f"{name}{sources[name].suffix}").write_bytes(sources[name].read_bytes())
    report = prepare_tree(src, tmp_path / "dst", workers=1, progress=False, **kw)
    assert report.failed == [] and report.converted == len(names)
    return {name: tmp_path / "dst" / f"{name}.mp4" for name in names}


def test_prepare_resamples_vfr_and_null_frames_to_a_constant_rate(sources, tmp_path):
    """40 displayed frames over 2 s at a 25 fps base rate: 50 frames out, a dropped frame's slot
    showing the frame before it, as a player holds it."""
    from realworld import frame_number

    out = prepared(sources, ["mp4_vfr_dropped", "avi_null_frames"], tmp_path, short_side=48)
    expected = [t - 1 if t % 5 == 2 else t for t in range(50)]
    for name, path in out.items():
        with VideoReader(path) as r:
            assert (r.num_frames, r.fps) == (50, pytest.approx(25.0)), name
            assert [frame_number(f) for f in r.get_frames(range(50)).numpy()] == expected, name


def test_prepare_bakes_rotation_and_aspect_and_converts_range(sources, tmp_path):
    import numpy as np
    from realworld import displayed, source_frames

    out = prepared(sources, ["mp4_rotated_90", "mp4_full_range", "mp4_sar_4_3", "mp4_bt709", "mp4_h264"], tmp_path,
                   short_side=48)
    with VideoReader(out["mp4_rotated_90"]) as r:  # upright pixels, no display matrix left
        assert r._impl.index.rotation == 0 and (r.height, r.width) == (64, 48)
        err = np.abs(r.get_frames(range(50)).numpy().astype(np.float32) - displayed(sources["mp4_rotated_90"], 90))
        assert err.mean() < 3.0
    with VideoReader(out["mp4_sar_4_3"]) as r:
        assert (r.height, r.width) == (48, 84) and r._impl.index.sar == 1.0
    src = source_frames().astype(np.float32)
    for name in ("mp4_full_range", "mp4_bt709", "mp4_h264"):  # colours as the source's (range x1.16 off before)
        with VideoReader(out[name]) as r:
            got = r.get_frames(range(50)).numpy().astype(np.float32)
        assert np.abs(got - src).mean() < 3.0 and got.std() / src.std() == pytest.approx(1.0, abs=0.03), name
    with av.open(str(out["mp4_bt709"])) as c:
        frame = next(c.decode(video=0))
        assert (int(frame.colorspace), frame.color_range) == (1, 1)  # tagged BT.709, limited range


def test_prepare_accepts_every_container_ffmpeg_reads(sources, tmp_path):
    from realworld import ffmpeg

    src = tmp_path / "src"
    src.mkdir()
    h264, ps = sources["mp4_h264"], sources["mpeg_ps"]
    for ext in (".mp4", ".mov", ".m4v", ".3gp", ".mkv", ".ts", ".flv"):
        ffmpeg("-i", str(h264), "-c", "copy", f"a{ext}", cwd=src)
    ffmpeg("-i", str(h264), "-c:v", "wmv2", "-f", "asf", "a.wmv", cwd=src)
    ffmpeg("-i", str(h264), "-c:v", "libvpx", "-b:v", "300k", "a.webm", cwd=src)
    ffmpeg("-i", str(h264), "-c:v", "mpeg4", "-vtag", "XVID", "a.avi", cwd=src)
    (src / "a.mpg").write_bytes(ps.read_bytes())
    (src / "b.mpeg").write_bytes(ps.read_bytes())
    for i, path in enumerate(sorted(src.iterdir())):  # one output name each
        path.rename(src / f"v{i}{path.suffix}")
    (src / "labels.csv").write_text("x")
    report = prepare_tree(src, tmp_path / "dst", short_side=32, workers=2, progress=False)
    assert report.failed == [] and report.converted == 12
    assert report.ignored == [(str(src / "labels.csv"), "not a video by its name (.csv)")]
    for out in (tmp_path / "dst").iterdir():
        with VideoReader(out) as r:
            assert r.num_frames == 50 and (r.height, r.width) == (32, 42), out.name


def test_prepared_gop_is_fixed_whatever_the_source_frame_types(tmp_path):
    """A source with keyframes every 12 frames still gets one every 16, and three unreferenced
    B-frames after each I/P frame (FFmpeg used to pass the source's frame types on to x264)."""
    from realworld import write_formats

    from vssl.data.prepare import reencode

    xvid = write_formats(tmp_path / "src", ["avi_mpeg4_bframes"])["avi_mpeg4_bframes"]
    target = tmp_path / "out.mp4"
    reencode(xvid, target, short_side=32, gop=16)
    from av.video.frame import PictureType

    with av.open(str(target)) as c:
        types = "".join(PictureType(f.pict_type).name for f in c.decode(video=0))
    assert [i for i, t in enumerate(types) if t == "I"] == [0, 16, 32, 48]
    assert types[:16] == "IBBBPBBBPBBBPBBP"  # closed GOP: the B-frames before an I end on a P
