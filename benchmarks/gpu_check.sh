#!/usr/bin/env bash
# The ONE prepared GPU check for issue 7 (vssl's speed targets on an H100, bf16).
#
# A session whose task is lent a GPU (the device tool's `status` says can_start_another) runs it once:
#
#   1. here, once, in the repository root (the device machine has no PyAV and reaches no registry):
#        python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#          --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#          --platform manylinux2010_x86_64 -d .whl av==18.1.0 decord==0.6.0
#      (.whl/ is git-ignored; the two wheels are about 48 MB, under the 64 MiB that travels)
#   2. run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=450)
#
# Expected runtime: about 4-5 minutes of command time on an H100 (pretrain steps ~1.5 min, tubelets
# ~0.5 min, data pipeline ~0.5 min, sinkhorn ~10 s, the cold torch.compile of the VideoMAE step up to
# 2 min); each step is capped by `timeout` (200 + 60 + 30 + 120 s), so the script ends within 7
# minutes, plus the machine's start: a second try still fits the 15-minute device budget when the
# first ends early. Everything is written under $OUT (at most 8 files come back):
#   benchmarks.md (the tables), pretrain_step.json, tubelets.json, data_pipeline.json,
#   pretrain_step_compiled.json, sinkhorn.json, gpu_check.log (all output), env.txt (8 files).
# Paste benchmarks.md into BENCHMARKS.md with the card named in env.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/vssl-gpu-check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
export TORCHINDUCTOR_CACHE_DIR=/tmp/vssl-inductor
# tested on a CPU at the smallest size with:
#   PATH=.venv/bin:$PATH OUT=/tmp/g DEVICE=cpu SIZE=--smoke STEPS=1 COMPILE_CASES=videomae bash benchmarks/gpu_check.sh
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-}
STEPS=${STEPS:-20}
COMPILE_CASES=${COMPILE_CASES-videomae}  # empty: skip the compile pass

if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || echo "wheel install failed" | tee -a "$LOG"
else
  echo "no .whl/ carried: PyAV is missing, the data pipeline benchmark will fail" | tee -a "$LOG"
fi

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  python3 -c "import av; print('av', av.__version__)" 2>&1
  python3 -c "import decord; print('decord', decord.__version__)" 2>&1
  nproc
  grep -m1 'model name' /proc/cpuinfo
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" | tee -a "$LOG"

# 1-2: eager pretrain steps (full sizes, 20 timed steps, then 3 profiled steps per case) and tubelets
#      (batch 32, CPU and GPU)
timeout 200 python3 benchmarks/run_all.py $SIZE --out "$OUT" --device "$DEVICE" --steps "$STEPS" --timeout 120 \
  --skip data_pipeline --profile 2>&1 | tee -a "$LOG"  # --profile: torch.profiler tables in the log
# 3: data pipeline on one core of the host (8 clips per reader and file)
timeout 60 python3 benchmarks/data_pipeline.py $SIZE --clips 8 --json "$OUT/data_pipeline.json" 2>&1 | tee -a "$LOG"
# 4: SIGMA's Sinkhorn at the ViT-B batch shape (N = 90112 masked tubes, K = 3000), vssl vs scaling vectors
timeout 30 python3 benchmarks/sinkhorn.py --device "$DEVICE" $([ -n "$SIZE" ] && echo "--n 2048 --k 300") \
  --json "$OUT/sinkhorn.json" 2>&1 | tee -a "$LOG"
# 5: torch.compile(dynamic=False) of the vssl VideoMAE step (cold compile; compare with step 1's eager rows)
if [ -n "$COMPILE_CASES" ]; then
  timeout 120 python3 benchmarks/pretrain_step.py $SIZE --device "$DEVICE" --steps 10 --compile \
    --cases "$COMPILE_CASES" --json "$OUT/pretrain_step_compiled.json" 2>&1 | tee -a "$LOG"
fi
# one report with all five
python3 - "$OUT" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from run_all import report
out = Path(sys.argv[1])
results = []
for name in ("pretrain_step", "tubelets", "data_pipeline", "pretrain_step_compiled", "sinkhorn"):
    f = out / f"{name}.json"
    if f.exists():
        r = json.loads(f.read_text()); r["benchmark"] = name; r.setdefault("wall_s", 0.0); results.append(r)
    else:
        results.append({"benchmark": name, "error": "no result (skipped, or failed: see gpu_check.log)", "wall_s": 0.0})
(out / "benchmarks.md").write_text(report(results))
print(report(results))
EOF
