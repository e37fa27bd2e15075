"""Issue 18's speed levers, each on and off, against the default step and the reference step of the same run.

One group of cases per process (``--group``), each case a ``pretrain_step`` step (the engine's
autocast, fused AdamW, and its scalar reads) with one lever changed:

- ``vit``: ``ref_videomae`` (the public VideoMAE step), ``videomae``, ``sigma`` (SIGMA-MLP), and
  ``:defer_logs`` (scalars read every 10 steps instead of every step, ``train.defer_logs``),
  ``:sinkhorn_bf16`` (``method.sinkhorn_precision``), ``:sinkhorn_tol`` (``method.sinkhorn_tol``
  1e-2), ``:levers`` (the eager levers together);
- ``cnn``: ``bare_r2plus1d`` (forward + backward only), ``tubelet_contrast`` and
  ``:cuda_graph_keys`` (``method.cuda_graph_keys``), ``:defer_logs``, ``:levers``; with the tubelet
  synthesis share of each step;
- ``compile``: ``train.compile`` (``torch.compile(dynamic=False)`` of the methods' ``forward_loss``, the
  step after its augmentation) of ``videomae``, ``sigma`` and ``tubelet_contrast``, against their eager
  steps and the two reference steps in the same process; the cold compile is the warm-up, stated.

Timing: after warm-up, rounds of ``--round`` steps per case, interleaved, one device sync per
round (so a lever that removes host syncs inside the step is not charged one per step); the rate is
the median round. Peak memory: ``torch.cuda.max_memory_allocated`` over a round plus the case's
persistent state. Host syncs per step: the warnings of ``torch.cuda.set_sync_debug_mode`` over
``LOG_EVERY`` steps, with the lines they come from. A case whose best variant misses its target
gets a ``torch.profiler`` table. The default step of each method is the ratio's denominator
(``vs default``); ``vs reference`` is against ``ref_videomae`` / ``bare_r2plus1d``.

Usage:
    python benchmarks/gpu_levers.py --group vit --json $OUT/levers_vit.json      # full sizes, CUDA
    python benchmarks/gpu_levers.py --smoke --device cpu --group cnn              # seconds; the tests
"""

from __future__ import annotations

import argparse
import gc
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

try:
    from benchmarks import pretrain_step as PS
    from benchmarks.common import gib, hardware, markdown_table, median, sync, write_json
except ImportError:  # run as a script
    import pretrain_step as PS
    from common import gib, hardware, markdown_table, median, sync, write_json

from vssl.engine.optim import resolve_precision

# case -> (the pretrain_step case it varies, method params, engine options)
CASES = {
    "ref_videomae": ("ref_videomae", {}, {}),
    "videomae": ("videomae", {}, {}),
    "videomae:defer_logs": ("videomae", {}, {"defer_logs": True}),
    "sigma": ("sigma", {}, {}),
    "sigma:defer_logs": ("sigma", {}, {"defer_logs": True}),
    "sigma:sinkhorn_bf16": ("sigma", {"sinkhorn_precision": "bf16"}, {}),
    "sigma:sinkhorn_tol": ("sigma", {"sinkhorn_tol": 1e-2}, {}),
    "sigma:levers": ("sigma", {"sinkhorn_precision": "bf16"}, {"defer_logs": True}),
    "bare_r2plus1d": ("bare_r2plus1d", {}, {}),
    "tubelet_contrast": ("tubelet_contrast", {}, {}),
    "tubelet_contrast:cuda_graph_keys": ("tubelet_contrast", {"cuda_graph_keys": True}, {}),
    "tubelet_contrast:defer_logs": ("tubelet_contrast", {}, {"defer_logs": True}),
    "tubelet_contrast:levers": ("tubelet_contrast", {"cuda_graph_keys": True}, {"defer_logs": True}),
    "videomae:compile": ("videomae", {}, {"compile": True}),
    "sigma:compile": ("sigma", {}, {"compile": True}),
    "tubelet_contrast:compile": ("tubelet_contrast", {}, {"compile": True}),
}
GROUPS = {  # in order of importance: a group that runs out of its --budget drops its last cases
    "vit": ["ref_videomae", "videomae", "sigma", "sigma:sinkhorn_bf16", "sigma:levers", "sigma:sinkhorn_tol",
            "sigma:defer_logs", "videomae:defer_logs"],
    "cnn": ["bare_r2plus1d", "tubelet_contrast", "tubelet_contrast:levers", "tubelet_contrast:cuda_graph_keys",
            "tubelet_contrast:defer_logs"],
    "compile": ["ref_videomae", "bare_r2plus1d", "videomae", "sigma", "tubelet_contrast", "videomae:compile",
                "sigma:compile", "tubelet_contrast:compile"],
}
REFERENCE = {"videomae": "ref_videomae", "sigma": "ref_videomae", "tubelet_contrast": "bare_r2plus1d"}
# issue 18's targets at the full sizes: clips/s, peak GiB, synthesis share of the step
TARGETS = {"videomae": {"clips_s": 900, "peak_gib": 16}, "sigma": {"clips_s": 600},
           "tubelet_contrast": {"clips_s": 300, "synth_frac": 0.05}}


