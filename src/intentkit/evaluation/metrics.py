"""Metrics shared by training (checkpoint choice), calibration and ``intentkit evaluate``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from intentkit.inference.decision import check_labels, check_logits


def bin_stats(
    conf: np.ndarray, correct: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (count, accuracy, mean confidence); equal-width bins (0, 1/B], ..., (1-1/B, 1]."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left" gives edges[i-1] < conf <= edges[i] (right-closed bins, as in Guo et al.);
    # conf == 0 has no bin of its own and joins the first.
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    safe = np.maximum(count, 1)
    acc = np.bincount(idx, weights=correct.astype(np.float64), minlength=n_bins) / safe
    mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / safe
    return count, acc, mean_conf


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error.

    ``ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` over ``n_bins`` equal-width bins
    ``(0, 1/n_bins], ..., (1 - 1/n_bins, 1]`` of the top-class probability.

    Args:
        probs: class probabilities (n, n_classes).
        labels: integer class ids (n,).
        n_bins: number of bins.

    Returns:
        ECE in [0, 1].
    """
    p = check_logits(probs, "probs")
    y = check_labels(labels, p.shape[0], p.shape[1])
    ece = calibration_error(p.max(axis=1), p.argmax(axis=1) == y, n_bins)
    assert ece is not None  # check_logits refuses empty probs
    return ece


def calibration_error(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float | None:
    """The ECE formula, once: ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` over :func:`bin_stats`.

    Args:
        conf: the confidence of each answer (n,), in [0, 1].
        correct: whether each answer was right (n,).
        n_bins: number of equal-width bins.

    Returns:
        ECE in [0, 1]; None for no rows (undefined, not perfect).
    """
    conf = np.asarray(conf, dtype=np.float64)
    if not len(conf):
        return None
    count, acc, mean_conf = bin_stats(conf, np.asarray(correct, dtype=bool), n_bins)
    return float(np.sum(count / len(conf) * np.abs(acc - mean_conf)))


def oos_report(
    pred_labels: list[str], true_labels: list[str], *, oos_labels: set[str], reject_label: str
) -> dict[str, Any]:
    """In-scope accuracy and out-of-scope recall/precision of answered labels.

    A prediction is "oos" when it is ``reject_label`` or in ``oos_labels``; a true row is oos when
    its label is in ``oos_labels``. An in-scope row is correct only when answered with its own
    label (a rejection is wrong). Undefined ratios (no rows in the denominator) are None.

    Returns:
        ``{"in_scope_accuracy", "oos_recall", "oos_precision", "n_in_scope", "n_oos"}``.
    """
    if len(pred_labels) != len(true_labels):
        raise ValueError(
            f"pred_labels has {len(pred_labels)} rows but true_labels has {len(true_labels)}"
        )
    oos_set = set(oos_labels)
    pred_oos = np.array([p == reject_label or p in oos_set for p in pred_labels], dtype=bool)
    true_oos = np.array([t in oos_set for t in true_labels], dtype=bool)
    hit = np.array([p == t for p, t in zip(pred_labels, true_labels, strict=True)], dtype=bool)
    n_in, n_oos, n_pred_oos = int((~true_oos).sum()), int(true_oos.sum()), int(pred_oos.sum())

    def ratio(num: int, den: int) -> float | None:
        return float(num / den) if den else None

    return {
        "in_scope_accuracy": ratio(int((hit & ~true_oos & ~pred_oos).sum()), n_in),
        "oos_recall": ratio(int((pred_oos & true_oos).sum()), n_oos),
        "oos_precision": ratio(int((pred_oos & true_oos).sum()), n_pred_oos),
        "n_in_scope": n_in,
        "n_oos": n_oos,
    }


def scored_classes(true: Sequence[Any], pred: Sequence[Any]) -> list[Any]:
    """The classes F1 averages over: every label with at least one true row, sorted.

    Not scikit-learn's default (labels in truth *or* predictions), on purpose: with rejection on
    and no out-of-scope rows in the data, the reject label would become a class of F1 0 and lower
    the macro mean by a whole class's share although the data has no such class. Every wrong
    answer is still counted once: it lowers the recall of its row's true class. ``pred`` is taken
    so that callers need not know the rule.
    """
    del pred  # the rule looks at the truth only (see above)
    return sorted(set(true))


def classification_metrics(pred_ids: Sequence[Any], label_ids: Sequence[Any]) -> dict[str, float]:
    """Accuracy, macro F1 and weighted F1 of predictions (sklearn, zero_division=0).

    The one definition: checkpoint selection (integer ids) and ``report.json`` (label names)
    both call it, averaging over :func:`scored_classes`.
    """
    from sklearn.metrics import accuracy_score, f1_score

    classes = scored_classes(label_ids, pred_ids)

    def f1(average: str) -> float:
        return float(
            f1_score(label_ids, pred_ids, labels=classes, average=average, zero_division=0)
        )

    return {
        "accuracy": float(accuracy_score(label_ids, pred_ids)),
        "macro_f1": f1("macro"),
        "weighted_f1": f1("weighted"),
    }


def auroc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """AUROC of ``score`` (higher = positive); None when one class is absent. -inf is allowed."""
    from sklearn.metrics import roc_auc_score

    pos = np.asarray(positive, bool)
    s = np.asarray(score, np.float64)
    if pos.all() or not pos.any():
        return None
    finite = s[np.isfinite(s)]
    # -inf marks "always rejected" (predicted the oos class): rank it below every real score.
    low = (finite.min() if finite.size else 0.0) - 1.0
    return float(roc_auc_score(pos, np.where(np.isfinite(s), s, low)))


def fpr_at_95_tpr(score: np.ndarray, is_oos: np.ndarray) -> float | None:
    """Share of out-of-scope rows kept at the threshold that keeps 95 % of in-scope rows."""
    s = np.asarray(score, np.float64)
    oos = np.asarray(is_oos, bool)
    if oos.all() or not oos.any():
        return None
    t = np.quantile(s[~oos], 0.05)
    return float((s[oos] >= t).mean())
