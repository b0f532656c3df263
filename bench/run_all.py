"""Run every benchmark in sequence (``make bench``); never part of the unit suite.

Each benchmark prints its own table (machine, command, median, min-max); copy the numbers into
``bench/RESULTS.md``. ``--only NAME`` runs a subset; ``--quality`` adds the 20-30 minute
CLINC150 and Banking77 quality runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {
    "prepare": ["bench_prepare.py"],
    "train": ["train_throughput.py"],
    "serve": ["serve_load.py", "run"],
    "backend": ["backend_forward.py"],
    "predictor": ["predictor_throughput.py"],
    "train-overhead": ["train_overhead.py"],
    "report": ["report_speed.py"],
    "bulk": ["bulk_predict.py", "--n", "100000"],
}
QUALITY = {
    "quality-clinc150": ["quality.py", "--dataset", "clinc150"],
    "quality-banking77": ["quality.py", "--dataset", "banking77"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[*BENCHES, *QUALITY], default=None)
    parser.add_argument("--quality", action="store_true", help="also run the quality runs")
    args = parser.parse_args()
    chosen = args.only or [*BENCHES, *(QUALITY if args.quality else [])]
    failed = []
    for name in chosen:
        script, *rest = {**BENCHES, **QUALITY}[name]
        cmd = [sys.executable, str(HERE / script), *rest]
        print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
        start = time.perf_counter()
        if subprocess.call(cmd) != 0:
            failed.append(name)
        print(f"=== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
