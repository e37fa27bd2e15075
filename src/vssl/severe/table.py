"""The SEVERE table as a model: columns taken from the experiment definitions, rows of cells (mean ± std
over seeds), Mean and Rank. Rendered by :mod:`vssl.severe.report` (md / csv / json / html, plots) and
analysed by :mod:`vssl.severe.analysis`.

- **Mean** (severe-protocols.md §9): arithmetic mean of the 8 columns, each entered as its task kind says
  (``vssl.tasks.TaskKind.mean_entry``: the counting column, UCF-RC's normalised MAE, as (1 − MAE) × 100).
  It reproduces every printed Mean of the shipped published tables (``vssl.severe.published``) but one,
  which the report flags (†). A row missing columns gets the mean of the columns it has, marked ``*``
  (SIGMA's 7-column table: its own Mean).
- **Rank** (§9): mean of the per-column ranks (1 = best; a lower-is-better column ranked by lower values;
  ties get the average rank) **within the rows shown**; the pool size is printed with it.
  Tubelet-Contrast's printed Rank follows another convention (``published.tubelet_contrast_ranks``).
- Published rows carry their paper, printed Mean/Rank and fine-tuning recipe (:mod:`vssl.severe.recipes`).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from vssl.data.synth.describe import SYNTH_EXPERIMENTS
from vssl.severe.experiments import EXPERIMENTS, SYNTH_COLUMNS
from vssl.severe.published import VALUE_COLUMNS, printed_mean_differs
from vssl.tasks import TASKS, TaskKind


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    factor: str
    task: str  # a vssl.tasks.TASKS kind: how the column is formatted, enters Mean and is ranked

    @property
    def kind(self) -> TaskKind:
        return TASKS[self.task]


SEVERE_TABLE = tuple(Column(e.column, e.title, e.factor, e.task) for e in EXPERIMENTS.values())
SYNTH_TABLE = tuple(Column(e.name, e.name, e.factor, e.task) for e in SYNTH_EXPERIMENTS)
#: experiment name -> column key (SEVERE names differ from their columns; synthetic names are the columns)
EXPERIMENT_COLUMN = {**{e.name: e.column for e in EXPERIMENTS.values()}, **{k: k for k in SYNTH_COLUMNS}}


@dataclass
class Cell:
    mean: float
    std: float | None = None  # None for published values
    n: int = 1
    dropped: int = 0  # unreadable test videos left out of the score (most over the seeds)


@dataclass
class Row:
    model: str
    cells: dict[str, Cell]
    source: str = "measured"  # measured | published
    protocol: str = ""
    mean: float | None = None
    mean_complete: bool = False
    rank: float | None = None
    checkpoint: str = ""  # sha256 of the weights of a measured row ("none": random init)
    published: dict | None = None  # a published row's source, printed Mean/Rank, recipe (read_published_csv)


@dataclass
class Table:
    columns: tuple[Column, ...]
    rows: list[Row] = field(default_factory=list)

    @property
    def pool(self) -> int:
        return len(self.rows)

    @property
    def kind(self) -> str:
        """``synth`` for the SynthSEVERE columns, else ``severe`` (file names and the analysis' reference)."""
        return "synth" if tuple(self.columns) == SYNTH_TABLE else "severe"


def mean_score(values: dict[str, float], columns=SEVERE_TABLE) -> tuple[float | None, bool]:
    """SEVERE Mean of one row: (mean, complete), each column entered as its task kind says (counting:
    (1 − MAE) × 100)."""
    vals = [c.kind.mean_entry(values[c.key])
            for c in columns if values.get(c.key) is not None and not _isnan(values[c.key])]
    if not vals:
        return None, False
    return sum(vals) / len(vals), len(vals) == len(columns)


def average_ranks(values: list[float], lower_is_better: bool = False) -> list[float]:
    """1 = best; tied values share the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i] if lower_is_better else -values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def build_table(rows, columns: tuple[Column, ...] | None = None) -> Table:
    """Aggregate results into a :class:`Table` with Mean and Rank.

    ``rows`` items are :class:`vssl.severe.results.Result` objects, long-form mappings
    ``{"model", "experiment" (or "column"), "value", ["seed", "protocol", "checkpoint", "dropped"]}`` or
    wide-form mappings ``{"model", "ssv2": .., ..., "charades": ..}`` (published rows; ``source`` defaults
    to "published"). Measured values are averaged over seeds (± sample std) per (model name, checkpoint
    sha256, protocol, column): a row is one model, identified by its weights as well as its name, so two
    different checkpoints under one name (every pretraining exports ``backbone.pt``) are two rows, told
    apart by their hashes, never one row whose spread mixes two models.
    ``columns``: :data:`SEVERE_TABLE` or :data:`SYNTH_TABLE`; detected from the keys when None.
    """
    # (model, checkpoint, protocol, column) -> [(value, dropped test videos)]
    long: dict[tuple[str, str, str, str], list[tuple[float, int]]] = defaultdict(list)
    wide: list[Row] = []
    all_keys = set(VALUE_COLUMNS)
    for r in rows:
        if hasattr(r, "key"):  # a Result
            col = EXPERIMENT_COLUMN.get(r.key.experiment, r.key.experiment)
            long[(r.key.model, r.key.checkpoint, r.key.protocol, col)].append((r.primary,
                                                                              int(r.extra.get("dropped", 0))))
        elif "value" in r:
            col = r.get("column") or EXPERIMENT_COLUMN.get(r["experiment"], r["experiment"])
            long[(r["model"], r.get("checkpoint", ""), r.get("protocol", ""), col)].append(
                (float(r["value"]), int(r.get("dropped", 0))))
        else:
            cells = {k: Cell(float(v)) for k, v in r.items() if k in all_keys and v not in (None, "")}
            pub = r.get("published")
            name = r["model"] if not pub or pub["label"] == "published" else f"{r['model']} ({pub['label']})"
            wide.append(Row(name, cells, source=r.get("source") or "published", protocol=r.get("protocol", ""),
                            published=pub and {**pub, "mean_differs": printed_mean_differs(r)}))
    measured: dict[tuple[str, str, str], Row] = {}
    names = _row_names({(m, c, p) for (m, c, p, _) in long})
    for (model, sha, protocol, col), vals in long.items():
        row = measured.setdefault((model, sha, protocol), Row(names[(model, sha, protocol)], {}, "measured", protocol,
                                                              checkpoint=sha))
        dropped = max(d for _, d in vals)
        vals = [v for v, _ in vals if not _isnan(v)]
        if vals:
            row.cells[col] = Cell(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals),
                                  dropped)
    all_rows = wide + list(measured.values())
    if columns is None:
        keys = {k for row in all_rows for k in row.cells}
        columns = SYNTH_TABLE if keys and keys <= set(SYNTH_COLUMNS) else SEVERE_TABLE
    table = Table(tuple(columns), [r for r in all_rows if any(c.key in r.cells for c in columns)])
    _score(table)
    return table


def _row_names(keys: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """Display names of measured rows keyed (model, checkpoint sha256, protocol): the model name, with
    ``[protocol]`` when several protocols are shown and ``@<sha256[:12]>`` (``@random-init``) when one name
    covers several checkpoints."""
    protocols = {p for _, _, p in keys}
    shas: dict[str, set[str]] = defaultdict(set)
    for model, sha, _ in keys:
        shas[model].add(sha)
    out = {}
    for model, sha, protocol in keys:
        name = model
        if len(shas[model]) > 1:
            name += " @" + ("random-init" if sha == "none" else sha[:12])
        out[(model, sha, protocol)] = f"{name} [{protocol}]" if len(protocols) > 1 and protocol else name
    return out


def _score(table: Table) -> None:
    for row in table.rows:
        row.mean, row.mean_complete = mean_score({k: c.mean for k, c in row.cells.items()}, table.columns)
    per_row: dict[int, list[float]] = defaultdict(list)
    for col in table.columns:
        idx = [i for i, r in enumerate(table.rows) if col.key in r.cells]
        ranks = average_ranks([table.rows[i].cells[col.key].mean for i in idx], lower_is_better=col.kind.lower_is_better)
        for i, rk in zip(idx, ranks):
            per_row[i].append(rk)
    for i, row in enumerate(table.rows):
        row.rank = statistics.fmean(per_row[i]) if per_row[i] else None


def build_tables(rows) -> list[Table]:
    """A SEVERE table and/or a SynthSEVERE table, depending on which columns the rows fill."""
    rows = list(rows)
    tables = [build_table(rows, cols) for cols in (SEVERE_TABLE, SYNTH_TABLE)]
    return [t for t in tables if t.rows]


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


__all__ = ["Column", "Cell", "Row", "Table", "SEVERE_TABLE", "SYNTH_TABLE", "EXPERIMENT_COLUMN", "mean_score",
           "average_ranks", "build_table", "build_tables"]
