"""ResultsStore: keying, skip-on-rerun, WAL durability when the writer is killed."""

import math
import signal
import subprocess
import sys
import textwrap

import pytest

from vssl.severe.results import Result, ResultKey, ResultsStore, checkpoint_sha256


def _result(model="m", ckpt="none", exp="ucf101_1k", protocol="quick", seed=1, value=50.0):
    return Result(ResultKey(model, ckpt, exp, protocol, seed), metric="top1", primary=value,
                  metrics={"top1": value, "top5": 90.0}, timings={"train_s": 1.5}, backbone="r2plus1d_tiny")


def test_keying_distinguishes_every_field(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    base = _result()
    store.put(base)
    variants = [_result(model="other"), _result(ckpt="abc"), _result(exp="gym99"), _result(protocol="linear"),
                _result(seed=2)]
    for v in variants:
        assert not store.has(v.key)
        store.put(v)
        assert store.has(v.key)
    assert len(store) == 6
    # same key replaces, never duplicates
    store.put(_result(value=60.0))
    assert len(store) == 6
    got = store.get(base.key)
    assert got.primary == 60.0 and got.metrics["top5"] == 90.0 and got.timings["train_s"] == 1.5
    assert got.version and got.created and got.backbone == "r2plus1d_tiny"
    found = store.results(model="m", checkpoint="none", protocol="quick", experiment="ucf101_1k")
    assert [r.key.seed for r in found] == [1, 2]
    with pytest.raises(ValueError):
        store.results(nope=1)
    store.close()


def test_reopen_and_nan_primary(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as s:
        s.put(_result(value=float("nan")))
    with ResultsStore(path) as s:
        (r,) = s.results()
        assert math.isnan(r.primary)
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_checkpoint_sha256(tmp_path):
    p = tmp_path / "w.pt"
    p.write_bytes(b"abc")
    assert checkpoint_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert checkpoint_sha256(None) == "none"


def test_result_survives_killed_writer(tmp_path):
    db = tmp_path / "results.sqlite"
    script = textwrap.dedent(f"""
        import sys, time
        from vssl.severe.results import Result, ResultKey, ResultsStore
        s = ResultsStore({str(db)!r})
        s.put(Result(ResultKey("m", "none", "gym99", "quick", 1), metric="top1", primary=42.0))
        print("committed", flush=True)
        s._conn.execute("BEGIN")  # a second result in flight when the process dies
        s._conn.execute("INSERT INTO results (model, checkpoint, experiment, protocol, seed, metric, metrics,"
                        " version, created) VALUES ('m','none','ssv2','quick',1,'top1','{{}}','x','y')")
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "committed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with ResultsStore(db) as s:
        keys = [(r.key.experiment, r.primary) for r in s.results()]
    assert keys == [("gym99", 42.0)]  # the finished result survived, the uncommitted one did not
