"""Unit layer of the HTTP API with FastAPI's TestClient: shapes, rejection, auth, metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from intentkit.config import ServeConfig
from intentkit.errors import ConfigError
from intentkit.inference.predictor import Predictor
from intentkit.serve.app import create_app
from serve_helpers import LABELS, REJECT_ALL, make_artifact

TEXTS = [
    "what time is my flight ?",
    "where is the gate of my flight ?",
    "where can i store my bags",
]


@pytest.fixture(autouse=True, scope="module")
def _restore_torch_threads():
    # The server sets torch's process-wide thread count (all cores, or all but one for torch
    # int8); later test modules in this pytest process (training) must get the count back.
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tiny_model_dir, tmp_path_factory.mktemp("art"), calibration=REJECT_ALL)


@pytest.fixture(scope="module")
def plain_artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tiny_model_dir, tmp_path_factory.mktemp("plain"))


def _ready(client: TestClient, headers: dict | None = None) -> TestClient:
    deadline = time.monotonic() + 60
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "model never loaded"
        time.sleep(0.02)
    return client


@pytest.fixture()
def client(artifact: Path):
    with TestClient(create_app(ServeConfig(), model_dir=artifact)) as c:
        yield _ready(c)


def test_invocations_single_matches_local_predictor(client: TestClient, artifact: Path) -> None:
    local = Predictor.from_dir(artifact).predict([TEXTS[0]])[0]
    r = client.post("/invocations", json={"text": TEXTS[0]})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"predicted_class", "confidence"}  # exactly the reference's answer
    assert body["predicted_class"] == local["label"] == "out_of_scope"
    assert body["confidence"] == pytest.approx(local["confidence"], abs=1e-6)
    for h in ("x-inference-time", "x-queue-time", "x-tokenization-time", "x-total-time"):
        assert float(r.headers[h]) >= 0


def test_invocations_list_and_jsonlines(client: TestClient) -> None:
    listed = client.post("/invocations", json={"text": TEXTS}).json()
    assert [set(x) for x in listed] == [{"predicted_class", "confidence"}] * 3
    body = "".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)) + "\n"
    r = client.post("/invocations", content=body, headers={"content-type": "application/jsonlines"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/jsonlines")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["predicted_class"] for x in lines] == [x["predicted_class"] for x in listed]
    np.testing.assert_allclose(
        [x["confidence"] for x in lines], [x["confidence"] for x in listed], atol=1e-5
    )
    # JSON in, JSON Lines out when the client asks for it (SageMaker batch transform's Accept).
    r = client.post(
        "/invocations", json={"text": TEXTS[:2]}, headers={"accept": "application/jsonlines"}
    )
    assert len(r.text.splitlines()) == 2


def test_both_contracts_give_the_same_decided_answers(client: TestClient) -> None:
    # One decode -> submit -> decide path: the two encoders differ in shape only.
    inv = client.post("/invocations", json={"text": TEXTS}).json()
    tei = client.post("/predict", json={"inputs": TEXTS, "top_k": 1}).json()
    assert [a["predicted_class"] for a in inv] == [t[0]["label"] for t in tei]
    assert "out_of_scope" in [a["predicted_class"] for a in inv]  # a rejected text is in there
    np.testing.assert_allclose([a["confidence"] for a in inv], [t[0]["score"] for t in tei])


def test_predict_shapes_reject_and_raw_scores(client: TestClient) -> None:
    one = client.post("/predict", json={"inputs": TEXTS[0]}).json()
    # Rejected (threshold 0.99): element 0 is the answer, then every class score, sorted.
    assert one[0]["label"] == "out_of_scope"
    classes = one[1:]
    assert sorted(x["label"] for x in classes) == sorted(LABELS)
    scores = [x["score"] for x in classes]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-6)
    assert one[0]["score"] == pytest.approx(scores[0])

    batch = client.post("/predict", json={"inputs": TEXTS, "top_k": 1}).json()
    assert len(batch) == 3 and all(len(x) == 2 for x in batch)  # reject label + top-1

    raw = client.post("/predict", json={"inputs": [TEXTS[0]], "raw_scores": True}).json()[0]
    assert "out_of_scope" not in {x["label"] for x in raw}  # raw scores expose the classes
    logits = np.array([x["score"] for x in raw])
    assert list(logits) == sorted(logits, reverse=True)
    # Softmax of the raw logits (T = 1 here) gives back the calibrated scores.
    e = np.exp(logits - logits.max())
    np.testing.assert_allclose(e / e.sum(), scores, atol=1e-5)


def test_no_reject_answers_the_class(artifact: Path) -> None:
    with TestClient(create_app(ServeConfig(reject=False), model_dir=artifact)) as c:
        _ready(c)
        ans = c.post("/invocations", json={"text": TEXTS[0]}).json()
        assert ans["predicted_class"] in LABELS
        top = c.post("/predict", json={"inputs": TEXTS[0]}).json()
        assert top[0]["label"] == ans["predicted_class"] and len(top) == len(LABELS)
        assert c.get("/info").json()["calibration"]["reject_enabled"] is False


def test_info_metrics_openapi(client: TestClient, artifact: Path) -> None:
    info = client.get("/info").json()
    assert info["labels"] == LABELS
    assert info["max_input_length"] == 32
    assert info["max_batch_size"] == 256 and info["version"]
    assert info["calibration"]["threshold"] == 0.99 and info["auth"] is False
    assert info["model_path"] == str(artifact.resolve())
    client.post("/predict", json={"inputs": ""})
    text = client.get("/metrics").text
    assert 'intentkit_requests_total{route="/predict",status="400"} 1.0' in text
    assert 'intentkit_requests_total{route="/health",status="200"}' in text
    for name in ("intentkit_batch_size_bucket", "intentkit_queue_depth", "request_duration"):
        assert name in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/ping", "/invocations", "/predict", "/info", "/health", "/metrics"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_auth_on(artifact: Path) -> None:
    with TestClient(create_app(ServeConfig(api_key="s3cret"), model_dir=artifact)) as c:
        _ready(c)  # /health stays open
        assert c.get("/ping").status_code == 200
        r = c.post("/invocations", json={"text": "hi"})
        assert r.status_code == 401 and r.json()["error_type"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        bad = {"Authorization": "Bearer nope"}
        assert c.post("/predict", json={"inputs": "hi"}, headers=bad).status_code == 401
        assert c.get("/metrics").status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert c.post("/predict", json={"inputs": "hi"}, headers=good).status_code == 200
        assert c.get("/info", headers=good).json()["auth"] is True


def test_auth_off_needs_no_header(client: TestClient) -> None:
    assert client.post("/predict", json={"inputs": "hi"}).status_code == 200


def test_no_calibration_never_rejects(plain_artifact: Path) -> None:
    with TestClient(create_app(ServeConfig(), model_dir=plain_artifact)) as c:
        _ready(c)
        out = c.post("/predict", json={"inputs": TEXTS}).json()
        assert all(x[0]["label"] in LABELS and len(x) == len(LABELS) for x in out)
        assert c.get("/info").json()["calibration"] is None


def test_load_failure_is_reported(tmp_path: Path) -> None:
    failures = []

    def broken() -> None:
        raise OSError("weights are corrupt")

    app = create_app(ServeConfig(), loader=broken, on_load_error=failures.append)
    with TestClient(app) as c:
        deadline = time.monotonic() + 10
        while not failures and time.monotonic() < deadline:
            time.sleep(0.01)
        r = c.get("/health")
        assert r.status_code == 503 and "weights are corrupt" in r.json()["error"]
    assert isinstance(failures[0], OSError)


def test_serve_config_validation() -> None:
    with pytest.raises(ConfigError, match="--max-texts-per-request"):
        ServeConfig(max_queue=4, max_texts_per_request=8)
    with pytest.raises(ConfigError, match="--port"):
        ServeConfig(port=0)


def test_default_threads_all_cores_except_one_spare_for_torch_int8(monkeypatch) -> None:
    import os

    from intentkit.inference.predictor import default_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert default_threads() == 2 and default_threads("int8") == 1
    assert default_threads("fp32", "onnx") == 2 and default_threads("int8", "onnx") == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert default_threads() == 1 and default_threads("int8") == 1
    assert default_threads("int8", "onnx") == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert default_threads() == 16 and default_threads("int8") == 15
    assert default_threads("int8", "onnx") == 16


def test_draining_server_answers_with_connection_close() -> None:
    """promote's drain: once SIGUSR1 set ``draining``, every response asks the client to
    reconnect (so it reaches the successor) instead of being cut at shutdown."""
    import asyncio
    from types import SimpleNamespace

    from intentkit.serve.middleware import DrainMiddleware

    async def app(scope, receive, send):  # noqa: ANN001, ANN202 - the ASGI signature
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"connection", b"keep-alive"), (b"x-a", b"1")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"ok"})

    def headers_of(draining: bool) -> list:
        sent: list = []

        async def send(message):  # noqa: ANN001, ANN202
            sent.append(message)

        mw = DrainMiddleware(app, SimpleNamespace(draining=draining))
        asyncio.run(mw({"type": "http"}, None, send))
        return sent[0]["headers"]

    assert headers_of(False) == [(b"connection", b"keep-alive"), (b"x-a", b"1")]
    assert headers_of(True) == [(b"x-a", b"1"), (b"connection", b"close")]
