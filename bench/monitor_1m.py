"""``intentkit monitor`` on 1,000,000 captured rows: wall time and the monitor's peak memory.

Target (#19): under a minute on a 2-core CPU, memory bounded (independent of the row count).
Writes N capture lines (default 1,000,000, intentkit's format, 10 labels, a week of timestamps,
~5 % rejected, 0.1 % corrupt) into a temp folder, then runs :func:`intentkit.loop.monitor.monitor`
in a fresh child process so its ``ru_maxrss`` is the monitor's own peak. Run it on a quiet
machine:

    python bench/monitor_1m.py                          # prints JSON
    python bench/monitor_1m.py --rows 200000 --out bench/results/$(date +%F)/monitor_1m.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

LABELS = [f"intent_{i}" for i in range(10)]


def _write_capture(folder: Path, rows: int) -> int:
    import numpy as np

    rng = np.random.default_rng(0)
    start = np.datetime64("2026-12-01T00:00:00.000")
    offsets = np.sort(rng.integers(0, 7 * 24 * 3600 * 1000, rows))
    answers = rng.integers(0, len(LABELS), rows)
    conf = rng.beta(8, 2, rows).round(4)
    oos = rng.normal(-3, 1, rows).round(4)
    per_file = 100_000
    for f in range(0, rows, per_file):
        lines = []
        for i in range(f, min(f + per_file, rows)):
            stamp = str(start + np.timedelta64(int(offsets[i]), "ms")) + "Z"
            rejected = conf[i] < 0.35
            answer = "out_of_scope" if rejected else LABELS[answers[i]]
            top = (
                f'[{{"label": "{LABELS[answers[i]]}", "score": {conf[i]}}}, '
                f'{{"label": "{LABELS[(answers[i] + 1) % 10]}", "score": {round(1 - conf[i], 4)}}}]'
            )
            line = (
                f'{{"v": 1, "time": "{stamp}", "text": "captured text number {i}", '
                f'"answer": "{answer}", "confidence": {conf[i]}, '
                f'"rejected": {"true" if rejected else "false"}, "oos_score": {oos[i]}, '
                f'"top": {top}, "model": "0123456789abcdef", "latency_ms": 4.2, '
                f'"route": "/predict"}}'
            )
            lines.append(line[:40] if i % 1000 == 999 else line)  # 0.1 % cut off
        (folder / f"capture-{f:09d}.jsonl").write_text("\n".join(lines) + "\n")
    return rows


def _child(folder: str, model: str, queue: mp.Queue) -> None:
    from intentkit.loop.monitor import monitor

    t0 = time.perf_counter()
    summary = monitor([folder], model)
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    read = summary["read"]
    queue.put(
        {
            "seconds": seconds,
            "peak_rss_mb": rss_mb,
            "rows": summary["rows"],
            "skipped": read["skipped"],
            "windows": len(summary["windows"]),
        }
    )


def _model(folder: Path) -> Path:
    """A minimal artifact folder: monitor reads only intentkit.json (plus the files it checks)."""
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "tokenizer.json").write_text("{}")
    counts = {x: 1000 for x in LABELS}
    (folder / "intentkit.json").write_text(
        json.dumps({"data": {"label_counts": {"train": counts}}})
    )
    return folder


def main() -> None:
    """Generate, measure, print (and optionally write) the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / "capture"
        cap.mkdir()
        t0 = time.perf_counter()
        _write_capture(cap, args.rows)
        gen_s = time.perf_counter() - t0
        queue: mp.Queue = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(
            target=_child, args=(str(cap), str(_model(Path(tmp) / "model")), queue)
        )
        proc.start()
        result = queue.get()
        proc.join()
    out = {"bench": "monitor_1m", "target_s": 60, "generate_s": gen_s, **result}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    sys.exit(0 if result["seconds"] < 60 else 1)


if __name__ == "__main__":
    main()
