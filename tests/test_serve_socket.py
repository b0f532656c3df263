"""The server over a real socket on 127.0.0.1: error table, concurrency, overload, shutdown."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from intentkit.config import ServeConfig
from intentkit.inference.predictor import Predictor
from intentkit.serve.app import create_app
from intentkit.serve.http_errors import ERROR_TABLE
from serve_helpers import (
    REJECT_ALL,
    ControlledPredictor,
    ThreadedServer,
    make_artifact,
    running,
    wait_ready,
)

KEY = {"Authorization": "Bearer k"}


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tiny_model_dir, tmp_path_factory.mktemp("art"), calibration=REJECT_ALL)


@pytest.fixture(scope="module")
def predictor(artifact: Path) -> Predictor:
    return Predictor.from_dir(artifact, device="cpu")


def _texts(n: int) -> list[str]:
    words = ["flight", "gate", "bags", "hotel", "car", "visa", "time", "where", "my", "is"]
    return [" ".join(words[(i + j) % 10] for j in range(1 + i % 9)) + f" {i}" for i in range(n)]


# ------------------------------------------------------------------------------ error table
#: One trigger per row of ERROR_TABLE; the test fails if the table grows without a trigger.
TRIGGERS: dict[str, Callable[[httpx.Client, ControlledPredictor], httpx.Response]] = {
    "empty": lambda c, p: c.post("/predict", json={"inputs": ["ok", "   "]}, headers=KEY),
    "unauthorized": lambda c, p: c.post("/predict", json={"inputs": "hi"}),
    "not_found": lambda c, p: c.get("/nope", headers=KEY),
    "method_not_allowed": lambda c, p: c.get("/predict", headers=KEY),
    "payload_too_large": lambda c, p: c.post(
        "/invocations", json={"text": "x" * 5000}, headers=KEY
    ),
    "unsupported_media_type": lambda c, p: c.post(
        "/invocations", content="text,x", headers={**KEY, "content-type": "text/csv"}
    ),
    "validation": lambda c, p: c.post(
        "/predict",
        content=b'{"inputs": [1, 2]}',
        headers={**KEY, "content-type": "application/json"},
    ),
    "overloaded": None,  # type: ignore[dict-item]  # needs concurrency: see test_flood_yields_429s
    "internal": None,  # type: ignore[dict-item]  # see below, needs an injected failure
    "not_ready": None,  # type: ignore[dict-item]  # see test_health_503_until_loaded
}


def test_every_error_type_has_a_trigger() -> None:
    assert set(TRIGGERS) == set(ERROR_TABLE)


@pytest.fixture(scope="module")
def small_server(predictor: Predictor):
    ctl = ControlledPredictor(predictor)
    cfg = ServeConfig(api_key="k", max_body_bytes=2000, max_queue=8, max_texts_per_request=4)
    with running(create_app(cfg, loader=lambda: ctl)) as srv:
        wait_ready(srv.url)
        yield srv, ctl


@pytest.mark.parametrize("error_type", [k for k, v in TRIGGERS.items() if v is not None])
def test_error_table_row(small_server, error_type: str) -> None:
    srv, ctl = small_server
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        r = TRIGGERS[error_type](c, ctl)
    assert r.status_code == ERROR_TABLE[error_type][0]
    assert r.json()["error_type"] == error_type and r.json()["error"]


def test_too_many_texts_is_413_and_wrong_type_422(small_server) -> None:
    srv, _ = small_server
    with httpx.Client(base_url=srv.url, timeout=30, headers=KEY) as c:
        r = c.post("/predict", json={"inputs": ["a"] * 5})
        assert r.status_code == 413 and r.json()["error_type"] == "payload_too_large"
        assert c.post("/invocations", json={"txt": "a"}).status_code == 422
        assert c.post("/invocations", content=b"{oops").json()["error_type"] == "validation"
        bad_line = b'{"text": "a"}\n{"text": 5}\n'
        r = c.post("/invocations", content=bad_line, headers={"content-type": "application/jsonl"})
        assert r.status_code == 422 and "line 2" in r.json()["error"]
        # A chunked body (no Content-Length) over the limit is cut off while it streams.
        r = c.post("/invocations", content=iter([b'{"text": "', b"y" * 3000, b'"}']))
        assert r.status_code == 413


def test_unknown_exception_is_generic_500_with_logged_traceback(small_server, caplog) -> None:
    srv, ctl = small_server
    ctl.fail.set()
    try:
        with caplog.at_level("ERROR"):
            r = httpx.post(f"{srv.url}/predict", json={"inputs": "hi"}, headers=KEY, timeout=30)
    finally:
        ctl.fail.clear()
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error", "error_type": "internal"}
    assert "injected failure" not in r.text  # no internals leak to the client
    assert any(
        rec.exc_info and "injected failure" in str(rec.exc_info[1]) for rec in caplog.records
    )
    # The server survives and answers the next request.
    ok = httpx.post(f"{srv.url}/predict", json={"inputs": "hi"}, headers=KEY, timeout=30)
    assert ok.status_code == 200


# ------------------------------------------------------------------------------ readiness
def test_health_503_until_loaded(predictor: Predictor) -> None:
    gate = threading.Event()

    def slow_loader() -> Predictor:
        assert gate.wait(30)
        return predictor

    with running(create_app(ServeConfig(), loader=slow_loader)) as srv:
        for path in ("/health", "/ping"):
            r = httpx.get(srv.url + path, timeout=10)
            assert r.status_code == 503 and r.json()["error_type"] == "not_ready"
            assert r.headers["retry-after"] == "1"
        r = httpx.post(srv.url + "/invocations", json={"text": "hi"}, timeout=10)
        assert r.status_code == 503
        gate.set()
        wait_ready(srv.url, timeout=30)
        assert httpx.get(srv.url + "/ping", timeout=10).status_code == 200


def test_freeze_gc_after_load_only_when_asked(predictor: Predictor) -> None:
    import gc

    assert gc.get_freeze_count() == 0
    try:
        with running(create_app(ServeConfig(), loader=lambda: predictor)) as srv:
            wait_ready(srv.url, timeout=30)
            assert gc.get_freeze_count() == 0  # tests and embedders keep their collector
        with running(create_app(ServeConfig(), loader=lambda: predictor, freeze_gc=True)) as srv:
            wait_ready(srv.url, timeout=30)
            # The loaded model's objects (and everything else alive) left the collector's reach.
            assert gc.get_freeze_count() > 10_000
            assert httpx.post(srv.url + "/invocations", json={"text": "hi"}, timeout=10).is_success
    finally:
        gc.unfreeze()


# ------------------------------------------------------------------------------ concurrency
async def _fire(url: str, bodies: list[dict], path: str = "/invocations") -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        return await asyncio.gather(*(c.post(path, json=b) for b in bodies))


def _batch_count(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return float(re.search(r"^intentkit_batch_size_count (\S+)$", text, re.M).group(1))


def test_64_concurrent_requests_equal_single_requests(predictor: Predictor) -> None:
    texts = _texts(64)
    with running(create_app(ServeConfig(max_wait_ms=20), loader=lambda: predictor)) as srv:
        wait_ready(srv.url)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            singles = [c.post("/invocations", json={"text": t}).json() for t in texts]
        before = _batch_count(srv.url)
        responses = asyncio.run(_fire(srv.url, [{"text": t} for t in texts]))
        batches = _batch_count(srv.url) - before
    assert all(r.status_code == 200 for r in responses)
    for single, r in zip(singles, responses, strict=True):
        got = r.json()
        assert got["predicted_class"] == single["predicted_class"]
        # Padding to a longer batch-mate changes fp32 sums in the last bits only.
        assert got["confidence"] == pytest.approx(single["confidence"], abs=1e-5)
    assert batches < 64, "concurrent requests were not batched together"


def test_flood_yields_429s_and_every_accepted_request_is_answered(predictor: Predictor) -> None:
    ctl = ControlledPredictor(predictor, delay_s=0.05)
    cfg = ServeConfig(max_queue=8, max_texts_per_request=4, max_batch_size=4, max_wait_ms=1)
    with running(create_app(cfg, loader=lambda: ctl)) as srv:
        wait_ready(srv.url)
        bodies = [{"text": t} for t in _texts(150)]
        responses = asyncio.run(_fire(srv.url, bodies))
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 429}, codes
        assert codes.count(429) > 0 and codes.count(200) >= 8
        for r in responses:
            if r.status_code == 429:
                assert r.headers["retry-after"] == "1"
                assert r.json()["error_type"] == "overloaded"
            else:
                assert set(r.json()) == {"predicted_class", "confidence"}
        assert sum(ctl.batches) == codes.count(200)  # accepted == computed, nothing dropped
        assert httpx.get(f"{srv.url}/health", timeout=10).status_code == 200
        metrics = httpx.get(f"{srv.url}/metrics", timeout=10).text
        assert f"intentkit_overloaded_total {float(codes.count(429))}" in metrics


def test_graceful_shutdown_drains_in_flight_requests(predictor: Predictor) -> None:
    ctl = ControlledPredictor(predictor, delay_s=1.0)
    srv = ThreadedServer(create_app(ServeConfig(), loader=lambda: ctl)).start()
    try:
        wait_ready(srv.url)
        result: dict = {}

        def call() -> None:
            result["r"] = httpx.post(f"{srv.url}/predict", json={"inputs": ["a", "b"]}, timeout=30)

        t = threading.Thread(target=call)
        t.start()
        assert ctl.entered.wait(10)  # the forward pass is running
        stopper = threading.Thread(target=srv.stop)  # what uvicorn's SIGTERM handler does
        stopper.start()
        t.join(30)
        stopper.join(30)
        assert result["r"].status_code == 200 and len(result["r"].json()) == 2
        assert not srv.thread.is_alive()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{srv.url}/ping", timeout=2)
    finally:
        srv.stop()
