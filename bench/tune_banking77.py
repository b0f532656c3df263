"""`intentkit tune` (30-minute budget) against the hand-tuned preset on Banking77, through the CLI.

Usage::

    python bench/tune_banking77.py [--work /tmp/intentkit-tune] [--budget 30m] [--threads N]

Runs what a user would run: ``data prepare`` (once), ``tune --preset banking77-minilm
--time-budget BUDGET``, ``train --preset banking77-minilm`` (the baseline), then ``evaluate
--split test --no-reject`` on both models (Banking77 has no out-of-scope rows: accuracy without
rejection is the headline). Validation numbers come from each artifact's ``intentkit.json``; the
test split is read only by ``evaluate``. Prints and writes ``WORK/tune_banking77.json``.

Check run on any prepared folder with a small model (minutes, not an hour)::

    python bench/tune_banking77.py --data DIR --budget 10s --extra --model DIR --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from intentkit.training.tune import SPACE
from quality import run  # the same logged, fail-fast subprocess runner

PRESET = "banking77-minilm"


def scores(model: Path, metric: str) -> dict[str, Any]:
    """Validation (from training) and test (from evaluate) numbers of one model folder."""
    meta = json.loads((model / "intentkit.json").read_text("utf-8"))
    report = json.loads((model / "eval_test" / "report.json").read_text("utf-8"))
    return {
        "val": {k: meta["metrics"].get(k) for k in ("accuracy", "macro_f1", metric)},
        "test": {k: report.get(k) for k in ("accuracy", "macro_f1", "weighted_f1")},
        # The searched settings: the tune search space's own keys, so the two cannot drift.
        "train_config": {k: meta["train_config"].get(k) for k in SPACE},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/intentkit-tune"))
    parser.add_argument("--budget", default="30m", help="tune --time-budget")
    parser.add_argument("--data", type=Path, default=None, help="a prepared folder to use")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="tune+train flags")
    args = parser.parse_args()

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = args.data or work / "data"
    tuned, baseline = work / "tuned", work / "preset"
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    cli = [sys.executable, "-m", "intentkit"]
    commands: dict[str, list[str]] = {}
    if not (data / "labels.json").is_file():
        commands["prepare"] = [*cli, "data", "prepare", "banking77", "--preset", PRESET,
                               "--out", str(data)]  # fmt: skip
    commands["tune"] = [
        *cli, "tune", "--data", str(data), "--preset", PRESET, "--time-budget", args.budget,
        "--out", str(tuned), "--force", *args.extra,
    ]  # fmt: skip
    commands["train_preset"] = [
        *cli, "train", "--data", str(data), "--preset", PRESET, "--out", str(baseline),
        "--force", *args.extra,
    ]  # fmt: skip
    for name, model in (("tuned", tuned), ("preset", baseline)):
        commands[f"evaluate_{name}"] = [
            *cli, "evaluate", str(model), "--data", str(data), "--split", "test", "--no-reject",
            "--out", str(model / "eval_test"),
        ]  # fmt: skip
    walls = {name: run(cmd, work / f"{name}.log", env) for name, cmd in commands.items()}

    report = json.loads((tuned / "tune" / "tune.json").read_text("utf-8"))
    metric = report["metric"]
    result = {
        "dataset": "banking77",
        "preset": PRESET,
        "metric": metric,
        "time_budget": args.budget,
        "commands": {k: shlex.join(v) for k, v in commands.items()},
        "wall_s": {k: round(v, 1) for k, v in walls.items()},
        "tune": {"counts": report["counts"], "best": report["best"]},
        "tuned": scores(tuned, metric),
        "preset_model": scores(baseline, metric),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "omp_num_threads": env.get("OMP_NUM_THREADS"),
            "load_avg_at_end": os.getloadavg(),
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    t, p = result["tuned"], result["preset_model"]
    result["val_at_least_preset"] = (t["val"][metric] or 0) >= (p["val"][metric] or 0)
    out = work / "tune_banking77.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
