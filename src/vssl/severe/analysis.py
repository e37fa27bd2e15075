"""SEVERE's sensitivity analysis: does the in-domain standard benchmark predict generalization?

The SEVERE paper (Thoker et al., ECCV 2022) ranks the compared pretraining methods on the standard
in-domain benchmark (UCF101 fine-tuning after Kinetics pretraining) and asks whether that ranking
carries over to each downstream setting, with Kendall's rank correlation per setting. Here, over the
models of one report table:

- **reference**: ``ucf101`` (UCF101 full fine-tuning) when the rows carry it (a ``ucf101`` column in
  the published CSV, or results of an experiment named ``ucf101``); otherwise the in-domain column of
  the table: ``ucf_1k`` (UCF 10³) for SEVERE, ``samples_a`` for SynthSEVERE (same domain and classes
  as the pretraining corpus).
- per other column: **Kendall τ-b** and **Spearman ρ** (``scipy.stats``; ties handled) with their
  two-sided p-values, over the models that have both values. Every column enters as it enters Mean
  (``vssl.tasks.TaskKind.mean_entry``: counting, a normalised MAE, as (1 − MAE) × 100, a monotone map
  the rank coefficients do not see) so that a positive coefficient always means "ranked alike".
- figures: one bar chart per factor (τ and ρ of its columns) and a radar chart of every model over
  the columns, each axis scaled from the worst (centre) to the best model (rim).

``sensitivity_analysis(table_or_rows, out_dir)`` writes the PNGs and returns the numbers;
``vssl report DIR --analysis`` puts the same into the Markdown/HTML/JSON report.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np

from vssl.errors import VsslError
from vssl.severe.experiments import FACTORS
from vssl.severe.table import Column, Table, build_tables

#: candidate reference columns, first present wins
IN_DOMAIN = {"severe": ("ucf101", "ucf_1k"), "synth": ("samples_a",)}
FIGSIZE = {"bars": (6.4, 3.6), "radar": (6.4, 6.4)}
DPI = 100   # figures are FIGSIZE x DPI pixels exactly (no tight bounding box)


@dataclass
class Coefficient:
    column: str
    title: str
    factor: str
    n: int
    kendall_tau: float
    kendall_p: float
    spearman_rho: float
    spearman_p: float


@dataclass
class Sensitivity:
    kind: str                      # severe | synth
    reference: str
    reference_title: str
    models: list[str]
    coefficients: list[Coefficient] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "reference": self.reference, "reference_title": self.reference_title,
                "models": self.models, "coefficients": {c.column: _clean(vars(c)) for c in self.coefficients}}


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _score(value: float, column: Column | None) -> float:
    """Higher is better for every column (a column not in the table, ``ucf101``, is an accuracy)."""
    return column.kind.mean_entry(value) if column else value


def rank_correlations(x: list[float], y: list[float]) -> tuple[float, float, float, float]:
    """(Kendall τ-b, its p, Spearman ρ, its p) of paired values; NaN when fewer than 3 pairs or a
    constant side."""
    from scipy import stats

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return (math.nan,) * 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = stats.kendalltau(x, y)
        s = stats.spearmanr(x, y)
    return float(k.statistic), float(k.pvalue), float(s.statistic), float(s.pvalue)


def sensitivity(table, reference: str | None = None) -> Sensitivity:
    """Kendall τ and Spearman ρ of the reference column against every other column of a report
    :class:`~vssl.severe.table.Table`, across its models."""
    kind = table.kind
    present = {k for r in table.rows for k in r.cells}
    ref = reference or next((c for c in IN_DOMAIN[kind] if c in present), None)
    if ref is None or ref not in present:
        want = reference or " or ".join(IN_DOMAIN[kind])
        raise VsslError(f"analysis: no model has the reference column {want}")
    titles = {c.key: c for c in table.columns}
    ref_col = titles.get(ref)
    out = Sensitivity(kind, ref, ref_col.title if ref_col else "UCF101" if ref == "ucf101" else ref,
                      [r.model for r in table.rows if ref in r.cells])
    for col in table.columns:
        if col.key == ref:
            continue
        pairs = [(_score(r.cells[ref].mean, ref_col), _score(r.cells[col.key].mean, col))
                 for r in table.rows if ref in r.cells and col.key in r.cells]
        coef = rank_correlations([a for a, _ in pairs], [b for _, b in pairs])
        out.coefficients.append(Coefficient(col.key, col.title, col.factor, len(pairs), *coef))
    return out


# --- figures -----------------------------------------------------------------------------------

def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _note(c: Coefficient) -> str:
    if math.isnan(c.kendall_tau):
        return f"n/a (n={c.n})"
    return f"τ p{'<0.01' if c.kendall_p < 0.01 else f'={c.kendall_p:.2f}'}, n={c.n}"


def factor_bars(result: Sensitivity) -> dict[str, bytes]:
    """One PNG per factor: Kendall τ and Spearman ρ of each of its columns with the reference."""
    plt = _plt()
    pngs = {}
    for factor in FACTORS:
        coefs = [c for c in result.coefficients if c.factor == factor]
        if not coefs:
            continue
        fig, ax = plt.subplots(figsize=FIGSIZE["bars"])
        xs = range(len(coefs))
        taus = [0.0 if math.isnan(c.kendall_tau) else c.kendall_tau for c in coefs]
        rhos = [0.0 if math.isnan(c.spearman_rho) else c.spearman_rho for c in coefs]
        ax.bar([x - 0.18 for x in xs], taus, 0.36, label="Kendall τ", color="C0")
        ax.bar([x + 0.18 for x in xs], rhos, 0.36, label="Spearman ρ", color="C1")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylim(-1.05, 1.3)
        ax.set_yticks([-1, -0.5, 0, 0.5, 1])
        ax.set_xticks(list(xs), [f"{c.title}\n{_note(c)}" for c in coefs], fontsize=8)
        ax.set_ylabel("rank correlation")
        ax.set_title(f"{factor}: agreement with {result.reference_title} across {len(result.models)} models",
                     fontsize=9)
        ax.legend(fontsize=7, loc="upper center", ncol=2, frameon=False)
        fig.subplots_adjust(left=0.12, right=0.97, top=0.9, bottom=0.16)
        pngs[factor] = _png(fig)
    return pngs


def radar(table, max_models: int = 12) -> bytes:
    """Every model over the table's columns, each axis from the worst (centre) to the best (rim)."""
    plt = _plt()
    cols = [c for c in table.columns if any(c.key in r.cells for r in table.rows)]
    rows = table.rows[:max_models]
    angles = np.linspace(0, 2 * np.pi, len(cols), endpoint=False).tolist()
    fig = plt.figure(figsize=FIGSIZE["radar"])
    ax = fig.add_axes([0.12, 0.2, 0.76, 0.7], polar=True)
    cmap = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    for i, r in enumerate(rows):
        vals = []
        for c in cols:
            scores = [_score(x.cells[c.key].mean, c) for x in table.rows if c.key in x.cells]
            lo, hi = min(scores), max(scores)
            v = _score(r.cells[c.key].mean, c) if c.key in r.cells else lo
            vals.append(0.5 if hi == lo else (v - lo) / (hi - lo))
        colour = cmap(i % cmap.N)
        ax.plot(angles + angles[:1], vals + vals[:1], color=colour, lw=1.2, label=r.model,
                ls=("-", "--", ":")[i // 10 % 3])
        ax.fill(angles + angles[:1], vals + vals[:1], color=colour, alpha=0.04)
    ax.set_xticks(angles, [c.title for c in cols], fontsize=8)
    ax.set_yticks([0.5, 1], ["", ""])
    ax.set_ylim(0, 1)
    ax.set_title("per-column standing: centre = worst model, rim = best (counting: lowest MAE)", fontsize=9, pad=14)
    fig.legend(loc="lower center", ncol=3, fontsize=7, frameon=False)
    return _png(fig)


def figures(table, result: Sensitivity | None = None) -> dict[str, bytes]:
    """``{factor: bars PNG, ..., "radar": PNG}`` for a report table."""
    result = result or sensitivity(table)
    return {**factor_bars(result), "radar": radar(table)}


# --- text --------------------------------------------------------------------------------------

def _f(x: float, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{digits}f}"


def _p(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def markdown(result: Sensitivity) -> str:
    lines = [f"**Sensitivity analysis** (SEVERE, ECCV'22): rank agreement of every column with "
             f"{result.reference_title} across {len(result.models)} models.", "",
             "| Column | Factor | Kendall τ | p | Spearman ρ | p | models |", "|---|---|---|---|---|---|---|"]
    for c in result.coefficients:
        lines.append(f"| {c.title} | {c.factor} | {_f(c.kendall_tau)} | {_p(c.kendall_p)} | "
                     f"{_f(c.spearman_rho)} | {_p(c.spearman_p)} | {c.n} |")
    lines += ["", "- τ-b and ρ over the models with both values; counting enters as (1 − MAE). "
              "1 = same ranking as the reference, −1 = reversed, — = fewer than 3 models or a constant column."]
    return "\n".join(lines) + "\n"


def html(result: Sensitivity, pngs: dict[str, bytes]) -> str:
    rows = "".join(f"<tr><td>{escape(c.title)}</td><td>{c.factor}</td><td>{_f(c.kendall_tau)}</td>"
                   f"<td>{_p(c.kendall_p)}</td><td>{_f(c.spearman_rho)}</td><td>{_p(c.spearman_p)}</td>"
                   f"<td>{c.n}</td></tr>" for c in result.coefficients)
    imgs = "".join(f"<img alt='sensitivity {escape(name)}' src='data:image/png;base64,"
                   f"{base64.b64encode(png).decode()}'>" for name, png in pngs.items())
    return (f"<h2>Sensitivity analysis</h2><p>Rank agreement of every column with "
            f"{escape(result.reference_title)} across {len(result.models)} models (Kendall τ-b, Spearman ρ; "
            f"counting as 1 − MAE).</p><table><tr><th>Column</th><th>Factor</th><th>Kendall τ</th><th>p</th>"
            f"<th>Spearman ρ</th><th>p</th><th>models</th></tr>{rows}</table><div>{imgs}</div>")


# --- the API the demo and the report call --------------------------------------------------------

def save_figures(table, out_dir: str | Path, result: Sensitivity | None = None) -> dict[str, Path]:
    """Write ``<kind>_sensitivity_<factor>.png`` and ``<kind>_radar.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = result or sensitivity(table)
    paths = {}
    for name, png in figures(table, result).items():
        p = out_dir / (f"{result.kind}_radar.png" if name == "radar" else f"{result.kind}_sensitivity_{name}.png")
        p.write_bytes(png)
        paths[name] = p
    return paths


def sensitivity_analysis(table_or_rows, out_dir: str | Path, reference: str | None = None) -> dict:
    """Run the analysis on a report ``Table`` or on result rows (anything ``build_tables`` takes),
    write its PNGs into ``out_dir`` and return the numbers and figure paths.

    Returns:
        ``{"kind", "reference", "reference_title", "models", "coefficients": {column: {"kendall_tau",
        "kendall_p", "spearman_rho", "spearman_p", "n", ...}}, "figures": {factor or "radar": path},
        "markdown"}`` for the (first) table; when rows fill both a SEVERE and a SynthSEVERE table,
        ``"tables"`` lists one such dict per table.
    """
    tables = [table_or_rows] if isinstance(table_or_rows, Table) else build_tables(table_or_rows)
    if not tables:
        raise VsslError("analysis: no results to analyse")
    done = []
    for t in tables:
        res = sensitivity(t, reference)
        done.append({**res.as_dict(), "figures": {k: str(v) for k, v in save_figures(t, out_dir, res).items()},
                     "markdown": markdown(res)})
    return {**done[0], "tables": done} if len(done) > 1 else done[0]


__all__ = ["IN_DOMAIN", "Coefficient", "Sensitivity", "rank_correlations", "sensitivity", "factor_bars",
           "radar", "figures", "markdown", "html", "save_figures", "sensitivity_analysis"]
