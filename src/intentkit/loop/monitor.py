"""``intentkit monitor``: is live traffic drifting away from what the model was trained on?

Streaming, bounded memory: :func:`intentkit.loop.capture.read_columns` yields numpy batches,
each folded into per-minute counts (texts, rejected, a confidence histogram, an out-of-scope
score histogram, answers per label) and dropped; nothing per row is kept, so a million rows
hold a few MB whatever the file sizes. Minutes are merged into at most ~48 windows at the end.

Distances are **Jensen-Shannon divergences** (base 2, so 0 = same distribution, 1 = disjoint),
computed with :func:`scipy.special.rel_entr`; per label, the label's own term of the sum (the
terms add up to the total), so the table shows which labels moved.

* answers: in-scope answers (rejected ones left out: the rejection rate has its own line) vs the
  training split's label counts stored in the artifact (``intentkit.json["data"]``);
* confidence and out-of-scope score: each window's histogram vs a reference. The artifact stores
  no validation-time histograms yet, so the reference is the **first window** of the traffic;
* rejection rate: the last window's against the first window's.

Drift (``--fail-on-drift`` exits 1 when any holds; the defaults are :class:`Thresholds`):
answers JS > 0.1, confidence JS (last window) > 0.1, out-of-scope score JS (last window) > 0.1,
rejection rate up by more than 0.10 (absolute) from the first window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.inference.decision import reject_label_of
from intentkit.loop.capture import ReadStats, read_columns

CONF_BINS = 20
OOS_BINS = 20
MAX_WINDOWS = 48
#: Window lengths in minutes, the smallest that gives at most MAX_WINDOWS is chosen.
WINDOW_MINUTES = (1, 5, 15, 60, 360, 1440, 10080)


@dataclass(frozen=True)
class Thresholds:
    """Past any of these, traffic has drifted (``--fail-on-drift``)."""

    answer_js: float = 0.1  #: --max-answer-js answers vs training
    confidence_js: float = 0.1  #: --max-confidence-js last window vs reference
    oos_js: float = 0.1  #: --max-oos-js last window vs reference
    rejection_increase: float = 0.10  #: --max-rejection-increase last window minus reference


def js_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-bin terms of the Jensen-Shannon divergence (base 2) of two count vectors; their sum
    is the divergence. Empty inputs give zeros."""
    from scipy.special import rel_entr

    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return np.zeros_like(p)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    return (rel_entr(p, m) + rel_entr(q, m)) / (2 * np.log(2))


class Accumulator:
    """Per-minute counts folded from column batches (see the module docstring)."""

    def __init__(self) -> None:
        self.labels: dict[str, int] = {}
        self.minutes: dict[int, np.ndarray] = {}  # minute -> [n, rejected, conf bins, oos bins]
        self.answers: dict[int, dict[int, int]] = {}  # minute -> label id -> in-scope answers
        self.oos_edges: np.ndarray | None = None  # fixed from the first batch with scores

    def add(self, cols: dict[str, np.ndarray]) -> None:
        """Fold one batch from :func:`read_columns` into the counts."""
        ok = ~np.isnat(cols["time"])
        cols = {k: v[ok] for k, v in cols.items()}
        if not len(cols["answer"]):
            return
        minute = cols["time"].astype("datetime64[m]").astype(np.int64)
        keys, inv = np.unique(minute, return_inverse=True)
        k = len(keys)
        conf_bin = np.clip((cols["confidence"] * CONF_BINS).astype(np.int64), 0, CONF_BINS - 1)
        rows = [
            np.bincount(inv, minlength=k)[:, None],
            np.bincount(inv, weights=cols["rejected"], minlength=k)[:, None],
            np.bincount(inv * CONF_BINS + conf_bin, minlength=k * CONF_BINS).reshape(k, -1),
            self._oos_hist(cols["oos_score"], inv, k),
        ]
        block = np.concatenate(rows, axis=1)
        for i, key in enumerate(keys.tolist()):
            if key in self.minutes:
                self.minutes[key] += block[i]
            else:
                self.minutes[key] = block[i].astype(np.float64)
        answered = ~cols["rejected"]
        names, label_inv = np.unique(cols["answer"][answered], return_inverse=True)
        ids = np.array([self.labels.setdefault(str(x), len(self.labels)) for x in names], int)
        pairs, counts = np.unique(
            np.stack([inv[answered], ids[label_inv]], axis=1), axis=0, return_counts=True
        )
        for (i, label), c in zip(pairs.tolist(), counts.tolist(), strict=True):
            per = self.answers.setdefault(int(keys[i]), {})
            per[label] = per.get(label, 0) + c

    def _oos_hist(self, score: np.ndarray, inv: np.ndarray, k: int) -> np.ndarray:
        has = ~np.isnan(score)
        if self.oos_edges is None and has.any():
            # Fixed once: the first batch's 1st..99th percentile widened by 10 % each side (room
            # for a shift to show in inner bins); the outer bins are open-ended.
            lo, hi = np.percentile(score[has], [1, 99])
            pad = (hi - lo) * 0.1 or max(abs(lo) * 0.1, 1.0)
            self.oos_edges = np.linspace(lo - pad, hi + pad, OOS_BINS + 1)
        if self.oos_edges is None:
            return np.zeros((k, OOS_BINS))
        b = np.clip(np.searchsorted(self.oos_edges, score[has]) - 1, 0, OOS_BINS - 1)
        return np.bincount(inv[has] * OOS_BINS + b, minlength=k * OOS_BINS).reshape(k, -1)


