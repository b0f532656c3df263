"""Figures for ``intentkit evaluate``: the confusion matrix and the reliability diagram.

Confusion matrix: with many labels the full matrix is a grey square nobody can read, so above
``max_labels`` we show the sub-matrix of the classes with the most off-diagonal mass (errors made
*or* received), row-normalised, and say so in the title.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from intentkit.evaluation.metrics import bin_stats, expected_calibration_error
from intentkit.fsutil import atomic_save_figure


def most_confused(matrix: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` classes with the largest off-diagonal mass (row + column), sorted."""
    off = matrix.astype(np.float64).copy()
    np.fill_diagonal(off, 0.0)
    mass = off.sum(axis=0) + off.sum(axis=1)
    # Stable tie-break on index so the figure is deterministic.
    order = np.lexsort((np.arange(len(mass)), -mass))[:k]
    return np.sort(order)


def confusion_matrix_png(
    true_labels: Sequence[str],
    pred_labels: Sequence[str],
    labels: Sequence[str],
    path: str | Path,
    *,
    max_labels: int = 30,
    title: str = "Confusion matrix",
) -> Path:
    """Write a row-normalised confusion matrix PNG (atomically) and return its path.

    Args:
        true_labels: the true label per row.
        pred_labels: the answered label per row.
        labels: the classes to index by (rows/columns); rows with other labels are ignored.
        path: the PNG to write.
        max_labels: above this many classes only the most-confused ``max_labels`` are shown.
        title: figure title (the subset note is appended).
    """
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    labels = list(labels)
    cm = confusion_matrix(list(true_labels), list(pred_labels), labels=labels)
    idx = np.arange(len(labels))
    if len(labels) > max_labels:
        idx = most_confused(cm, max_labels)
        title = f"{title}: {max_labels} most-confused of {len(labels)} classes"
    sub = cm[np.ix_(idx, idx)].astype(np.float64)
    # Normalise by the full row (all predictions for that true class), not the sub-matrix, so a
    # cell reads "share of this class's rows", whatever subset is shown.
    row_totals = cm[idx].sum(axis=1, keepdims=True).astype(np.float64)
    norm = np.divide(sub, row_totals, out=np.zeros_like(sub), where=row_totals > 0)
    names = [labels[i] for i in idx]

    n = len(names)
    side = max(5.0, 0.32 * n + 2.5)
    fig = Figure(figsize=(side + 1.0, side), dpi=120, layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, shrink=0.7, label="share of the true class's rows")
    ax.set_xticks(range(n), names, rotation=90, fontsize=7 if n > 15 else 9)
    ax.set_yticks(range(n), names, fontsize=7 if n > 15 else 9)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if norm[i, j] >= 0.01:
                    color = "white" if norm[i, j] > 0.6 else "black"
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color=color)  # fmt: skip

    return atomic_save_figure(fig, path)


def reliability_diagram(
    probs: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    *,
    n_bins: int = 15,
    probs_after: np.ndarray | None = None,
    title: str = "Reliability",
) -> Path:
    """Write a reliability diagram PNG: per-bin accuracy vs confidence, plus a confidence histogram.

    Bars show accuracy per confidence bin before (and, with ``probs_after``, after) temperature
    scaling against the diagonal of perfect calibration; the legend carries each ECE. The file
    is written atomically (temp file in the same folder, then ``os.replace``).

    Returns:
        The path written.
    """
    # The object API with an explicit Agg canvas: no pyplot global state, no backend switch.
    from matplotlib.figure import Figure

    path = Path(path)
    series = [("before", np.asarray(probs, dtype=np.float64), "tab:red")]
    if probs_after is not None:
        series.append(("after T", np.asarray(probs_after, dtype=np.float64), "tab:blue"))
    for _name, p, _ in series:
        if p.shape != series[0][1].shape:
            raise ValueError(f"probs_after shape {p.shape} differs from probs {series[0][1].shape}")
    # expected_calibration_error validates shapes and labels (one error message for both paths).
    eces = [expected_calibration_error(p, labels, n_bins) for _, p, _ in series]
    y = np.asarray(labels).astype(np.int64)

    fig = Figure(figsize=(6.5, 7.5), dpi=130, layout="constrained")
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1.2], sharex=True)
    width = 1.0 / n_bins
    centers = (np.arange(n_bins) + 0.5) * width
    bar_w = width / len(series)
    for k, ((name, p, color), ece) in enumerate(zip(series, eces, strict=True)):
        conf = p.max(axis=1)
        count, acc, _ = bin_stats(conf, p.argmax(axis=1) == y, n_bins)
        offset = (k - (len(series) - 1) / 2) * bar_w
        shown = count > 0  # empty bins have no accuracy; drawing 0 would look like a failure
        ax.bar(
            (centers + offset)[shown], acc[shown], width=bar_w, color=color, alpha=0.7,
            edgecolor="black", linewidth=0.4, label=f"{name} (ECE {ece:.3f})",
        )  # fmt: skip
        hist.bar(centers + offset, count, width=bar_w, color=color, alpha=0.7, label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=f"{title} (n={len(y)})")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    hist.set(xlabel="top-class confidence", ylabel="rows")
    hist.set_yscale("symlog")  # most rows pile up near 1.0; a log scale keeps the rest visible
    hist.grid(alpha=0.3)

    return atomic_save_figure(fig, path)
