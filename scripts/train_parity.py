"""Fingerprint what ``intentkit.train`` produces, to prove a refactor of training changes nothing.

Trains the tests' tiny random-init ModernBERT on the keyword fixture in a few configurations
(calibration with the out-of-scope statistics, an out-of-scope class with early stopping and a
best checkpoint older than the last, class weights with layer-wise decay, a resumed run) and
writes, per configuration, the SHA-256 of ``model.safetensors`` and ``oos_stats.safetensors``
with the metrics, calibration and training counters of ``intentkit.json``.

Run it on two checkouts and compare (issue #20 item 2 was checked this way)::

    PYTHONPATH=/work/main/src python scripts/train_parity.py --out /tmp/before.json
    PYTHONPATH=$PWD/src python scripts/train_parity.py --out /tmp/after.json
    python scripts/train_parity.py --compare /tmp/before.json /tmp/after.json

The fixtures come from ``tests/`` (the same tiny model and data the training tests use).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
#: intentkit.json["training"] keys that depend on the clock or the folder, not the computation.
VOLATILE = {"runtime_s", "phases", "best_checkpoint", "resumed_from"}


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def fingerprint(out: Path) -> dict[str, Any]:
    """The parts of an artifact that a behaviour-preserving change must leave identical."""
    meta = json.loads((out / "intentkit.json").read_text("utf-8"))
    training = {k: v for k, v in meta["training"].items() if k not in VOLATILE}
    return {
        "model.safetensors": _sha(out / "model.safetensors"),
        "oos_stats.safetensors": _sha(out / "oos_stats.safetensors"),
        "metrics": meta["metrics"],
        "calibration": meta["calibration"],
        "oos_stats": meta["oos_stats"],
        "training": training,
        "best_checkpoint": Path(meta["training"]["best_checkpoint"] or "").name,
        "max_length": meta["max_length"],
    }


def run(tmp: Path) -> dict[str, Any]:
    """Train every configuration under ``tmp``; their fingerprints by name."""
    import pandas as pd

    sys.path.insert(0, str(TESTS))
    from conftest import FIXTURES, make_tiny_modernbert
    from intentkit.training.train import train
    from train_helpers import FAST, keywords_prepared, write_prepared

    model = str(make_tiny_modernbert(tmp / "tiny"))
    kw = keywords_prepared(FIXTURES / "keywords.jsonl", tmp / "kw")
    df = pd.read_json(FIXTURES / "keywords.jsonl", lines=True).sample(frac=1.0, random_state=0)
    oos = pd.DataFrame({"text": [f"tell me joke number {i}" for i in range(30)], "label": "oos"})
    with_oos = write_prepared(
        tmp / "oos",
        pd.concat([df.iloc[:120], oos.iloc[:20]]),
        df.iloc[150:],
        pd.concat([df.iloc[120:150], oos.iloc[20:]]),
    )
    found: dict[str, Any] = {}
    found["fast_auto"] = fingerprint(train(kw, tmp / "a", model=model, **FAST))
    found["oos_class_early_stop"] = fingerprint(
        train(
            with_oos,
            tmp / "b",
            model=model,
            **{**FAST, "epochs": 8, "lr": 3e-2},
            eval_steps=3,
            patience=3,
            oos_scorer="combined",
        )
    )
    found["weights_layerwise"] = fingerprint(
        train(
            kw,
            tmp / "c",
            model=model,
            **{**FAST, "epochs": 2},
            class_weights="balanced",
            label_smoothing=0.1,
            layerwise_lr_decay=0.8,
            oos_scorer="softmax",
        )
    )
    train(kw, tmp / "d", model=model, **{**FAST, "epochs": 2})
    found["resumed"] = fingerprint(train(kw, tmp / "d", resume=True, epochs=4))
    return found


def compare(before: Path, after: Path) -> int:
    """Print every difference between two fingerprint files; 0 when there is none."""
    a = json.loads(before.read_text("utf-8"))
    b = json.loads(after.read_text("utf-8"))
    diffs = [
        f"{run}.{key}: {a[run].get(key)!r} != {b.get(run, {}).get(key)!r}"
        for run in a
        for key in a[run]
        if a[run].get(key) != b.get(run, {}).get(key)
    ]
    print("\n".join(diffs) or f"identical: {', '.join(a)}")
    return 1 if diffs else 0


def main() -> int:
    """Entry point: ``--out FILE`` to fingerprint, ``--compare A B`` to compare."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", nargs=2, type=Path)
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        ap.error("give --out FILE or --compare A B")
    with tempfile.TemporaryDirectory(prefix="train-parity-") as tmp:
        found = run(Path(tmp))
    args.out.write_text(json.dumps(found, indent=1, sort_keys=True), "utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
