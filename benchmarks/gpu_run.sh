#!/usr/bin/env bash
# The ONE prepared GPU call of a session lent an H100 (device tool; 15 minutes in all, one command <= 10):
#
#   run(command="bash benchmarks/gpu_run.sh", carry=[".whl"], timeout_s=590)
#
# (.whl/ holds the PyAV wheel, see benchmarks/gpu_check.sh for the pip download line.)
#   1. the science run of issue 6 item 8: `vssl demo --budget gpu` (SynthSEVERE tiny with 4x the corpus
#      and full-data training sets, 8x the test sets, 5 pretrainings of 2,000 steps, 7 models x 8
#      experiments x 3 seeds with the quick protocol, plus the trained-with-labels reference row of
#      issue 4), capped at RUN_CAP seconds; the results store keeps whatever finished;
#   2. the pretraining-step throughput of issue 7 at the full shapes (eager, bf16, 10 timed steps), capped
#      at BENCH_CAP seconds.
# Files back under $OUT (at most 8): env.txt, run.log, report.md, report_all.md, results.sqlite,
# benchmarks.md, pretrain_step.json, tubelets.json.
# Tested on the CPU at the smallest budget with:
#   PATH=.venv/bin:$PATH OUT=/tmp/gr DEVICE=cpu BUDGET=quick SEEDS=1 BENCH="--smoke" STEPS=1 bash benchmarks/gpu_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/vssl-gpu-run}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-gpu}
SEEDS=${SEEDS:-}
RUN_CAP=${RUN_CAP:-420}
BENCH_CAP=${BENCH_CAP:-120}
BENCH=${BENCH:-}
STEPS=${STEPS:-10}
DEMO=${DEMO:-/tmp/vssl-demo-gpu}
mkdir -p "$OUT"
LOG="$OUT/run.log"
if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "import av" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/av-*.whl \
    && export PYTHONPATH=/tmp/site || echo "wheel install failed" | tee -a "$LOG"
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
  python3 -c "import av; print('av', av.__version__)" 2>&1
  echo "cores $(nproc)"; grep -m1 'model name' /proc/cpuinfo
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" | tee -a "$LOG"

# 1. the science run (resumable: a rerun on the same machine continues)
t0=$(date +%s)
timeout "$RUN_CAP" python3 -m vssl.cli demo --budget "$BUDGET" --device "$DEVICE" --out "$DEMO" \
  ${SEEDS:+--seeds "$SEEDS"} 2>&1 | grep --line-buffered -v '^\s*$' | tee -a "$LOG"
echo "demo exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
cp "$DEMO/report.md" "$OUT/" 2>/dev/null
cp "$DEMO/results.sqlite" "$OUT/" 2>/dev/null
python3 -m vssl.cli report "$DEMO" > "$OUT/report_all.md" 2>>"$LOG"

# 2. pretraining-step throughput at the issue-7 shapes (and tubelet synthesis), eager
timeout "$BENCH_CAP" python3 benchmarks/run_all.py $BENCH --out "$OUT" --device "$DEVICE" --steps "$STEPS" \
  --timeout $(( BENCH_CAP * 3 / 4 )) --skip data_pipeline 2>&1 | tee -a "$LOG"
[ -f "$OUT/report.md" ] && mv "$OUT/report.md" "$OUT/report_demo.md"
ls "$OUT"
