"""``vssl demo``: the whole system on the built-in synthetic benchmark, end to end, on a laptop.

1. generate SynthSEVERE (``tiny`` by default) into ``OUT/data``;
2. pretrain tiny backbones on its corpus: supervised (corpus labels), video contrast and tubelet
   contrast on R(2+1)D-tiny, VideoMAE and SIGMA-MLP on ViT-tiny (random init of both is the baseline);
3. evaluate every model on the 8 synthetic experiments with the ``quick`` protocol over several seeds
   (``vssl severe`` machinery, results in ``OUT/results.sqlite``);
4. print the table with Mean and Rank and write ``OUT/report.md``, ``OUT/report.html`` and the plots.

Everything is resumable: a finished pretraining (``backbone.pt``) or result (SQLite row) is reused, so
re-running the demo after an interruption continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from vssl.config import RECIPES

CONFIGS = RECIPES / "pretrain"  # shipped in the package: the demo runs from any folder after `pip install`


@dataclass(frozen=True)
class DemoModel:
    name: str  # row name in the table
    backbone: str
    recipe: str | None  # <RECIPES>/pretrain/<recipe>.yaml, None = random init


MODELS = (
    DemoModel("random init (R(2+1)D)", "r2plus1d_tiny", None),
    DemoModel("supervised (corpus labels)", "r2plus1d_tiny", "supervised_tiny"),
    DemoModel("video contrast", "r2plus1d_tiny", "video_contrast_tiny"),
    DemoModel("tubelet contrast", "r2plus1d_tiny", "tubelet_contrast_tiny"),
    DemoModel("random init (ViT)", "vit_tiny", None),
    DemoModel("VideoMAE", "vit_tiny", "videomae_tiny"),
    DemoModel("SIGMA-MLP", "vit_tiny", "sigma_mlp_tiny"),
)


@dataclass(frozen=True)
class Budget:
    """Steps and seeds of one demo mode (the README states their measured wall time)."""

    preset: str
    pretrain_steps: int
    seeds: tuple[int, ...]
    protocol: str = "quick"
    overrides: tuple[str, ...] = ()  # recipe overrides (vssl severe --set)
    scale: float = 1.0  # SynthSEVERE split sizes x scale (larger test sets = smaller standard errors)
    sizes: tuple = ()  # ((dataset, (train, test)), ...): per-dataset sizes after ``scale``
    pretrain_overrides: tuple[str, ...] = ()  # config overrides of every pretraining (e.g. batch size)
    #: > 0: also train the random-init R(2+1)D with the labels of every experiment (``quick-ft`` with this
    #: many steps, seed 1): the "trained with labels on the target task" row of issue 4's criterion
    oracle_steps: int = 0


BUDGETS = {
    # every model and recipe through the whole pipeline at toy sizes in about a minute: checks that an
    # installation works (CI runs it from a wheel); its numbers mean nothing
    "smoke": Budget("tiny", pretrain_steps=2, seeds=(1,), scale=0.05),
    "quick": Budget("tiny", pretrain_steps=30, seeds=(1, 2), scale=0.5),
    "default": Budget("tiny", pretrain_steps=100, seeds=(1, 2)),
    # the documented longer run on CPU (README "A longer run"): 2x the corpus and the full-data training
    # sets; test sets of 2,560-4,608 clips where the tubelet-vs-video question is asked (domain_a,
    # domain_b and its subsets, samples_a), 720-960 for counting and multi-label; 500 pretraining steps
    "long": Budget("tiny", pretrain_steps=500, seeds=(1, 2, 3),
                   sizes=(("pretrain", (2400, 300)), ("samples_a", (200, 3200)), ("domain_a", (960, 2560)),
                          ("domain_b", (1152, 4608)), ("counting", (504, 720)), ("multilabel", (960, 960)))),
    # the GPU run (docs/synthsevere.md "The GPU run"): 4x the corpus and the full-data training sets,
    # 8x every test set (1,440-4,608 clips: a 2-point difference is > 2 SE), 2,000 pretraining steps of
    # batch 32 (~13 epochs of the corpus), 3 seeds, and the trained-with-labels reference row
    "gpu": Budget("tiny", pretrain_steps=2000, seeds=(1, 2, 3),
                  sizes=(("pretrain", (4800, 300)), ("samples_a", (200, 3200)), ("domain_a", (1920, 2560)),
                         ("domain_b", (2304, 4608)), ("counting", (1008, 1440)), ("multilabel", (1920, 1920))),
                  pretrain_overrides=("data.batch_size=32",), oracle_steps=1500),
}
ORACLE_NAME = "trained with labels (R(2+1)D)"


def loader_workers(device: str) -> int:
    """DataLoader workers: the recipes' 2 on a laptop; most of the host's cores beside a GPU."""
    import os

    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return max(2, min(12, (os.cpu_count() or 2) - 2)) if cuda else 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def pretrain(model: DemoModel, data: Path, out: Path, steps: int, seed: int, device: str, log=print,
             overrides: tuple[str, ...] = ()) -> Path | None:
    """Pretrain ``model`` on the SynthSEVERE corpus; returns the exported backbone (None = random init)."""
    if model.recipe is None:
        return None
    from vssl.config import load_config
    from vssl.data.synth import load_description
    from vssl.engine.run import train_from_config

    run_dir = out / "pretrain" / _slug(model.name)
    exported = run_dir / "backbone.pt"
    if exported.is_file():
        log(f"[demo] reuse {exported}")
        return exported
    corpus = load_description(data)["pretrain"]
    cfg = load_config(CONFIGS / f"{model.recipe}.yaml", [
        f"data.annotations={data / corpus['annotations']}",
        f"data.root={data / corpus['video_root']}",
        f"train.max_steps={steps}",
        f"train.seed={seed}",
        f"train.device={device}",
        f"train.ckpt_every={max(50, steps // 4)}",
        *overrides,
    ])
    t = time.perf_counter()
    log(f"[demo] pretrain {model.name}: {cfg.method.name} on {cfg.model.backbone}, {steps} steps")
    train_from_config(cfg, run_dir, resume=(run_dir / "checkpoints").is_dir())
    log(f"[demo] pretrain {model.name}: done in {time.perf_counter() - t:.0f} s")
    return exported


def run_demo(out: str | Path = "vssl-demo", mode: str = "default", preset: str | None = None,
             seeds: tuple[int, ...] | None = None, device: str = "auto", models=MODELS,
             budget: Budget | None = None, log=print) -> dict:
    """Run the demo and return ``{"tables": [...], "seconds": float, "out": Path}``.

    ``mode`` picks a :data:`BUDGETS` entry; ``budget`` replaces it (tests use a tiny one).
    """
    from vssl.data.synth import generate
    from vssl.severe.report import render, save_plots
    from vssl.severe.results import ResultsStore
    from vssl.severe.runner import protocol_key, run_severe
    from vssl.severe.table import build_tables

    t0 = time.perf_counter()
    budget = budget or BUDGETS[mode]
    preset = preset or budget.preset
    seeds = tuple(seeds or budget.seeds)
    out = Path(out)
    tag = f"-x{budget.scale:g}" if budget.scale != 1 else ""
    tag += f"-{mode}" if budget.sizes else ""
    data = out / f"data-{preset}{tag}"
    if not (data / "synthsevere.json").is_file():
        log(f"[demo] generating SynthSEVERE '{preset}' (sizes x{budget.scale:g}"
            f"{', ' + str(dict(budget.sizes)) if budget.sizes else ''}) into {data}")
        generate(data, preset=preset, seed=0, scale=budget.scale, sizes=dict(budget.sizes) or None)
    else:
        log(f"[demo] reuse {data}")
    workers = loader_workers(device)
    speed = [f"num_workers={workers}"] if workers else []  # not part of a result's key
    overrides = list(budget.overrides)
    run_overrides = overrides + speed
    pre_overrides = tuple(budget.pretrain_overrides) + tuple(f"data.{o}" for o in speed)
    for model in models:
        ckpt = pretrain(model, data, out, budget.pretrain_steps, seed=0, device=device, log=log,
                        overrides=pre_overrides)
        run_severe(model.backbone, ckpt, data, out, protocol=budget.protocol, seeds=seeds, name=model.name,
                   device=device, overrides=run_overrides, log=log)
    # mild crops and no colour jitter: on 32 px clips both slowed training from scratch to a crawl
    # (docs/synthsevere.md, "Training from scratch on 32 px clips")
    oracle_overrides = ([f"steps={budget.oracle_steps}", "crop_scale=[0.8,1.0]", "jitter_p=0"]
                        if budget.oracle_steps else [])
    if oracle_overrides:
        log(f"[demo] reference row: random-init R(2+1)D trained with each experiment's labels "
            f"(quick-ft, {budget.oracle_steps} steps)")
        run_severe("r2plus1d_tiny", None, data, out, protocol="quick-ft", seeds=(1,), name=ORACLE_NAME,
                   device=device, overrides=oracle_overrides + speed, log=log)
    with ResultsStore(out / "results.sqlite") as store:
        names = {m.name for m in models}
        pkey = protocol_key(budget.protocol, overrides)
        results = store.results()
        rows = [r for r in results if r.key.model in names and r.key.protocol == pkey]
        okey = protocol_key("quick-ft", oracle_overrides)
        oracle_rows = [r for r in results if r.key.model == ORACLE_NAME and r.key.protocol == okey]
    tables = build_tables(rows)
    analysis = len({r.key.model for r in rows}) >= 3  # rank correlations need a few models
    figures = demo_figures(out, data, models, device, log)
    md = render(tables, "md", analysis=analysis)
    html = render(tables, "html", analysis=analysis, appendix=figures_html(figures) if figures else "")
    if figures:
        md += "\n\n## Figures\n\n" + "".join(f"![{name}]({path.relative_to(out)})\n\n" for name, path in figures.items())
    if oracle_rows:
        oracle = build_tables(oracle_rows)
        md += ("\n\n## Reference: random init trained with each experiment's labels "
               f"(quick-ft, {budget.oracle_steps} steps, seed 1)\n\n" + render(oracle, "md"))
        tables = tables + oracle
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(html)
    save_plots(tables, out / "plots")
    seconds = time.perf_counter() - t0
    log(render(tables, "md"))
    log(f"[demo] {seconds / 60:.1f} min; report: {out / 'report.md'}, {out / 'report.html'}, {out / 'plots'}/")
    return {"tables": tables, "seconds": seconds, "out": out}


def demo_figures(out: Path, data: Path, models, device: str, log=print) -> dict[str, Path]:
    """The report's pictures (issue 9): the tubelet-contrast recipe's augmented pairs and one VideoMAE /
    SIGMA reconstruction of a test video, from the demo's own pretraining runs. A figure that cannot be
    drawn is logged and left out; it never fails the demo."""
    figures: dict[str, Path] = {}
    runs = {m.recipe: out / "pretrain" / _slug(m.name) for m in models if m.recipe}
    fig_dir = out / "figures"
    dev = "cpu" if device == "auto" else device
    try:
        run = runs.get("tubelet_contrast_tiny")
        if run is not None and (run / "config.yaml").is_file():
            from vssl.viz.tubelets import render_tubelet_sheet

            figures["tubelet-augmented pairs (tubelet contrast recipe)"] = render_tubelet_sheet(
                run / "config.yaml", fig_dir / "tubelets", n=4, seed=0, trajectories=True, device=dev)
        videos = sorted((data / "samples_a" / "videos").rglob("*.mp4"))[:1]
        for recipe, title in (("videomae_tiny", "VideoMAE: masked input and reconstruction"),
                              ("sigma_mlp_tiny", "SIGMA-MLP: masked input and prototype assignments")):
            run = runs.get(recipe)
            if run is not None and videos and (run / "final.pt").is_file():
                from vssl.viz.reconstruct import render_reconstruction

                figures[title] = render_reconstruction(run / "final.pt", videos[0], fig_dir / recipe.split("_")[0],
                                                       device=dev)
    except Exception as e:  # noqa: BLE001 - figures are a bonus on top of the measured table
        log(f"[demo] figures: left out ({type(e).__name__}: {e})")
    return figures


def figures_html(figures: dict[str, Path]) -> str:
    """The figures inlined as base64 PNG (the HTML report stays one self-contained file)."""
    import base64
    from html import escape

    parts = ["<h2>Figures</h2>"]
    for name, path in figures.items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(f"<figure><img style='max-width:100%' alt='{escape(name)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{escape(name)}</figcaption></figure>")
    return "".join(parts)


def demo_command(args) -> int:
    """``vssl demo [--out DIR] [--preset P] [--quick | --long | --budget NAME] [--seeds 1,2] [--device D]``."""
    from vssl.errors import ConfigError

    if sum(bool(x) for x in (args.quick, args.long, getattr(args, "budget", None))) > 1:
        raise ConfigError("demo: --quick, --long and --budget exclude each other")
    mode = "quick" if args.quick else "long" if args.long else (getattr(args, "budget", None) or "default")
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    run_demo(args.out, mode=mode, preset=args.preset, seeds=seeds, device=args.device)
    return 0
