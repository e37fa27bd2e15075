"""The command line of ``benchmarks/reliability.py``: runs the sections and prints Markdown tables."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import reliability as R
from benchmarks.common import hardware, markdown_table

SECTIONS = ("kills", "data", "store", "tests")
TEST_FILES = ["tests/test_reliability_checkpoints.py", "tests/test_reliability_numeric.py",
              "tests/test_reliability_disk.py", "tests/test_reliability_config.py"]


def yes(flag: bool) -> str:
    return "yes" if flag else "**NO**"


def kills_section(work: Path, args) -> str:
    damaged = ["damaged-replaced", "damaged-in-place"][:args.damaged]
    plan = ["random"] * args.kills + ["write"] * args.write_kills + damaged
    res = R.kill_trials(work, plan, args.workload, steps=args.steps, ckpt_every=args.ckpt_every, seed=args.seed,
                        parallel=args.parallel)
    t = res["trials"]
    rows = [[x["trial"], x["kind"], x["target"], yes(x["killed"]), x["logged_at_kill"],
             x["checkpoint_at_kill"] or "none", "yes" if x["half_written_left"] else "no", x["resumed_from"],
             yes(x["resume_rc"] == 0), yes(x["equal_weights"]), yes(x["log_ok"])] for x in t]
    table = markdown_table(["#", "kind", "SIGKILL at", "killed", "steps logged", "last.pt step",
                            "half-written tmp left", "resumed from step", "resume ok", "weights bitwise equal",
                            "log = reference"], rows)
    mid_write = sum(x["half_written_left"] for x in t)
    totals = (f"{len(t)} trials ({res['workload']}, {res['steps']} steps, checkpoint every {res['ckpt_every']}; "
              f"uninterrupted run {res['reference_s']:.1f} s): killed {sum(x['killed'] for x in t)}, "
              f"killed during a checkpoint write {mid_write}, resumed {sum(x['resume_rc'] == 0 for x in t)}, "
              f"final weights bitwise equal {sum(x['equal_weights'] for x in t)}/{len(t)}, metrics.jsonl equal "
              f"{sum(x['log_ok'] for x in t)}/{len(t)}; half-written checkpoints loaded: 0 (each resume used the step "
              "shown, never a temporary).")
    return f"### Kills\n\n{totals}\n\n{table}\n"


def data_section(work: Path, args) -> str:
    res = R.broken_data_trials(work, n_videos=args.videos, seed=args.seed)
    rows = [[name, rc, broken, listed, wrong] for name, rc, broken, listed, wrong in res["rows"]]
    kinds = ", ".join(f"{k} {n}" for k, n in res["broken_kinds"].items())
    return (f"### Broken data\n\n{res['videos']} videos in a csv manifest, {sum(res['broken_kinds'].values())} broken "
            f"({kinds}); SynthSEVERE domain_a: {res['severe_videos']} videos, 10 % broken the same ways.\n\n"
            + markdown_table(["command", "exit status", "broken videos", "listed (found)", "listed but not broken"],
                             rows)
            + "\n")


def store_section(work: Path, args) -> str:
    kills = R.severe_kill_trials(work, kills=args.severe_kills, seed=args.seed)["trials"]
    rows = [[k["trial"], k["target"], yes(k["killed"]), k["stored_before"], yes(k["rerun_rc"] == 0), k["skipped"],
             k["rows"], k["distinct"], yes(k["kept"])] for k in kills]
    out = "### Results store\n\n`vssl severe` (2 experiments x 2 seeds, quick-ft) killed, then rerun:\n\n"
    out += markdown_table(["#", "SIGKILL after", "killed", "results stored", "rerun ok", "skipped on rerun",
                           "rows", "distinct keys", "earlier rows unchanged"], rows)
    w = R.concurrent_writers(work / "writers", writers=args.writers, puts=args.puts)
    c = R.concurrent_severe(work)
    out += (f"\n\n{w['writers']} processes writing at once ({w['puts']} puts, {w['puts'] // 2} under keys they all "
            f"share): {w['rows']} rows of {w['expected_rows']} expected, own results intact {yes(w['own_ok'])}, "
            f"shared keys one row each {yes(w['shared_ok'])}, exit statuses {w['rcs']}, "
            f"seconds per writer {w['seconds']}.\n\nTwo `vssl severe` processes on one output folder at once: exit "
            f"statuses {c['rcs']}, {c['rows']} rows ({c['distinct']} distinct keys, {c['expected']} expected).\n")
    return out


def tests_section(args) -> str:
    env = {**os.environ, "VSSL_HYPOTHESIS_EXAMPLES": str(args.examples)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "--hypothesis-show-statistics", *TEST_FILES], cwd=R.ROOT, env=env, capture_output=True,
                          text=True)
    passed = re.findall(r"^PASSED (\S+)", proc.stdout, re.M)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)
    examples = {}
    for block in re.split(r"\n(?=tests/test_reliability_config\.py::)", proc.stdout):
        name = re.match(r"tests/test_reliability_config\.py::(\w+)", block)
        found = re.search(r"(\d+) passing", block)
        if name and found:
            examples[name.group(1)] = int(found.group(1))
    rows = [[t.split("::")[0].replace("tests/", ""), t.split("::")[1], "passed"] for t in passed]
    rows += [[t.split("::")[0].replace("tests/", ""), t.split("::")[1], "**FAILED**"] for t in failed]
    out = (f"### Untrusted checkpoints, numerical faults, full disk, bad configuration (pytest, "
           f"{time.perf_counter() - t0:.0f} s)\n\n" + markdown_table(["file", "test", "result"], rows))
    if examples:
        out += "\n\nHypothesis examples per property (all passing):\n\n" + markdown_table(
            ["property", "examples"], [[k, v] for k, v in examples.items()] + [["total", sum(examples.values())]])
    if proc.returncode:
        out += "\n\n```\n" + proc.stdout[-4000:] + "\n```"
    return out + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(R.__doc__ or "").splitlines()[0])
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    p.add_argument("--workload", default="video_contrast", choices=["video_contrast", "toy"])
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs at random points")
    p.add_argument("--write-kills", type=int, default=2, help="SIGKILLs half-way through a checkpoint write")
    p.add_argument("--damaged", type=int, default=2, help="kills followed by a damaged last.pt (0-2)")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--ckpt-every", type=int, default=3)
    p.add_argument("--parallel", type=int, default=1, help="victims run at once")
    p.add_argument("--videos", type=int, default=100, help="videos in the broken-data manifest (10 %% broken)")
    p.add_argument("--severe-kills", type=int, default=3)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--puts", type=int, default=1000)
    p.add_argument("--examples", type=int, default=1000, help="hypothesis examples per property")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the markdown sections as JSON here")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    work = Path(args.work or tempfile.mkdtemp(prefix="vssl-reliability-"))
    print(f"# vssl reliability trials\n\n{hardware()}; work folder {work}\n", flush=True)
    parts = {}
    builders = {"kills": lambda: kills_section(work / "kills", args), "data": lambda: data_section(work / "data", args),
                "store": lambda: store_section(work / "store", args), "tests": lambda: tests_section(args)}
    for name in only:
        t0 = time.perf_counter()
        parts[name] = builders[name]() + f"\n({name}: {time.perf_counter() - t0:.0f} s)\n"
        print(parts[name], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(parts, indent=1))
    return 0
