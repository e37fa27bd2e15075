"""Command line interface: parses arguments and calls the Python API. Nothing else lives here.

Every command is ``name -> (module, function)``; modules are imported only when their command runs,
so ``vssl --help`` and ``vssl --version`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vssl import __version__


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config file (see configs/)")
    p.add_argument("--out", required=True, help="run directory (resolved config, checkpoints, logs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.01 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in an --out that holds an earlier run (its checkpoints and weights are replaced)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``vssl pretrain: error: ... (see vssl pretrain --help)``, exit 2.

    argparse prints the whole usage block before the message; a wrong option is then a wall of text
    in a cluster log. Subcommand parsers are of this class too (``add_subparsers`` uses the parent's).
    """

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_clip_args(p: argparse.ArgumentParser, whose: str) -> None:
    """--frames/--stride/--size/--device of the viz commands that read clips like a run's data config."""
    p.add_argument("--frames", type=int, default=None, help=f"clip length (default: {whose} data.num_frames)")
    p.add_argument("--stride", type=int, default=None, help=f"frame stride (default: {whose} data.stride)")
    p.add_argument("--size", type=int, default=None, help=f"crop size (default: {whose} data.crop_size)")
    p.add_argument("--device", default="auto")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vssl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vssl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("pretrain", help="self-supervised pretraining from a config")
    _add_config_args(p)
    p.add_argument("--data-fraction", type=float, default=None,
                   help="pretrain on a class-balanced fraction of the corpus (0 < F <= 1)")
    p.set_defaults(_call=("vssl.engine.commands", "pretrain_command"))

    p = sub.add_parser("finetune", help="supervised fine-tuning / training from a config")
    _add_config_args(p)
    p.set_defaults(_call=("vssl.engine.commands", "finetune_command"))

    # data ---------------------------------------------------------------------------------------
    p = sub.add_parser("data", help="inspect, check and prepare datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    d = dsub.add_parser("summary", help="per-split counts and classes from the annotation files alone")
    d.add_argument("--dataset", required=True)
    d.add_argument("--annotations", required=True)
    d.add_argument("--split", type=int, default=1, help="fold for datasets with several (UCF101, HMDB51)")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(_call=("vssl.data.commands", "summary_command"))
    d = dsub.add_parser("check", help="open every video and list unreadable ones (exit 1 if any)")
    d.add_argument("--dataset", required=True)
    d.add_argument("--root", required=True)
    d.add_argument("--annotations", required=True)
    d.add_argument("--split", type=int, default=1)
    d.add_argument("--workers", type=int, default=0)
    d.add_argument("--backend", default="pyav")
    d.set_defaults(_call=("vssl.data.commands", "check_command"))
    d = dsub.add_parser("prepare", help="re-encode a tree of videos (short side, GOP) in parallel")
    d.add_argument("src")
    d.add_argument("dst")
    d.add_argument("--short-side", type=int, required=True)
    d.add_argument("--gop", type=int, default=16)
    d.add_argument("--workers", type=int, default=0, help="0 = all cores")
    d.add_argument("--crf", type=int, default=23)
    d.add_argument("--fps", type=float, default=0.0,
                   help="constant output frame rate (frames placed by timestamp); 0 = each source's nominal rate")
    d.set_defaults(_call=("vssl.data.commands", "prepare_command"))

    # synthetic benchmark --------------------------------------------------------------------------
    p = sub.add_parser("synth", help="generate the SynthSEVERE benchmark")
    p.add_argument("out")
    p.add_argument("--preset", default="tiny", choices=["tiny", "small", "base"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="0 = all cores")
    p.add_argument("--masks", action="store_true",
                   help="also write per-frame object masks in the DAVIS-2017 folder layout (for `vssl viz segment`)")
    p.set_defaults(_call=("vssl.data.commands", "synth_command"))

    # SEVERE ---------------------------------------------------------------------------------------
    p = sub.add_parser("severe", help="run SEVERE experiments on a backbone; results go to an SQLite store")
    p.add_argument("--backbone", required=True)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--name", default=None, help="model name in the results table (default: backbone[+checkpoint])")
    p.add_argument("--data-root", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--experiments", default=None, help="comma-separated experiment names (default: all 8)")
    p.add_argument("--protocol", default="paper", choices=["paper", "quick", "quick-ft", "linear", "knn"])
    p.add_argument("--recipe", default="severe",
                   help="a published row's variant of the paper protocol: severe, scratch, tubelet, avid, tclr, vit "
                        "(vssl.severe.recipes)")
    p.add_argument("--seeds", default="1", help="comma-separated seeds")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(_call=("vssl.severe.commands", "severe_command"))

    p = sub.add_parser("report", help="print the SEVERE table with Mean and Rank")
    p.add_argument("dir", nargs="?", default=None)
    p.add_argument("--format", default="md", choices=["md", "csv", "json", "html"])
    p.add_argument("--from-csv", action="append", default=[], metavar="FILE",
                   help="published rows to place beside measured ones, e.g. configs/severe/published/"
                        "tubelet_contrast_iccv23.csv (repeatable)")
    p.add_argument("--output", "-o", default=None, help="write to this file instead of stdout")
    p.add_argument("--plots", default=None, help="directory for per-factor PNG plots")
    p.add_argument("--analysis", action="store_true",
                   help="add SEVERE's sensitivity analysis: Kendall tau / Spearman rho of the in-domain column "
                        "against every other one, per-factor bars and a radar chart")
    p.set_defaults(_call=("vssl.severe.commands", "report_command"))

    # weights --------------------------------------------------------------------------------------
    p = sub.add_parser("weights", help="inspect and convert third-party checkpoints")
    wsub = p.add_subparsers(dest="weights_command", metavar="SUBCOMMAND", required=True)
    w = wsub.add_parser("inspect", help="describe a checkpoint: format, keys, shapes, guessed origin")
    w.add_argument("path")
    w.set_defaults(_call=("vssl.models.commands", "inspect_command"))
    w = wsub.add_parser("convert", help="convert a checkpoint into vssl's backbone layout")
    w.add_argument("path")
    w.add_argument("out")
    w.add_argument("--from", dest="source_format", required=True)
    w.set_defaults(_call=("vssl.models.commands", "convert_command"))

    # visualisation (issue 9) ----------------------------------------------------------------------
    p = sub.add_parser("viz", help="look at what models learn: tubelets, reconstructions, saliency, segmentation")
    vsub = p.add_subparsers(dest="viz_command", metavar="SUBCOMMAND", required=True)
    v = vsub.add_parser("tubelets", help="tubelet-augmented clip pairs as the recipe makes them (GIFs + PNG sheet)")
    v.add_argument("--config", required=True)
    v.add_argument("--n", type=int, default=8)
    v.add_argument("--out", required=True)
    v.add_argument("--trajectories", action="store_true", help="overlay the tubelet trajectories")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. the data paths a recipe leaves as SET_ME")
    v.add_argument("--device", default="auto")
    v.set_defaults(_call=("vssl.viz.commands", "tubelets_command"))
    v = vsub.add_parser("reconstruct", help="VideoMAE reconstructions / SIGMA prototype maps of a checkpoint")
    v.add_argument("--checkpoint", required=True)
    v.add_argument("--videos", nargs="+", required=True)
    v.add_argument("--out", required=True)
    v.add_argument("--seed", type=int, default=0, help="seeds the tube mask")
    v.add_argument("--assign", default="argmax", choices=["argmax", "sinkhorn"],
                   help="SIGMA: prototype of a token by argmax of its scores, or by Sinkhorn over the clip then argmax")
    _add_clip_args(v, "the run's")
    v.set_defaults(_call=("vssl.viz.commands", "reconstruct_command"))
    v = vsub.add_parser("saliency", help="spatio-temporal saliency of one or more checkpoints on the same clips")
    v.add_argument("--checkpoint", nargs="+", required=True,
                   help="run dirs, final.pt or backbone.pt files; random:BACKBONE for a random-init baseline")
    v.add_argument("--videos", nargs="+", required=True)
    v.add_argument("--out", required=True)
    v.add_argument("--backbone", default=None, help="architecture of checkpoints without a run config beside them")
    v.add_argument("--target", default="auto", choices=["auto", "class", "norm", "top"],
                   help="score to explain: top class logit (supervised head), pooled-feature norm, or top feature")
    v.add_argument("--vit-method", default="gradient", choices=["gradient", "rollout"],
                   help="ViTs: gradient x input per token, or attention rollout")
    _add_clip_args(v, "the first run's")
    v.set_defaults(_call=("vssl.viz.commands", "saliency_command"))
    v = vsub.add_parser("segment", help="unsupervised video object segmentation, scored in the DAVIS-2017 convention")
    v.add_argument("--checkpoint", default=None)
    v.add_argument("--backbone", default=None)
    v.add_argument("--davis", required=True, help="folder with JPEGImages/480p and Annotations/480p")
    v.add_argument("--out", required=True)
    v.add_argument("--assign", default="auto", choices=["auto", "prototypes", "kmeans"],
                   help="token -> segment: SIGMA prototype argmax or k-means of the tokens (auto: prototypes "
                        "when the checkpoint has them)")
    v.add_argument("--clusters", type=int, default=0,
                   help="segments per video (0: k-means = annotated objects + 1, prototypes = 20)")
    v.add_argument("--frames", type=int, default=16, help="frames per clip")
    v.add_argument("--size", type=int, default=0, help="short side fed to the model (0: the frames', at most 224)")
    v.add_argument("--max-videos", type=int, default=0, help="only the first N videos (0 = all)")
    v.add_argument("--device", default="auto")
    v.set_defaults(_call=("vssl.viz.commands", "segment_command"))

    # demo -----------------------------------------------------------------------------------------
    p = sub.add_parser("demo", help="the main job on the built-in synthetic benchmark")
    p.add_argument("--out", default="vssl-demo")
    p.add_argument("--preset", default=None, choices=["tiny", "small", "base"],
                   help="SynthSEVERE preset (default: tiny)")
    p.add_argument("--quick", action="store_true", help="half the videos and 30 pretraining steps: a smoke run of the whole pipeline")
    p.add_argument("--long", action="store_true", help="the documented longer run: 2x the corpus, test sets of up to 4,608 clips, 500 steps, 3 seeds")
    p.add_argument("--budget", default=None, choices=["smoke", "quick", "default", "long", "gpu"],
                   help="a named budget (vssl.demo.BUDGETS); gpu: 4x corpus, 8x test sets, 2,000 steps of batch 32, "
                        "3 seeds and a trained-with-labels reference row (minutes on one GPU); smoke: every model "
                        "at toy sizes, one seed, about a minute: checks an installation (its numbers mean nothing)")
    p.add_argument("--seeds", default=None)
    p.add_argument("--device", default="auto")
    p.set_defaults(_call=("vssl.demo", "demo_command"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_call", None):
        parser.print_help()
        return 2
    module_name, func_name = args._call
    func = getattr(importlib.import_module(module_name), func_name)
    from vssl.errors import VsslError  # light

    try:
        rc = func(args)
    except VsslError as e:  # user errors: one line, no traceback
        print(f"vssl: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("vssl: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
