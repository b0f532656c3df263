"""The review queue: captured texts ranked by what a label is worth, and the labels file.

Ranking (``worth``, highest first), per distinct text (repeats counted, weighted by
``1 + log(count)``): a rejected text is worth ``1 + (1 - confidence)``, an answered one
``1 - margin`` (top-1 minus top-2 probability; ``1 - confidence`` when the capture has no top-2,
as SageMaker's). So every rejected text comes before every answered one, the least sure first.

**Clusters of rejected texts that look like a new intent**: the rejected texts are embedded with
the model's own CLS feature (:meth:`Predictor.features`, the feature the out-of-scope scorer
reads), L2-normalised, and grouped with k-means (scikit-learn, k = sqrt(n / 2), 2..50): cosine
geometry, near-linear time (10,000 texts in seconds, where agglomerative clustering needs an
n x n matrix). A cluster of at least :data:`MIN_CLUSTER` texts is kept; its representatives are
the three texts nearest its centre, and its suggested name joins its two most distinctive words
by class-based TF-IDF (the cluster's word counts against all rejected texts, as BERTopic names
topics: https://maartengr.github.io/BERTopic/getting_started/ctfidf/ctfidf.html).

The labels file (JSON Lines) starts with a header naming the model's label set, then one line
per decision, appended and flushed as it is given: ``{"text", "label", "action", "answer",
"time"}``. Reopening reads it back (the queue resumes where it stopped; the last decision per
text wins). A labels file whose header names another label set is refused, naming the difference.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.data.add import HEADER_KEY, iter_labels_file
from intentkit.errors import DataError
from intentkit.inference.decision import reject_label_of
from intentkit.loop.capture import ReadStats, iter_records

MIN_CLUSTER = 3
ACTIONS = ("accept", "relabel", "new", "out_of_scope", "import")


@dataclass
class Queue:
    """The ranked items, the clusters and what the model and the labels file say."""

    items: list[dict[str, Any]]
    clusters: list[dict[str, Any]]
    labels: list[str]
    reject_label: str
    stats: ReadStats
    no_text: int = 0  #: captured rows without text (``--capture-text hash|none``): not reviewable
    extra: dict[str, Any] = field(default_factory=dict)


class LabelsFile:
    """Append-only decisions; the header pins the model's label set (see module docstring)."""

    def __init__(self, path: str | Path, labels: list[str]) -> None:
        self.path = Path(path)
        self.labels = list(labels)
        self.lock = threading.Lock()
        self.decided: dict[str, str] = {}
        if self.path.is_file() and self.path.stat().st_size:
            self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append({HEADER_KEY: 1, "labels": self.labels})

    def _read(self) -> None:
        for _, obj in iter_labels_file(self.path, "--labels"):
            if HEADER_KEY in obj:
                self._check_header(obj.get("labels") or [])
            else:
                self.decided[obj["text"]] = obj["label"]

    def _check_header(self, theirs: list[str]) -> None:
        if sorted(theirs) == sorted(self.labels):
            return
        missing = sorted(set(theirs) - set(self.labels))
        extra = sorted(set(self.labels) - set(theirs))
        raise DataError(
            f"--labels {self.path} was written for another model's label set (this model "
            f"lacks {', '.join(missing) or 'none'}; has in addition {', '.join(extra) or 'none'}); "
            "pass a new --labels file for this model"
        )

    def _append(self, obj: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            fh.flush()

    def add(self, text: str, label: str, action: str, answer: str | None = None) -> None:
        """Append one decision (thread-safe: the page's server answers from several threads)."""
        if action not in ACTIONS:
            raise DataError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if not label.strip():
            raise DataError("label is empty; type a label name")
        line = {"text": text, "label": label.strip(), "action": action, "answer": answer}
        line["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.lock:
            self._append(line)
            self.decided[text] = label.strip()


def _worth(rec: dict[str, Any], count: int) -> float:
    top = rec["top"]
    if rec["rejected"]:
        base = 2.0 - rec["confidence"]
    elif len(top) >= 2:
        base = 1.0 - (float(top[0]["score"]) - float(top[1]["score"]))
    else:
        base = 1.0 - rec["confidence"]
    return base * (1.0 + math.log(count))


def model_labels(model_dir: str | Path) -> list[str]:
    """The model's labels in logit order, from ``config.json`` (no weights loaded)."""
    from intentkit.artifact import check_artifact_dir, labels_of

    config = json.loads((check_artifact_dir(model_dir, flag="--model") / "config.json").read_text())
    return labels_of(config.get("id2label") or {})


def _training_texts(meta: dict[str, Any]) -> set[str]:
    path = Path(str((meta.get("data") or {}).get("path") or "")) / "train.parquet"
    if not path.is_file():
        return set()
    import pyarrow.parquet as pq

    return set(pq.read_table(path, columns=["text"]).column("text").to_pylist())


def build_queue(
    captures: list[str | Path], model_dir: str | Path, *, predictor: Any = None
) -> Queue:
    """Read ``captures``, rank the distinct texts, cluster the rejected ones (see module doc)."""
    from intentkit.artifact import check_artifact_dir, read_meta

    model_dir = check_artifact_dir(model_dir, flag="--model")
    meta = read_meta(model_dir)
    labels = model_labels(model_dir)
    reject_label = reject_label_of(meta.get("calibration"))
    stats, seen, no_text = ReadStats(), {}, 0
    for rec in iter_records(captures, stats, reject_label=reject_label):
        text = rec.get("text")
        if not text:
            no_text += 1
            continue
        if text in seen:
            seen[text][1] += 1
        else:
            seen[text] = [rec, 1]
    training = _training_texts(meta)
    items = [
        {
            "text": text,
            "answer": rec["answer"],
            "confidence": rec["confidence"],
            "rejected": rec["rejected"],
            "top": rec["top"][:3],
            "count": count,
            "worth": _worth(rec, count),
            "in_training": text in training,
            "cluster": None,
        }
        for text, (rec, count) in seen.items()
    ]
    items.sort(key=lambda x: -x["worth"])
    for i, item in enumerate(items):
        item["id"] = i
    if predictor is None:
        from intentkit.inference.predictor import Predictor

        predictor = Predictor.from_dir(model_dir, device="cpu")
    clusters = cluster_rejected(items, predictor)
    return Queue(items, clusters, labels, reject_label, stats, no_text)


def cluster_rejected(items: list[dict[str, Any]], predictor: Any) -> list[dict[str, Any]]:
    """Group the rejected items in the model's CLS feature space; set each item's ``cluster``."""
    rejected = [x for x in items if x["rejected"]]
    if len(rejected) < 2 * MIN_CLUSTER:
        return []
    from sklearn.cluster import KMeans

    texts = [x["text"] for x in rejected]
    _, feats = predictor.features(texts)
    feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    k = int(min(50, max(2, round(math.sqrt(len(texts) / 2)))))
    km = KMeans(n_clusters=k, n_init=3, random_state=0).fit(feats)
    names = _names(texts, km.labels_, k)
    groups = [np.nonzero(km.labels_ == c)[0] for c in range(k)]
    kept = sorted(
        (c for c in range(k) if len(groups[c]) >= MIN_CLUSTER), key=lambda c: -len(groups[c])
    )
    clusters = []
    for cid, c in enumerate(kept):  # ids are positions in the returned list, biggest first
        members = groups[c]
        dist = np.linalg.norm(feats[members] - km.cluster_centers_[c], axis=1)
        reps = [texts[i] for i in members[np.argsort(dist)[:3]]]
        for i in members:
            rejected[i]["cluster"] = cid
        clusters.append({"id": cid, "size": len(members), "name": names[c], "examples": reps})
    return clusters


def _names(texts: list[str], assign: np.ndarray, k: int) -> list[str]:
    """Two most distinctive words per cluster by class-based TF-IDF (see module docstring)."""
    from sklearn.feature_extraction.text import CountVectorizer

    try:
        vec = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z]{3,}\b")
        counts = vec.fit_transform(texts)
    except ValueError:  # no word survives (digits, stop words only)
        return [f"cluster_{c}" for c in range(k)]
    words = vec.get_feature_names_out()
    per = np.vstack([np.asarray(counts[assign == c].sum(axis=0)).ravel() for c in range(k)])
    tf = per / np.maximum(per.sum(axis=1, keepdims=True), 1)
    idf = np.log(1 + per.sum(axis=1).mean() / np.maximum(per.sum(axis=0), 1))
    score = tf * idf
    out = []
    for c in range(k):
        best = [words[j] for j in np.argsort(-score[c])[:2] if per[c, j] > 0]
        out.append("_".join(best) or f"cluster_{c}")
    return out
