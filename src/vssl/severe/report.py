"""The SEVERE table: 8 columns (mean ± std over seeds), Mean and Rank; md / csv / json / html output
and one bar chart per factor (``vssl report``).

- **Mean** (severe-protocols.md §9): arithmetic mean of the 8 columns with the counting column (UCF-RC,
  a normalised MAE) entered as (1 − MAE) × 100. It reproduces every printed Mean of the shipped published
  tables (``vssl.severe.published``) but one, which the report flags (†). A row missing columns gets the
  mean of the columns it has, marked ``*`` (SIGMA's 7-column table: its own Mean).
- **Rank** (§9): mean of the per-column ranks (1 = best; counting ranked by lower MAE; ties get the
  average rank) **within the rows shown**; the pool size is printed with it. Tubelet-Contrast's printed
  Rank follows another convention (``published.tubelet_contrast_ranks``); it is kept in csv/json.
- Published rows carry their paper, printed Mean/Rank and fine-tuning recipe (:mod:`vssl.severe.recipes`);
  the notes list each recipe's remaining deviations from the published protocol.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from vssl.errors import VsslError
from vssl.severe.experiments import EXPERIMENTS, FACTORS, SEVERE_COLUMNS, SYNTH_COLUMNS
from vssl.severe.published import printed_mean_differs, published_notes, read_published_csv


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    factor: str
    counting: bool = False  # lower is better; (1 - MAE) x 100 in Mean


_SEVERE_TITLES = {e.column: (e.title, e.factor) for e in EXPERIMENTS.values()}
SEVERE_TABLE = tuple(Column(k, *_SEVERE_TITLES[k], counting=(k == "ucf_rc")) for k in SEVERE_COLUMNS)
SYNTH_TABLE = tuple(Column(k, k, "task" if k in ("counting", "multilabel") else k.split("_")[0],
                           counting=(k == "counting")) for k in SYNTH_COLUMNS)
#: experiment name -> column key (SEVERE names differ from their columns; synthetic names are the columns)
EXPERIMENT_COLUMN = {**{e.name: e.column for e in EXPERIMENTS.values()}, **{k: k for k in SYNTH_COLUMNS}}
#: values kept beside the table's columns (not shown, not in Mean/Rank): UCF101 full fine-tuning, the
#: sensitivity analysis' reference when given (``vssl.severe.analysis``)
EXTRA_COLUMNS = ("ucf101",)


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


# ------------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------------
def mean_score(values: dict[str, float], columns=SEVERE_TABLE) -> tuple[float | None, bool]:
    """SEVERE Mean of one row: (mean, complete) with counting columns as (1 − MAE) × 100."""
    vals = [(1.0 - values[c.key]) * 100.0 if c.counting else values[c.key]
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
    all_keys = set(SEVERE_COLUMNS) | set(SYNTH_COLUMNS) | set(EXTRA_COLUMNS)
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
        ranks = average_ranks([table.rows[i].cells[col.key].mean for i in idx], lower_is_better=col.counting)
        for i, rk in zip(idx, ranks):
            per_row[i].append(rk)
    for i, row in enumerate(table.rows):
        row.rank = statistics.fmean(per_row[i]) if per_row[i] else None


# ------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------
def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _fmt(cell: Cell | None, col: Column) -> str:
    if cell is None:
        return "—"
    digits = 3 if col.counting else 1
    s = f"{cell.mean:.{digits}f}"
    s = f"{s} ± {cell.std:.{digits}f}" if cell.std is not None and cell.n > 1 else s
    return f"{s} ({cell.dropped} dropped)" if cell.dropped else s


def _mean_str(row: Row) -> str:
    """The Mean cell; a published row shows its paper's printed Mean, with † where its columns disagree."""
    printed = (row.published or {}).get("mean")
    if printed is not None:
        return f"{printed:.1f}" + ("†" if row.published["mean_differs"] else "")
    return "—" if row.mean is None else f"{row.mean:.1f}" + ("" if row.mean_complete else "*")


def _name(row: Row) -> str:
    if row.source != "published":
        return row.model
    recipe = (row.published or {}).get("recipe")
    label = "" if row.published and row.published["label"] != "published" else " (published)"
    return row.model + label + (f" — recipe {recipe}" if recipe else "")


