"""Few-shot learning curves (#21 item 4): ``ce`` vs ``contrastive`` at K examples per intent.

Usage::

    python bench/fewshot.py                       # Banking77 + CLINC150, K = 5 10 20, seeds 0 1 2
    python bench/fewshot.py --datasets clinc150 --ks 5 --seeds 0   # a smoke run

For each dataset: ``intentkit data prepare`` once; per (K, seed) ``intentkit data sample
--per-label K --seed S`` (test untouched: the official test set); per objective ``intentkit
train --model M --preset P --objective O`` (``--model``, default ``minilm``) and ``intentkit
evaluate --split test --no-reject`` (argmax accuracy, as the published few-shot numbers are).
Objective ``floor`` is the issue's baseline on the same samples, in this process: the frozen
encoder, mean-pooled and L2-normalised, a scikit-learn logistic regression on the train rows,
C from 1/10/100 picked on the val rows (:func:`frozen_floor`). ``--reuse FILE`` carries over
an earlier run's cells of ``--reuse-objectives`` (default ``ce``) instead of training them
again. Writes mean and spread (sample standard deviation) over seeds with the published
numbers beside them to ``bench/results/<YYYY-MM-DD>/fewshot.json`` (``--out`` to override)
and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import default_json_path, matmul_peak_gflops, peak, write_json
from quality import DATASETS, run

#: Published accuracies on the official test sets (CLINC150: in-scope), quoted by issue #21
#: from https://github.com/jianguoz/Few-Shot-Intent-Detection, plus the frozen-MiniLM + logistic
#: regression floor measured for the issue.
PUBLISHED = {
    "banking77": {
        5: {"RoBERTa": 74.0, "USE+ConveRT": 77.8, "DNNC": 80.4, "CPFT": 80.9, "MiniLM+LR": 79.2},
        10: {"RoBERTa": 84.3, "USE+ConveRT": 85.2, "DNNC": 86.7, "CPFT": 87.2, "MiniLM+LR": 84.7},
    },
    "clinc150": {
        5: {"USE+ConveRT": 90.5, "DNNC": 91.0, "CPFT": 92.3},
        10: {"USE+ConveRT": 93.3, "DNNC": 93.8, "CPFT": 94.2},
    },
}


def frozen_floor(data: Path, cache: dict[str, Any], model_name: str = "minilm") -> dict[str, Any]:
    """The ``floor`` objective on one sample: the frozen encoder ``model_name`` (``--model``),
    mean-pooled, + logistic regression.

    ``cache`` keeps the model and the test embeddings between calls (one dataset's test set is
    the same for every K and seed).
    """
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    from intentkit.modeling import resolve_model

    started = time.perf_counter()
    if "model" not in cache:
        if os.environ.get("OMP_NUM_THREADS"):  # --threads: this process's torch as well
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        path = resolve_model(model_name)
        cache["tokenizer"], cache["model"] = (AutoTokenizer.from_pretrained(path),
                                              AutoModel.from_pretrained(path).eval())  # fmt: skip
    tok, model = cache["tokenizer"], cache["model"]

    def embed(texts: list[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 128):
                enc = tok(texts[i : i + 128], padding=True, truncation=True, max_length=64,
                          return_tensors="pt")  # fmt: skip
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).float()
                out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1)))
        return torch.cat(out).numpy()

    train, val, test = (pd.read_parquet(data / f"{s}.parquet") for s in ("train", "val", "test"))
    labels = set(train["label"])
    test = test[test["label"].isin(labels)]
    key = f"test:{data.parent.parent}"
    if key not in cache:
        cache[key] = embed(test["text"].tolist())
    x_train, x_val = embed(train["text"].tolist()), embed(val["text"].tolist())
    by_c = {}
    for c in (1.0, 10.0, 100.0):
        clf = LogisticRegression(C=c, max_iter=3000).fit(x_train, train["label"])
        by_c[c] = (float((clf.predict(x_val) == val["label"].to_numpy()).mean()), clf)
    c = max(by_c, key=lambda k: (by_c[k][0], -k))
    accuracy = float((by_c[c][1].predict(cache[key]) == test["label"].to_numpy()).mean())
    head = {"fit": f"frozen mean-pooled {model_name} + logistic regression", "C": c,
            "val_accuracy_by_C": {f"{k:g}": round(v[0], 4) for k, v in by_c.items()}}  # fmt: skip
    return {"accuracy": accuracy, "seconds": time.perf_counter() - started, "head": head}


def summarize(args: argparse.Namespace, env: dict[str, str], runs: list[dict],
              gflops: float | None) -> dict:  # fmt: skip
    """fewshot.json's content from the runs so far: per (dataset, K, objective) mean ± sd."""
    curves: dict[tuple, list[dict]] = {}
    for r in runs:
        key = (r["dataset"], r["k"], r["objective"])
        curves.setdefault(key, []).append(r)
    table = []
    for (dataset, k, objective), rs in sorted(curves.items()):
        accs = [100 * r["accuracy"] for r in rs]
        table.append({
            "dataset": dataset, "k": k, "objective": objective, "seeds": [r["seed"] for r in rs],
            "mean": round(statistics.fmean(accs), 2),
            "spread": round(statistics.stdev(accs), 2) if len(accs) > 1 else None,
            "train_wall_s_mean": round(statistics.fmean(r["train_wall_s"] for r in rs), 1),
            "published": PUBLISHED.get(dataset, {}).get(k, {}),
        })  # fmt: skip
    result = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "omp_num_threads": env.get("OMP_NUM_THREADS"),
        "matmul_fp32_gflops": None if gflops is None else round(gflops, 1),
        "complete": len(runs)
        == len(args.datasets) * len(args.ks) * len(args.seeds) * len(args.objectives),
        "curves": table,
        "runs": runs,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return result


