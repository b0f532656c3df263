"""What each contract's request and answer look like: TEI's ``/predict`` and SageMaker's
``/invocations`` (JSON or JSON Lines), and the checks every request's texts pass."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ValidationError

from intentkit.serve.http_errors import ServeError
from intentkit.serve.schemas import InvocationLine, InvocationRequest

JSON_TYPES = ("application/json", "text/json")
JSONLINES_TYPES = ("application/jsonlines", "application/jsonl", "application/x-jsonlines")


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One line from pydantic's errors (the first five), without the ``body`` prefix."""
    parts = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":
            return f"invalid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}"
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


def check_texts(value: str | list[str], field: str, limit: int) -> list[str]:
    """``value`` as a list of texts; a typed 400/413 naming ``field`` when empty or too many."""
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise ServeError("empty", f"`{field}` is an empty list; send at least one text")
    if len(texts) > limit:
        raise ServeError(
            "payload_too_large", f"{len(texts)} texts in one request; the limit is {limit}"
        )
    for i, text in enumerate(texts):
        if not text.strip():
            where = field if isinstance(value, str) else f"{field}[{i}]"
            raise ServeError("empty", f"`{where}` is empty; send a non-empty text")
    return texts


def parse_invocation(body: bytes, ctype: str) -> tuple[str | list[str], bool]:
    """(texts, jsonlines?) from an /invocations body; typed errors for anything else."""
    if ctype in JSONLINES_TYPES:
        texts = []
        for n, line in enumerate(body.decode("utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                texts.append(InvocationLine.model_validate_json(line).text)
            except ValidationError as exc:
                msg = f"line {n}: {validation_message(exc.errors())}"
                raise ServeError("validation", msg) from None
        return texts, True
    if ctype in JSON_TYPES or not ctype:
        try:
            req = InvocationRequest.model_validate_json(body)
        except ValidationError as exc:
            raise ServeError("validation", validation_message(exc.errors())) from None
        return req.text, False
    raise ServeError(
        "unsupported_media_type",
        f"Content-Type {ctype!r}: send application/json or application/jsonlines",
    )


def sorted_scores(row: np.ndarray, labels: list[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` highest of ``row`` as ``[{"label", "score"}]``, highest first."""
    top = np.argsort(-row, kind="stable")[:k]
    return [{"label": labels[j], "score": float(row[j])} for j in top]
