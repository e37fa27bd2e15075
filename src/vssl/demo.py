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

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "pretrain"


@dataclass(frozen=True)
class DemoModel:
    name: str  # row name in the table
    backbone: str
    recipe: str | None  # configs/pretrain/<recipe>.yaml, None = random init


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


BUDGETS = {
    "quick": Budget("tiny", pretrain_steps=30, seeds=(1, 2), scale=0.5),
    "default": Budget("tiny", pretrain_steps=100, seeds=(1, 2)),
    # the documented longer run: 2x the videos (test sets of 350-1150 clips), 5x the pretraining
    "long": Budget("tiny", pretrain_steps=500, seeds=(1, 2, 3), scale=2.0),
}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def pretrain(model: DemoModel, data: Path, out: Path, steps: int, seed: int, device: str, log=print) -> Path | None:
    """Pretrain ``model`` on the SynthSEVERE corpus; returns the exported backbone (None = random init)."""
    if model.recipe is None:
        return None
    from vssl.config import load_config
    from vssl.data.synthetic import load_description
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
    from vssl.data.synthetic import generate
    from vssl.severe.report import build_tables, render, save_plots
    from vssl.severe.results import ResultsStore
    from vssl.severe.runner import protocol_key, run_severe

    t0 = time.perf_counter()
    budget = budget or BUDGETS[mode]
    preset = preset or budget.preset
    seeds = tuple(seeds or budget.seeds)
    out = Path(out)
    data = out / (f"data-{preset}" + (f"-x{budget.scale:g}" if budget.scale != 1 else ""))
    if not (data / "synthsevere.json").is_file():
        log(f"[demo] generating SynthSEVERE '{preset}' (sizes x{budget.scale:g}) into {data}")
        generate(data, preset=preset, seed=0, scale=budget.scale)
    else:
        log(f"[demo] reuse {data}")
    overrides = list(budget.overrides)
    for model in models:
        ckpt = pretrain(model, data, out, budget.pretrain_steps, seed=0, device=device, log=log)
        run_severe(model.backbone, ckpt, data, out, protocol=budget.protocol, seeds=seeds, name=model.name,
                   device=device, overrides=overrides, log=log)
    with ResultsStore(out / "results.sqlite") as store:
        names = {m.name for m in models}
        pkey = protocol_key(budget.protocol, overrides)
        rows = [r for r in store.results() if r.key.model in names and r.key.protocol == pkey]
    tables = build_tables(rows)
    (out / "report.md").write_text(render(tables, "md"))
    (out / "report.html").write_text(render(tables, "html"))
    save_plots(tables, out / "plots")
    seconds = time.perf_counter() - t0
    log(render(tables, "md"))
    log(f"[demo] {seconds / 60:.1f} min; report: {out / 'report.md'}, {out / 'report.html'}, {out / 'plots'}/")
    return {"tables": tables, "seconds": seconds, "out": out}


def demo_command(args) -> int:
    """``vssl demo [--out DIR] [--preset P] [--quick | --long] [--seeds 1,2] [--device D]``."""
    from vssl.errors import VsslError

    if args.quick and args.long:
        raise VsslError("demo: --quick and --long exclude each other")
    mode = "quick" if args.quick else "long" if args.long else "default"
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    run_demo(args.out, mode=mode, preset=args.preset, seeds=seeds, device=args.device)
    return 0
