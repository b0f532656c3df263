#!/usr/bin/env bash
# Session 6's quiet-window runs, one after another (nothing else on the two cores meanwhile):
#   * bench_prepare.py: `data prepare` on 1M rows (#2's figure, raw JSON this time)
#   * train_throughput.py --ablate: the training ratio split into dynamic padding / SDPA /
#     no gradient checkpointing, with the matmul peak measured in the same run (#20 item 6)
#   * monitor_1m.py, review_cluster_10k.py: #19's monitor and clustering targets
#   * serve_load.py with the intentkit-capture kind: #19's capture cost at c=32 (MiniLM)
# About 12-15 minutes on the project's 2-core CPU. Writes bench/results/<today>/*.json and
# regenerates bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DAY=$(date -u +%Y-%m-%d)
RES=bench/results/$DAY
mkdir -p "$RES"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (should be < 0.5)"
start=$SECONDS
step() { echo "=== $1: done at $((SECONDS - start)) s (load $(cut -d' ' -f1 /proc/loadavg))"; }

"$PY" bench/bench_prepare.py --json "$RES/prepare_1m.json"; step prepare_1m
"$PY" bench/monitor_1m.py --out "$RES/monitor_1m.json"; step monitor_1m
"$PY" bench/review_cluster_10k.py --out "$RES/review_cluster_10k.json"; step review_cluster_10k
"$PY" bench/serve_load.py run --models minilm-clinc150-travel --kinds intentkit intentkit-capture \
    --levels 32 --n-minilm 512 --json "$RES/serve_capture.json"; step serve_capture
"$PY" bench/train_throughput.py --ablate --steps 2 --repeats 3 \
    --json "$RES/train_throughput_cpu.json"; step train_throughput
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/results_md.py
