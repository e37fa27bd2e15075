"""Clip samplers: spans, padding rules, uniform test clips, TSN segments, determinism."""

import numpy as np
import pytest

from vssl.data.sampling import (clip_span, pad_indices, random_clip, segment_indices, uniform_clips)


def test_pad_cycle_and_clamp():
    idx = np.arange(0, 8)
    assert pad_indices(idx, 3, "cycle").tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert pad_indices(idx, 3, "clamp").tolist() == [0, 1, 2, 2, 2, 2, 2, 2]
    assert pad_indices(idx, 100, "cycle").tolist() == idx.tolist()
    with pytest.raises(ValueError):
        pad_indices(idx, 3, "mirror")


def test_random_stride_clip_span_and_range():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        idx = random_clip(100, 16, 4, rng)
        assert len(idx) == 16 and idx.min() >= 0 and idx.max() < 100
        assert np.all(np.diff(idx) == 4)
        assert idx[-1] - idx[0] + 1 == clip_span(16, 4) == 61
        starts.add(int(idx[0]))
    assert min(starts) <= 3 and max(starts) >= 36  # start uniform over [0, 100 - 61]


def test_random_clip_jitter_stays_within_stride():
    offsets = []
    for seed in range(50):  # same seed -> same start, so the difference is the jitter alone
        plain = random_clip(200, 16, 3, np.random.default_rng(seed))
        jittered = random_clip(200, 16, 3, np.random.default_rng(seed), jitter=True)
        offsets.append(jittered - plain)
        assert jittered.max() < 200
    offsets = np.concatenate(offsets)
    assert offsets.min() == 0 and offsets.max() == 2  # randint(0, stride - 1), per index


def test_short_video_padding_modes():
    rng = np.random.default_rng(0)
    cyc = random_clip(10, 16, 1, rng, pad="cycle")
    assert cyc.tolist() == list(range(10)) + list(range(6))
    clamp = random_clip(10, 16, 1, rng, pad="clamp")
    assert clamp.tolist() == list(range(10)) + [9] * 6


def test_videomae_hold_repeats_the_last_frame_reached():
    """VideoMAE's loader (1-based ``offset``): frame = offset - 1, and offset advances by the stride only
    while offset + stride < num_frames; short videos start at 0, and a clip spans clip_len * stride."""
    def videomae(n, clip_len, stride, start):  # the reference's loop, derived by hand
        offset, out = start + 1, []
        for _ in range(clip_len):
            out.append(offset - 1)
            if offset + stride < n:
                offset += stride
        return out

    rng = np.random.default_rng(0)
    assert random_clip(10, 16, 4, rng, pad="hold").tolist() == videomae(10, 16, 4, 0) == [0, 4, 8] + [8] * 13
    assert random_clip(9, 16, 4, rng, pad="hold").tolist() == videomae(9, 16, 4, 0) == [0] + [4] * 15  # 8 unused
    assert random_clip(1, 4, 2, rng, pad="hold").tolist() == [0, 0, 0, 0]
    for n, stride in ((64, 4), (70, 4), (40, 1), (100, 2)):
        for seed in range(20):
            clip = random_clip(n, 16, stride, np.random.default_rng(seed), pad="hold")
            start = int(clip[0])
            assert 0 <= start <= max(n - 16 * stride, 0)  # VideoMAE's span: 16 * stride
            assert clip.tolist() == videomae(n, 16, stride, start)
    assert pad_indices([5, 6, 7, 8, 9], 9, "hold").tolist() == [5, 6, 7, 7, 7]


def test_tubelet_contrast_clamp_with_jitter():
    """RandomFrameSampler: index i = min(start + i * stride + j_i, n - 1), start 0 when the clip is longer."""
    for seed in range(30):
        clip = random_clip(20, 16, 3, np.random.default_rng(seed), jitter=True, pad="clamp")
        jit = clip - 3 * np.arange(16)
        assert (clip[clip < 19] - 3 * np.arange(16)[clip < 19] >= 0).all() and (jit[clip < 19] <= 2).all()
        assert clip.max() <= 19 and (clip[np.arange(16) * 3 >= 19] == 19).all()


def test_fps_clip_severe_32_at_16fps():
    rng = np.random.default_rng(0)
    # 30 fps source, 10 s: 32 frames at 16 fps span 2 s = 60 source frames, skipping some frames.
    idx = random_clip(300, 32, fps=30.0, target_fps=16.0, rng=rng)
    assert len(idx) == 32 and idx.max() < 300
    assert 58 <= idx[-1] - idx[0] <= 60 and set(np.diff(idx)) <= {1, 2}
    # 8 fps source: frames are duplicated to reach 16 fps.
    idx = random_clip(80, 32, fps=8.0, target_fps=16.0, rng=rng)
    assert set(np.diff(idx)) <= {0, 1} and (np.diff(idx) == 0).sum() == 16
    # 1 s video at 25 fps: 25 frames -> 16 distinct times, then cyclic repetition (SEVERE pad_missing).
    idx = random_clip(25, 32, fps=25.0, target_fps=16.0, rng=rng)
    assert idx[:16].tolist() == idx[16:].tolist() and idx[0] == 0


def test_uniform_clips_are_evenly_spaced():
    clips = uniform_clips(100, 8, 5, stride=2)
    assert clips.shape == (5, 8)
    assert clips[:, 0].tolist() == np.linspace(0, 100 - 15, 5).astype(int).tolist()
    assert clips[-1, -1] == 99
    short = uniform_clips(5, 8, 3)
    assert (short == short[0]).all() and short[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    fps_clips = uniform_clips(250, 32, 10, fps=25.0, target_fps=16.0)  # 160 resampled frames
    assert fps_clips.shape == (10, 32) and fps_clips[0, 0] == 0 and fps_clips.max() <= 249
    assert fps_clips[-1, -1] >= 245


def test_segments_train_and_test():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = segment_indices(64, 8, rng, train=True)
        assert (idx // 8 == np.arange(8)).all()  # one frame inside each 8-frame segment
    centres = segment_indices(64, 8, train=False)
    assert centres.shape == (1, 8) and centres[0].tolist() == [4, 12, 20, 28, 36, 44, 52, 60]
    two = segment_indices(64, 8, train=False, num_views=2)
    assert two[0].tolist() == [2, 10, 18, 26, 34, 42, 50, 58] and (two[1] - two[0] == 4).all()
    short = segment_indices(4, 8, rng, train=True)
    assert np.all(np.diff(short) >= 0) and short.max() <= 3


def test_same_seed_same_clips():
    a = [random_clip(500, 16, 4, np.random.default_rng(7), jitter=True) for _ in range(2)]
    assert (a[0] == a[1]).all()
