"""The app factory: SageMaker's container contract and TEI's classification shape in one app.

FastAPI on uvicorn: pydantic schemas validate requests (422s) and make the OpenAPI docs;
uvicorn's graceful shutdown stops accepting, lets in-flight requests finish, drains the batcher.
Routes: ``GET /ping``, ``POST /invocations`` (SageMaker), ``POST /predict`` (TEI), ``GET /info``,
``/health``, ``/metrics`` (Prometheus), ``/docs``, the playground at ``GET /`` (--no-playground).
The model loads in a background thread; ``/ping`` and ``/health`` answer 503 until it is ready.
Error bodies: :mod:`intentkit.serve.http_errors`; answers recorded: :mod:`intentkit.serve.capture`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from intentkit.config import ServeConfig
from intentkit.inference import buckets
from intentkit.serve.batcher import BatchResult, MicroBatcher
from intentkit.serve.capture import Recorder
from intentkit.serve.http_errors import ServeError, error_body
from intentkit.serve.metrics import Metrics, MetricsMiddleware
from intentkit.serve.middleware import OPEN_PATHS, AuthMiddleware, BodyLimitMiddleware
from intentkit.serve.playground import PAGE_PATHS, add_playground
from intentkit.serve.schemas import (
    ErrorResponse,
    Info,
    Invocation,
    InvocationLine,
    InvocationRequest,
    PredictRequest,
    Score,
)

log = logging.getLogger("intentkit.serve")

JSON_TYPES = ("application/json", "text/json")
JSONLINES_TYPES = ("application/jsonlines", "application/jsonl", "application/x-jsonlines")
#: Default --split-tokens off GPUs (see intentkit.serve.batcher.plan_batches).
CPU_SPLIT_TOKENS = 128


class ServerState:
    """Mutable per-app state (never module-global): the predictor once loaded, the batcher."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.predictor: Any | None = None
        self.batcher: MicroBatcher | None = None
        self.load_error: str | None = None
        self.recorder = Recorder(config.capture, self.metrics)  # answer counts, --capture

    @property
    def ready(self) -> bool:
        """True once the model is loaded and the batcher runs."""
        return self.batcher is not None

    def require_ready(self) -> tuple[Any, MicroBatcher]:
        """The predictor and batcher, or a 503 ServeError."""
        if self.load_error is not None:
            raise ServeError("not_ready", f"the model failed to load: {self.load_error}")
        if self.predictor is None or self.batcher is None:
            raise ServeError("not_ready", "the model is still loading; retry shortly")
        return self.predictor, self.batcher


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":
            return f"invalid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}"
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


def _timing_headers(result: BatchResult, started: float) -> dict[str, str]:
    return {
        "x-tokenization-time": f"{result.tokenize_ms:.3f}",
        "x-queue-time": f"{result.queue_ms:.3f}",
        "x-inference-time": f"{result.inference_ms:.3f}",
        "x-total-time": f"{(time.perf_counter() - started) * 1000.0:.3f}",
    }


