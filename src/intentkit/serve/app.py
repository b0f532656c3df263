"""The app factory: SageMaker's container contract and TEI's classification shape in one app.

FastAPI (on uvicorn) because the API is typed end to end: pydantic schemas validate requests
(wrong types are 422s for free) and generate the OpenAPI docs at ``/docs``; and uvicorn's
graceful shutdown is mature (SIGTERM stops accepting, lets in-flight requests finish, then runs
the lifespan shutdown that drains the micro-batcher).

Routes: ``GET /ping`` and ``POST /invocations`` (SageMaker), ``POST /predict`` (TEI), ``GET /info``,
``GET /health``, ``GET /metrics`` (Prometheus), ``/docs``, and the playground page at ``GET /``
(:mod:`intentkit.serve.playground`; off with ``--no-playground``). The model loads in a
background thread at start-up; ``/ping`` and ``/health`` answer 503 until it is ready. Error
bodies come from :mod:`intentkit.serve.http_errors`; answered texts are counted and, with
``--capture``, written by :mod:`intentkit.serve.capture`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from intentkit.config import ServeConfig
from intentkit.inference import buckets
from intentkit.serve.batcher import BatchResult, MicroBatcher
from intentkit.serve.capture import Recorder
from intentkit.serve.codecs import (
    Decided,
    Decoded,
    check_texts,
    decode_invocation,
    decode_predict,
    encode_invocation,
    encode_predict,
    validation_message,
)
from intentkit.serve.http_errors import ServeError, error_body
from intentkit.serve.metrics import Metrics, MetricsMiddleware
from intentkit.serve.middleware import (
    OPEN_PATHS,
    AuthMiddleware,
    BodyLimitMiddleware,
    DrainMiddleware,
)
from intentkit.serve.playground import PAGE_PATHS, add_playground
from intentkit.serve.schemas import (
    ErrorResponse,
    Info,
    Invocation,
    InvocationRequest,
    PredictRequest,
    Score,
)

log = logging.getLogger("intentkit.serve")

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
        self.draining = False  #: SIGUSR1 (promote): answer with Connection: close from now on

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
        model_dir: artifact folder, loaded with
            :func:`~intentkit.export.loader.load_predictor` unless ``loader``.
        loader: zero-argument callable returning a loaded Predictor (tests, benchmarks).
        on_load_error: called with the exception when loading fails (the CLI stops the server).
        freeze_gc: once loaded, move every object alive to the collector's permanent generation
            (``gc.freeze``); for the process that owns the server (``intentkit serve``).
    """
    if loader is None:
        if model_dir is None:
            raise ValueError("create_app needs model_dir or loader")

        def loader() -> Any:
            from intentkit.export.loader import load_predictor

            return load_predictor(
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
    app.add_middleware(DrainMiddleware, state=state)
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
        return JSONResponse(error_body("validation", validation_message(exc.errors())), 422)

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


Encoder = Callable[[Decoded, Decided, dict[str, str]], Response]


def _add_routes(app: FastAPI, state: ServerState) -> None:
    cfg = state.config

    async def answer(decoding: Awaitable[Decoded], encode: Encoder) -> Response:
        """The one path of every text: decode -> check -> submit -> decide -> encode."""
        started = time.perf_counter()
        req = await decoding
        texts = check_texts(req.value, req.field, cfg.max_texts_per_request)
        predictor, batcher = state.require_ready()
        result = await batcher.submit(texts)
        answers = predictor.decide(
            result.logits, oos_score=result.oos_score, top_k=req.top_k, reject=cfg.reject
        )
        # Every request's decided answers exist here, once, whichever contract it came by.
        out = Decided(texts, result, answers, predictor.labels, predictor.oos_scorer)
        state.recorder.submit(predictor, out, started)  # off the request path (a queue)
        return encode(req, out, _timing_headers(result, started))

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
        return await answer(decode_predict(req), encode_predict)

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
        return await answer(decode_invocation(request), encode_invocation)
