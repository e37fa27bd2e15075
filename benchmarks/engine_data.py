"""The data pipeline that feeds the GPU steps, on the same host: loader clips/s with the recipe's workers,
and how long the engine loop waits for data.

For each pretraining recipe (SIGMA-MLP ViT-B K400, tubelet contrast R(2+1)D-18 Mini-Kinetics) the
script writes H.264 test videos at the recipe's stored size (short side ``data.load_size``, GOP 16
as ``vssl data prepare`` writes them; FFmpeg's ``testsrc2`` plus noise, see ``data_pipeline.py``),
lists them in a manifest CSV, and with the recipe's ``num_workers``, ``num_frames``, ``stride`` and
sizes (the batch is the step benchmark's, one GPU) measures:

- ``loader``: clips/s of the engine's own loader (``Trainer._batches``: decode, sample, resize,
  collate, pinned memory) alone, after its first batch (worker start-up);
- ``engine``: ``Trainer.fit`` for a few steps; from ``metrics.jsonl`` (first steps dropped): the
  share of the loop's wall time spent waiting for the next batch (``data_time / step_time``), the
  clips/s of the loop, and of its compute alone (``step_time - data_time``). A data share near 0 means
  the GPU is the bottleneck; near 1 - compute/loop, the loader is.

Usage:
    python benchmarks/engine_data.py --json $OUT/engine_data.json          # full sizes (GPU host)
    python benchmarks/engine_data.py --smoke --device cpu                   # seconds; the tests
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import torch

try:
    from benchmarks.common import hardware, markdown_table, write_json
    from benchmarks.data_pipeline import write_test_video
except ImportError:  # run as a script
    from common import hardware, markdown_table, write_json
    from data_pipeline import write_test_video

from vssl.config import RECIPES as SHIPPED, load_config

RECIPES = {  # name -> (recipe, batch on one GPU as in pretrain_step's full size, smoke overrides)
    "sigma_mlp_vitb_k400": ("pretrain/sigma_mlp_vitb_k400.yaml", 64, [
        "model.backbone=vit_tiny", "method.num_prototypes=16", "method.mlp_dims=[32]", "method.decoder_dim=32",
        "method.decoder_depth=1", "method.decoder_heads=2"]),
    "tubelet_contrast_r2plus1d18_minik": ("pretrain/tubelet_contrast_r2plus1d18_minik.yaml", 32, [
        "model.backbone=r2plus1d_tiny", "model.kwargs={}", "method.queue_size=64", "method.bn=none"]),
}
SMOKE = ["data.load_size=48", "data.crop_size=32", "data.num_frames=8", "data.stride=1", "data.num_workers=1"]


def _write(args) -> None:
    write_test_video(*args)


def write_videos(folder: Path, short_side: int, distinct: int, rows: int, seconds: float) -> Path:
    """``distinct`` mp4s (4:3, GOP 16) and a manifest ``train.csv`` of ``rows`` items cycling over them."""
    folder.mkdir(parents=True, exist_ok=True)
    width = (short_side * 4 // 3) // 2 * 2
    jobs = [(folder / f"v{i}.mp4", width, short_side, 16, seconds) for i in range(distinct)
            if not (folder / f"v{i}.mp4").exists()]
    if jobs:
        with Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
            pool.map(_write, jobs)
    lines = ["path,label"] + [f"v{i % distinct}.mp4,0" for i in range(rows)]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    return folder


def recipe_config(name: str, folder: Path, smoke: bool, device: str, steps: int):
    path, batch, smoke_sets = RECIPES[name]
    sets = ["data.dataset=csv", f"data.annotations={folder}", f"data.root={folder}", "data.split=train",
            f"data.batch_size={2 if smoke else batch}", f"train.device={device}", f"train.max_steps={steps}",
            "train.log_every=1", "train.ckpt_every=0", "train.tensorboard=false", "train.progress=false"]
    return load_config(SHIPPED / path, sets + (smoke_sets + SMOKE if smoke else []))


def build_trainer(cfg, out: Path):
    """The trainer ``vssl pretrain`` would build from ``cfg`` (dataset, backbone, method)."""
    from vssl.engine.run import build_backbone, build_dataset
    from vssl.engine.trainer import Trainer
    from vssl.methods import METHODS, build_method

    dataset = build_dataset(cfg, getattr(METHODS[cfg.method.name], "num_clips", 1))[0]
    return Trainer(cfg, build_method(cfg, build_backbone(cfg)), dataset, out)


def measure_loader(trainer, batches: int) -> dict:
    """Clips/s of the trainer's loader alone, after its first batch (worker start-up)."""
    stream = trainer._batches()
    next(stream)
    t0 = time.perf_counter()
    clips = sum(next(stream)["video"].shape[0] for _ in range(batches))
    rate = clips / (time.perf_counter() - t0)
    stream.close()
    trainer.epoch = trainer.batch_in_epoch = 0  # the engine run starts at the first batch again
    return {"loader_clips_s": rate, "loader_batches": batches}


