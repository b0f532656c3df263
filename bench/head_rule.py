"""Which rule should pick the contrastive head's fit? Judged on held-out rows, not the test set.

    python bench/head_rule.py                    # every contrastive artifact fewshot.py left
    python bench/head_rule.py --work /tmp/intentkit-fewshot --out results/DATE/head_rule.json

``fit_linear_head`` fits a logistic regression for each C on the train rows, and on the train
rows plus one row per label name, and keeps one fit by validation accuracy. With 5-20 val rows
per intent, validation often ties. This reads each contrastive artifact that ``fewshot.py``
left in ``--work`` (``<dataset>/k<K>-s<S>/contrastive``), recomputes every candidate fit on its
classifier input, and scores each selection rule on **dev rows**: up to ``--dev-rows`` rows of
the dataset's training pool that are in neither the sample's train nor its val split. The
official test set decides nothing; it is scored only where the rules disagree, for the record.
Cells already in ``--out`` are kept (the run resumes). Writes ``head_rule.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from harness import default_json_path, write_json

#: Selection rules over the candidate fits ``rows/C`` and ``names/C``; each maps a candidate
#: (its key and scores) to a sort key, the largest wins.
RULES = {
    "R0 acc, ties rows then small C": "validation accuracy; ties: train rows only, then small C "
    "(the rule until 2026-12-05)",
    "R1 acc, ties names then small C": "validation accuracy; ties: with names, then small C",
    "R2 always names, C by acc": "always with names; C by validation accuracy, ties small C",
    "R3 nll over all": "validation log-loss over both row sets and every C",
    "R4 always names, C by nll": "always with names; C by validation log-loss",
    "R5 rows only, C by acc": "never names; C by validation accuracy, ties small C",
}


def pick(rule: str, grid: dict[str, dict[str, float]]) -> str:
    """The candidate key ``rule`` selects from ``grid`` (``{"rows/1": {"val_acc": ..}, ..}``)."""
    keys = list(grid)  # rows/C ascending, then names/C ascending: the fit order
    order = {k: i for i, k in enumerate(keys)}

    def c_of(k: str) -> float:
        return float(k.split("/")[1])

    names = [k for k in keys if k.startswith("names/")]
    rows = [k for k in keys if k.startswith("rows/")]
    if rule.startswith("R0"):
        return max(keys, key=lambda k: (grid[k]["val_acc"], -order[k]))
    if rule.startswith("R1"):
        return max(keys, key=lambda k: (grid[k]["val_acc"], k in names, -c_of(k)))
    if rule.startswith("R2"):
        return max(names or rows, key=lambda k: (grid[k]["val_acc"], -c_of(k)))
    if rule.startswith("R3"):
        return max(keys, key=lambda k: -grid[k]["val_nll"])
    if rule.startswith("R4"):
        return max(names or rows, key=lambda k: -grid[k]["val_nll"])
    return max(rows, key=lambda k: (grid[k]["val_acc"], -c_of(k)))


def study_cell(cell: Path, dev_rows: int) -> dict[str, Any]:
    """Every candidate fit of one artifact, scored on val, dev (and test where rules differ)."""
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from intentkit.training.objectives import HEAD_C_GRID, label_name_text, logits_layer

    started = time.perf_counter()
    art = cell / "contrastive"
    meta = json.loads((art / "intentkit.json").read_text("utf-8"))
    labels, max_length = meta["labels"], meta["max_length"]
    tok = AutoTokenizer.from_pretrained(art)
    model = AutoModelForSequenceClassification.from_pretrained(art).eval()
    captured: list[Any] = []
    logits_layer(model)[1].register_forward_pre_hook(lambda _m, a: captured.append(a[0]))

    def features(texts: list[str]) -> np.ndarray:
        captured.clear()
        with torch.no_grad():
            for i in range(0, len(texts), 128):
                enc = tok(texts[i : i + 128], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")  # fmt: skip
                model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return torch.cat(captured).float().numpy()

    train, val, test = (pd.read_parquet(cell / "data" / f"{s}.parquet")
                        for s in ("train", "val", "test"))  # fmt: skip
    pool_dir = cell.parent / "data"
    pool = pd.concat([pd.read_parquet(p) for p in sorted(pool_dir.glob("*.parquet"))
                      if p.stem in ("train", "val")])  # fmt: skip
    used = set(train["text"]) | set(val["text"])
    dev = pool[~pool["text"].isin(used) & pool["label"].isin(labels)]
    dev = dev.sample(n=min(dev_rows, len(dev)), random_state=0)
    test = test[test["label"].isin(labels)]
    label_id = {name: i for i, name in enumerate(labels)}
    names = {lab: label_name_text(lab) for lab in labels}
    names = {lab: text for lab, text in names.items() if text}
    splits = {"train": train, "val": val, "dev": dev, "test": test}
    y = {s: np.asarray([label_id[v] for v in df["label"]]) for s, df in splits.items()}
    x = {s: features(splits[s]["text"].tolist()) for s in ("train", "val", "dev")}
    x_names = features(list(names.values()))
    y_names = np.asarray([label_id[lab] for lab in names])
    grid: dict[str, dict[str, Any]] = {}
    for rows in ("rows", "names"):
        xs = x["train"] if rows == "rows" else np.vstack([x["train"], x_names])
        ys = y["train"] if rows == "rows" else np.concatenate([y["train"], y_names])
        for c in HEAD_C_GRID:
            clf = LogisticRegression(C=c, max_iter=2000).fit(xs, ys)
            proba = clf.predict_proba(x["val"])
            grid[f"{rows}/{c:g}"] = {
                "val_acc": float((clf.classes_[proba.argmax(1)] == y["val"]).mean()),
                "val_nll": float(log_loss(y["val"], proba, labels=clf.classes_)),
                "dev": float((clf.predict(x["dev"]) == y["dev"]).mean()),
                "clf": clf,
            }
    picks = {rule: pick(rule, grid) for rule in RULES}
    if len(set(picks.values())) > 1:  # reported only where the rules disagree
        x["test"] = features(test["text"].tolist())
    for g in grid.values():
        clf = g.pop("clf")
        g["test"] = float((clf.predict(x["test"]) == y["test"]).mean()) if "test" in x else None
    return {
        "cell": str(cell), "n_dev": len(dev), "grid": grid,
        "rules": {rule: {"pick": k, "dev": grid[k]["dev"], "test": grid[k]["test"]}
                  for rule, k in picks.items()},
        "recorded_test": recorded_test(art), "s": round(time.perf_counter() - started, 1),
    }  # fmt: skip


def recorded_test(art: Path) -> float | None:
    """The test accuracy ``fewshot.py`` recorded for the artifact (its R0 pick), for checking
    that this recomputation reproduces the pipeline."""
    report = art / "eval" / "report.json"
    if not report.is_file():
        return None
    data = json.loads(report.read_text("utf-8"))
    return data.get("in_scope_accuracy") or data["accuracy"]


def summarize(cells: list[dict[str, Any]], dev_rows: int) -> dict[str, Any]:
    """head_rule.json: the cells; per rule the mean dev accuracy and cells won/lost vs R0; per
    dataset and K the mean test accuracy of R0 (as the grid ran) and of R1 (the rule that
    ships) on the same artifacts."""
    base = next(iter(RULES))
    per_rule = {}
    for rule, text in RULES.items():
        dev = [c["rules"][rule]["dev"] for c in cells]
        diff = [c["rules"][rule]["dev"] - c["rules"][base]["dev"] for c in cells]
        per_rule[rule] = {"description": text, "dev_mean": round(statistics.fmean(dev), 5),
                          "better_than_R0": sum(d > 1e-9 for d in diff),
                          "worse_than_R0": sum(d < -1e-9 for d in diff)}  # fmt: skip
    old, new = base, "R1 acc, ties names then small C"  # the rule until 2026-12-05, the new one

    def test_of(cell: dict[str, Any], rule: str) -> float:
        got = cell["rules"][rule]["test"]  # None where every rule picked the same fit
        return got if got is not None else cell["recorded_test"]

    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for cell in cells:
        dataset, sample = Path(cell["cell"]).parts[-2:]
        by.setdefault((dataset, int(sample.split("-")[0][1:])), []).append(cell)
    per_k = [{"dataset": dataset, "k": k, "seeds": len(group),
              "test_R0": statistics.fmean(test_of(c, old) for c in group),
              "test_R1": statistics.fmean(test_of(c, new) for c in group),
              "picks_changed": sum(c["rules"][old]["pick"] != c["rules"][new]["pick"]
                                   for c in group)}
             for (dataset, k), group in sorted(by.items())]  # fmt: skip
    return {"benchmark": "head_rule", "dev_rows": dev_rows, "rules": per_rule, "per_k": per_k,
            "cells": cells}  # fmt: skip


def main() -> None:
    """Study every contrastive artifact under ``--work``; write head_rule.json after each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/intentkit-fewshot"))
    parser.add_argument("--dev-rows", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or default_json_path("head_rule")
    cells = json.loads(out.read_text("utf-8"))["cells"] if out.is_file() else []
    done = {c["cell"] for c in cells}
    for art in sorted(args.work.glob("*/k*-s*/contrastive/intentkit.json")):
        cell = art.parent.parent
        if str(cell) in done:
            continue
        cells.append(study_cell(cell, args.dev_rows))
        write_json(out, summarize(cells, args.dev_rows))
        print(cell, {r: v["pick"] for r, v in cells[-1]["rules"].items()}, flush=True)
    write_json(out, summarize(cells, args.dev_rows))


if __name__ == "__main__":
    main()
