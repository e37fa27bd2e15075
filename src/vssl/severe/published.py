"""Published SEVERE tables as shipped files (``configs/severe/published/*.csv``), and the papers' own
Mean and Rank conventions.

One file per paper's table, transcribed from ``reference/published-tables.md``: ``severe_eccv22.csv``
(SEVERE, ECCV 2022; no Mean or Rank printed), ``tubelet_contrast_iccv23.csv`` (Tubelet-Contrast, ICCV 2023;
Mean and Rank printed), ``sigma_eccv24.csv`` (SIGMA, ECCV 2024; 7 columns without SS-v2, Mean printed).

A file opens with ``# key: value`` lines (``label``, ``source``, ``table``, ``transcribed``, ``columns`` =
the columns its Mean spans, ``printed``, ``names``, ``recipe``), then a CSV header ``model,<column keys>``
with optional ``backbone``, ``mean`` and ``rank`` (the printed values) and ``recipe`` (the row's fine-tuning
recipe, :mod:`vssl.severe.recipes`). Blank cells are missing values. A plain ``model,<columns>`` CSV
without the header lines reads too (label "published").
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from vssl.config import find_recipe
from vssl.errors import VsslError
from vssl.severe.experiments import SEVERE_COLUMNS, SYNTH_COLUMNS
from vssl.severe.recipes import RECIPES

#: columns of the report tables plus the kept-beside ones (``ucf101``, see report.EXTRA_COLUMNS)
VALUE_COLUMNS = (*SEVERE_COLUMNS, *SYNTH_COLUMNS, "ucf101")
#: a printed Mean agrees with its row when within this: the cells are rounded (0.05, and 0.0005 x 100 for
#: UCF-RC), so their mean may be 0.05 off the unrounded one, and the printed Mean is rounded by 0.05 again
MEAN_TOLERANCE = 0.1


def read_published_csv(path: str | Path) -> list[dict]:
    """The rows of a published-table file as report rows.

    Each row: ``{"model", "source": "published", <column>: float ..., "published": {"label", "source",
    "table", "file", "columns", "mean", "rank", "recipe", "backbone"}}`` where ``mean``/``rank`` are the
    printed values (None when the paper printed none). Errors name the file and line. A shipped table is
    found by its name from any folder (``configs/severe/published/severe_eccv22.csv``, see
    :func:`vssl.config.find_recipe`).
    """
    path = find_recipe(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise VsslError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    meta: dict[str, str] = {}
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep and not lines and key.strip().isidentifier():
                meta[key.strip()] = value.strip()
        elif line.strip():
            lines.append(line)
    reader = csv.DictReader(lines)
    if not reader.fieldnames or reader.fieldnames[0] != "model":
        raise VsslError(f"{path}: expected a header starting with 'model' (model,{','.join(SEVERE_COLUMNS)})")
    columns = [c.strip() for c in meta.get("columns", "").split(",") if c.strip()]
    unknown = [c for c in columns if c not in VALUE_COLUMNS]
    if unknown:
        raise VsslError(f"{path}: '# columns:' names unknown columns {unknown}")
    out = []
    for lineno, rec in enumerate(reader, start=2):
        row = {"model": rec["model"], "source": rec.get("source") or "published"}
        printed = {}
        for key in (*VALUE_COLUMNS, "mean", "rank"):
            value = (rec.get(key) or "").strip()
            if value:
                try:
                    (row if key in VALUE_COLUMNS else printed)[key] = float(value)
                except ValueError:
                    raise VsslError(f"{path}: row {lineno} ({rec['model']}): column {key!r}: not a number: "
                                    f"{value!r}") from None
        row["published"] = {
            "label": meta.get("label", "published"), "source": meta.get("source", ""), "table": meta.get("table", ""),
            "file": path.name, "columns": columns or [c for c in SEVERE_COLUMNS if c in row],
            "mean": printed.get("mean"), "rank": printed.get("rank"),
            "recipe": (rec.get("recipe") or meta.get("recipe") or "").strip(), "backbone": (rec.get("backbone") or "")}
        out.append(row)
    return out


def published_mean(row: dict, counting: str = "ucf_rc") -> float | None:
    """A row's Mean over its paper's columns: their arithmetic mean with the counting column entered as
    (1 − MAE) × 100 (severe-protocols.md §9; sigma-videomae.md §5.4 for SIGMA's 7 columns)."""
    cols = row["published"]["columns"]
    if not cols or any(c not in row for c in cols):
        return None
    return sum((1 - row[c]) * 100 if c == counting else row[c] for c in cols) / len(cols)


def competition_ranks(values: list[float], higher_first: bool = True) -> list[int]:
    """1 = first; tied values all take the lowest rank of the ones they span (1, 2, 2, 4)."""
    return [1 + sum((w > v) if higher_first else (w < v) for w in values) for v in values]


def tubelet_contrast_ranks(rows: list[dict], columns=SEVERE_COLUMNS) -> list[float]:
    """The Rank column of Tubelet-Contrast's SEVERE table recomputed from its rows.

    Every printed Rank is reproduced (within its rounding) as the mean over the 8 columns of each row's
    competition rank among the 15 rows, higher value first in **every** column, UCF-RC included. UCF-RC is
    an error (lower is better), so that column was ranked the wrong way round; vssl's own Rank
    (``report.average_ranks``) ranks it by lower MAE and shares ties at their average rank.
    """
    per_column = [competition_ranks([r[c] for r in rows]) for c in columns]
    return [sum(ranks[i] for ranks in per_column) / len(columns) for i in range(len(rows))]


def printed_mean_differs(row: dict) -> bool:
    """True when a published row's printed Mean disagrees with its own columns beyond rounding."""
    printed, computed = row["published"]["mean"], published_mean(row)
    return printed is not None and computed is not None and not math.isclose(printed, computed, abs_tol=MEAN_TOLERANCE)


def published_notes(rows) -> list[str]:
    """Report notes for published table rows (``report.Row`` objects with ``published`` set): each paper's
    source, every flagged printed Mean, and every recipe the rows use with the deviations vssl's run of it
    keeps (:mod:`vssl.severe.recipes`)."""
    notes = [f"{label}: {src}" for label, src in dict.fromkeys(
        (r.published["label"], f"{r.published['source']}; {r.published['table']} ({r.published['file']})")
        for r in rows if r.published["source"])]
    for r in rows:
        if r.published["mean_differs"]:
            row = {"published": r.published, **{k: c.mean for k, c in r.cells.items()}}
            notes.append(f"† {r.model}: printed Mean {r.published['mean']:.1f}, its own columns give "
                         f"{published_mean(row):.1f}.")
    for name in dict.fromkeys(r.published["recipe"] for r in rows if r.published["recipe"]):
        recipe = RECIPES.get(name)
        if recipe is None:
            notes.append(f"Recipe {name}: not one vssl knows ({', '.join(RECIPES)}).")
            continue
        notes.append(f"Recipe {name}: {recipe.description} ({recipe.source}); run it with `vssl severe --protocol "
                     f"paper --recipe {name}`. Deviations of vssl's run: " + "; ".join(recipe.all_deviations) + ".")
    return notes
