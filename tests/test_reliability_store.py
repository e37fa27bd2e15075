"""Issue 8.5: the results store. `vssl severe` killed mid-way and rerun completes with no duplicate
and no lost result; processes writing to one store at once lose nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import benchmarks.reliability as R  # noqa: E402


def test_concurrent_writers_lose_nothing(tmp_path):
    result = R.concurrent_writers(tmp_path, writers=3, puts=300, log=lambda line: None)
    assert result["rcs"] == [0, 0, 0]
    assert result["rows"] == result["expected_rows"] == 4 * 300  # 3 x 300 own keys + 300 shared keys, once each
    assert result["own_ok"] and result["shared_ok"]


@pytest.mark.slow
def test_killed_severe_reruns_to_a_complete_store(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "FORK", True)  # the victim is forked from this process: no second torch import
    (trial,) = R.severe_kill_trials(tmp_path, kills=1, seed=2, rerun_in_process=True, log=lambda line: None)["trials"]
    assert trial["killed"] and trial["rerun_rc"] == 0, trial
    assert trial["rows"] == trial["distinct"] == 4  # 2 experiments x 2 seeds, each once
    assert trial["kept"] and trial["skipped"] == trial["stored_before"]  # nothing finished was redone or lost