def count_syncs(step, steps: int, device) -> tuple[float, list[str]]:
    """Host synchronisations per step that CUDA's sync debug mode reports (``.item()``, ``nonzero``,
    blocking host<->device copies), and the five lines that cause most of them."""
    if torch.device(device).type != "cuda":
        return float("nan"), []
    sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sync(device)
    where = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "ynchroniz" in str(w.message))
    return sum(where.values()) / steps, [f"{k} x{v}" for k, v in where.most_common(5)]


def time_rounds(cases: list[dict], rounds: int, per_round: int, device) -> None:
    """``rounds`` x (``per_round`` steps of each case, then one sync), interleaved across cases."""
    cuda = torch.device(device).type == "cuda"
    for c in cases:
        c["peak"] = c["peak"] if not cuda else 0
    for _ in range(rounds):
        for c in cases:
            sync(device)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                start = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            for _ in range(per_round):
                c["step"]()
            sync(device)
            c["times"].append((time.perf_counter() - t0) / per_round)
            if cuda:
                c["peak"] = max(c["peak"], torch.cuda.max_memory_allocated() - start + c["persistent"])


def misses(row: dict, full: bool) -> list[str]:
    """The targets this row misses (only at the full sizes the targets are stated for)."""
    target = TARGETS.get(row["base"]) if full else None
    if not target or "error" in row:
        return []
    out = []
    if row["clips_s"] < target["clips_s"]:
        out.append(f"{row['clips_s']:.0f} < {target['clips_s']} clips/s")
    if "peak_gib" in target and row["peak_bytes"] / 2**30 > target["peak_gib"]:
        out.append(f"{row['peak_bytes'] / 2**30:.1f} > {target['peak_gib']} GiB")
    if "synth_frac" in target and row.get("synth_frac", 0) >= target["synth_frac"]:
        out.append(f"synthesis {100 * row['synth_frac']:.1f} % >= {100 * target['synth_frac']:.0f} %")
    return out


