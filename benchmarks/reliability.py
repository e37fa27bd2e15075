"""Reliability trials of issue 8: the figures in RELIABILITY.md.

    .venv/bin/python benchmarks/reliability.py                 # all sections, full trial counts (~15 min on 2 cores)
    .venv/bin/python benchmarks/reliability.py --only kills --kills 10 --write-kills 2

Sections: ``kills`` (SIGKILL a pretraining run at random points and half-way through checkpoint writes,
resume, compare the final weights bit for bit with an uninterrupted run), ``data`` (10 % broken videos
through ``vssl data check``, pretraining, fine-tuning and ``vssl severe``), ``checkpoints`` (untrusted
files through every loader), ``store`` (SIGKILL ``vssl severe`` and rerun; concurrent writers),
``faults`` (NaN/Inf losses, full disk) and ``config`` (the hypothesis properties, 1000 examples each).
The tests in ``tests/test_reliability_*.py`` run the same functions with fewer trials.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.reliability_cases import TOY, VIDEO_CONTRAST  # noqa: E402

# The child: `vssl <argv>`, optionally stopping half-way through writing the checkpoint of one step
# (VSSL_TRIAL_PAUSE_AT_STEP) so that a SIGKILL lands while the temporary file is half written.
CHILD = r"""
import os, sys, time
pause = os.environ.get("VSSL_TRIAL_PAUSE_AT_STEP")
if pause:
    import io, torch
    real = torch.save
    def save(obj, f, *args, **kwargs):
        name = str(getattr(f, "name", ""))
        if isinstance(obj, dict) and obj.get("step") == int(pause) and ".last.pt.tmp" in name:
            buf = io.BytesIO(); real(obj, buf, *args, **kwargs); data = buf.getvalue()
            f.write(data[: len(data) // 2]); f.flush(); os.fsync(f.fileno())
            open(os.environ["VSSL_TRIAL_MARKER"], "w").close()
            time.sleep(600)
        return real(obj, f, *args, **kwargs)
    torch.save = save
from vssl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def workload(name: str, steps: int = 16, ckpt_every: int = 3) -> list[str]:
    """``vssl pretrain`` arguments (without --out) of a deterministic CPU run."""
    common = ["--set", f"train.max_steps={steps}", "--set", f"train.ckpt_every={ckpt_every}",
              "--set", "train.log_every=1", "--set", "train.deterministic=true", "--set", "train.tensorboard=false",
              "--set", "train.progress=false"]
    if name == "toy":  # supervised R(2+1)D-tiny on random clips (seconds)
        return ["pretrain", "--config", str(TOY), "--set", "data.random_size=32", *common]
    if name == "video_contrast":  # MoCo-style video contrast: key queue, momentum encoder, augmentation RNG
        return ["pretrain", "--config", str(VIDEO_CONTRAST), "--set", "data.dataset=random",
                "--set", "data.random_size=48", "--set", "data.batch_size=8", "--set", "data.num_frames=8",
                "--set", "data.num_workers=2", "--set", "method.queue_size=64", "--set", "schedule.warmup_steps=2",
                *common]
    raise ValueError(name)


def child_env(**extra: str) -> dict:
    # the parent's thread count in every child: the same kernels, so the same floating-point results
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), **extra}


FORK = False  # tests set it: victims are forked from the test process (torch already imported: seconds saved)


