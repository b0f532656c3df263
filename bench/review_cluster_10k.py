"""``intentkit review``'s clustering on 10,000 rejected texts: seconds, and whether intents emerge.

Target (#19): under 30 s on the 2-core CPU. Texts: CLINC150 (bundled) rows of ``--intents``
intents a model would not know, 10,000 in all (repeated with a counter suffix when the intents
have fewer rows), embedded by the offline MiniLM encoder with a random classification head (the
CLS feature does not depend on the head), then :func:`intentkit.loop.review.cluster_rejected`.
Also reports cluster purity (share of each cluster's texts from its most common intent),
weighted by size: how well held-back intents show up as clusters.

    python bench/review_cluster_10k.py                      # prints JSON
    python bench/review_cluster_10k.py --out bench/results/$(date +%F)/review_cluster_10k.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from importlib import resources
from pathlib import Path


def _texts(rows: int, intents: int) -> tuple[list[str], list[str]]:
    path = resources.files("intentkit") / "bundled" / "clinc150" / "train.jsonl"
    data = [json.loads(x) for x in path.read_text().splitlines()]
    names = sorted({d["label"] for d in data})[:intents]
    pool = [d for d in data if d["label"] in names]
    texts, labels = [], []
    for i in range(rows):
        d = pool[i % len(pool)]
        texts.append(d["text"] if i < len(pool) else f"{d['text']} {i // len(pool)}")
        labels.append(d["label"])
    return texts, labels


def main() -> None:
    """Embed, cluster, print (and optionally write) the JSON result."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from intentkit.inference.predictor import Predictor
    from intentkit.loop.review import cluster_rejected
    from intentkit.modeling import resolve_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--intents", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    texts, truth = _texts(args.rows, args.intents)
    path = resolve_model("minilm")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    predictor = Predictor(model, AutoTokenizer.from_pretrained(path), meta={"max_length": 64})
    items = [{"text": t, "rejected": True, "cluster": None} for t in texts]
    t0 = time.perf_counter()
    clusters = cluster_rejected(items, predictor)
    seconds = time.perf_counter() - t0
    by_cluster: dict[int, Counter] = {}
    for item, label in zip(items, truth, strict=True):
        if item["cluster"] is not None:
            by_cluster.setdefault(item["cluster"], Counter())[label] += 1
    clustered = sum(sum(c.values()) for c in by_cluster.values())
    purity = sum(c.most_common(1)[0][1] for c in by_cluster.values()) / max(clustered, 1)
    out = {
        "bench": "review_cluster_10k",
        "target_s": 30,
        "rows": args.rows,
        "intents": args.intents,
        "seconds": seconds,
        "clusters": len(clusters),
        "clustered_rows": clustered,
        "purity": purity,
        "threads": torch.get_num_threads(),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
