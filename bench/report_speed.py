"""Benchmark report.html generation for CLINC150's test split (4,500 rows, 150 labels).

Issue #10's target: report generation takes < 5 s beyond the evaluation itself. Set-up (not
timed): prepare the bundled ``clinc150`` set into bench/out/, build an artifact (``--model
DIR``: an existing trained one; default: MiniLM with a randomly initialised 150-class head and
a calibration fitted on val, which answers mostly wrong and so is the worst case for the page's
error list), run ``intentkit.evaluation.evaluate`` once. Timed: ``write_report`` on that evaluation
folder,
``--repeats`` times. Prints one JSON object (median and min-max seconds, page size).

    python bench/report_speed.py [--model DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def random_head_artifact(data: Path, out: Path) -> Path:
    """MiniLM + an untrained 150-class head, calibrated on val, written as an artifact."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from intentkit.artifact import library_versions, write_artifact
    from intentkit.data.dataset import load_prepared
    from intentkit.evaluation.calibration import calibrate
    from intentkit.inference.predictor import Predictor
    from intentkit.modeling import resolve_model

    ds = load_prepared(data)
    labels = list(ds.labels)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model("minilm"),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={x: i for i, x in enumerate(labels)},
    )
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    meta = {"max_length": 32, "labels": labels, "versions": library_versions()}
    val = ds.val if ds.val is not None else ds.train.sample(3000, random_state=0)
    logits = Predictor(model, tokenizer, meta=meta).logits(val["text"].tolist())
    index = {x: i for i, x in enumerate(labels)}
    y = np.array([index[x] for x in val["label"]])
    meta["calibration"] = calibrate(logits, y, labels)
    meta["train_config"] = {"model": "minilm (random head)"}
    write_artifact(out, model=model, tokenizer=tokenizer, meta=meta, model_card="bench\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a trained CLINC150 artifact to evaluate")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=HERE / "out" / "report_speed")
    args = parser.parse_args()

    from intentkit.data.prepare import prepare
    from intentkit.evaluation.evaluate import evaluate
    from intentkit.evaluation.report.page import write_report

    data = args.work / "data"
    if not (data / "test.parquet").is_file():
        prepare("clinc150", data, force=True)
    model = args.model or args.work / "model"
    if args.model is None and not (model / "intentkit.json").is_file():
        random_head_artifact(data, model)
    eval_dir = args.work / "eval"
    started = time.perf_counter()
    report = evaluate(model, data, out=eval_dir)  # also writes report.html once (warm-up)
    evaluate_s = time.perf_counter() - started
    import pandas as pd

    pred = pd.read_parquet(eval_dir / "predictions.parquet")
    listed = int((~pred["correct"] | pred["rejected"]).sum())  # the page's sentence list
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        page = write_report(eval_dir)
        times.append(time.perf_counter() - t)
    print(
        json.dumps(
            {
                "bench": "report_speed",
                "model": str(model),
                "rows": report["n"],
                "classes": len(report["per_class"]),
                "accuracy": round(report["accuracy"], 4),
                "rows_listed": listed,
                "evaluate_s": round(evaluate_s, 2),
                "report_s": {
                    "median": round(statistics.median(times), 3),
                    "min": round(min(times), 3),
                    "max": round(max(times), 3),
                    "repeats": args.repeats,
                },
                "page_bytes": page.stat().st_size,
                "target": "report_s median < 5 s; page < 2 MB",
                "machine": f"{platform.machine()}, {platform.python_version()}",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