def start(argv: list[str], **env: str):
    """``vssl <argv>`` in a child process that can be SIGKILLed: a new interpreter, or a fork (``FORK``)."""
    if FORK:
        return _Forked(argv, env)
    return subprocess.Popen([sys.executable, "-c", CHILD, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=child_env(**env), cwd=ROOT)


class _Forked:
    """The part of ``subprocess.Popen`` the trials use, for a forked child running ``CHILD``'s code
    (as DataLoader workers are forked from a process that has torch loaded)."""

    def __init__(self, argv: list[str], env: dict):
        self.log = Path(tempfile.mkstemp(prefix="vssl-trial-", suffix=".log")[1])
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into the caller (a test runner)
            code = 1
            try:
                fd = os.open(self.log, os.O_WRONLY | os.O_TRUNC)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.environ.update(env)
                sys.argv = ["vssl", *argv]
                try:
                    exec(compile(CHILD, "<trial child>", "exec"), {"__name__": "__trial__"})
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def communicate(self, timeout: float | None = None):
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        text = self.log.read_text(errors="replace")
        self.log.unlink(missing_ok=True)
        return text, None


def run_child(argv: list[str], timeout: float = 600) -> tuple[int, str]:
    proc = start(argv)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def run_in_process(argv: list[str]) -> tuple[int, str]:
    """``vssl <argv>`` in this process (no second torch import); stdout and stderr together."""
    from vssl.cli import main

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            rc = main(argv)
    finally:
        torch.use_deterministic_algorithms(False)  # a deterministic run turns it on for the process
    return rc, buf.getvalue()


def logged_steps(run: Path) -> int:
    try:
        return sum(1 for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip().endswith("}"))
    except OSError:
        return 0


def checkpoint_step(path: Path) -> int | None:
    from vssl.serialization import load_checkpoint
    from vssl.errors import CheckpointError

    try:
        return int(load_checkpoint(path)["step"])
    except CheckpointError:
        return None


def same_run(ref: Path, run: Path) -> tuple[bool, bool]:
    """(final weights bitwise equal, metrics.jsonl has every step once with the same losses)."""
    equal = True
    for name in ("backbone.pt", "final.pt"):
        try:
            a, b = (torch.load(d / name, weights_only=True) for d in (ref, run))
        except (OSError, RuntimeError):
            return False, False
        a, b = a.get("model", a), b.get("model", b)
        equal &= a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [[json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines()] for d in (ref, run)]
    log_ok = [r["step"] for r in rows[1]] == [r["step"] for r in rows[0]] and \
        [r["loss"] for r in rows[1]] == [r["loss"] for r in rows[0]]
    return bool(equal), log_ok


# --------------------------------------------------------------------------------------------------
# 1. SIGKILL at random points and during checkpoint writes
# --------------------------------------------------------------------------------------------------

def _kill_when(proc: subprocess.Popen, ready, timeout: float = 600) -> bool:
    """SIGKILL ``proc`` once ``ready()``; False if it ended first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return True
        time.sleep(0.002)
    proc.communicate()
    return False


def _start_victim(trial: dict, argv: list[str], out_dir: Path, work: Path, step_s: float):
    """Start the run to kill and return ``(process, ready)``: SIGKILL it once ``ready()``."""
    if trial["kind"] == "write":
        marker = work / f"marker{trial['trial']}"
        trial["target"] = f"writing checkpoint {trial['at']}"
        proc = start([*argv, "--out", str(out_dir)], VSSL_TRIAL_PAUSE_AT_STEP=str(trial["at"]),
                     VSSL_TRIAL_MARKER=str(marker))
        return proc, marker.exists
    target, delay, seen = trial["at"], trial["delay"] * step_s, {}

    def ready():
        if logged_steps(out_dir) >= target:
            seen.setdefault("t", time.monotonic())
            return time.monotonic() - seen["t"] >= delay
        return False

    trial["target"] = f"step {target} + {delay * 1000:.0f} ms"
    return start([*argv, "--out", str(out_dir)]), ready


def _after_kill(trial: dict, out_dir: Path) -> None:
    """Record what the kill left on disk."""
    ckpt = out_dir / "checkpoints"
    trial["logged_at_kill"] = logged_steps(out_dir)
    trial["checkpoint_at_kill"] = checkpoint_step(ckpt / "last.pt") if (ckpt / "last.pt").exists() else None
    tmps = sorted(ckpt.glob(".last.pt.tmp*")) if ckpt.is_dir() else []
    trial["half_written_left"] = bool(tmps) and all(checkpoint_step(t) is None for t in tmps)


def kill_trials(work: Path, plan: list[str], name: str = "toy", steps: int = 16, ckpt_every: int = 3,
                seed: int = 0, resume_in_process: bool = False, parallel: int = 1, log=print) -> dict:
    """Kill one run per entry of ``plan`` ("random", "write", "damaged-replaced", "damaged-in-place"),
    resume it and compare with an uninterrupted run.

    "random" kills after a random number of logged steps (0 = during start-up) plus a random part
    of a step; "write" kills half-way through writing a random checkpoint; "damaged-*" kill at a random
    step after two checkpoints, then damage ``last.pt`` before resuming. ``parallel`` runs that many
    victims at once (the resumes run one after another).

    Returns ``{"trials": [...], "reference_s": ...}``; each trial records where the kill landed
    (steps logged, the checkpoint on disk, a half-written temporary), how the resume went and
    whether the final weights and the log equal the reference.
    """
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(seed)
    argv = workload(name, steps, ckpt_every)
    run = run_in_process if resume_in_process else run_child
    ref = work / "reference"
    t0 = time.perf_counter()
    rc, out = run([*argv, "--out", str(ref)])
    if rc != 0:
        raise RuntimeError(f"reference run failed: {out[-2000:]}")
    ref_s = time.perf_counter() - t0
    step_s = max(json.loads(ln)["step_time"] for ln in (ref / "metrics.jsonl").read_text().splitlines())
    trials = []
    for i, kind in enumerate(plan):  # every random draw up front: the same plan whatever `parallel` is
        low = 2 * ckpt_every + 1 if kind.startswith("damaged") else 0
        at = rng.choice(range(ckpt_every, steps + 1, ckpt_every)) if kind == "write" else rng.randint(low, steps - 1)
        trials.append({"trial": i, "kind": kind, "at": at, "delay": rng.random()})
    for first in range(0, len(trials), max(1, parallel)):  # victims started here (forks from the main thread),
        batch = trials[first:first + max(1, parallel)]      # each watched and killed by its own thread
        victims = [_start_victim(t, argv, work / f"trial{t['trial']:02d}", work, step_s) for t in batch]
        with ThreadPoolExecutor(len(batch)) as pool:
            killed = list(pool.map(lambda v: _kill_when(*v), victims))
        for t, k in zip(batch, killed):
            t["killed"] = k
            _after_kill(t, work / f"trial{t['trial']:02d}")
    for trial in trials:
        out_dir = work / f"trial{trial['trial']:02d}"
        ckpt = out_dir / "checkpoints"
        # a truncated copy renamed over last.pt: step_N.pt (a hard link to the old one) survives
        if trial["kind"] == "damaged-replaced":
            data = (ckpt / "last.pt").read_bytes()
            (ckpt / "bad").write_bytes(data[: len(data) // 2])
            os.replace(ckpt / "bad", ckpt / "last.pt")
        elif trial["kind"] == "damaged-in-place":  # cut in place: the hard-linked step_N.pt is cut too
            with open(ckpt / "last.pt", "r+b") as f:
                f.truncate(f.seek(0, 2) // 2)
        rc, out = run([*argv, "--out", str(out_dir), "--resume"])
        found = re.search(r"resuming from \S+ \(step (\d+)\)", out)
        trial["resume_rc"] = rc
        trial["resumed_from"] = int(found.group(1)) if found else 0
        trial["equal_weights"], trial["log_ok"] = same_run(ref, out_dir) if rc == 0 else (False, False)
        log(f"kill trial {trial['trial']} ({trial['kind']}, {trial['target']}): killed={trial['killed']} at "
            f"{trial['logged_at_kill']} steps, checkpoint {trial['checkpoint_at_kill']}, half-written left "
            f"{trial['half_written_left']}; resume rc {rc} from step {trial['resumed_from']}; weights equal "
            f"{trial['equal_weights']}, log ok {trial['log_ok']}")
    return {"workload": name, "steps": steps, "ckpt_every": ckpt_every, "reference_s": ref_s, "trials": trials}


# --------------------------------------------------------------------------------------------------
# 2. 10 % broken videos
# --------------------------------------------------------------------------------------------------

def _listed(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\s+(\S+?): ", text, re.M)}


def broken_data_trials(work: Path, n_videos: int = 50, seed: int = 0, log=print) -> dict:
    """``vssl data check``, ``vssl pretrain`` (video contrast), ``vssl finetune`` on a manifest with
    10 % broken videos, and ``vssl severe`` on a SynthSEVERE experiment with 10 % broken videos."""
    from benchmarks.reliability_cases import broken_manifest_tree, pick_broken
    from vssl.data.synth import generate

    import numpy as np

    videos, ann, broken = broken_manifest_tree(work / "manifest", n_videos, 0.1, seed)
    names = set(broken)
    rows = []
    rc, out = run_in_process(["data", "check", "--dataset", "csv", "--root", str(videos), "--annotations", str(ann),
                              "--workers", "1"])
    rows.append(("vssl data check", rc, len(names), len(_listed(out) & names), len(_listed(out) - names)))
    batch = 10
    data = ["--set", "data.dataset=csv", "--set", f"data.root={videos}", "--set", f"data.annotations={ann}",
            "--set", "data.num_frames=8", "--set", "data.stride=1", "--set", "data.load_size=32",
            "--set", "data.crop_size=32", "--set", f"data.batch_size={batch}", "--set", "data.num_workers=2",
            "--set", f"train.max_steps={n_videos // batch}",  # one epoch: every broken video is met once
            "--set", "train.tensorboard=false", "--set", "train.progress=false", "--set", "train.deterministic=false"]
    for command, config in (("pretrain", VIDEO_CONTRAST), ("finetune", TOY)):
        out_dir = work / command
        rc, out = run_in_process([command, "--config", str(config), "--out", str(out_dir), *data,
                                  *(["--set", "method.queue_size=20"] if command == "pretrain" else [])])
        summary = json.loads((out_dir / "summary.json").read_text()) if rc == 0 else {"failed_videos": []}
        listed = {p for p, _ in summary["failed_videos"]}
        rows.append((f"vssl {command}", rc, len(names), len(listed & names), len(listed - names)))
        if rc:
            log(out[-3000:])

    synth = work / "synth"
    generate(synth, "tiny", seed=seed, workers=1, progress=False,
             sizes={"pretrain": (0, 0), "samples_a": (0, 0), "domain_a": (32, 18), "domain_b": (0, 0),
                    "counting": (0, 0), "multilabel": (0, 0)})
    exp_videos = sorted((synth / "domain_a" / "videos").glob("*.mp4"))
    stems = {p.stem for p in pick_broken(exp_videos, 0.1, np.random.default_rng(seed))}
    rc, out = run_in_process(["data", "check", "--dataset", "ssv2", "--root", str(synth / "domain_a" / "videos"),
                              "--annotations", str(synth / "domain_a" / "annotations"), "--workers", "1"])
    found = {Path(p).stem for p in _listed(out)}
    rows.append(("vssl data check (SynthSEVERE domain_a)", rc, len(stems), len(found & stems), len(found - stems)))
    # seed 2 reads seed 1's cached features, the second model the cached decoded clips: all must list them
    for name, seeds in (("r2plus1d_tiny", "1,2"), ("second-model", "1")):
        rc, out = run_in_process(["severe", "--backbone", "r2plus1d_tiny", "--name", name, "--data-root", str(synth),
                                  "--out", str(work / "severe"), "--experiments", "domain_a", "--protocol", "quick",
                                  "--seeds", seeds])
        listed = {Path(p).stem for line in out.splitlines() if line.startswith("vssl: warning: domain_a:")
                  for p in line.split(": ")[-1].split(", ")}
        rows.append((f"vssl severe --protocol quick (model {name}, seeds {seeds}; printed)", rc, len(stems),
                     len(listed & stems), len(listed - stems)))
        if rc:
            log(out[-3000:])
    from vssl.severe.results import ResultsStore

    with ResultsStore(work / "severe" / "results.sqlite") as store:
        for r in store.results():
            listed = {Path(p).stem for p in r.extra["failed_paths"] + r.extra["missing_paths"]}
            rows.append((f"results store: {r.key.model} seed {r.key.seed} (extra.failed_paths + missing_paths)",
                         0, len(stems), len(listed & stems), len(listed - stems)))
    kinds = {kind: sum(1 for k in broken.values() if k == kind) for kind in dict.fromkeys(broken.values())}
    for row in rows:
        log(f"{row[0]}: exit {row[1]}, broken {row[2]}, listed {row[3]}, wrongly listed {row[4]}")
    return {"videos": n_videos, "broken_kinds": kinds, "rows": rows, "severe_videos": len(exp_videos)}


# --------------------------------------------------------------------------------------------------
# 5. Results store: SIGKILL `vssl severe` and rerun; concurrent writers
# --------------------------------------------------------------------------------------------------

SEVERE_SIZES = {"pretrain": (0, 0), "samples_a": (0, 0), "domain_a": (16, 8), "domain_b": (0, 0),
                "counting": (8, 6), "multilabel": (0, 0)}


def severe_argv(data: Path, out: Path) -> list[str]:
    return ["severe", "--backbone", "r2plus1d_tiny", "--data-root", str(data), "--out", str(out), "--experiments",
            "domain_a,counting", "--protocol", "quick-ft", "--seeds", "1,2", "--set", "steps=3",
            "--set", "batch_size=4", "--set", "num_frames=8"]


def store_rows(db: Path) -> dict[tuple, tuple]:
    if not db.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
            return {tuple(r[:5]): tuple(r[5:]) for r in conn.execute(
                "SELECT model, checkpoint, experiment, protocol, seed, primary_value, created FROM results")}
    except sqlite3.OperationalError:  # created but no table yet
        return {}


def severe_kill_trials(work: Path, kills: int = 3, seed: int = 0, rerun_in_process: bool = False, log=print) -> dict:
    """SIGKILL `vssl severe` (2 experiments x 2 seeds) once 0, 1, 2, 3 results (in turn, from ``seed``)
    are stored, plus a random delay; rerun it, and check: 4 rows, no duplicate key, every row stored
    before the kill unchanged."""
    from vssl.data.synth import generate

    rng = random.Random(seed)
    data = work / "synth"
    if not (data / "synthsevere.json").exists():
        generate(data, "tiny", seed=0, workers=1, progress=False, sizes=SEVERE_SIZES)
    trials = []
    for i in range(kills):
        out = work / f"severe{i}"
        db = out / "results.sqlite"
        after, delay = (i + seed) % 4, rng.uniform(0, 0.4)  # 0-3 results stored, then a random moment
        seen: dict = {}

        def ready(after=after, delay=delay, seen=seen, db=db):
            if len(store_rows(db)) >= after:
                seen.setdefault("t", time.monotonic())
                return time.monotonic() - seen["t"] >= delay
            return False

        proc = start(severe_argv(data, out))
        killed = _kill_when(proc, ready)
        before = store_rows(db)
        rc, text = (run_in_process if rerun_in_process else run_child)(severe_argv(data, out))
        rows = store_rows(db)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            total, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT model || checkpoint || experiment || "
                                           "protocol || seed) FROM results").fetchone()
        trial = {"trial": i, "target": f"{after} results + {delay * 1000:.0f} ms", "killed": killed,
                 "stored_before": len(before), "rerun_rc": rc,
                 "skipped": sum(line.startswith("skip ") for line in text.splitlines()),
                 "rows": total, "distinct": distinct, "kept": all(rows.get(k) == v for k, v in before.items())}
        log(f"severe kill {i} ({trial['target']}): killed={killed} with {len(before)} stored; rerun rc {rc}, "
            f"skipped {trial['skipped']}, rows {total} (distinct {distinct}), earlier rows unchanged {trial['kept']}")
        trials.append(trial)
    return {"trials": trials}


WRITER = r"""
import sys, time
from pathlib import Path
from vssl.severe.results import Result, ResultKey, ResultsStore
db, me, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
store = ResultsStore(db)
while not go.exists():
    time.sleep(0.001)
t = time.perf_counter()
for i in range(n):
    store.put(Result(ResultKey(f"writer{me}", "none", "domain_a", "quick", i), "top1", float(me)))
    store.put(Result(ResultKey("shared", "none", "domain_a", "quick", i), "top1", float(me)))
print(f"{time.perf_counter() - t:.3f}")
"""


def concurrent_writers(work: Path, writers: int = 2, puts: int = 200, log=print) -> dict:
    """``writers`` processes each put ``puts`` own results and ``puts`` results under keys they all share,
    at the same time, into one store."""
    work.mkdir(parents=True, exist_ok=True)
    db, go = work / "results.sqlite", work / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(w), str(puts), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env())
             for w in range(writers)]
    time.sleep(1.0)  # let every writer open the store, then start them together
    go.touch()
    outs = [p.communicate(timeout=600)[0] for p in procs]
    rows = store_rows(db)
    own_ok = all(rows.get((f"writer{w}", "none", "domain_a", "quick", i), (None,))[0] == float(w)
                 for w in range(writers) for i in range(puts))
    values = {float(w) for w in range(writers)}
    shared_ok = all(rows.get(("shared", "none", "domain_a", "quick", i), (None,))[0] in values for i in range(puts))
    result = {"writers": writers, "puts": 2 * puts * writers, "expected_rows": puts * (writers + 1), "rows": len(rows),
              "own_ok": own_ok, "shared_ok": shared_ok, "rcs": [p.returncode for p in procs],
              "seconds": [float(o.split()[-1]) if p.returncode == 0 else None for p, o in zip(procs, outs)]}
    log(f"concurrent writers: {result}")
    return result


def concurrent_severe(work: Path, log=print) -> dict:
    """Two `vssl severe` processes on the same output folder at once."""
    from vssl.data.synth import generate

    data = work / "synth"
    if not (data / "synthsevere.json").exists():
        generate(data, "tiny", seed=0, workers=1, progress=False, sizes=SEVERE_SIZES)
    out = work / "severe-concurrent"
    procs = [start(severe_argv(data, out)) for _ in range(2)]
    rcs = [p.communicate(timeout=900) and p.returncode for p in procs]
    with contextlib.closing(sqlite3.connect(out / "results.sqlite")) as conn:
        total, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT model || checkpoint || experiment || protocol "
                                       "|| seed) FROM results").fetchone()
    result = {"rcs": rcs, "rows": total, "distinct": distinct, "expected": 4}
    log(f"two concurrent vssl severe: {result}")
    return result


if __name__ == "__main__":
    from benchmarks.reliability_report import main

    sys.exit(main())
