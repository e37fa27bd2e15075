"""VideoReader: frame-accurate random access, keyframe seeks, reduced resolution, metadata, errors."""

import importlib.util

import numpy as np
import pytest

from conftest import moving_square_frames, usable_backends
from vssl.data.video import VideoDecodeError, VideoReader, scaled_size
from vssl.errors import VsslError


def mae(a, b):
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_metadata(make_video):
    path = make_video(num_frames=40, height=48, width=64, fps=20.0)
    with VideoReader(path) as r:
        assert (r.num_frames, r.height, r.width) == (40, 48, 64)
        assert r.fps == pytest.approx(20.0) and r.duration == pytest.approx(2.0, abs=0.06)


def test_get_frames_is_frame_accurate_in_requested_order(make_video):
    src = moving_square_frames(40, 48, 64)
    path = make_video(frames=src, gop=8)
    wanted = [30, 5, 5, 39, 17, 0, 22]
    with VideoReader(path) as r:
        got = r.get_frames(wanted).numpy()
    assert got.shape == (7, 48, 64, 3) and got.dtype == np.uint8
    for frame, i in zip(got, wanted):
        own = mae(frame, src[i])
        neighbours = [mae(frame, src[j]) for j in (i - 1, i + 1) if 0 <= j < 40]
        assert own < 3.0 and own < min(neighbours) - 1.0, (i, own, neighbours)


def keyframes(path):
    import av

    with av.open(str(path)) as c:
        return [i for i, p in enumerate(c.demux(c.streams.video[0])) if p.is_keyframe]


def test_seek_decodes_only_the_needed_range(make_video):
    path = make_video(num_frames=40, gop=8)
    keys = keyframes(path)  # x264 may add scene-cut keyframes, so read them from the file
    assert len(keys) >= 4

    def cost(first, last):  # frames from the keyframe at or before `first` to `last`
        return last - max(k for k in keys if k <= first) + 1

    with VideoReader(path) as r:
        r.get_frames([26, 27, 28])
        assert r.last_decoded == cost(26, 28) < 28
        r.get_frames([3, 36])  # far apart: two seeks instead of decoding the gap
        assert r.last_decoded == cost(3, 3) + cost(36, 36) < 30
        r.get_frames(list(range(40)))
        assert r.last_decoded == 40


def test_indices_past_the_end_are_clamped(make_video):
    path = make_video(num_frames=20)
    with VideoReader(path) as r:
        last, past = r.get_frames([19, 25]).numpy()
    assert np.array_equal(last, past)


def test_reduced_resolution_keeps_aspect(make_video):
    src = moving_square_frames(16, 48, 64)
    path = make_video(frames=src)
    with VideoReader(path, short_side=24) as r:
        assert (r.height, r.width) == (24, 32)
        small = r.get_frames([8]).numpy()[0]
    assert small.shape == (24, 32, 3)
    assert mae(small, src[8][::2, ::2]) < 12.0  # a downscaled copy of the same frame
    assert scaled_size(48, 64, 0) == (48, 64) and scaled_size(64, 48, 24) == (32, 24)


def test_threads_and_mkv_without_frame_count(make_video):
    path = make_video("clip.mkv", num_frames=24)  # Matroska stores no frame count: demux count
    with VideoReader(path, threads=2) as r:
        assert r.num_frames == 24
        assert r.get_frames([23]).shape == (1, 48, 64, 3)


def test_broken_inputs_raise_video_decode_error(broken_videos):
    for name, path in broken_videos.items():
        with pytest.raises(VideoDecodeError) as info:
            with VideoReader(path) as r:
                r.get_frames(list(range(r.num_frames)))
        assert info.value.path == str(path) and isinstance(info.value, VsslError), name


def test_unknown_or_missing_backends(make_video):
    path = make_video(num_frames=16)
    with pytest.raises(ValueError, match="unknown video backend"):
        VideoReader(path, backend="opencv")
    for backend in ("torchcodec", "decord"):
        if importlib.util.find_spec(backend) is None:
            with pytest.raises(ImportError, match=backend):
                VideoReader(path, backend=backend)


@pytest.mark.parametrize("backend", usable_backends())
def test_usable_backends_agree_with_pyav(make_video, backend):
    path = make_video(num_frames=24)
    with VideoReader(path) as ref, VideoReader(path, backend=backend, short_side=0) as other:
        assert other.num_frames == ref.num_frames
        assert mae(other.get_frames([3, 17]).numpy(), ref.get_frames([3, 17]).numpy()) < 2.0


def test_truncated_file_with_index_raises_past_its_end(truncated_indexed_video):
    with VideoReader(truncated_indexed_video) as r:
        assert r.num_frames == 40  # the index still claims every frame
        assert r.get_frames([0, 1]).shape == (2, 48, 64, 3)
        with pytest.raises(VideoDecodeError, match="truncated"):
            r.get_frames([0, 39])