def create_app(
    config: ServeConfig,
    *,
    model_dir: str | Path | None = None,
    loader: Callable[[], Any] | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    """Build the app. The model loads in a background thread once the server starts.

    Args:
        config: server and batcher settings (``api_key`` set = bearer auth on).
        model_dir: artifact folder, loaded with :meth:`Predictor.from_dir` unless ``loader``.
        loader: zero-argument callable returning a loaded Predictor (tests, benchmarks).
        on_load_error: called with the exception when loading fails (the CLI stops the server).
        freeze_gc: once loaded, move every object alive to the collector's permanent generation
            (``gc.freeze``); for the process that owns the server (``intentkit serve``).
    """
    if loader is None:
        if model_dir is None:
            raise ValueError("create_app needs model_dir or loader")

        def loader() -> Any:
            from intentkit.inference.predictor import Predictor

            return Predictor.from_dir(
                model_dir,
                device=config.device,
                reject=config.reject,
                threads=config.threads or None,
                serving=True,
                dtype=config.dtype,
                backend=config.backend,
            )

    state = ServerState(config)

    async def load() -> None:
        try:
            predictor = await asyncio.to_thread(loader)
            buckets.prepare_for_serving(predictor, config)  # CUDA: fixed shapes, --compile
            batcher = MicroBatcher(
                predictor.encode,
                predictor.forward_ids,
                max_batch_tokens=config.max_batch_tokens,
                max_batch_size=config.max_batch_size,
                max_wait_ms=config.max_wait_ms,
                max_queue=config.max_queue,
                split_tokens=config.split_tokens
                if config.split_tokens is not None
                else (0 if str(predictor.device).startswith("cuda") else CPU_SPLIT_TOKENS),
                metrics=state.metrics,
            )
            batcher.start()
            await batcher.in_model_thread(lambda: buckets.warm(predictor))  # every shape, once
            if freeze_gc:
                # torch/transformers leave ~1M long-lived objects; a full GC pass over them held
                # the GIL for ~145 ms every few hundred requests: MiniLM's p99 at c=32 was 182 ms,
                # 78 ms frozen (RESULTS.md). Request garbage is still collected as usual.
                gc.collect()
                gc.freeze()
            state.predictor, state.batcher = predictor, batcher
            log.info("model loaded: %d labels, ready", len(predictor.labels))
        except Exception as exc:
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model failed to load", exc_info=True)
            if on_load_error is not None:
                on_load_error(exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        task = asyncio.get_running_loop().create_task(load(), name="load-model")
        app.state.load_task = task
        yield
        # uvicorn has already let in-flight requests finish; drain what the batcher still holds.
        if state.batcher is not None:
            await state.batcher.stop()
        await asyncio.to_thread(state.recorder.close)
        if not task.done():
            task.cancel()

    app = FastAPI(
        title="intentkit",
        summary="Intent classification endpoint (SageMaker container contract + TEI /predict)",
        version=_version(),
        lifespan=lifespan,
        responses={"default": {"model": ErrorResponse}},
    )
    app.state.serve = state
    # add_middleware wraps: the last added runs first (metrics see auth and size rejections).
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    if config.api_key:
        # The playground page is static and holds no data: it opens without the token.
        opened = OPEN_PATHS | (PAGE_PATHS if config.playground else frozenset())
        app.add_middleware(AuthMiddleware, api_key=config.api_key, open_paths=opened)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    _add_error_handlers(app)
    _add_routes(app, state)
    if config.playground:
        add_playground(app, auth=bool(config.api_key))
    return app


def _version() -> str:
    from intentkit import __version__

    return __version__


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("validation", _validation_message(exc.errors())), 422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, ServeError):
            return JSONResponse(exc.body(), exc.status_code, headers=exc.headers)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "internal")
        return JSONResponse(error_body(kind, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_unknown(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log, never to the client.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("internal", "internal server error"), 500)


def _check_texts(value: str | list[str], field: str, limit: int) -> list[str]:
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


def _parse_invocation(body: bytes, ctype: str) -> tuple[str | list[str], bool]:
    """(texts, jsonlines?) from an /invocations body; typed errors for anything else."""
    if ctype in JSONLINES_TYPES:
        texts = []
        for n, line in enumerate(body.decode("utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                texts.append(InvocationLine.model_validate_json(line).text)
            except ValidationError as exc:
                msg = f"line {n}: {_validation_message(exc.errors())}"
                raise ServeError("validation", msg) from None
        return texts, True
    if ctype in JSON_TYPES or not ctype:
        try:
            req = InvocationRequest.model_validate_json(body)
        except ValidationError as exc:
            raise ServeError("validation", _validation_message(exc.errors())) from None
        return req.text, False
    raise ServeError(
        "unsupported_media_type",
        f"Content-Type {ctype!r}: send application/json or application/jsonlines",
    )


def _sorted_scores(row: np.ndarray, labels: list[str], k: int) -> list[dict[str, Any]]:
    top = np.argsort(-row, kind="stable")[:k]
    return [{"label": labels[j], "score": float(row[j])} for j in top]


def _add_routes(app: FastAPI, state: ServerState) -> None:
    cfg = state.config

    @app.get("/ping", summary="SageMaker health check (200 once the model is loaded)")
    async def ping() -> dict[str, str]:
        state.require_ready()
        return {"status": "ok"}

    @app.get("/health", summary="503 until the model is loaded")
    async def health() -> dict[str, str]:
        state.require_ready()
        return {"status": "ok"}

    @app.get("/info", response_model=Info, summary="What is served and how")
    async def info() -> dict[str, Any]:
        predictor, _ = state.require_ready()
        cal = predictor.calibration
        meta = predictor.meta or {}
        path = Path(predictor.path) if predictor.path else None
        return {
            "model_id": str((meta.get("train_config") or {}).get("model") or (path or "model")),
            "model_path": str(path.resolve()) if path else "",
            "labels": list(predictor.labels),
            "max_input_length": predictor.max_length,
            "max_batch_size": cfg.max_batch_size,
            "max_batch_tokens": cfg.max_batch_tokens,
            "max_wait_ms": cfg.max_wait_ms,
            "max_queue": cfg.max_queue,
            "max_texts_per_request": cfg.max_texts_per_request,
            "device": str(predictor.device),
            "backend": predictor.backend,
            "version": _version(),
            "calibration": None
            if not cal
            else {
                "temperature": cal.get("temperature"),
                "threshold": cal.get("threshold"),
                "reject_label": cal.get("reject_label"),
                "oos_label": cal.get("oos_label"),
                "reject_enabled": cfg.reject,
                "oos_scorer": cal.get("oos_scorer") or "softmax",
                "oos_threshold": cal.get("oos_threshold"),
                "oos_prior": (cal.get("oos_platt") or {}).get("prior"),
            },
            "auth": bool(cfg.api_key),
        }

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/predict",
        summary="TEI-shaped classification: sorted [{label, score}] per text",
        responses={200: {"model": list[Score] | list[list[Score]]}},
    )
    async def predict(req: PredictRequest) -> Response:
        """Scores sorted high to low; with rejection the first element is the answered label.

        Default scores are calibrated probabilities; when the text is rejected as out-of-scope
        the list starts with ``{"label": <reject label>, "score": <top-class confidence>}``,
        followed by the ``top_k`` class scores, so element 0 is always the answer.
        ``raw_scores`` gives un-normalised logits (no temperature) and no reject element.
        With a feature-space scorer, headers ``x-oos-scorer`` and ``x-oos-score`` (one score
        per text, comma-separated, higher = more in-scope) carry the out-of-scope score.
        """
        started = time.perf_counter()
        texts = _check_texts(req.inputs, "inputs", cfg.max_texts_per_request)
        predictor, batcher = state.require_ready()
        result = await batcher.submit(texts)
        state.recorder.submit(predictor, texts, result.logits, started, "/predict")
        labels = predictor.labels
        k = len(labels) if req.top_k is None else min(req.top_k, len(labels))
        logits, oos_score = predictor.split(result.logits)
        if req.raw_scores:
            out = [_sorted_scores(row, labels, k) for row in logits]
        else:
            out = []
            for ans in predictor.decide(logits, oos_score=oos_score, top_k=k, reject=cfg.reject):
                scores = ans["scores"]
                if ans["label"] != scores[0]["label"]:  # rejected: the answer leads
                    scores = [{"label": ans["label"], "score": ans["confidence"]}, *scores]
                out.append(scores)
        body = out[0] if isinstance(req.inputs, str) else out
        headers = _timing_headers(result, started)
        if oos_score is not None:
            # The TEI body has no room for it: the feature-space score (higher = more in-scope),
            # one per text in input order, goes in a header.
            headers["x-oos-scorer"] = predictor.oos_scorer
            headers["x-oos-score"] = ",".join(f"{float(v):.6g}" for v in oos_score)
        return JSONResponse(body, headers=headers)

    @app.post(
        "/invocations",
        summary="SageMaker inference: {'text': str | [str]} or JSON Lines",
        responses={200: {"model": Invocation | list[Invocation]}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": InvocationRequest.model_json_schema()},
                    "application/jsonlines": {"schema": {"type": "string"}},
                },
            }
        },
    )
    async def invocations(request: Request) -> Response:
        """The reference handler's contract, plus a list form and JSON Lines for batch transform."""
        started = time.perf_counter()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        value, jsonlines = _parse_invocation(await request.body(), ctype)
        texts = _check_texts(value, "text", cfg.max_texts_per_request)
        predictor, batcher = state.require_ready()
        result = await batcher.submit(texts)
        state.recorder.submit(predictor, texts, result.logits, started, "/invocations")
        logits, oos_score = predictor.split(result.logits)
        answers = [  # the SageMaker contract: these two keys, nothing more
            {"predicted_class": a["label"], "confidence": a["confidence"]}
            for a in predictor.decide(logits, oos_score=oos_score, top_k=1, reject=cfg.reject)
        ]
        headers = _timing_headers(result, started)
        accept = request.headers.get("accept", "").split(";")[0].strip().lower()
        if jsonlines or accept in JSONLINES_TYPES:
            lines = "".join(json.dumps(a) + "\n" for a in answers)
            return Response(lines, media_type="application/jsonlines", headers=headers)
        return JSONResponse(answers[0] if isinstance(value, str) else answers, headers=headers)
