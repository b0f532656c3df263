"""The two contracts as hooks around one path: TEI's ``/predict`` and SageMaker's
``/invocations`` (JSON or JSON Lines).

Each contract is a decoder (request -> :class:`Decoded`: the texts and what the answer must look
like) and an encoder (:class:`Decided` -> response); what lies between (check the texts, submit
them to the batcher, decide) is spelled once in ``serve/app.py``, the way LitServe's ``LitAPI``
splits a request into ``decode_request`` / ``predict`` / ``encode_response``
(https://lightning.ai/docs/litserve/api-reference/litapi).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from intentkit.serve.batcher import BatchResult
from intentkit.serve.http_errors import ServeError
from intentkit.serve.schemas import InvocationLine, InvocationRequest, PredictRequest

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


@dataclass
class Decoded:
    """One request, spelled once: what was sent and what its answer must look like."""

    value: str | list[str]  #: as sent: a str is answered with one object, a list with a list
    field: str  #: the request field that errors name
    top_k: int | None = 1  #: class scores each answer carries (None: all)
    raw_scores: bool = False  #: /predict: un-normalised logits instead of the decision
    jsonlines: bool = False  #: /invocations: answer in JSON Lines


@dataclass
class Decided:
    """One request after the shared path: its texts, the batch outputs, one answer per text."""

    texts: list[str]
    result: BatchResult
    answers: list[dict[str, Any]]  #: :meth:`Predictor.decide`'s answers, in text order
    labels: list[str]
    oos_scorer: str


async def decode_predict(req: PredictRequest) -> Decoded:
    """TEI's body (already validated by FastAPI against :class:`PredictRequest`)."""
    return Decoded(req.inputs, "inputs", top_k=req.top_k, raw_scores=req.raw_scores)


def encode_predict(req: Decoded, out: Decided, headers: dict[str, str]) -> Response:
    """Scores sorted high to low per text; a rejected text's answer leads its list."""
    if req.raw_scores:
        k = len(out.labels) if req.top_k is None else min(req.top_k, len(out.labels))
        body = [sorted_scores(row, out.labels, k) for row in out.result.logits]
    else:
        body = []
        for ans in out.answers:
            scores = ans["scores"]
            if ans["label"] != scores[0]["label"]:  # rejected: the answer leads
                scores = [{"label": ans["label"], "score": ans["confidence"]}, *scores]
            body.append(scores)
    if out.result.oos_score is not None:
        # The TEI body has no room for it: the feature-space score (higher = more in-scope),
        # one per text in input order, goes in a header.
        headers["x-oos-scorer"] = out.oos_scorer
        headers["x-oos-score"] = ",".join(f"{float(v):.6g}" for v in out.result.oos_score)
    return JSONResponse(body[0] if isinstance(req.value, str) else body, headers=headers)


async def decode_invocation(request: Request) -> Decoded:
    """``{"text": str | [str]}`` or JSON Lines of ``{"text": str}``, by Content-Type; JSON Lines
    answers when either the body or the Accept header is JSON Lines."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    value, jsonlines = parse_invocation(await request.body(), ctype)
    accept = request.headers.get("accept", "").split(";")[0].strip().lower()
    return Decoded(value, "text", top_k=1, jsonlines=jsonlines or accept in JSONLINES_TYPES)


def encode_invocation(req: Decoded, out: Decided, headers: dict[str, str]) -> Response:
    """The SageMaker contract: ``{"predicted_class", "confidence"}`` per text, nothing more."""
    answers = [{"predicted_class": a["label"], "confidence": a["confidence"]} for a in out.answers]
    if req.jsonlines:
        lines = "".join(json.dumps(a) + "\n" for a in answers)
        return Response(lines, media_type="application/jsonlines", headers=headers)
    return JSONResponse(answers[0] if isinstance(req.value, str) else answers, headers=headers)
