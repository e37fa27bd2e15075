"""``vssl data summary | check | prepare`` and ``vssl synth``: the CLI adapters of the data layer (see ``vssl.cli``).

``summary`` reads the annotation files only. With ``--json`` it prints exactly one JSON object::

    {"dataset": "ucf101", "num_classes": 101, "splits": {"train": 9537, "test": 3783}}

using the dataset's own split names (``vssl.data.datasets.SPLITS``). A split whose annotation file is
absent (e.g. the large SSv2 train JSON) is reported as ``null`` and named under ``"missing"``
(``{"train": "<expected file>"}``; the key appears only when something is missing). ``num_classes`` is
the number of classes of the task; for counting datasets (UCFRep) it is the number of action classes the
videos come from (23), or ``null`` when the annotations name none (counting CSV manifests).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vssl.data.datasets import MissingAnnotationError, VideoList, get_adapter, split_names
from vssl.errors import AnnotationError
from vssl.tasks import TASKS


def load_splits(dataset: str, annotations: str, fold: int = 1) -> tuple[dict[str, VideoList], dict[str, str]]:
    """Every split of ``dataset`` that has its annotation files: ``(lists, {missing split: file})``.

    Raises the first split's error when no split can be read, so a wrong folder is never an empty summary.
    """
    adapter = get_adapter(dataset)
    lists: dict[str, VideoList] = {}
    missing: dict[str, str] = {}
    first_error: MissingAnnotationError | None = None
    for split in split_names(dataset, annotations):
        try:
            lists[split] = adapter(annotations, split, fold)
        except MissingAnnotationError as e:
            missing[split] = e.path
            first_error = first_error or e
    if not lists:
        raise first_error or AnnotationError(f"{annotations}: no annotation files for {dataset}")
    return lists, missing


def summarize(dataset: str, annotations: str, fold: int = 1) -> dict:
    """The summary object printed by ``vssl data summary --json``."""
    return _summary(dataset, annotations, *load_splits(dataset, annotations, fold))


def _summary(dataset: str, annotations: str, lists: dict[str, VideoList], missing: dict[str, str]) -> dict:
    num_classes = max(v.num_classes for v in lists.values()) or None
    splits = {s: (len(lists[s]) if s in lists else None) for s in split_names(dataset, annotations)}
    out = {"dataset": dataset, "num_classes": num_classes, "splits": splits}
    if missing:
        out["missing"] = missing
    return out


def _print_table(summary: dict, lists: dict[str, VideoList]) -> None:
    from rich.console import Console
    from rich.table import Table

    task = next(iter(lists.values())).task
    table = Table(title=f"{summary['dataset']}  ({task}, {summary['num_classes'] or 'no'} classes)")
    table.add_column("split")
    table.add_column("videos", justify="right")
    table.add_column("classes present", justify="right")
    for split, count in summary["splits"].items():
        if count is None:
            table.add_row(split, "[yellow]missing[/]", "-")
            continue
        videos = lists[split]
        present = _classes_present(videos)
        table.add_row(split, f"{count:,}", "-" if present is None else str(present))
    console = Console()
    console.print(table)
    for split, path in summary.get("missing", {}).items():
        console.print(f"{split}: annotation file not found: {path}", highlight=False, soft_wrap=True)


def _classes_present(videos: VideoList) -> int | None:
    kind = TASKS[videos.task]
    if kind.has_classes:
        return len({c for r in videos for c in kind.class_ids(r.label)})
    classes = {r.meta.get("class") for r in videos} - {None}
    return len(classes) or None


def summary_command(args) -> int:
    if args.json:
        print(json.dumps(summarize(args.dataset, args.annotations, args.split)))
        return 0
    lists, missing = load_splits(args.dataset, args.annotations, args.split)
    _print_table(_summary(args.dataset, args.annotations, lists, missing), lists)
    return 0


def check_command(args) -> int:
    """Open every video of every split that has annotations; list the unreadable ones (exit 1 if any)."""
    from vssl.data.check import check_videos
    from vssl.data.video import check_backend

    check_backend(args.backend)  # a bad or missing decoder is a setup error, not a set of unreadable videos

    lists, missing = load_splits(args.dataset, args.annotations, args.split)
    for split, path in missing.items():
        print(f"{args.dataset} {split}: skipped, {path} not found", file=sys.stderr)
    bad_total = 0
    for split, videos in lists.items():
        bad = check_videos(videos, args.root, backend=args.backend, workers=args.workers)
        bad_total += len(bad)
        print(f"{args.dataset} {split}: {len(videos) - len(bad)}/{len(videos)} readable")
        for path, reason in bad:
            print(f"  {path}: {reason}")
    return 0 if bad_total == 0 else 1


def prepare_command(args) -> int:
    """Re-encode ``args.src`` into ``args.dst``; print the counts and every source file not converted,
    with the reason (exit 1 if a video failed)."""
    from vssl.data.prepare import prepare_tree
    from vssl.errors import VsslError

    try:
        report = prepare_tree(args.src, args.dst, short_side=args.short_side, gop=args.gop,
                              workers=args.workers, crf=args.crf, fps=getattr(args, "fps", 0.0))
    except (FileNotFoundError, ValueError) as e:  # bad arguments: one line, not a traceback
        raise VsslError(str(e)) from None
    print(f"converted {report.converted}, up to date {report.skipped}, failed {len(report.failed)}, "
          f"not videos {len(report.ignored)} -> {args.dst}")
    for path, reason in report.failed + report.ignored:
        print(f"  {path}: {reason}")
    return 1 if report.failed else 0


def synth_command(args) -> int:
    """``vssl synth OUT --preset P --seed S --workers N [--masks]``."""
    from vssl.data.synth import benchmark

    desc = benchmark.generate(args.out, preset=args.preset, seed=args.seed, workers=args.workers,
                    masks=bool(getattr(args, "masks", False)))
    n = sum(sum(d["sizes"].values()) for d in desc["datasets"].values())
    print(f"SynthSEVERE '{args.preset}' (seed {args.seed}): {n} videos in {desc['generation_seconds']:.1f} s "
          f"-> {args.out}/synthsevere.json")
    if "davis" in desc:
        print(f"object masks: {desc['davis']['videos']} videos of {desc['davis']['source']} in the DAVIS-2017 "
              f"layout -> {Path(args.out) / benchmark.DAVIS_DIR}")
    return 0
