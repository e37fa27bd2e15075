"""MPEG-1/2 files read by picture headers: every frame placed before decoding, B-pictures of
unwanted frames skipped, and still frame i of a sequential decode, bit for bit."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
from realworld import FORMATS, ffmpeg, source_frames

from vssl.data import mpeg12
from vssl.data.video import VideoReader

RAW = FORMATS["mpeg_ps"][1][:FORMATS["mpeg_ps"][1].index("-c:v")]  # the source, as realworld reads it
FILES = {  # name: ffmpeg output arguments; 50 frames of 64x48
    "mpeg2_open_gop": ["-c:v", "mpeg2video", "-bf", "2", "-g", "12", "-f", "mpeg"],
    "mpeg2_closed_gop_3b": ["-c:v", "mpeg2video", "-bf", "3", "-g", "18", "-flags", "+cgop",
                            "-sc_threshold", "1000000000", "-f", "mpeg"],
    "mpeg1_gop15": ["-c:v", "mpeg1video", "-bf", "2", "-g", "15", "-f", "mpeg"],
    "mpeg2_elementary": ["-c:v", "mpeg2video", "-bf", "2", "-g", "10", "-f", "mpeg2video"],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mpeg")
    source_frames().tofile(folder / "source.rgb")
    paths = {}
    for name, args in FILES.items():
        paths[name] = folder / f"{name}.{'m2v' if args[-1] == 'mpeg2video' else 'mpg'}"
        ffmpeg(*RAW, *args, paths[name].name, cwd=folder)
    return paths


def sequential(path, short_side: int) -> np.ndarray:
    """Every frame of a plain sequential PyAV decode, converted as vssl converts (planar RGB when
    resizing)."""
    import av

    with VideoReader(path, short_side=short_side) as r:
        h, w = r.height, r.width
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="gbrp" if (f.height, f.width) != (h, w) else "rgb24", width=w, height=h)
                         for f in c.decode(c.streams.video[0])])


def requests(n: int) -> list[list[int]]:
    """Every frame alone (B-pictures, GOP boundaries, open GOPs' leading B-pictures, the end), every
    pair of neighbours, clips of 16 at stride 4 from every start, and random unsorted repeats."""
    rng = np.random.default_rng(0)
    return ([[i] for i in range(n)] + [[i + 1, i] for i in range(n - 1)]
            + [list(range(i, i + 61, 4)) for i in range(0, n, 3)]
            + [rng.integers(0, n, 10).tolist() + [n - 1, 0] for _ in range(20)])


@pytest.mark.parametrize("threads", [0, 2])
@pytest.mark.parametrize("short_side", [0, 24])
@pytest.mark.parametrize("name", list(FILES))
def test_frames_placed_by_picture_headers_match_a_sequential_decode(files, name, short_side, threads):
    ref = sequential(files[name], short_side)
    with VideoReader(files[name], short_side=short_side, threads=threads) as r:
        assert r._impl.index.mode == "decoded" and r._impl.index.gops, "picture headers not used"
        assert r.num_frames == len(ref)
        for wanted in requests(r.num_frames):
            clamped = [min(i, len(ref) - 1) for i in wanted]
            assert np.array_equal(r.get_frames(wanted).numpy(), ref[clamped]), wanted
        assert r._impl.index.gops, "decoding contradicted the GOP bases"


def test_picture_headers_give_the_types_the_decoder_reports(files):
    import av

    for path in files.values():
        headers, stamps, kinds = [], [], {}
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            for frame in mpeg12.numbered_decode(c, stream, headers, stamps):
                kinds[frame.pts] = int(frame.pict_type)
        assert kinds and all(headers[packet][2] == kind for packet, kind in kinds.items()), path.name


def test_b_pictures_of_unwanted_frames_are_not_decoded(files):
    """The same clips read by counting from a keyframe (no GOP bases) decode every picture."""
    path = files["mpeg2_open_gop"]
    ref = sequential(path, 0)
    clips = [list(range(i, i + 31, 4)) for i in range(0, 19, 3)]
    decoded = {}
    for by_headers in (True, False):
        with VideoReader(path) as r:
            if not by_headers:
                r._impl._use(dataclasses.replace(r._impl.index, gops={}))
            total = 0
            for clip in clips:
                assert np.array_equal(r.get_frames(clip).numpy(), ref[clip])
                total += r._impl.last_decoded
            decoded[by_headers] = total
    assert decoded[True] < 0.75 * decoded[False], decoded


def test_repeated_gop_time_codes_leave_frames_counted(files, tmp_path):
    """Two MPEG-PS files joined byte for byte (`cat a.mpg b.mpg`) repeat their GOP time codes, which
    then cannot place a packet: the index has no GOP bases and frames are counted."""
    joined = tmp_path / "joined.mpg"
    joined.write_bytes(files["mpeg2_open_gop"].read_bytes() * 2)
    ref = sequential(joined, 0)
    with VideoReader(joined) as r:
        assert r._impl.index.gops == {} and r.num_frames == len(ref) == 100
        for wanted in ([49, 50, 51], [0, 99, 62, 13]):
            assert np.array_equal(r.get_frames(wanted).numpy(), ref[wanted])


def test_contradicted_gop_bases_fall_back_to_counting(files, tmp_path, caplog):
    """GOP bases that decoding contradicts (here: every GOP placed at frame 0) are dropped."""
    path = tmp_path / "ps.mpg"
    path.write_bytes(files["mpeg2_open_gop"].read_bytes())
    ref = sequential(path, 0)
    with caplog.at_level(logging.INFO, logger="vssl.data"), VideoReader(path) as r:
        index = r._impl.index
        r._impl._use(dataclasses.replace(index, gops={code: 0 for code in index.gops}))
        wanted = [10, 30, 11, 25, 3]
        assert np.array_equal(r.get_frames(wanted).numpy(), ref[wanted])
        assert r._impl.index.mode == "decoded" and not r._impl.index.gops
    assert "frame index rebuilt (decoded by GOP bases -> decoded)" in caplog.text


def test_seeks_into_the_middle_of_a_gop_serve_no_frame_decoded_from_missing_references(tmp_path):
    """Every seek aimed six frames past its keyframe, on a decoder that shows the pictures it decodes
    without their references (FFmpeg's show_all): those up to the next keyframe, and that GOP's
    leading B-pictures, are never served."""
    import av

    path = tmp_path / "large.mpg"  # frames larger than a PS pack, so that a seek can land mid-GOP
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "mpeg2video", "-bf", "2",
           "-g", "12", "-q:v", "2", "-f", "mpeg", path.name, cwd=tmp_path)
    ref = sequential(path, 0)
    with VideoReader(path) as r:
        index = r._impl.index
        assert index.gops
        late = index.labels[np.minimum(index.key_frames + 6, r.num_frames - 1)]
        r._impl._use(dataclasses.replace(index, key_targets=np.where(index.key_frames > 0, late, 0)))
        for i in range(r.num_frames):
            r._impl.stream.codec_context.flags2 |= av.codec.context.Flags2.show_all  # rewinds reset it
            assert np.array_equal(r.get_frames([i]).numpy(), ref[[i]]), i
