"""Issue 8.2: broken data. With 10 % of the videos zero-byte, truncated, random bytes, a non-video
renamed .mp4 or missing, pretraining, fine-tuning and `vssl severe` complete and list every broken
video in the run's summary, and `vssl data check` finds every one (and nothing else)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.reliability import broken_data_trials  # noqa: E402
from benchmarks.reliability_cases import BROKEN_KINDS  # noqa: E402


@pytest.mark.slow
def test_ten_percent_broken_videos_are_survived_counted_and_found(tmp_path):
    result = broken_data_trials(tmp_path, n_videos=50, log=lambda line: None)
    assert set(result["broken_kinds"]) == set(BROKEN_KINDS)
    rows = {name: (rc, broken, listed, wrong) for name, rc, broken, listed, wrong in result["rows"]}
    for name, (rc, broken, listed, wrong) in rows.items():
        assert rc == (1 if name.startswith("vssl data check") else 0), (name, rc)  # check exits 1 when it finds any
        assert broken == 5 and listed == broken and wrong == 0, (name, rows[name])


def test_still_images_renamed_mp4_are_not_videos(tmp_path):
    import numpy as np

    from benchmarks.reliability_cases import non_video_bytes
    from vssl.data.check import check_video

    for which, expected in enumerate(["still image (png_pipe)", "still image (jpeg_pipe)", "no video stream",
                                      "cannot open"]):
        path = tmp_path / f"{which}.mp4"
        path.write_bytes(non_video_bytes(np.random.default_rng(0), which))
        assert expected in (check_video(path) or "readable"), which
