"""Evaluate a trained artifact on a prepared split, through the same path as serving.

Predictions come from :meth:`Predictor.logits` + :meth:`Predictor.decide` (temperature and
out-of-scope rejection included), so the scores here are what the endpoint will do.

Out-of-scope scoring: a test row whose label is the calibration's ``oos_label`` or ``"oos"`` is
out-of-scope; it counts as correct when answered with the reject label or an oos class. For the
F1 scores and the per-class table every out-of-scope answer or label is folded into one class
named after the reject label.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.errors import DataError


def _canonical(labels: list[str], oos: set[str], reject_label: str) -> list[str]:
    return [reject_label if x in oos else x for x in labels]


def score(
    true_labels: list[str], pred_labels: list[str], *, oos: set[str], reject_label: str
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class scores and top confusions of answered labels.

    ``oos`` holds the label names that mean out-of-scope (true or predicted); they and the
    ``reject_label`` are folded into one class. F1 averages over the classes checkpoint selection
    averages over (:func:`~intentkit.evaluation.metrics.scored_classes`: those in the truth or
    the answers), so a model's selection and its report score the same rows alike, and
    ``per_class`` lists the same classes (a class only answered has support 0).
    """
    from sklearn.metrics import precision_recall_fscore_support

    from intentkit.evaluation.metrics import classification_metrics, scored_classes

    oos_all = set(oos) | {reject_label}
    y = _canonical(list(true_labels), oos_all, reject_label)
    p = _canonical(list(pred_labels), oos_all, reject_label)
    classes = scored_classes(y, p)
    prec, rec, f1, support = precision_recall_fscore_support(y, p, labels=classes, zero_division=0)
    per_class = {
        c: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }
    errors = Counter((a, b) for a, b in zip(y, p, strict=True) if a != b)
    support_of = Counter(y)
    top = [
        {"true": a, "pred": b, "count": n, "share_of_true": n / support_of[a]}
        for (a, b), n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    ]
    return {
        **classification_metrics(p, y),
        "per_class": per_class,
        "top_confusions": top,
    }


def rejection_cost(
    true_labels: list[str],
    pred_labels: list[str],
    plain_labels: list[str],
    *,
    oos: set[str],
    reject_label: str,
) -> dict[str, Any]:
    """What rejection costs in scope: the scores with no rejection beside the rejected count.

    ``plain_labels`` are the argmax answers of the same rows (``reject=False``). Returns
    ``accuracy_no_rejection`` (all rows, out-of-scope ones right only when the model's own oos
    class answers them), ``in_scope_accuracy_no_rejection``, and ``in_scope_rejected`` /
    ``in_scope_rejected_share``: in-scope rows answered with the reject label.
    """
    from intentkit.evaluation.metrics import classification_metrics, oos_report

    oos_all = set(oos) | {reject_label}
    folded = _canonical(list(true_labels), oos_all, reject_label)
    plain = _canonical(list(plain_labels), oos_all, reject_label)
    in_scope = [t not in oos_all for t in true_labels]
    n_in = sum(in_scope)
    rejected = sum(
        keep and p == reject_label for keep, p in zip(in_scope, pred_labels, strict=True)
    )
    plain_report = oos_report(
        plain_labels, true_labels, oos_labels=oos_all, reject_label=reject_label
    )
    return {
        "accuracy_no_rejection": classification_metrics(plain, folded)["accuracy"],
        "in_scope_accuracy_no_rejection": plain_report["in_scope_accuracy"],
        "in_scope_rejected": int(rejected),
        "in_scope_rejected_share": float(rejected / n_in) if n_in else None,
    }


