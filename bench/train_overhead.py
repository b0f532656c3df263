"""Where `intentkit train`'s wall time goes outside the training steps (issue #12 item 2).

Runs, N times (default 3), in a fresh subprocess each:

    intentkit train --data DATA --model minilm --preset cpu-fast --epochs 1 --out OUT --force

and prints JSON: median and min-max seconds of each phase (``intentkit.json["training"]
["phases"]``, see ``intentkit.training.timing``), of the wall time measured here, of ``exit``
(wall minus the recorded phases: interpreter teardown) and of the share of the wall time
outside training steps. DATA defaults to /tmp/lean/data (``intentkit data prepare
clinc150-travel --out /tmp/lean/data`` first).

``--probe`` measures a checkout *without* the phase timer (the "before" of issue #12) by
wrapping the Trainer's methods from outside, e.g.
``PYTHONPATH=/tmp/lean-before/src python bench/train_overhead.py --probe``; its phases are
coarser (``prepare`` = imports, data, tokenise, model load and the Trainer's setup).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_PROBE = r"""
import json, os, sys, time, psutil
T0 = psutil.Process().create_time()
acc, marks = {}, {}
def timed(name, owner, attr):
    fn = getattr(owner, attr)
    def w(*a, **k):
        t = time.time()
        try:
            return fn(*a, **k)
        finally:
            acc[name] = acc.get(name, 0.0) + time.time() - t
    setattr(owner, attr, w)
import intentkit.training.train as it
inner = it.train
def train(*a, **k):
    marks["enter"] = time.time()
    from transformers import Trainer
    from transformers.trainer_callback import CallbackHandler
    import intentkit.artifact as ar, intentkit.inference.predictor as pr
    for name, owner, attr in (("evaluation", Trainer, "evaluate"),
                              ("checkpoints", Trainer, "_save_checkpoint"),
                              ("checkpoints", Trainer, "_load_best_model"),
                              ("calibration", pr.Predictor, "logits"),
                              ("calibration", it, "_calibrate"),
                              ("write", ar, "write_artifact")):
        timed(name, owner, attr)
    begin, end = CallbackHandler.on_step_begin, CallbackHandler.on_step_end
    def sb(self, *a, **k):
        marks.setdefault("first", time.time()); return begin(self, *a, **k)
    def se(self, *a, **k):
        marks["last"] = time.time(); return end(self, *a, **k)
    CallbackHandler.on_step_begin, CallbackHandler.on_step_end = sb, se
    try:
        return inner(*a, **k)
    finally:
        marks["exit"] = time.time()
it.train = train
from intentkit.cli import main
rc = main(sys.argv[1:])
m = marks
ph = {"startup": m["enter"] - T0, "prepare": m["first"] - m["enter"],
      "train_steps": m["last"] - m["first"], **acc}
ph["other"] = m["exit"] - m["enter"] - sum(v for k, v in ph.items() if k != "startup")
ph["total_s"] = m["exit"] - T0
json.dump(ph, open(os.environ["PROBE_OUT"], "w"))
sys.exit(rc)
"""


def _run(data: Path, out: Path, probe: bool, extra: list[str]) -> dict[str, float]:
    args = ["train", "--data", str(data), "--model", "minilm", "--preset", "cpu-fast"]
    args += ["--epochs", "1", "--out", str(out), "--force", *extra]
    env = dict(os.environ)
    probe_out = out.parent / "probe.json"
    if probe:
        cmd = [sys.executable, "-c", _PROBE, *args]
        env["PROBE_OUT"] = str(probe_out)
    else:
        cmd = [sys.executable, "-m", "intentkit", *args]
    started = time.time()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - started
    if probe:
        phases = json.loads(probe_out.read_text("utf-8"))
    else:
        meta = json.loads((out / "intentkit.json").read_text("utf-8"))
        phases = dict(meta["training"]["phases"])
        phases.pop("outside_train_steps_share", None)
    phases["wall_s"] = wall
    phases["exit"] = wall - phases["total_s"]
    phases["outside_s"] = wall - phases["train_steps"]
    phases["outside_share"] = 1 - phases["train_steps"] / wall
    return phases


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median and min-max of every key over the runs."""
    keys = list(dict.fromkeys(k for r in runs for k in r))
    out = {}
    for k in keys:
        vals = [r.get(k, 0.0) for r in runs]
        out[k] = {
            "median": round(statistics.median(vals), 4),
            "min": round(min(vals), 4),
            "max": round(max(vals), 4),
        }
    return out


def main() -> None:
    """Run the train command N times and print the phase summary as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/lean/data"))
    ap.add_argument("-n", "--runs", type=int, default=3)
    ap.add_argument("--probe", action="store_true", help="measure a checkout without phases")
    ap.add_argument("extra", nargs="*", help="more `intentkit train` flags (after --)")
    a = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="train-overhead-") as tmp:
        for i in range(a.runs):
            runs.append(_run(a.data, Path(tmp) / "model", a.probe, a.extra))
            print(f"run {i + 1}/{a.runs}: {json.dumps(runs[-1])}", file=sys.stderr)
    import intentkit

    print(
        json.dumps(
            {
                "command": "intentkit train --data DATA --model minilm --preset cpu-fast "
                "--epochs 1 --out OUT --force",
                "intentkit": intentkit.__file__,
                "probe": a.probe,
                "runs": a.runs,
                "load_avg": os.getloadavg(),
                "phases": summarise(runs),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
