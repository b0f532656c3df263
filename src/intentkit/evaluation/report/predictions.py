"""Per-row predictions of an evaluation: ``predictions.parquet``, the data behind the pages.

One row per scored text, in the split's order, so two evaluations of the same split pair row by
row (``intentkit compare``). ``true_class``/``pred_class`` are the labels as scored, with every
out-of-scope name folded into the reject label (the confusion matrix's axes); ``top1`` and the
two confidences let the report recompute the threshold trade-off and the reliability diagram
without the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Column order of predictions.parquet (documented in the README's evaluation section).
COLUMNS = (
    "text",  # the input
    "label",  # true label as in the data
    "pred",  # answered label (the reject label when rejected)
    "true_class",  # label with out-of-scope names folded into the reject label
    "pred_class",  # answer, folded the same way
    "correct",  # true_class == pred_class (what accuracy counts)
    "rejected",  # answered the reject label (threshold or the model's own oos class)
    "top1",  # the model's top class before rejection
    "confidence",  # calibrated top-class probability (after temperature)
    "confidence_raw",  # top-class probability at T = 1 (the reliability diagram's "before")
    "top3_labels",  # the three most probable classes, highest first
    "top3_scores",  # their calibrated probabilities
)


def predictions_frame(
    texts: list[str],
    true: list[str],
    answers: list[dict[str, Any]],
    raw_confidence: np.ndarray,
    *,
    oos_names: set[str],
    reject_label: str,
) -> Any:
    """Build the predictions DataFrame from ``Predictor.decide(logits, top_k=3)`` answers.

    Args:
        texts: the scored texts.
        true: their true labels.
        answers: one ``{"label", "confidence", "scores"}`` per text (top-3 scores).
        raw_confidence: top-class probability without temperature, per text.
        oos_names: label names that mean out-of-scope (folded into ``reject_label``).
        reject_label: the label answered for rejected inputs.
    """
    import pandas as pd

    fold = set(oos_names) | {reject_label}

    def canon(x: str) -> str:
        return reject_label if x in fold else x

    pred = [a["label"] for a in answers]
    true_class = [canon(t) for t in true]
    pred_class = [canon(p) for p in pred]
    return pd.DataFrame(
        {
            "text": list(texts),
            "label": list(true),
            "pred": pred,
            "true_class": true_class,
            "pred_class": pred_class,
            "correct": [a == b for a, b in zip(true_class, pred_class, strict=True)],
            "rejected": [p == reject_label for p in pred],
            "top1": [a["scores"][0]["label"] for a in answers],
            "confidence": [float(a["confidence"]) for a in answers],
            "confidence_raw": np.asarray(raw_confidence, dtype=np.float64),
            "top3_labels": [[s["label"] for s in a["scores"][:3]] for a in answers],
            "top3_scores": [[float(s["score"]) for s in a["scores"][:3]] for a in answers],
        },
        columns=list(COLUMNS),
    )


def write_predictions(frame: Any, path: str | Path) -> Path:
    """Write ``frame`` to ``path`` as Parquet (zstd) atomically; return the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from intentkit.fsutil import atomic_open

    path = Path(path)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_open(path) as fh:
        pq.write_table(table, fh, compression="zstd")
    return path
