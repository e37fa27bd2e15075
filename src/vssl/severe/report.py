"""The SEVERE table rendered: md / csv / json / html, one bar chart per factor (``vssl report``).

The table itself (columns, Mean, Rank) is :mod:`vssl.severe.table`; the notes printed under it say how
Mean and Rank were computed and list each published row's remaining deviations from the published
protocol (:mod:`vssl.severe.published`).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from html import escape
from pathlib import Path

from vssl.errors import VsslError
from vssl.severe import analysis as A
from vssl.severe.experiments import FACTORS
from vssl.severe.published import published_notes
from vssl.severe.table import Cell, Column, Row, Table


def _fmt(cell: Cell | None, col: Column) -> str:
    if cell is None:
        return "—"
    digits = col.kind.digits
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
    mean_notes = "".join(f", {c.title} {c.kind.mean_note}" for c in table.columns if c.kind.mean_note)
    rank_notes = "".join(f", {c.title} {c.kind.rank_note}" for c in table.columns if c.kind.rank_note)
    notes = [f"Mean: mean of the {len(table.columns)} columns{mean_notes}; * = over the columns present.",
             f"Rank: mean per-column rank among the {table.pool} models shown (1 = best, ties averaged{rank_notes})."]
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
            res = analysis_or_reason(t)
            d["analysis"] = res.as_dict() if not isinstance(res, str) else {"skipped": res}
    return json.dumps(out, indent=2)


def analysis_or_reason(table: Table):
    """The table's sensitivity analysis, or the reason it cannot be done (a string)."""
    try:
        return A.sensitivity(table)
    except VsslError as e:
        return str(e)


def analysis_markdown(tables: list[Table]) -> str:
    parts = []
    for t in tables:
        res = analysis_or_reason(t)
        parts.append(f"- {res}\n" if isinstance(res, str) else A.markdown(res))
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
            ax.set_title(col.title + (" ↓" if col.kind.lower_is_better else ""), fontsize=9)
            ax.set_ylabel(col.kind.unit)
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
        prefix = f"{t.kind}_"
        for factor, png in factor_figures(t).items():
            p = directory / f"{prefix}{factor}.png"
            p.write_bytes(png)
            paths.append(p)
    return paths


def to_html(tables: list[Table], analysis: bool = False, appendix: str = "") -> str:
    """One self-contained page: the tables plus the factor plots inlined as base64 PNG; with
    ``analysis``, each table's sensitivity analysis (coefficients, per-factor bars, radar) too, and
    ``appendix`` (HTML, e.g. the demo's figures) at the end of the page."""
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
            res = analysis_or_reason(t)
            parts.append(f"<p>Sensitivity analysis: {escape(res)}</p>" if isinstance(res, str)
                         else A.html(res, A.figures(t, res)))
    return "".join(parts) + appendix + "</body></html>\n"


def render(tables: Table | list[Table], fmt: str = "md", analysis: bool = False, appendix: str = "") -> str:
    """Render one or several tables as ``md``, ``csv``, ``json`` or ``html``; ``analysis`` adds
    SEVERE's sensitivity analysis (``vssl.severe.analysis``) to md, json and html; ``appendix`` is HTML
    put at the end of an html page (the demo's figures)."""
    tables = [tables] if isinstance(tables, Table) else list(tables)
    if fmt == "md":
        text = "\n".join(to_markdown(t) for t in tables)
        return text + "\n" + analysis_markdown(tables) if analysis else text
    if fmt == "csv":
        return "\n".join(to_csv(t) for t in tables)
    if fmt == "json":
        return to_json(tables, analysis)
    if fmt == "html":
        return to_html(tables, analysis, appendix)
    raise VsslError(f"--format: expected md, csv, json or html, got {fmt!r}")


__all__ = ["to_markdown", "to_records", "to_csv", "to_json", "to_html", "render", "factor_figures",
           "save_plots", "analysis_markdown"]
