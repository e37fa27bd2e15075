"""SQLite store of SEVERE results: one row per (model, checkpoint, experiment, protocol, seed).

Layout of ``<out>/results.sqlite`` (table ``results``):

=============  ======================================================================
model          row name in the report (``--name``; default backbone[+checkpoint stem])
checkpoint     sha256 of the checkpoint file, or ``"none"`` (random init)
experiment     experiment name (``ssv2`` ... ``charades`` or the synthetic names)
protocol       ``paper`` | ``quick`` | ``linear`` | ``knn``
seed           integer seed
backbone       backbone builder name
metric         name of the primary metric (``top1``, ``mean_class``, ``map``, ``mae``)
primary        value of the primary metric (percent, or MAE fraction for counting)
metrics        JSON object with every metric the evaluation computed
timings        JSON object (``train_s``, ``eval_s``, ``features_s`` ...)
extra          JSON object (checkpoint path, device, config, failures ...)
version        vssl version that produced the row
created        UTC ISO timestamp
=============  ======================================================================

The database runs in WAL mode and each ``put`` is its own transaction, so a killed run loses no
finished result and a rerun skips them (``has``). Several processes may write to one store at once:
each ``put`` waits (up to 60 s) for the write lock, and the key makes a result that two of them
computed one row.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from vssl import __version__

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    model TEXT NOT NULL, checkpoint TEXT NOT NULL, experiment TEXT NOT NULL, protocol TEXT NOT NULL,
    seed INTEGER NOT NULL, backbone TEXT NOT NULL DEFAULT '', metric TEXT NOT NULL, primary_value REAL,
    metrics TEXT NOT NULL, timings TEXT NOT NULL DEFAULT '{}', extra TEXT NOT NULL DEFAULT '{}',
    version TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (model, checkpoint, experiment, protocol, seed)
)
"""


def checkpoint_sha256(path: str | Path | None) -> str:
    """sha256 hex digest of a checkpoint file, or ``"none"`` when there is no checkpoint."""
    if not path:
        return "none"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ResultKey:
    model: str
    checkpoint: str  # sha256 or "none"
    experiment: str
    protocol: str
    seed: int


@dataclass
class Result:
    key: ResultKey
    metric: str
    primary: float
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    backbone: str = ""
    extra: dict = field(default_factory=dict)
    version: str = __version__
    created: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("key"))
        return d


class ResultsStore:
    """``ResultsStore(path)``: ``put(result)``, ``has(key)``, ``get(key)``, ``results(**filters)``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode; transactions are explicit in `put`
        self._conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(SCHEMA)

    # -- writing ------------------------------------------------------------------------------------
    def put(self, result: Result) -> None:
        """Insert or replace one result in its own transaction (durable once this returns)."""
        k = result.key
        created = result.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._conn:  # BEGIN ... COMMIT
            # IMMEDIATE takes the write lock up front (waiting up to `timeout` for another writer), so a
            # second process writing to the same store queues instead of failing with "database is locked"
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (k.model, k.checkpoint, k.experiment, k.protocol, int(k.seed), result.backbone,
                 result.metric, _finite(result.primary), json.dumps(result.metrics, default=float),
                 json.dumps(result.timings, default=float), json.dumps(result.extra, default=str),
                 result.version, created),
            )

    # -- reading ------------------------------------------------------------------------------------
    def has(self, key: ResultKey) -> bool:
        cur = self._conn.execute(
            "SELECT 1 FROM results WHERE model=? AND checkpoint=? AND experiment=? AND protocol=? AND seed=?",
            (key.model, key.checkpoint, key.experiment, key.protocol, int(key.seed)))
        return cur.fetchone() is not None

    def get(self, key: ResultKey) -> Result | None:
        found = self.results(model=key.model, checkpoint=key.checkpoint, experiment=key.experiment,
                             protocol=key.protocol, seed=key.seed)
        return found[0] if found else None

    def results(self, **filters) -> list[Result]:
        """All results, optionally filtered by equality on key columns (model=..., protocol=...)."""
        allowed = {"model", "checkpoint", "experiment", "protocol", "seed", "backbone"}
        bad = set(filters) - allowed
        if bad:
            raise ValueError(f"unknown result filter(s): {sorted(bad)}")
        where = " AND ".join(f"{k}=?" for k in filters) or "1"
        cur = self._conn.execute(
            "SELECT model, checkpoint, experiment, protocol, seed, backbone, metric, primary_value, metrics, "
            f"timings, extra, version, created FROM results WHERE {where} "
            "ORDER BY model, protocol, experiment, seed", tuple(filters.values()))
        return [
            Result(ResultKey(r[0], r[1], r[2], r[3], r[4]), metric=r[6],
                   primary=float("nan") if r[7] is None else r[7], metrics=json.loads(r[8]),
                   timings=json.loads(r[9]), backbone=r[5], extra=json.loads(r[10]), version=r[11], created=r[12])
            for r in cur.fetchall()
        ]

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _finite(x: float) -> float | None:
    x = float(x)
    return x if x == x and abs(x) != float("inf") else None


def find_stores(path: str | Path) -> list[Path]:
    """``results.sqlite`` files at ``path`` (a file, or a directory searched recursively)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(path.rglob("results.sqlite"))