def _windows(acc: Accumulator) -> tuple[int, list[int], np.ndarray, np.ndarray]:
    """(window minutes, window starts, stacked minute rows, answer matrix) per window."""
    keys = sorted(acc.minutes)
    span = keys[-1] - keys[0] + 1
    width = next((w for w in WINDOW_MINUTES if span / w <= MAX_WINDOWS), WINDOW_MINUTES[-1])
    starts = sorted({m - m % width for m in keys})
    index = {s: i for i, s in enumerate(starts)}
    stats = np.zeros((len(starts), 2 + CONF_BINS + OOS_BINS))
    answers = np.zeros((len(starts), max(len(acc.labels), 1)))
    for m in keys:
        w = index[m - m % width]
        stats[w] += acc.minutes[m]
        for label, c in acc.answers.get(m, {}).items():
            answers[w, label] += c
    return width, starts, stats, answers


def summarize(
    acc: Accumulator, stats: ReadStats, training: dict[str, int], thresholds: Thresholds
) -> dict[str, Any]:
    """``monitor.json``'s content from the folded counts."""
    if not acc.minutes:
        return {"rows": 0, "read": asdict(stats), "windows": [], "drifted": False, "drift": {}}
    width, starts, win, answers = _windows(acc)
    n, rej = win[:, 0], win[:, 1]
    conf, oos = win[:, 2 : 2 + CONF_BINS], win[:, 2 + CONF_BINS :]
    centers = (np.arange(CONF_BINS) + 0.5) / CONF_BINS
    names = sorted(set(acc.labels) | set(training))
    live = np.zeros(len(names))
    for name, i in acc.labels.items():
        live[names.index(name)] = answers[:, i].sum()
    train = np.array([training.get(x, 0) for x in names], dtype=np.float64)
    terms = js_terms(live, train)
    rate = rej / np.maximum(n, 1)
    has_oos = oos.sum() > 0
    windows = [
        {
            "start": str(np.datetime64(int(s), "m")),
            "texts": int(n[i]),
            "rejection_rate": float(rate[i]),
            "mean_confidence": float(conf[i] @ centers / max(conf[i].sum(), 1)),
            "confidence_js": float(js_terms(conf[i], conf[0]).sum()),
            "oos_js": float(js_terms(oos[i], oos[0]).sum()) if has_oos else None,
            "answer_js": float(js_terms(_label_counts(answers[i], acc, names), train).sum()),
        }
        for i, s in enumerate(starts)
    ]
    last = windows[-1]
    checks = {
        "answer_js": (float(terms.sum()), thresholds.answer_js),
        "confidence_js": (last["confidence_js"], thresholds.confidence_js),
        "oos_js": (last["oos_js"], thresholds.oos_js),
        "rejection_increase": (float(rate[-1] - rate[0]), thresholds.rejection_increase),
    }
    drift = {
        k: {"value": v, "threshold": t, "drifted": v is not None and v > t}
        for k, (v, t) in checks.items()
    }
    order = np.argsort(-terms, kind="stable")
    return {
        "rows": int(n.sum()),
        "read": asdict(stats),
        "window_minutes": width,
        "reference": "first window",
        # Without training counts in intentkit.json the answers JS is 0 by construction: say so.
        "answers_against": "training split" if training else "nothing (no training counts)",
        "distance": "Jensen-Shannon divergence, base 2",
        "rejection_rate": float(rej.sum() / max(n.sum(), 1)),
        "windows": windows,
        "labels": [
            {
                "label": names[i],
                "live": int(live[i]),
                "live_share": float(live[i] / max(live.sum(), 1)),
                "train_share": float(train[i] / max(train.sum(), 1)),
                "js_term": float(terms[i]),
            }
            for i in order
        ],
        "confidence_hist": {"reference": conf[0].tolist(), "last": conf[-1].tolist()},
        "drift": drift,
        "drifted": any(d["drifted"] for d in drift.values()),
    }


def _label_counts(row: np.ndarray, acc: Accumulator, names: list[str]) -> np.ndarray:
    out = np.zeros(len(names))
    for name, i in acc.labels.items():
        out[names.index(name)] = row[i]
    return out


def training_counts(meta: dict[str, Any]) -> dict[str, int]:
    """The training split's label counts recorded in ``intentkit.json`` (empty when absent)."""
    counts = ((meta.get("data") or {}).get("label_counts") or {}).get("train") or {}
    return {str(k): int(v) for k, v in counts.items()}


def monitor(
    captures: list[str | Path], model_dir: str | Path, *, thresholds: Thresholds | None = None
) -> dict[str, Any]:
    """Read ``captures`` (files or folders) and return the monitor summary (see module doc)."""
    from intentkit.artifact import check_artifact_dir, read_meta

    meta = read_meta(check_artifact_dir(model_dir, flag="--model"))
    reject_label = reject_label_of(meta.get("calibration"))
    stats = ReadStats()
    acc = Accumulator()
    for cols in read_columns(captures, stats, reject_label=reject_label):
        acc.add(cols)
    summary = summarize(acc, stats, training_counts(meta), thresholds or Thresholds())
    return {"model": str(Path(model_dir).resolve()), **summary}