def evaluate(
    model_dir: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    out: str | Path | None = None,
    reject: bool = True,
) -> dict[str, Any]:
    """Score an artifact on ``split``; write ``report.json``, predictions, ``report.html``, figures.

    Args:
        model_dir: a folder written by ``intentkit train``.
        data: a prepared dataset folder.
        split: ``test`` (default), ``val`` or ``train``.
        out: folder for ``report.json``, ``predictions.parquet``, ``report.html``,
            ``confusion_matrix.png`` and ``reliability.png`` (default ``MODEL_DIR/eval``).
        reject: False answers the top class even below the threshold (``--no-reject``).

    Returns:
        The report dict (also written to ``out/report.json``).
    """
    from intentkit.artifact import check_artifact_dir, labels_of, read_meta
    from intentkit.data.dataset import load_prepared
    from intentkit.evaluation.figures import confusion_matrix_png, reliability_diagram
    from intentkit.evaluation.metrics import expected_calibration_error, oos_report
    from intentkit.evaluation.report.evaldir import PREDICTIONS_FILE
    from intentkit.evaluation.report.page import write_report
    from intentkit.evaluation.report.predictions import predictions_frame, write_predictions
    from intentkit.fsutil import atomic_write_json
    from intentkit.inference.decision import oos_names as oos_label_names
    from intentkit.inference.decision import reject_label_of, softmax

    model_dir = check_artifact_dir(model_dir)
    ds = load_prepared(data)
    frame = ds.split(split)
    if len(frame) == 0:
        raise DataError(f"--split {split}: the split in {ds.path} has no rows")
    # Labels are checked from config.json before the (slower) model load: fail fast.
    model_labels = labels_of(
        json.loads((model_dir / "config.json").read_text("utf-8")).get("id2label", {})
    )
    cal = read_meta(model_dir).get("calibration") or {}
    reject_label = reject_label_of(cal)
    oos_names = oos_label_names(cal.get("oos_label"))
    true = frame["label"].tolist()
    unseen = sorted(set(true) - set(model_labels) - oos_names)
    if unseen:
        raise DataError(
            f"--data {ds.path} ({split}): labels the model was not trained on: "
            f"{', '.join(unseen)}; evaluate on data prepared with the same labels"
        )
    from intentkit.inference.predictor import Predictor

    predictor = Predictor.from_dir(model_dir, reject=reject)  # quiet: no "Loading weights" bar

    texts = frame["text"].tolist()
    logits, oos_score, scores = scored_outputs(predictor, texts)
    # top-3 scores for predictions.parquet; the label/confidence are the top_k=1 answers.
    answers = predictor.decide(logits, oos_score=oos_score, top_k=3, reject=reject)
    pred = [a["label"] for a in answers]
    plain = [a["label"] for a in predictor.decide(logits, oos_score=oos_score, reject=False)]
    oos_in_data = oos_names & set(true)
    report = score(true, pred, oos=oos_names, reject_label=reject_label)
    report.update(
        oos_report(pred, true, oos_labels=oos_in_data | {reject_label}, reject_label=reject_label)
    )

    out = Path(out) if out is not None else model_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    # ECE over rows whose label is a model class (others have no "correct" probability).
    index = {name: i for i, name in enumerate(predictor.labels)}
    rows = np.array([t in index for t in true], dtype=bool)
    ece_before = ece_after = ece_in_before = ece_in_after = None
    if rows.any():
        y = np.array([index[t] for t in true if t in index], dtype=np.int64)
        before = softmax(logits[rows], 1.0)
        after = softmax(logits[rows], float(cal.get("temperature") or 1.0))
        ece_before = expected_calibration_error(before, y, n_bins=15)
        ece_after = expected_calibration_error(after, y, n_bins=15)
        # The same over in-scope rows only: with an explicit oos class, the oos rows (easy or
        # hard to tell apart) would otherwise dominate what "calibrated" means for real intents.
        in_scope = np.array([t not in oos_names for t in true if t in index], dtype=bool)
        if in_scope.any() and not in_scope.all():
            ece_in_before = expected_calibration_error(before[in_scope], y[in_scope], n_bins=15)
            ece_in_after = expected_calibration_error(after[in_scope], y[in_scope], n_bins=15)
        reliability_diagram(
            before, y, out / "reliability.png", probs_after=after, title=f"Reliability ({split})"
        )
    canon_true = _canonical(true, oos_names | {reject_label}, reject_label)
    canon_pred = _canonical(pred, oos_names | {reject_label}, reject_label)
    confusion_matrix_png(
        canon_true,
        canon_pred,
        sorted(set(canon_true) | set(canon_pred)),
        out / "confusion_matrix.png",
        title=f"Confusion matrix ({split}, row-normalised)",
    )
    report.update(
        {
            "ece_before": ece_before,
            "ece_after": ece_after,
            "ece_in_scope_before": ece_in_before if ece_in_before is not None else ece_before,
            "ece_in_scope_after": ece_in_after if ece_in_after is not None else ece_after,
            "n": len(true),
            "n_rejected": int(sum(x == reject_label for x in pred)),
            **rejection_cost(true, pred, plain, oos=oos_names, reject_label=reject_label),
            "split": split,
            "reject": reject,
            "reject_label": reject_label,
            "oos_labels": sorted(oos_in_data),
            "temperature": cal.get("temperature"),
            "threshold": cal.get("threshold"),
            **served_calibration(answers, true, oos_names, reject_label),
            **oos_separation(logits, scores, true, oos_names, cal),
            "model_dir": str(model_dir.resolve()),
            "data": str(Path(ds.path).resolve()),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    # One row per text (answers, confidences, top-3): what report.html, `intentkit report` and
    # `intentkit compare` read, so none of them needs the model again.
    raw_conf = softmax(logits, 1.0).max(axis=1) if len(true) else np.zeros(0)
    rows = predictions_frame(
        texts, true, answers, raw_conf, oos_names=oos_names, reject_label=reject_label
    )
    write_predictions(rows, out / PREDICTIONS_FILE)
    atomic_write_json(out / "report.json", report)
    write_report(out)
    return report


def served_calibration(
    answers: list[dict[str, Any]], true: list[str], oos_names: set[str], reject_label: str
) -> dict[str, Any]:
    """ECE of the served confidence against "the served answer is right", over all rows
    (out-of-scope rows right when rejected) and over in-scope rows: ``ece_all``,
    ``ece_in_scope``."""
    from intentkit.evaluation.metrics import calibration_error

    oos_all = oos_names | {reject_label}
    conf = np.array([a["confidence"] for a in answers], dtype=np.float64)
    is_oos = np.array([t in oos_names for t in true], dtype=bool)
    right = np.array(
        [
            a["label"] == t or (t in oos_names and a["label"] in oos_all)
            for a, t in zip(answers, true, strict=True)
        ],
        dtype=bool,
    )

    return {
        "ece_all": calibration_error(conf, right),
        "ece_in_scope": calibration_error(conf[~is_oos], right[~is_oos]),
    }


def scored_outputs(
    predictor: Any, texts: list[str]
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """``(logits, the served out-of-scope score or None, {scorer: score}`` of every feature
    scorer the artifact's ``oos_stats.safetensors`` holds) from one pass over ``texts``.

    The served score is :meth:`Predictor.outputs`' (the same batches and the same float32
    round trip; the scorer's matrix products may round differently in the last bit).
    """
    from intentkit.inference import oos

    stats = predictor.oos_stats
    path = Path(predictor.path) / oos.STATS_FILE if predictor.path else None
    runner = getattr(predictor, "runner", None)
    if stats is None and path is not None and path.is_file():
        if runner is None or runner.has_cls:  # an old ONNX graph without features: skip
            stats = oos.load(path)
    if stats is None:
        logits, score = predictor.outputs(texts)
        return logits, score, {}
    logits, cls = predictor.features(texts)
    scores = {
        name: (-d).astype(np.float32).astype(np.float64)
        for name, d in stats.all_distances(cls).items()
    }
    return logits, scores.get(predictor.oos_scorer), scores


def oos_separation(
    logits: np.ndarray,
    scores: dict[str, np.ndarray],
    true: list[str],
    oos_names: set[str],
    cal: dict[str, Any],
) -> dict[str, Any]:
    """``oos_scorer`` and, with out-of-scope rows, AUROC (in-scope = positive) and FPR at 95 %
    TPR of the softmax confidence and of every feature scorer in ``scores``, side by side
    (``oos_separation``)."""
    from intentkit.evaluation.metrics import auroc, fpr_at_95_tpr
    from intentkit.inference.decision import softmax

    scorer = str(cal.get("oos_scorer") or "softmax")
    is_oos = np.array([t in oos_names for t in true], dtype=bool)
    if not len(true) or not is_oos.any() or is_oos.all():
        return {"oos_scorer": scorer, "oos_separation": None}
    temperature = float(cal.get("temperature") or 1.0)
    every = {"softmax": softmax(logits, temperature).max(axis=1), **scores}
    sep = {
        name: {"auroc": auroc(~is_oos, s), "fpr_at_95_tpr": fpr_at_95_tpr(s, is_oos)}
        for name, s in every.items()
    }
    return {"oos_scorer": scorer, "oos_separation": sep}


def rejection_line(report: dict[str, Any]) -> str:
    """One line of what rejection cost in scope (:func:`rejection_cost`), for the CLI summary."""
    share = report.get("in_scope_rejected_share")
    if share is None:
        return "rejection: no in-scope rows"
    n_in = report.get("n_in_scope") or 0
    line = (
        f"rejection: {report['in_scope_rejected']} of {n_in} in-scope rows rejected "
        f"({share:.1%}); accuracy without rejection {report['accuracy_no_rejection']:.4f}"
    )
    if report.get("n_oos"):
        line += f", in-scope {report['in_scope_accuracy_no_rejection']:.4f}"
    return line + ("" if report.get("reject", True) else " (evaluated with --no-reject)")


def worst_classes_table(report: dict[str, Any], n: int = 15) -> Any:
    """A rich Table of the ``n`` classes with the lowest F1 (ties: larger support first)."""
    from rich.table import Table

    rows = sorted(report["per_class"].items(), key=lambda kv: (kv[1]["f1"], -kv[1]["support"]))
    table = Table(title=f"Worst {min(n, len(rows))} classes by F1")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, s in rows[:n]:
        table.add_row(
            name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"])
        )
    return table