def measure_engine(trainer, skip: int) -> dict:
    """``Trainer.fit``; the data wait from its metrics.jsonl (the first ``skip`` steps dropped)."""
    trainer.fit()
    rows = [json.loads(ln) for ln in (trainer.out / "metrics.jsonl").read_text().splitlines()][skip:]
    step = sum(r["step_time"] for r in rows)
    data = sum(r["data_time"] for r in rows)
    clips = trainer.clips_per_step * len(rows)
    return {"engine_steps": len(rows), "data_share": data / step, "engine_clips_s": clips / step,
            "compute_clips_s": clips / max(step - data, 1e-9),
            "median_step_ms": 1e3 * statistics.median(r["step_time"] for r in rows)}


def report(res: dict) -> str:
    table = [[r["recipe"], r["clip"], r["batch"], r["workers"]] + (
        [f"failed: {r['error']}", "", "", "", ""] if "error" in r else
        [f"{r['loader_clips_s']:.1f}", f"{r['engine_clips_s']:.1f}", f"{r['compute_clips_s']:.1f}",
         f"{100 * r['data_share']:.0f} %", f"{r['median_step_ms']:.0f}"]) for r in res["rows"]]
    return (f"### engine data wait ({res['size']}, {res['cores']} cores, {res['hardware']})\n\n"
            + markdown_table(["recipe", "clip", "batch", "workers", "loader clips/s", "engine clips/s",
                              "compute-only clips/s", "loop waiting for data", "median step ms"], table) + "\n")


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny videos and models (tests)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--steps", type=int, default=None, help="engine steps (default 14 full, 3 smoke)")
    p.add_argument("--batches", type=int, default=None, help="loader batches timed (default 6 full, 2 smoke)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    p.add_argument("--dir", default=None, help="where to write the videos and runs (default: a temp dir)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (3 if args.smoke else 14)
    skip = 1 if args.smoke else 4  # worker start-up and cuDNN autotuning
    work = Path(args.dir or tempfile.mkdtemp(prefix="vssl-engine-data-"))
    names = [r.strip() for r in args.recipes.split(",") if r.strip()]
    folders = {}
    for name in names:  # all videos first: the encoder processes fork before CUDA is initialised
        load = recipe_config(name, work, args.smoke, args.device, steps).data.load_size
        t0 = time.perf_counter()
        folders[name] = write_videos(work / f"videos_{load}", load, distinct=4 if args.smoke else 16,
                                     rows=64 if args.smoke else 2048, seconds=2.0 if args.smoke else 10.0)
        print(f"  {name}: test videos at short side {load} in {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for name in names:
        cfg = recipe_config(name, folders[name], args.smoke, args.device, steps)
        row = {"recipe": name, "batch": cfg.data.batch_size, "workers": cfg.data.num_workers,
               "clip": f"{cfg.data.num_frames}x{cfg.data.load_size} stride {cfg.data.stride} -> {cfg.data.crop_size}"}
        try:
            trainer = build_trainer(cfg, work / f"run_{name}")
            row.update(measure_loader(trainer, args.batches or (2 if args.smoke else 6)))
            row.update(measure_engine(trainer, skip))
            del trainer
        except Exception as e:  # noqa: BLE001 - the other recipe still counts
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        rows.append(row)
        print(row, flush=True)
    res = {"benchmark": "engine_data", "size": "smoke" if args.smoke else "full", "hardware": hardware(),
           "cores": os.cpu_count(), "rows": rows}
    write_json(args.json, res)
    print(report(res))
    return rows


if __name__ == "__main__":
    main()
