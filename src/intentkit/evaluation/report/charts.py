"""The report's figures as inline SVG: threshold trade-off, reliability, data and training curves.

Everything is recomputed from ``predictions.parquet`` (and ``intentkit.json``), so ``intentkit
report`` rebuilds the page without the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from intentkit.evaluation.report.svg import PALETTE, Frame, Series, bar_chart, esc, line_chart, svg
from intentkit.inference.decision import reject_label_of

THRESHOLDS = np.linspace(0.0, 1.0, 201)


def oos_classes(report: dict[str, Any], meta: dict[str, Any]) -> set[str]:
    """Model classes/data labels that mean out-of-scope (a top-1 among them is a rejection)."""
    from intentkit.inference.decision import oos_names

    cal = meta.get("calibration") or {}
    return oos_names(cal.get("oos_label")) | set(report.get("oos_labels", []))


def threshold_curves(
    pred: Any, report: dict[str, Any], meta: dict[str, Any]
) -> dict[str, list[float]]:
    """In-scope accuracy and OOS recall (or, without OOS rows, the rejection rate) per threshold.

    Same rule as serving: a row is rejected when its calibrated confidence is below the
    threshold or its top class is the model's out-of-scope class; a rejected in-scope row is
    wrong. At the chosen threshold this reproduces ``report.json``'s ``in_scope_accuracy``.
    """
    oos = oos_classes(report, meta)
    reject_label = reject_label_of(report)
    conf = pred["confidence"].to_numpy(dtype=np.float64)
    top1_oos = pred["top1"].isin(oos).to_numpy()
    true_oos = (pred["true_class"] == reject_label).to_numpy()
    right = ((pred["top1"] == pred["label"]).to_numpy()) & ~top1_oos
    # rejected[t, row]: one broadcast of 201 thresholds x n rows (1 M booleans for CLINC150).
    rejected = (conf[None, :] < THRESHOLDS[:, None]) | top1_oos[None, :]
    n_in = max(int((~true_oos).sum()), 1)
    out = {
        "threshold": THRESHOLDS.tolist(),
        "in_scope_accuracy": ((right & ~true_oos)[None, :] & ~rejected).sum(1) / n_in,
    }
    if true_oos.any():
        out["oos_recall"] = (rejected & true_oos[None, :]).sum(1) / int(true_oos.sum())
    else:
        out["rejection_rate"] = rejected.mean(1)
    return {k: [round(float(v), 5) for v in vals] for k, vals in out.items()}


def threshold_svg(curves: dict[str, list[float]], threshold: float | None) -> str:
    """The trade-off chart with the chosen threshold marked."""
    xs = curves["threshold"]
    series = [Series("in-scope accuracy", xs, curves["in_scope_accuracy"], PALETTE[0])]
    if "oos_recall" in curves:
        series.append(Series("out-of-scope recall", xs, curves["oos_recall"], PALETTE[1]))
    else:
        series.append(
            Series("rejection rate (no OOS rows)", xs, curves["rejection_rate"], PALETTE[3])
        )
    marker = (threshold, f"chosen {threshold:.3f}") if threshold is not None else None
    return line_chart(
        series,
        x_label="rejection threshold (calibrated confidence)",
        y_label="share",
        label="threshold trade-off",
        x_range=(0, 1),
        y_range=(0, 1),
        marker=marker,
    )


def reliability(pred: Any, meta: dict[str, Any], n_bins: int = 15) -> dict[str, Any] | None:
    """Per-bin counts/accuracy before and after temperature, and each ECE (evaluate's rows).

    Rows whose true label is a model class, top-1 correctness, 15 equal-width bins: the same
    definition as ``report.json``'s ``ece_before``/``ece_after``.
    """
    from intentkit.evaluation.metrics import bin_stats, calibration_error

    # Without intentkit.json, the classes the model ever ranked first stand in for its labels.
    labels = set(meta.get("labels") or pred["top1"].unique())
    rows = pred[pred["label"].isin(labels)]
    if rows.empty:
        return None
    correct = (rows["top1"] == rows["label"]).to_numpy()
    out: dict[str, Any] = {"n": len(rows)}
    for key, col in (("before", "confidence_raw"), ("after", "confidence")):
        conf = rows[col].to_numpy(dtype=np.float64)
        count, acc, _ = bin_stats(conf, correct, n_bins)
        out[key] = {
            "count": count.astype(int).tolist(),
            "accuracy": acc.tolist(),
            "ece": calibration_error(conf, correct, n_bins),
        }
    return out


def reliability_svg(rel: dict[str, Any], width: int = 560, height: int = 330) -> str:
    """Accuracy per confidence bin before/after temperature against the diagonal; counts below."""
    n_bins = len(rel["before"]["count"])
    f = Frame(width, height, (0, 1), (0, 1), bottom=110)
    parts = [f.axes("top-class confidence", "accuracy")]
    colors = {"before": PALETTE[1], "after": PALETTE[0]}
    names = {k: f"{k} T (ECE {rel[k]['ece']:.3f})" for k in ("before", "after")}
    parts.append(f.legend([(names[k], colors[k]) for k in colors]))
    w = 1.0 / n_bins
    h_base = height - 40
    top_count = max(max(rel[k]["count"]) for k in colors) or 1
    for k_i, key in enumerate(colors):
        for b in range(n_bins):
            count = rel[key]["count"][b]
            if not count:
                continue  # an empty bin has no accuracy; a 0 bar would read as a failure
            acc = rel[key]["accuracy"][b]
            x = f.sx(b * w + k_i * w / 2)
            bw = f.sx(w / 2) - f.sx(0) - 1
            tip = (
                f"{key} T, confidence {b * w:.2f}-{(b + 1) * w:.2f}: "
                f"accuracy {acc:.3f}, {count} rows"
            )
            parts.append(
                f'<rect x="{x:.1f}" y="{f.sy(acc):.1f}" width="{bw:.1f}" '
                f'height="{f.sy(0) - f.sy(acc):.1f}" fill="{colors[key]}" opacity="0.75">'
                f"<title>{esc(tip)}</title></rect>"
            )
            # Row counts on a square-root scale: most rows pile up near 1.0.
            hh = 38 * (count / top_count) ** 0.5
            parts.append(
                f'<rect x="{x:.1f}" y="{h_base - hh + 20:.1f}" width="{bw:.1f}" height="{hh:.1f}" '
                f'fill="{colors[key]}" opacity="0.55"><title>{esc(tip)}</title></rect>'
            )
    parts.append(
        f'<line class="diag" x1="{f.sx(0)}" y1="{f.sy(0)}" x2="{f.sx(1)}" y2="{f.sy(1)}"/>'
        f'<text class="tick" x="{f.left}" y="{h_base - 24}">rows per bin (square-root scale)</text>'
    )
    return svg(width, height, "".join(parts), label="reliability diagram")


def label_distribution_svg(counts: dict[str, dict[str, int]]) -> str:
    """Stacked bars of rows per label and split, most frequent label first."""
    splits = [s for s in ("train", "val", "test") if counts.get(s)]
    labels = sorted(
        {k for s in splits for k in counts[s]},
        key=lambda k: (-sum(counts[s].get(k, 0) for s in splits), k),
    )
    colors = {"train": PALETTE[0], "val": PALETTE[5], "test": PALETTE[3]}
    stacks = [(s, [counts[s].get(k, 0) for k in labels], colors[s]) for s in splits]
    return bar_chart(labels, stacks, y_label="rows", label="label distribution")


def token_lengths_html(inspect: dict[str, Any]) -> str:
    """Token-length percentiles per split (inspect.json keeps percentiles, not histograms)."""
    lengths = inspect.get("token_lengths") or {}
    cols = ("p50", "p90", "p99", "max", "mean")
    rows = "".join(
        f"<tr><td>{esc(split)}</td>"
        + "".join(f"<td class=num>{v.get(c, '—')}</td>" for c in cols)
        + "</tr>"
        for split, v in lengths.items()
    )
    head = "".join(f"<th class=num>{c}</th>" for c in cols)
    note = (
        f"<p class=muted>Tokenizer {esc(inspect.get('model', '?'))}; recommended max_length "
        f"{esc(inspect.get('recommended_max_length', '?'))} (truncates "
        f"{100 * float(inspect.get('truncated_share') or 0):.2f}% of texts).</p>"
    )
    return f"<table class=compact><tr><th>split</th>{head}</tr>{rows}</table>{note}"


def training_curves_svg(history: list[dict[str, Any]]) -> str:
    """Two charts: training/validation loss per step, validation metrics per evaluation."""
    train = [r for r in history if "loss" in r]
    evals = [r for r in history if "eval_loss" in r]
    loss = [
        Series("training loss", [r["step"] for r in train], [r["loss"] for r in train], PALETTE[0])
    ]
    if evals:
        loss.append(
            Series(
                "validation loss",
                [r["step"] for r in evals],
                [r["eval_loss"] for r in evals],
                PALETTE[1],
                points=True,
            )
        )
    charts = [line_chart(loss, x_label="step", y_label="loss", label="loss", width=460)]
    metrics = []
    for k, (key, name) in enumerate(
        (
            ("eval_accuracy", "accuracy"),
            ("eval_macro_f1", "macro F1"),
            ("eval_weighted_f1", "weighted F1"),
        )
    ):
        pts = [r for r in evals if key in r]
        if pts:
            metrics.append(
                Series(
                    name,
                    [r["step"] for r in pts],
                    [r[key] for r in pts],
                    PALETTE[k + 2],
                    points=True,
                )
            )
    if metrics:
        charts.append(
            line_chart(
                metrics,
                x_label="step",
                y_label="validation score",
                label="validation metrics",
                width=460,
            )
        )
    return "".join(f'<div class="fig">{c}</div>' for c in charts)