def main() -> None:
    """Run the grid (or the part of it the flags select) and write fewshot.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["banking77", "clinc150"],
                        choices=sorted(DATASETS))  # fmt: skip
    parser.add_argument("--ks", nargs="+", type=int, default=[5, 10, 20])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--objectives", nargs="+", default=["ce", "contrastive", "floor"],
                        choices=["ce", "contrastive", "floor"])  # fmt: skip
    parser.add_argument("--epochs", type=float, default=10.0, help="ce epochs")
    parser.add_argument("--model", default="minilm",
                        help="encoder of every objective (alias or model folder; "
                        "bench/mpnet_model.py assembles all-mpnet-base-v2)")  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path("/tmp/intentkit-fewshot"))
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results)")
    parser.add_argument("--reuse", type=Path, nargs="+", default=[],
                        help="earlier fewshot.json files whose cells of --reuse-objectives are "
                        "carried over (marked reused_from) instead of run again; a later file's "
                        "cell replaces an earlier one's")  # fmt: skip
    parser.add_argument("--reuse-objectives", nargs="+", default=["ce"])
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="merge only: cells --reuse does not hold are left out, not run",
    )
    args = parser.parse_args()
    reusable = {}
    results_dir = Path(__file__).resolve().parent / "results"
    for path in args.reuse:
        earlier = json.loads(path.read_text("utf-8"))
        source = path.resolve()
        name = source.relative_to(results_dir) if source.is_relative_to(results_dir) else source
        for r in earlier["runs"]:
            if r["objective"] in args.reuse_objectives:
                reused = {**r, "reused_from": r.get("reused_from") or str(name)}
                reusable[(r["dataset"], r["k"], r["seed"], r["objective"])] = reused

    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    env = dict(os.environ)
    cli = [sys.executable, "-m", "intentkit"]
    runs: list[dict] = []
    floor_cache: dict[str, Any] = {}
    gflops = None if args.no_train else peak(matmul_peak_gflops())  # a merge times nothing
    out = args.out or default_json_path("fewshot")
    for dataset in args.datasets:
        work = args.work / dataset
        work.mkdir(parents=True, exist_ok=True)
        if not args.no_train and not (work / "data" / "stats.json").is_file():
            # No preset: CLINC150's in-scope intents only, as the published numbers are.
            run([*cli, "data", "prepare", DATASETS[dataset]["source"], "--out",
                 str(work / "data")], work / "prepare.log", env)  # fmt: skip
    # K-major, in the order given: a cut-short run still holds whole K columns.
    for k in args.ks:
        for dataset in args.datasets:
            work = args.work / dataset
            for seed in args.seeds:
                data = work / f"k{k}-s{seed}" / "data"
                cells = [(dataset, k, seed, objective) for objective in args.objectives]
                if args.no_train:
                    runs.extend(reusable[cell] for cell in cells if cell in reusable)
                    continue
                sample = [*cli, "data", "sample", str(work / "data"), "--per-label", str(k),
                          "--seed", str(seed), "--out", str(data), "--force"]  # fmt: skip
                run(sample, work / "sample.log", env)
                for objective in args.objectives:
                    if (dataset, k, seed, objective) in reusable:
                        runs.append(reusable[(dataset, k, seed, objective)])
                        continue
                    if objective == "floor":
                        got = frozen_floor(data, floor_cache, args.model)
                        runs.append({"dataset": dataset, "k": k, "seed": seed,
                                     "objective": objective, "accuracy": got["accuracy"],
                                     "train_wall_s": round(got["seconds"], 1), "phases": None,
                                     "head": got["head"]})  # fmt: skip
                        print(f"{dataset} K={k} seed={seed} floor: {100 * got['accuracy']:.1f} %")
                        write_json(out, summarize(args, env, runs, gflops))
                        continue
                    model = data.parent / objective
                    train = [*cli, "train", "--data", str(data), "--out", str(model), "--force",
                             "--model", args.model, "--preset", DATASETS[dataset]["preset"],
                             "--seed", str(seed), "--objective", objective,
                             "--epochs", f"{args.epochs:g}"]  # fmt: skip
                    train_s = run(train, model.parent / f"{objective}-train.log", env)
                    run([*cli, "evaluate", str(model), "--data", str(data), "--split", "test",
                         "--no-reject"], model.parent / f"{objective}-eval.log", env)  # fmt: skip
                    report = json.loads((model / "eval" / "report.json").read_text("utf-8"))
                    meta = json.loads((model / "intentkit.json").read_text("utf-8"))["training"]
                    acc = report.get("in_scope_accuracy") or report["accuracy"]
                    runs.append({"dataset": dataset, "k": k, "seed": seed, "objective": objective,
                                 "accuracy": acc, "train_wall_s": round(train_s, 1),
                                 "phases": meta.get("phases"),
                                 "head": meta.get("head")})  # fmt: skip
                    print(f"{dataset} K={k} seed={seed} {objective}: {100 * acc:.1f} % "
                          f"({train_s:.0f} s)", flush=True)  # fmt: skip
                    write_json(out, summarize(args, env, runs, gflops))  # after every run
    result = summarize(args, env, runs, gflops)
    table = result["curves"]
    print(f"wrote {write_json(out, result)}")
    print(
        "\n| dataset | K | objective | accuracy % (mean ± sd) | published |\n|---|---|---|---|---|"
    )
    for row in table:
        spread = f" ± {row['spread']:.1f}" if row["spread"] is not None else ""
        pub = ", ".join(f"{n} {v}" for n, v in row["published"].items()) or "-"
        print(f"| {row['dataset']} | {row['k']} | {row['objective']} | {row['mean']:.1f}{spread} "
              f"| {pub} |")  # fmt: skip


if __name__ == "__main__":
    main()
