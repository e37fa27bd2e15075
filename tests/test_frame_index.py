"""Frame indices: counted from packets, cached per file (memory and disk), rebuilt when the file
changes; bad input is refused with one line naming the file."""

from __future__ import annotations

import os

import numpy as np
import pytest
from realworld import write_formats

from vssl.data import frame_index
from vssl.data.check import check_video
from vssl.data.video import VideoDecodeError, VideoReader


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_formats(tmp_path_factory.mktemp("index-formats"), ["avi_mpeg4_bframes", "mp4_vfr_dropped"])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("VSSL_INDEX_CACHE", str(folder))
    monkeypatch.setattr(frame_index, "_MEMORY", {})
    return folder


def test_timestamp_runs_round_trip():
    rng = np.random.default_rng(0)
    for values in ([], [5], [0, 512, 1024, 1536], np.cumsum(rng.integers(1, 4, 200)) * 512 - 3000):
        values = np.asarray(values, np.int64)
        runs = frame_index._runs(values)
        assert np.array_equal(frame_index._unruns(runs), values)
    assert frame_index._runs(np.arange(0, 250 * 512, 512)) == [[0, 512, 250]]  # constant rate: one run


def test_index_is_cached_on_disk_and_rebuilt_when_the_file_changes(videos, cache, monkeypatch):
    path = videos["mp4_vfr_dropped"]
    with VideoReader(path) as r:
        labels, n = r._impl.index.labels.copy(), r.num_frames
    files = list(cache.rglob("*.json"))
    assert len(files) == 1

    def no_scan(*args):
        raise AssertionError("packets scanned again")

    monkeypatch.setattr(frame_index, "_MEMORY", {})  # a new process: only the disk cache is left
    monkeypatch.setattr("vssl.data.pyav_reader.scan_packets", no_scan)
    with VideoReader(path) as r:
        assert r.num_frames == n == 40 and np.array_equal(r._impl.index.labels, labels)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))  # the file changed
    with pytest.raises(AssertionError, match="scanned again"):
        VideoReader(path)


def test_damaged_cache_entries_are_rebuilt_and_off_writes_none(videos, cache, monkeypatch):
    path = videos["avi_mpeg4_bframes"]
    VideoReader(path).close()
    (entry,) = cache.rglob("*.json")
    entry.write_text("{not json")
    monkeypatch.setattr(frame_index, "_MEMORY", {})
    with VideoReader(path) as r:
        assert r.num_frames == 50
    monkeypatch.setenv("VSSL_INDEX_CACHE", "off")
    monkeypatch.setattr(frame_index, "_MEMORY", {})
    entry.unlink()
    VideoReader(path).close()
    assert not list(cache.rglob("*.json"))


def bad_inputs(folder, good_avi, good_mp4):
    """{kind: path} of the bad inputs the issue names, built from good files."""
    from realworld import ffmpeg

    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", "audio_only.mp4", cwd=folder)
    (folder / "zero.mp4").write_bytes(b"")
    data = good_avi.read_bytes()
    (folder / "truncated.avi").write_bytes(data[: len(data) * 6 // 10])  # AVI's index is written last
    (folder / "unknown_codec.avi").write_bytes(data.replace(b"XVID", b"QQQQ").replace(b"FMP4", b"QQQQ"))
    mp4 = good_mp4.read_bytes()
    folder.joinpath("garbage.mkv").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    folder.joinpath("cut.mp4").write_bytes(mp4[: len(mp4) // 2])
    return {"audio_only": (folder / "audio_only.mp4", "no video stream"),
            "zero_byte": (folder / "zero.mp4", "empty file"),
            "truncated_avi": (folder / "truncated.avi", "truncated"),
            "unknown_codec": (folder / "unknown_codec.avi", "unknown video codec"),
            "garbage": (folder / "garbage.mkv", "cannot open"),
            "cut_mp4": (folder / "cut.mp4", "cannot open")}


def test_bad_inputs_are_refused_in_one_line(videos, tmp_path):
    for kind, (path, reason) in bad_inputs(tmp_path, videos["avi_mpeg4_bframes"], videos["mp4_vfr_dropped"]).items():
        with pytest.raises(VideoDecodeError) as info:
            with VideoReader(path) as r:
                r.get_frames(range(r.num_frames))
        assert info.value.path == str(path) and reason in info.value.reason, (kind, info.value.reason)
        line = check_video(path)
        assert reason in line and "\n" not in line, kind
