"""Out-of-scope rejection without out-of-scope data (issue #21 item 0): which default rule?

Usage::

    python bench/oos_without_oos.py [--work /tmp/intentkit-oos-without-oos] [--datasets travel,...]
        [--reuse] [--append] [--int8 travel] [--out bench/results/<date>/oos_without_oos.json]

For each dataset without out-of-scope rows, one training (MiniLM, the demo's defaults: preset
``cpu-fast``, 2 epochs, max length 32, as ``intentkit quickstart``), then every candidate rule
refitted post hoc on the same artifact from cached validation features (what
:func:`intentkit.training.oos_fit.fit_artifact` does, without a second pass per rule) and scored
through the product's decision function (:func:`intentkit.inference.decision.apply`) on:

- (a) CLINC150's official test questions of the intents that are not the dataset's own
  ("other-domain": for a CLINC150 domain, the other nine domains; for Banking77, every domain but
  banking and credit cards);
- (b) CLINC150's 1,000 out-of-scope test rows;
- the dataset's own test split, with rejection on and off, and the share of its rows rejected.

``--int8 travel`` (issue #21 item 5) then exports a refitted copy to ONNX fp32 and int8 and
records how often the served answers agree, in scope and out of domain.

Datasets: the bundled ``clinc150-travel`` (the demo), three more CLINC150 domains prepared as
their own datasets the same way, and optionally Banking77 (``--datasets ...,banking77``).
Candidate rules: the scorer (softmax, mahalanobis, knn, combined) times the threshold rule
(``acc-1pt``: the product's rule, largest threshold keeping validation accuracy >= accuracy with
no rejection minus one point; ``q95``/``q98``/``q99``: reject the 5/2/1 % least in-scope
validation rows, a fixed quantile of in-scope validation distances).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from harness import default_json_path, write_json

CLINC_DOMAINS = ("travel", "banking", "kitchen_and_dining", "small_talk")
#: Domains whose questions a Banking77 model may rightly answer: not "other-domain" for it.
BANKING77_NEAR = ("banking", "credit_cards")
SCORERS = ("softmax", "mahalanobis", "knn", "combined")
#: Threshold rules: None = the product's accuracy-minus-one-point rule, else the share of
#: in-scope validation rows rejected.
RULES: dict[str, float | None] = {"acc-1pt": None, "q95": 0.05, "q98": 0.02, "q99": 0.01}
TRAIN = {"preset": "cpu-fast", "model": "minilm", "epochs": 2.0, "max_length": 32}


def clinc_rows(split: str) -> tuple[list[dict[str, str]], list[str], dict[str, list[str]]]:
    """CLINC150's bundled ``split`` rows, its out-of-scope rows of that split, and domains."""
    from importlib import resources

    root = resources.files("intentkit") / "bundled" / "clinc150"

    def read(name: str) -> list[dict[str, str]]:
        text = (root / name).read_text("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    domains = json.loads((root / "domains.json").read_text("utf-8"))
    return read(f"{split}.jsonl"), [r["text"] for r in read(f"oos_{split}.jsonl")], domains


def register_domain(domain: str) -> str:
    """A bundled name for one CLINC150 domain, read exactly as ``clinc150-travel`` is."""
    from intentkit.data.sources import BUNDLED

    name = f"clinc150-{domain}"
    if name not in BUNDLED:  # this process only: the product ships clinc150-travel alone
        BUNDLED[name] = dataclasses.replace(
            BUNDLED["clinc150-travel"], domain=domain, description=f"CLINC150, {domain} domain"
        )
    return name


def train_settings(name: str, epochs: float | None) -> dict[str, Any]:
    """What ``train`` gets for ``name``: the demo's settings (Banking77: 1 epoch); ``epochs``
    (``--epochs``) replaces either, to see what a longer run changes, not the default."""
    settings = {**TRAIN, "epochs": 1.0} if name == "banking77" else dict(TRAIN)
    if epochs is not None:
        settings["epochs"] = epochs
    return settings


def train_one(
    name: str, work: Path, reuse: bool, settings: dict[str, Any]
) -> tuple[Path, Path, float | None]:
    """Prepare + train ``name`` into ``work/name`` with ``settings``; reuse a finished artifact
    with ``--reuse``."""
    from intentkit.config import DataConfig
    from intentkit.data.prepare import prepare
    from intentkit.training.train import train

    source = name if name == "banking77" else register_domain(name)
    data, model = work / name / "data", work / name / "model"
    if reuse and (model / "intentkit.json").is_file():
        return data, model, None
    prepare(source, data, config=DataConfig(), force=True)
    started = time.perf_counter()
    train(data, model, force=True, **settings)
    return data, model, time.perf_counter() - started


def quantile_threshold(in_scope_scores: Any, share: float) -> float:
    """The score below which ``share`` of the in-scope validation rows fall (rejected)."""
    import numpy as np

    return float(np.quantile(np.asarray(in_scope_scores, np.float64), share, method="lower"))


def measure(name: str, data: Path, model: Path) -> dict[str, Any]:
    """Every candidate rule on one trained artifact (features computed once per text set)."""
    import numpy as np

    from intentkit.artifact import read_meta
    from intentkit.config import TrainConfig, build
    from intentkit.data.dataset import load_prepared
    from intentkit.evaluation.calibration import calibrate
    from intentkit.export.loader import load_predictor
    from intentkit.inference.decision import apply, top
    from intentkit.training.oos_fit import fit_features
    from intentkit.training.setup import validation_split

    meta = read_meta(model)
    stored = {k: v for k, v in meta["train_config"].items() if k != "model_resolved"}
    cfg = build(TrainConfig, stored)
    predictor = load_predictor(model, device="cpu", backend="torch", reject=False)
    predictor.calibration, predictor.oos_stats = None, None
    labels = predictor.labels
    ds = load_prepared(data)
    train_df, val_df, _, _ = validation_split(ds, cfg, labels)
    feats = fit_features(predictor, train_df, val_df, [], labels, None)
    stats = feats.stats
    val_y = np.array([labels.index(x) for x in val_df["label"]])

    test_rows, oos_test, domains = clinc_rows("test")
    near = set(labels)
    if name == "banking77":
        near |= {i for d in BANKING77_NEAR for i in domains[d]}
    other = [r["text"] for r in test_rows if r["label"] not in near]
    own = ds.split("test")
    sets = {"other_domain": other, "oos_test": oos_test, "own_test": own["text"].tolist()}
    cached = {}
    for key, texts in sets.items():
        logits, x = predictor.features(texts, batch_size=128)
        cached[key] = (logits, stats.all_distances(x))
    own_truth = np.array(own["label"].tolist())

    out: dict[str, Any] = {
        "dataset": name,
        "labels": len(labels),
        "rows": {
            "train": len(train_df),
            "val": len(val_df),
            **{k: len(v) for k, v in sets.items()},
        },
        "accuracy_no_rejection": float(
            np.mean(np.array(labels)[cached["own_test"][0].argmax(1)] == own_truth)
        ),
        "rules": {},
    }
    for scorer in SCORERS:
        for rule, share in RULES.items():
            cal = calibrate(
                feats.val_logits,
                val_y,
                labels,
                scorer=scorer,
                val_distances=feats.val_distances if scorer != "softmax" else None,
            )
            if share is not None:
                if scorer == "softmax":
                    _, _, conf = top(feats.val_logits, cal["temperature"])
                    cal["threshold"] = quantile_threshold(conf, share)
                else:
                    cal["oos_threshold"] = quantile_threshold(-feats.val_distances[scorer], share)
            row: dict[str, Any] = {"scorer": scorer, "rule": rule}
            for key, (logits, dists) in cached.items():
                score = -dists[scorer] if scorer != "softmax" else None
                answered, _, _ = apply(logits, labels, cal, oos_score=score)
                rejected = np.array([a == cal["reject_label"] for a in answered])
                row[f"{key}_rejected"] = float(rejected.mean())
                if key == "own_test":
                    row["own_test_accuracy"] = float(np.mean(np.array(answered) == own_truth))
            out["rules"][f"{scorer}/{rule}"] = row
            print(
                f"{name:20s} {scorer:12s} {rule:8s} other {row['other_domain_rejected']:.3f} "
                f"oos {row['oos_test_rejected']:.3f} acc {row['own_test_accuracy']:.3f} "
                f"(rejected {row['own_test_rejected']:.3f})",
                flush=True,
            )
    return out


def int8_agreement(name: str, model: Path, work: Path) -> dict[str, Any]:
    """#21 item 5's measurement: how often the served int8 ONNX answer (rejection included)
    equals fp32's, in scope and out of domain, on a copy of ``model`` refitted with the
    default rule; the export gate's own figures (validation texts and boundary probes) beside it."""
    import shutil

    import numpy as np

    from intentkit.export.loader import load_predictor
    from intentkit.export.onnx_graph import FILES, MANIFEST, export_dir, export_onnx
    from intentkit.export.quantize import DEFAULT_MIN_AGREEMENT
    from intentkit.training.oos_fit import fit_artifact

    copy = work / name / "model-int8"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(model, copy, ignore=shutil.ignore_patterns("onnx", "eval", "checkpoints"))
    cal = fit_artifact(copy, work / name / "data")  # the shipped default (auto)
    # min_agreement 0: loadable whatever the gate measures; its figure is recorded beside ours.
    export_onnx(copy, int8=True, min_agreement=0.0)
    manifest = json.loads((export_dir(copy) / MANIFEST).read_text("utf-8"))
    kw = {"device": "cpu", "backend": "onnx"}
    fp32 = load_predictor(copy, dtype="fp32", **kw)
    int8 = load_predictor(copy, dtype="int8", **kw)
    test_rows, oos_test, _ = clinc_rows("test")
    own = set(fp32.labels)
    sets = {
        "own_test": [r["text"] for r in test_rows if r["label"] in own],
        "out_of_domain": [r["text"] for r in test_rows if r["label"] not in own] + oos_test,
    }
    out: dict[str, Any] = {
        "scorer": cal["oos_scorer"],
        "gate": manifest["files"].get("int8", {}).get("agreement"),
        "int8_file": FILES["int8"],
        "gate_default_min": DEFAULT_MIN_AGREEMENT,
    }
    for key, texts in sets.items():
        a = [x["label"] for x in fp32.predict(texts, batch_size=64)]
        b = [x["label"] for x in int8.predict(texts, batch_size=64)]
        rej = cal["reject_label"]
        flips = sum((x == rej) != (y == rej) for x, y in zip(a, b, strict=True))
        out[key] = {
            "n": len(texts),
            "agreement": float(np.mean([x == y for x, y in zip(a, b, strict=True)])),
            "answered_vs_rejected": int(flips),
        }
    print(f"{name} int8 vs fp32: {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Train each dataset once, score every candidate rule, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/intentkit-oos-without-oos"))
    parser.add_argument("--datasets", default=",".join(CLINC_DOMAINS))
    parser.add_argument("--reuse", action="store_true", help="reuse trained artifacts in --work")
    parser.add_argument("--out", type=Path, default=default_json_path("oos_without_oos"))
    parser.add_argument(
        "--append", action="store_true", help="add the datasets to an existing --out file"
    )
    parser.add_argument(
        "--epochs", type=float, default=None, help="train this many epochs instead of the demo's"
    )
    parser.add_argument(
        "--int8", default="", help="datasets (already trained) whose int8 agreement to measure"
    )
    args = parser.parse_args(argv)
    command = "python bench/oos_without_oos.py " + " ".join(argv or sys.argv[1:])
    results: dict[str, Any] = {
        "benchmark": "oos_without_oos",
        "commands": [],
        "train": TRAIN,
        "rules": {k: v for k, v in RULES.items()},
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "datasets": {},
    }
    if args.append and args.out.is_file():  # one dataset per run on a busy machine
        results = json.loads(args.out.read_text("utf-8"))
    results["commands"].append(command)
    for name in filter(None, args.datasets.split(",")):
        settings = train_settings(name, args.epochs)
        data, model, wall = train_one(name, args.work, args.reuse, settings)
        results["datasets"][name] = {
            "train_wall_s": wall,
            "train": settings,  # per dataset: Banking77 and --epochs differ from "train" above
            **measure(name, data, model),
        }
        write_json(args.out, results)  # after each dataset: a partial run is still usable
    for name in filter(None, args.int8.split(",")):
        model = args.work / name / "model"
        results.setdefault("int8", {})[name] = int8_agreement(name, model, args.work)
        write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
