"""Dataset plots written as PNG files (label distribution, token lengths).

Figures are built with matplotlib's object API on an Agg canvas created inside each function:
no pyplot, no global backend switch, so importing intentkit never changes a notebook's backend
and plotting works on headless servers. Files are written to a temp name and renamed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from intentkit.fsutil import atomic_save_figure

SPLIT_COLORS = {"train": "#1f77b4", "val": "#2ca02c", "test": "#ff7f0e"}


def _save(fig: Any, path: Path) -> Path:
    return atomic_save_figure(fig, path, dpi=120, bbox_inches="tight")


def label_distribution(
    counts: Mapping[str, Mapping[str, int]], path: str | Path, top_n: int = 20
) -> Path:
    """Grouped bars: each label's share (%) of every split, for the ``top_n`` largest labels.

    ``counts`` maps split -> {label: rows}; labels are ordered by train count. ``top_n <= 0``
    plots every label.
    """
    from matplotlib.figure import Figure

    train = counts["train"]
    order = sorted(train, key=lambda k: (-train[k], k))
    shown = order if top_n <= 0 else order[:top_n]
    splits = list(counts)
    width = 0.8 / len(splits)
    fig = Figure(figsize=(max(6.0, 0.45 * len(shown) + 2), 4.8))
    ax = fig.add_subplot()
    for i, split in enumerate(splits):
        total = sum(counts[split].values()) or 1
        shares = [100 * counts[split].get(label, 0) / total for label in shown]
        xs = [x + (i - (len(splits) - 1) / 2) * width for x in range(len(shown))]
        ax.bar(xs, shares, width, label=split, color=SPLIT_COLORS.get(split))
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels(shown, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("share of split (%)")
    more = f"top {len(shown)} of {len(order)} labels" if len(shown) < len(order) else "all labels"
    ax.set_title(f"Label distribution per split ({more}, by train count)")
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)  # headroom so the legend does not cover the bars
    ax.legend(loc="upper right", ncols=len(splits))
    return _save(fig, Path(path))


def token_length_histogram(
    lengths: Mapping[str, Sequence[int] | Any], path: str | Path, max_length: int | None = None
) -> Path:
    """Histograms of token lengths per split (density), with ``max_length`` as a dashed line."""
    import numpy as np
    from matplotlib.figure import Figure

    splits = [s for s in lengths if len(lengths[s])]
    fig = Figure(figsize=(5.0 * len(splits), 4.0))
    axes = fig.subplots(1, len(splits), squeeze=False)[0]
    top = max(int(np.max(lengths[s])) for s in splits)
    bins = np.arange(0, top + 2) if top <= 120 else np.linspace(0, top + 1, 100)
    for ax, split in zip(axes, splits, strict=True):
        values = np.asarray(lengths[split])
        ax.hist(values, bins=bins, color=SPLIT_COLORS.get(split), alpha=0.85)
        p99 = np.percentile(values, 99, method="higher")
        ax.axvline(p99, color="black", linestyle=":", label=f"p99 = {int(p99)}")
        if max_length is not None:
            ax.axvline(max_length, color="red", linestyle="--", label=f"max_length = {max_length}")
        ax.set_title(f"{split}: {len(values):,} texts, median {int(np.median(values))} tokens")
        ax.set_xlabel("tokens (with special tokens)")
        ax.set_ylabel("texts")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, Path(path))
