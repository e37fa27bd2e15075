"""The CLI adapters of the SEVERE package: ``vssl severe`` (run experiments) and ``vssl report`` (print the
table). Each parses what argparse gave it, calls the Python API (:func:`vssl.severe.runner.run_severe`,
:mod:`vssl.severe.table`, :mod:`vssl.severe.report`) and prints."""

from __future__ import annotations

import sys
from pathlib import Path

from vssl.errors import ConfigError, VsslError
from vssl.models import BACKBONES
from vssl.severe.analysis import save_figures
from vssl.severe.published import read_published_csv
from vssl.severe.report import analysis_or_reason, render, save_plots
from vssl.severe.results import Result, ResultsStore, find_stores
from vssl.severe.runner import run_severe
from vssl.severe.table import build_tables


def severe_command(args) -> int:
    """``vssl severe --backbone NAME [--checkpoint] --data-root DIR --out DIR [--experiments] [--protocol]
    [--recipe] [--seeds] [--name] [--device] [--set k=v]``."""
    try:
        seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    if not seeds:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise ConfigError(f"--checkpoint {args.checkpoint}: no such file")
    if args.backbone not in BACKBONES:
        raise ConfigError(f"--backbone: unknown backbone {args.backbone!r} (known: {', '.join(BACKBONES)})")
    results = run_severe(args.backbone, args.checkpoint, args.data_root, args.out, args.experiments, args.protocol,
                         seeds, name=args.name, device=args.device, overrides=args.overrides,
                         recipe=getattr(args, "recipe", "severe"))
    print(render(build_tables(results), "md"), end="")
    for line in failure_summary(results):
        print(f"vssl: warning: {line}")
    return 0


def failure_summary(results: list[Result]) -> list[str]:
    """Lines naming the videos the results could not read (decoding failed) or find (missing on disk)."""
    lines = []
    for what, key in (("unreadable, dropped from the scores", "dropped_paths"),
                      ("unreadable in training (replaced when fine-tuning, left out of frozen features)",
                       "train_failed_paths"),
                      ("missing on disk, left out", "missing_paths")):
        per_exp: dict[str, list[str]] = {}
        for r in results:
            paths = r.extra.get(key) or []
            per_exp.setdefault(r.key.experiment, [])
            per_exp[r.key.experiment] += [p for p in paths if p not in per_exp[r.key.experiment]]
        for exp, paths in per_exp.items():
            if paths:
                shown = ", ".join(paths[:20]) + (f", ... (+{len(paths) - 20})" if len(paths) > 20 else "")
                lines.append(f"{exp}: {len(paths)} videos {what}: {shown}")
    return lines


def report_command(args) -> int:
    """``vssl report [DIR] [--format] [--from-csv FILE ...] [--output F] [--plots DIR] [--analysis]``."""
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
            for t in tables:
                if not isinstance(analysis_or_reason(t), str):
                    for p in save_figures(t, args.plots).values():
                        print(f"plot: {p}", file=sys.stderr)
    return 0
