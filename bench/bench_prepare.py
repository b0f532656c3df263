"""Benchmark `intentkit data prepare` on a generated CSV (default: 1,000,000 rows, 100 labels).

Generates the CSV once into bench/out/ (git-ignored), then runs the CLI as a subprocess
--repeats times under /usr/bin/time -v and prints wall time and peak RSS (median, min-max).
Target (issue #2): < 60 s and < 2 GiB peak RSS on a 2-core box.

    python bench/bench_prepare.py [--rows 1000000] [--labels 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def generate_csv(path: Path, rows: int, labels: int, seed: int = 0) -> None:
    """Write ``rows`` intent-like rows: a label keyword among random words, plus realistic dirt.

    About 1% exact duplicates, 0.1% duplicates with another label (conflicts), 0.1% blank texts,
    padded whitespace and commas/quotes that need CSV quoting.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(5000)] + ["a, b", 'say "hi"', "café"], dtype=object)
    # Zipf-like label sizes (largest/smallest about 10x) so the data is imbalanced like real logs.
    weights = 1.0 / (np.arange(labels) + labels / 10)
    label_ids = rng.choice(labels, rows, p=weights / weights.sum())
    lengths = rng.integers(4, 16, rows)
    words = vocab[rng.integers(0, len(vocab), (rows, 16))]
    keyword = np.array([f"intent{i}" for i in range(labels)], dtype=object)[label_ids]
    texts = [kw + " " + " ".join(ws[:n]) for kw, ws, n in zip(keyword, words, lengths, strict=True)]
    texts = np.array(texts, dtype=object)
    dup = np.flatnonzero(rng.random(rows) < 0.01)  # copy text and label of a random row
    src = rng.integers(0, rows, len(dup))
    texts[dup], label_ids[dup] = texts[src], label_ids[src]
    conflict = np.flatnonzero(rng.random(rows) < 0.001)  # the previous row's text, own label
    texts[conflict] = texts[conflict - 1]
    label_names = np.array([f"label_{i:03d}" for i in range(labels)], dtype=object)[label_ids]
    texts[rng.random(rows) < 0.001] = "   "
    pad = rng.random(rows) < 0.05
    texts[pad] = ["  " + t + " " for t in texts[pad]]
    table = pa.table({"text": pa.array(texts, pa.string()), "label": label_names})
    path.parent.mkdir(parents=True, exist_ok=True)
    pcsv.write_csv(table, path)


def run_once(csv: Path, out: Path) -> tuple[float, float]:
    """Run the CLI once; return (wall seconds, peak RSS MiB) of the child process."""
    cmd = [sys.executable, "-m", "intentkit", "data", "prepare", str(csv), "--out", str(out)]
    cmd += ["--force"]
    timer = shutil.which("time") or "/usr/bin/time"
    if os.path.exists(timer):
        start = time.perf_counter()
        proc = subprocess.run([timer, "-v", *cmd], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"prepare failed:\n{proc.stdout}\n{proc.stderr}")
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1])
        return wall, rss_kb / 1024
    import psutil  # fallback: poll the child's RSS

    start = time.perf_counter()
    child = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, child.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if child.returncode != 0:
        sys.exit(f"prepare failed: {child.stderr.read().decode()}")
    return wall, peak / 2**20


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    parser.add_argument(
        "--json", type=Path, default=None, help="default: bench/results/<today>/prepare_1m.json"
    )
    args = parser.parse_args()

    csv = args.workdir / f"prepare_{args.rows}x{args.labels}.csv"
    if not csv.exists():
        t0 = time.perf_counter()
        generate_csv(csv, args.rows, args.labels)
        print(
            f"generated {csv} ({csv.stat().st_size / 2**20:.0f} MiB) in "
            f"{time.perf_counter() - t0:.1f} s"
        )
    out = args.workdir / "prepared"
    walls, rsses = [], []
    for i in range(args.repeats):
        wall, rss = run_once(csv, out)
        walls.append(wall)
        rsses.append(rss)
        print(f"run {i + 1}: {wall:.1f} s, peak RSS {rss:.0f} MiB")
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}")
    print(f"command: intentkit data prepare {csv.name} --out {out.name} --force")
    print(
        f"wall: median {statistics.median(walls):.1f} s (min {min(walls):.1f}, max "
        f"{max(walls):.1f}); peak RSS: median {statistics.median(rsses):.0f} MiB "
        f"(min {min(rsses):.0f}, max {max(rsses):.0f})"
    )
    today = time.strftime("%Y-%m-%d")
    dest = args.json or HERE / "results" / today / "prepare_1m.json"
    record = {
        "benchmark": "bench/bench_prepare.py",
        "created": today,
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "rows": args.rows,
        "labels": args.labels,
        "input_bytes": csv.stat().st_size,
        "command": f"intentkit data prepare {csv.name} --out {out.name} --force",
        "wall_s": {"median": statistics.median(walls), "min": min(walls), "max": max(walls)},
        "peak_rss_mib": {"median": statistics.median(rsses), "min": min(rsses), "max": max(rsses)},
        "runs": [{"wall_s": w, "peak_rss_mib": r} for w, r in zip(walls, rsses, strict=True)],
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
