"""Output rows of a bulk run (:mod:`intentkit.bulk.scoring`): ``{line, text, predicted_class,
confidence, rejected}`` per text, in input order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class Remote:
    """An endpoint to score a file through, as :func:`~intentkit.bulk.scoring.predict_file`'s
    ``model``: ``invoke(texts)`` answers ``[{"predicted_class", "confidence"}, ...]``."""

    name: str  #: its name or URL: what a resumed run must name again
    invoke: Callable[[list[str]], list[dict[str, Any]]]

    def rows(self, lines: list[int], texts: list[str], batch_size: int) -> list[dict]:
        """Scored rows for one chunk, ``batch_size`` texts per request, in input order.

        ``rejected`` is None: the endpoint's contract (SageMaker's) answers the class and its
        confidence only, so whether rejection replaced the top class is not known here.
        """
        answers: list[dict[str, Any]] = []
        for i in range(0, len(texts), batch_size):
            answers += self.invoke(texts[i : i + batch_size])
        return [
            {"line": line, "text": text, **_answer(a), "rejected": None}
            for line, text, a in zip(lines, texts, answers, strict=True)
        ]


def _answer(a: dict[str, Any]) -> dict[str, Any]:
    return {"predicted_class": a["predicted_class"], "confidence": float(a["confidence"])}
