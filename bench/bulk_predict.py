"""Bulk prediction at scale: `intentkit predict --model --file --output` vs the bare predictor.

Writes ``--n`` CLINC150 test texts (shuffled, cycled) once to a temp JSONL, then alternates,
``--reps`` times each (and one last bare run, so every bulk run has a bare one on each side):

- **bare**: ``Predictor.logits`` on the same texts held in memory (one call: it length-sorts all of
  them), same backend and batch size, in this process; with ``--bare-n`` on the first that many
  of them (the file cycles one shuffled set of texts, so a prefix has the same lengths; holding
  1,000,000 texts' logits in memory and timing them twice would add ~50 minutes here);
- **bulk**: the real CLI in a child process, streaming the file to a JSONL output; its texts/s is
  the one the run reports (model load excluded, reading/parsing/writing/fsync included), its peak
  RSS the child's ``ru_maxrss`` from ``os.wait4``.

Prints JSON: median and min-max texts/s of both, their ratio (issue #12 asks >= 0.90), the
bulk child's peak RSS (asks < 2 GiB) and its end-to-end wall time.

    python bench/bulk_predict.py                  # 1,000,000 texts: run it on a quiet machine
    python bench/bulk_predict.py --n 20000 --reps 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import matmul_peak_gflops  # noqa: E402
from predictor_throughput import CLINC_TEST, load_texts  # noqa: E402
from serve_load import prepare_models  # noqa: E402

ROOT = BENCH.parent


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_bare(model_dir: Path, texts: list[str], backend: str, batch_size: int) -> float:
    """Texts/s of ``Predictor.logits`` over ``texts`` in memory (after a small warm-up)."""
    from intentkit.export.loader import load_predictor

    pred = load_predictor(model_dir, backend=backend)
    pred.logits(texts[: batch_size * 4], batch_size=batch_size)
    t0 = time.perf_counter()
    pred.logits(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - t0)


def run_bulk(
    model_dir: Path, src: Path, out: Path, backend: str, batch_size: int, chunk_size: int
) -> dict[str, Any]:
    """The CLI in a child process; its own texts/s, end-to-end wall time and peak RSS."""
    cmd = [sys.executable, "-m", "intentkit", "predict", "--model", str(model_dir)]
    cmd += ["--file", str(src), "--output", str(out), "--force", "--backend", backend]
    cmd += ["--batch-size", str(batch_size), "--chunk-size", str(chunk_size)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bulk run failed:\n{stderr[-3000:]}")
    # The summary line: "... this run predicted N texts in S s (R texts/s)".
    m = re.search(r"predicted ([\d,]+) texts in ([\d.]+) s", stderr)
    if m is None:
        raise SystemExit(f"no summary line in:\n{stderr[-3000:]}")
    n, seconds = int(m.group(1).replace(",", "")), float(m.group(2))
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"texts_per_s": n / seconds, "wall_s": wall, "peak_rss_bytes": rss, "texts": n}


def main() -> None:
    """Parse flags, run the alternating repeats, print the JSON summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="texts in the file")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bare-n", type=int, help="texts the bare side scores (default: --n)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--chunk-size", type=int, default=4096)
    ap.add_argument("--backend", default="auto", help="auto | onnx | torch (both sides)")
    ap.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "ik-bench-models")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()

    # MiniLM with a random head: speed does not depend on the head's weights.
    model_dir = prepare_models(args.models, ["minilm-untrained-head"])["minilm-untrained-head"]
    model_dir = Path(model_dir["path"])
    texts = load_texts(args.n, CLINC_TEST)
    rates = [matmul_peak_gflops()]  # this machine's speed that day, before and after
    bare_n = min(args.bare_n or args.n, args.n)
    with tempfile.TemporaryDirectory(prefix="ik-bulk-") as tmp:
        src, out = Path(tmp) / "texts.jsonl", Path(tmp) / "preds.jsonl"
        with src.open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"text": t}) + "\n" for t in texts)
        bare, bulk = [], []
        for _ in range(args.reps):  # alternated, so machine drift hits both sides alike
            bare.append(run_bare(model_dir, texts[:bare_n], args.backend, args.batch_size))
            bulk.append(
                run_bulk(model_dir, src, out, args.backend, args.batch_size, args.chunk_size)
            )
            assert bulk[-1]["texts"] == args.n
        # One more bare run after the last bulk one: the bulk runs are bracketed by bare runs.
        bare.append(run_bare(model_dir, texts[:bare_n], args.backend, args.batch_size))
        file_bytes = src.stat().st_size
    rates.append(matmul_peak_gflops())
    bulk_rates = [b["texts_per_s"] for b in bulk]
    result = {
        "benchmark": "bulk_predict",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "matmul_peak_gflops": rates,
        "model": "minilm-untrained-head",
        "n": args.n,
        "bare_n": bare_n,
        "file_bytes": file_bytes,
        "backend": args.backend,
        "batch_size": args.batch_size,
        "chunk_size": args.chunk_size,
        "reps": args.reps,
        "bare_texts_per_s": _stats(bare),
        "bulk_texts_per_s": _stats(bulk_rates),
        "ratio_of_medians": statistics.median(bulk_rates) / statistics.median(bare),
        "ratio_per_rep": [b / a for a, b in zip(bare, bulk_rates, strict=False)],
        "bulk_wall_s": _stats([b["wall_s"] for b in bulk]),
        "bulk_peak_rss_gib": max(b["peak_rss_bytes"] for b in bulk) / 2**30,
        "targets": {"ratio_of_medians": ">= 0.90", "bulk_peak_rss_gib": "< 2"},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
