"""Output rows of a bulk run (:mod:`intentkit.bulk.scoring`): ``{line, text, predicted_class,
confidence, rejected}`` per text, in input order."""

from __future__ import annotations

from typing import Any


def predictor_rows(
    predictor: Any, lines: list[int], texts: list[str], batch_size: int
) -> list[dict]:
    """Scored rows for one chunk, in input order (``logits`` length-buckets internally)."""
    if getattr(predictor, "oos_stats", None) is None:  # softmax scorer: logits are enough
        logits, oos_score = predictor.logits(texts, batch_size=batch_size), None
    else:
        logits, oos_score = predictor.outputs(texts, batch_size=batch_size)
    answers = predictor.decide(logits, oos_score=oos_score)
    return [
        {
            "line": line,
            "text": text,
            "predicted_class": a["label"],
            "confidence": a["confidence"],
            # The answer differs from the top class only when rejection replaced it.
            "rejected": a["label"] != a["scores"][0]["label"],
        }
        for line, text, a in zip(lines, texts, answers, strict=True)
    ]
