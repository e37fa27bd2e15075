"""Run the three benchmarks and write one markdown report (plus each benchmark's JSON).

Each benchmark runs in its own process (the data pipeline pins itself to one core), with its output
streamed through, and the tables are gathered into ``<out>/benchmarks.md``.

Usage:
    python benchmarks/run_all.py --tiny --out /tmp/bench          # CPU sizes, about 2-3 minutes idle
    python benchmarks/run_all.py --out $OUT                       # full sizes (GPU); see gpu_check.sh
    python benchmarks/run_all.py --smoke --out /tmp/bench         # seconds; what the tests run
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, args: list[str], out: Path, name: str, timeout: float | None) -> dict | None:
    json_path = out / f"{name}.json"
    cmd = [sys.executable, str(HERE / script), *args, "--json", str(json_path)]
    print(f"\n$ {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(cmd, env=env, timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    wall = time.perf_counter() - t0
    print(f"[{name}: exit {rc}, {wall:.0f} s]", flush=True)
    if rc != 0 or not json_path.exists():
        return {"benchmark": name, "error": f"exit {rc}", "wall_s": wall}
    result = json.loads(json_path.read_text())
    result["wall_s"] = wall
    return result


def table(headers, rows) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def report(results: list[dict]) -> str:
    parts = []
    for res in results:
        name = res["benchmark"]
        wall = f", {res['wall_s']:.0f} s" if res.get("wall_s") else ""
        parts.append(f"## {name} ({res.get('size', '?')}{wall})\n")
        if "error" in res:
            parts.append(f"failed: {res['error']}\n")
            continue
        parts.append(f"Hardware: {res['hardware']}" + (f"; timed by {res['clock']}" if res.get("clock") else "") + "\n")
        rows = res["rows"]
        if name.startswith("pretrain_step"):
            parts.append(table(["case", "input", "precision", "ms/step", "clips/s", "peak memory", "ratio", "note"], [
                [r["case"], r.get("shape", ""), r.get("precision", ""),
                 f"{r['ms_step']:.1f}" if "ms_step" in r else "", f"{r['clips_s']:.1f}" if "clips_s" in r else "",
                 f"{r['peak_bytes'] / 2**30:.2f} GiB ({r['peak_kind']})" if "peak_bytes" in r else r.get("error", ""),
                 (f"{r['speedup']:.2f}x clips/s" + (f", {r['mem_ratio']:.2f}x memory" if "mem_ratio" in r else "")
                  + f" vs {r['vs']}") if "vs" in r else "",
                 f"tubelet synthesis {100 * r['synth_frac']:.1f} % of the step ({r['synth_ms']:.1f} ms)"
                 if "synth_frac" in r else ""] for r in rows]))
        elif name == "tubelets":
            parts.append(f"batch {res['batch']}\n")
            parts.append(table(["implementation", "device", "ms/batch", "clips/s", "vs baseline (CPU)"], [
                [r["impl"], r["device"], f"{r['ms_per_batch']:.1f}", f"{r['clips_s']:.1f}", f"{r['speedup']:.2f}x"]
                for r in rows]))
        elif name == "data_pipeline":
            parts.append(f"{res['pin']}\n")
            headers = ["file", "format", "reader", "frame-accurate", "clips per CPU-s (1 core)", "vs pyav-plain",
                       "vs decord-plain"]
            parts.append(table(headers, [
                [r["file"], r["format"], r["reader"], r.get("error") or ("yes" if r["wrong"] == 0 else "no"),
                 f"{r['clips_s']:.1f}" if "clips_s" in r else "",
                 *(f"{r[k]:.2f}x" if k in r else "n/a" for k in ("vs_pyav-plain", "vs_decord-plain"))]
                for r in rows]))
        elif name == "sinkhorn":
            parts.append(f"N={res['n']} K={res['k']}, label agreement {res['agreement']:.4f}\n")
            parts.append(table(["implementation", "ms per call", "vs log domain", "labels = fp32 labels"], [
                [r["impl"], f"{r['ms']:.1f}", f"{r['speedup']:.2f}x",
                 f"{r['agreement_with_fp32']:.4f}" if "agreement_with_fp32" in r else ""] for r in rows]))
        elif name.startswith("gpu_levers") or name == "engine_data":  # their own tables
            module = "gpu_levers" if name.startswith("gpu_levers") else name
            parts.append(importlib.import_module(f"{__package__}.{module}" if __package__ else module).report(res))
        parts.append("")
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tiny", action="store_true", help="CPU sizes")
    g.add_argument("--smoke", action="store_true", help="smallest sizes (tests)")
    p.add_argument("--out", default="bench-results")
    p.add_argument("--device", default=None, help="passed to pretrain_step and tubelets")
    p.add_argument("--steps", type=int, default=None, help="passed to pretrain_step")
    p.add_argument("--threads", type=int, default=None, help="torch threads for pretrain_step and tubelets")
    p.add_argument("--compile", action="store_true", help="also run pretrain_step with --compile")
    p.add_argument("--profile", action="store_true", help="pretrain_step prints a torch.profiler table per case")
    p.add_argument("--skip", default="", help="comma-separated: pretrain_step,tubelets,data_pipeline")
    p.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = ["--tiny"] if args.tiny else ["--smoke"] if args.smoke else []
    dev = ["--device", args.device] if args.device else []
    steps = ["--steps", str(args.steps)] if args.steps else []
    # one torch thread on CPU sizes: on a loaded 2-core machine OpenMP's second thread gets descheduled
    # and every small op waits for it (the tubelet synthesizer measured 9 ms with 1 thread, 900 ms with 2)
    threads = args.threads or (1 if (args.tiny or args.smoke) else None)
    dev += ["--threads", str(threads)] if threads else []
    if threads == 1 and args.device in (None, "cpu") and (args.tiny or args.smoke):
        dev += ["--cpu-time"]  # one thread: its CPU time is the compute time, without other processes
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    results = []
    if "pretrain_step" not in skip:
        prof = ["--profile"] if args.profile else []
        results.append(run("pretrain_step.py", size + dev + steps + prof, out, "pretrain_step", args.timeout))
    if "tubelets" not in skip:
        results.append(run("tubelets.py", size + dev, out, "tubelets", args.timeout))
    if "data_pipeline" not in skip:
        results.append(run("data_pipeline.py", size, out, "data_pipeline", args.timeout))
    if args.compile and "pretrain_step" not in skip:
        res = run("pretrain_step.py", size + dev + steps + ["--compile"], out, "pretrain_step_compiled", args.timeout)
        res["benchmark"] = "pretrain_step_compiled"
        results.append(res)
    text = report(results)
    (out / "benchmarks.md").write_text(text)
    print("\n" + text)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