def _notes(table: Table) -> list[str]:
    cnt = [c.title for c in table.columns if c.counting]
    notes = [f"Mean: mean of the {len(table.columns)} columns"
             + (f", {cnt[0]} entered as (1 − MAE) × 100" if cnt else "") + "; * = over the columns present.",
             f"Rank: mean per-column rank among the {table.pool} models shown (1 = best, ties averaged"
             + (f", {cnt[0]} ranked by lower MAE" if cnt else "") + ")."]
    if any(r.cells and any(c.n > 1 for c in r.cells.values()) for r in table.rows):
        notes.append("Measured cells: mean ± sample std over seeds.")
    if any(c.dropped for r in table.rows for c in r.cells.values()):
        notes.append("(N dropped): N unreadable test videos were left out of that score, never replaced by "
                     "another video (most over the seeds; paths in the results store).")
    if any("@" in r.model for r in table.rows if r.source == "measured"):
        notes.append("name @hash: one name given to different weights; the rows are told apart by the sha256 "
                     "of each checkpoint and never merged.")
    return notes + published_notes([r for r in table.rows if r.published])


def to_markdown(table: Table) -> str:
    head = ["Model", *[c.title for c in table.columns], "Mean", f"Rank↓ (of {table.pool})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.rows:
        name = _name(r)
        cells = [_fmt(r.cells.get(c.key), c) for c in table.columns]
        rank = "—" if r.rank is None else f"{r.rank:.1f}"
        lines.append("| " + " | ".join([name, *cells, _mean_str(r), rank]) + " |")
    return "\n".join(lines + [""] + [f"- {n}" for n in _notes(table)]) + "\n"


def to_records(table: Table) -> list[dict]:
    out = []
    for r in table.rows:
        rec = {"model": r.model, "source": r.source, "protocol": r.protocol, "checkpoint": r.checkpoint}
        for c in table.columns:
            cell = r.cells.get(c.key)
            rec[c.key] = None if cell is None else cell.mean
            rec[f"{c.key}_std"] = None if cell is None else cell.std
            rec[f"{c.key}_n"] = None if cell is None else cell.n
            rec[f"{c.key}_dropped"] = None if cell is None else cell.dropped
        pub = r.published or {}
        rec.update(mean=r.mean, mean_complete=r.mean_complete, rank=r.rank, pool=table.pool,
                   printed_mean=pub.get("mean"), printed_rank=pub.get("rank"), recipe=pub.get("recipe"),
                   published_in=pub.get("label"))
        out.append(rec)
    return out


def to_csv(table: Table) -> str:
    records = to_records(table)
    buf = io.StringIO()
    fields = ["model", "source", "protocol", "checkpoint", *[c.key for c in table.columns],
              *[f"{c.key}_{s}" for c in table.columns for s in ("std", "n", "dropped")], "mean", "mean_complete",
              "rank", "pool", "printed_mean", "printed_rank", "recipe", "published_in"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerow({k: ("" if v is None else v) for k, v in rec.items()})
    return buf.getvalue()


def to_json(tables: list[Table], analysis: bool = False) -> str:
    out = [{"columns": [vars(c) for c in t.columns], "pool": t.pool, "notes": _notes(t), "rows": to_records(t)}
           for t in tables]
    if analysis:
        for d, t in zip(out, tables):
            res = _analysis(t)
            d["analysis"] = res.as_dict() if not isinstance(res, str) else {"skipped": res}
    return json.dumps(out, indent=2)


def _analysis(table: Table):
    """The table's sensitivity analysis, or the reason it cannot be done (a string)."""
    from vssl.severe.analysis import sensitivity

    try:
        return sensitivity(table)
    except VsslError as e:
        return str(e)


def analysis_markdown(tables: list[Table]) -> str:
    from vssl.severe.analysis import markdown

    parts = []
    for t in tables:
        res = _analysis(t)
        parts.append(f"- {res}\n" if isinstance(res, str) else markdown(res))
    return "\n".join(parts)


def factor_figures(table: Table) -> dict[str, bytes]:
    """One PNG per factor (its two columns side by side, one bar per model, std as error bars)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pngs = {}
    models = [r.model for r in table.rows]
    colors = [f"C{i % 10}" for i in range(len(models))]
    for factor in FACTORS:
        cols = [c for c in table.columns if c.factor == factor]
        if not cols or not any(c.key in r.cells for c in cols for r in table.rows):
            continue
        fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 3.4), squeeze=False)
        for ax, col in zip(axes[0], cols):
            vals = [r.cells[col.key].mean if col.key in r.cells else float("nan") for r in table.rows]
            errs = [(r.cells[col.key].std or 0.0) if col.key in r.cells else 0.0 for r in table.rows]
            ax.bar(range(len(models)), vals, yerr=errs, color=colors, capsize=3)
            ax.set_xticks(range(len(models)), models, rotation=35, ha="right", fontsize=7)
            ax.set_title(col.title + (" ↓" if col.counting else ""), fontsize=9)
            ax.set_ylabel("normalised MAE" if col.counting else "%")
        fig.suptitle(f"{factor} factor", fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        pngs[factor] = buf.getvalue()
    return pngs


def save_plots(tables: list[Table], directory: str | Path) -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in tables:
        prefix = "synth_" if t.columns == SYNTH_TABLE else "severe_"
        for factor, png in factor_figures(t).items():
            p = directory / f"{prefix}{factor}.png"
            p.write_bytes(png)
            paths.append(p)
    return paths


def to_html(tables: list[Table], analysis: bool = False) -> str:
    """One self-contained page: the tables plus the factor plots inlined as base64 PNG; with
    ``analysis``, each table's sensitivity analysis (coefficients, per-factor bars, radar) too."""
    from html import escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>SEVERE report</title><style>",
             "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:48%;margin:4px}", "</style></head><body><h1>SEVERE report</h1>"]
    for t in tables:
        head = ["Model", *[c.title for c in t.columns], "Mean", f"Rank↓ (of {t.pool})"]
        parts.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>")
        for r in t.rows:
            name = _name(r)
            cells = [name, *[_fmt(r.cells.get(c.key), c) for c in t.columns], _mean_str(r),
                     "—" if r.rank is None else f"{r.rank:.1f}"]
            parts.append("<tr>" + "".join(f"<td>{escape(x)}</td>" for x in cells) + "</tr>")
        parts.append("</table><ul>" + "".join(f"<li>{escape(n)}</li>" for n in _notes(t)) + "</ul><div>")
        for factor, png in factor_figures(t).items():
            parts.append(f"<img alt='{factor}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
        parts.append("</div>")
        if analysis:
            from vssl.severe import analysis as A

            res = _analysis(t)
            parts.append(f"<p>Sensitivity analysis: {escape(res)}</p>" if isinstance(res, str)
                         else A.html(res, A.figures(t, res)))
    return "".join(parts) + "</body></html>\n"


def render(tables: Table | list[Table], fmt: str = "md", analysis: bool = False) -> str:
    """Render one or several tables as ``md``, ``csv``, ``json`` or ``html``; ``analysis`` adds
    SEVERE's sensitivity analysis (``vssl.severe.analysis``) to md, json and html."""
    tables = [tables] if isinstance(tables, Table) else list(tables)
    if fmt == "md":
        text = "\n".join(to_markdown(t) for t in tables)
        return text + "\n" + analysis_markdown(tables) if analysis else text
    if fmt == "csv":
        return "\n".join(to_csv(t) for t in tables)
    if fmt == "json":
        return to_json(tables, analysis)
    if fmt == "html":
        return to_html(tables, analysis)
    raise VsslError(f"--format: expected md, csv, json or html, got {fmt!r}")


def build_tables(rows) -> list[Table]:
    """A SEVERE table and/or a SynthSEVERE table, depending on which columns the rows fill."""
    rows = list(rows)
    tables = [build_table(rows, cols) for cols in (SEVERE_TABLE, SYNTH_TABLE)]
    return [t for t in tables if t.rows]


def report_command(args) -> int:
    """``vssl report [DIR] [--format] [--from-csv FILE ...] [--output F] [--plots DIR] [--analysis]``."""
    from vssl.severe.results import ResultsStore, find_stores

    rows: list = []
    for path in args.from_csv or []:
        rows += read_published_csv(path)
    if args.dir:
        stores = find_stores(args.dir)
        if not stores:
            raise VsslError(f"{args.dir}: no results.sqlite found (run `vssl severe --out {args.dir}` first)")
        for path in stores:
            with ResultsStore(path) as store:
                rows += store.results()
    if not args.dir and not args.from_csv:
        raise VsslError("report: give a results directory and/or --from-csv FILE")
    tables = build_tables(rows)
    if not tables:
        raise VsslError("report: no results to show")
    analysis = bool(getattr(args, "analysis", False))
    text = render(tables, args.format, analysis=analysis)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    if args.plots:
        for p in save_plots(tables, args.plots):
            print(f"plot: {p}", file=sys.stderr)
        if analysis:
            from vssl.severe.analysis import save_figures

            for t in tables:
                if not isinstance(_analysis(t), str):
                    for p in save_figures(t, args.plots).values():
                        print(f"plot: {p}", file=sys.stderr)
    return 0