def build(names: list[str], size: dict, device, amp, warmup: int, budget: float
          ) -> tuple[list[dict], list[dict]]:
    """Build and warm up each case (a cold ``torch.compile`` happens here); a case that fails to build
    is reported and the others go on; after ``budget`` seconds (if > 0) no further case is started."""
    built, failed, t0 = [], [], time.perf_counter()
    for name in names:
        base, params, opts = CASES[name]
        if budget and time.perf_counter() - t0 > budget:
            failed.append({"case": name, "base": base, "error": f"not run: the group's {budget:.0f} s budget was spent"})
            continue
        levers = {} if base in ("ref_videomae", "bare_r2plus1d") else dict(params=params,
                                                                         defer_logs=opts.get("defer_logs", False))
        try:
            c = PS.build_case(name, size, device, amp, warmup, opts.get("compile", False), base=base, **levers)
        except Exception as e:  # noqa: BLE001 - one failing lever must not cost the others' numbers
            failed.append({"case": name, "base": base, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
            print(f"  {name}: FAILED {failed[-1]['error']}", flush=True)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        built.append(c)
        print(f"  built {name} ({c['setup_s']:.1f} s with warm-up)", flush=True)
    return built, failed


def rows_of(built: list[dict], failed: list[dict], amp, device, full: bool) -> list[dict]:
    rows = []
    for c in built:
        row = PS.case_row(c, amp, len(c["times"]), device)
        row["base"] = c["base"]
        row["syncs_per_step"], row["sync_sources"] = c.get("syncs", (float("nan"), []))
        rows.append(row)
    by = {r["case"]: r for r in rows}
    for r in rows:
        for key, other in (("vs_default", r["base"]), ("vs_reference", REFERENCE.get(r["base"]))):
            if other in by and other != r["case"]:
                r[key] = r["clips_s"] / by[other]["clips_s"]
        r["misses"] = misses(r, full)
    return rows + failed


def report(res: dict) -> str:
    """A markdown table of one group's rows (ready to paste), plus the profiles of missed targets."""
    head = ["case", "clips/s", "ms/step", "peak", "vs default", "vs reference", "host syncs/step",
            "warm-up s", "synthesis", "target"]
    table = []
    for r in res["rows"]:
        if "error" in r:
            table.append([r["case"], "failed: " + r["error"]] + [""] * (len(head) - 2))
            continue
        synth = f"{100 * r['synth_frac']:.1f} % ({r['synth_ms']:.1f} ms)" if "synth_frac" in r else ""
        table.append([
            r["case"], f"{r['clips_s']:.1f}", f"{r['ms_step']:.1f}", gib(r["peak_bytes"]),
            f"{r['vs_default']:.2f}x" if "vs_default" in r else "",
            f"{r['vs_reference']:.2f}x" if "vs_reference" in r else "",
            "" if r["syncs_per_step"] != r["syncs_per_step"] else f"{r['syncs_per_step']:.1f}",
            f"{r['setup_and_warmup_s']:.0f}", synth,
            ("missed: " + "; ".join(r["misses"])) if r["misses"] else ("met" if r["base"] in TARGETS and
                                                                       res["size"] == "full" else "")])
    parts = [f"### levers: {res['group']} ({res['size']}, {res['hardware']})\n",
             markdown_table(head, table), ""]
    syncs = [f"- {r['case']}: {', '.join(r['sync_sources'])}" for r in res["rows"] if r.get("sync_sources")]
    if syncs:
        parts += ["Host syncs come from (file:line x count over the counted steps):", *syncs, ""]
    parts += [f"```\n{t}\n```\n" for t in res.get("profiles", {}).values()]
    return "\n".join(parts)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tiny", action="store_true", help="CPU sizes")
    g.add_argument("--smoke", action="store_true", help="the smallest sizes (tests)")
    p.add_argument("--group", choices=sorted(GROUPS), required=True)
    p.add_argument("--cases", default="", help="comma-separated subset of the group's cases")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per case (default 3 full, 1 else)")
    p.add_argument("--round", type=int, default=None, help="steps per round (default 5 full, 1 else)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: CPU smoke runs)")
    p.add_argument("--budget", type=float, default=0, help="seconds: build no further case after this (0 = no limit)")
    p.add_argument("--no-profile", action="store_true", help="no profiler table for missed targets")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None, help="append the table here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    PS.COMPILE_BACKEND = args.compile_backend
    size_name = "smoke" if args.smoke else "tiny" if args.tiny else "full"
    full = size_name == "full"
    size, device = PS.SIZES[size_name], torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    amp = resolve_precision("auto", device)
    names = [n.strip() for n in args.cases.split(",") if n.strip()] or GROUPS[args.group]
    bad = set(names) - set(CASES)
    if bad:
        p.error(f"unknown cases {sorted(bad)}; choose from {sorted(CASES)}")
    torch.manual_seed(0)
    print(f"# gpu_levers {args.group} ({size_name}) on {hardware()}", flush=True)
    built, failed = build(names, size, device, amp, 3 if full else 1, args.budget)
    time_rounds(built, args.rounds or (3 if full else 1), args.round or (5 if full else 1), device)
    for c in built:
        c["syncs"] = count_syncs(c["step"], PS.LOG_EVERY if full else 1, device)
    rows = rows_of(built, failed, amp, device, full)
    res = {"benchmark": "gpu_levers", "group": args.group, "size": size_name, "hardware": hardware(),
           "precision": str(amp), "rows": rows}
    write_json(args.json, res)  # the numbers are safe before the profiler runs
    best = {}
    for r in rows:  # per method, the fastest variant; it gets a profile when it misses a target
        if "error" not in r and r["base"] in TARGETS and r["clips_s"] > best.get(r["base"], {}).get("clips_s", 0):
            best[r["base"]] = r
    missed = [c for c in built if any(c["name"] == r["case"] and r["misses"] for r in best.values())]
    if missed and not args.no_profile:
        try:
            res["profiles"] = PS.profile_cases(missed, device, rows=15)
        except Exception as e:  # noqa: BLE001
            res["profiles"] = {"error": f"profiling failed: {type(e).__name__}: {e}"}
        write_json(args.json, res)
    text = report(res)
    print(text, flush=True)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(text + "\n")
    return res


if __name__ == "__main__":
    main()
