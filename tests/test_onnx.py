"""The ONNX Runtime backend: export, verification, caching, fallback and serving over a socket."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from intentkit.cli import main
from intentkit.config import ServeConfig
from intentkit.errors import ConfigError, ModelError
from intentkit.export import onnx_graph as onnx_backend
from intentkit.export.loader import load_predictor, resolve_backend
from intentkit.serve.app import create_app
from serve_helpers import SAMPLE_TEXTS, make_artifact, running, wait_ready

TEXTS = SAMPLE_TEXTS


@pytest.fixture()
def artifact(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A fresh classifier artifact per test (the export writes into it)."""
    return make_artifact(tiny_model_dir, tmp_path / "model", max_length=32)


def test_export_matches_pytorch_and_serves_the_same_answers(artifact: Path) -> None:
    path = onnx_backend.export_onnx(artifact)
    assert path == artifact / "onnx" / "model.onnx"
    manifest = json.loads((artifact / "onnx" / "export.json").read_text())
    assert manifest["files"]["fp32"]["max_abs_logit_diff"] <= onnx_backend.TOLERANCE
    assert set(manifest["source"]) == {"config.json", "model.safetensors"}

    ref = load_predictor(artifact, device="cpu", backend="torch")
    ort = load_predictor(artifact, device="cpu", backend="onnx")
    assert (ref.backend, ort.backend) == ("torch", "onnx")
    np.testing.assert_allclose(ort.logits(TEXTS), ref.logits(TEXTS), atol=1e-4)
    assert [a["label"] for a in ort.predict(TEXTS)] == [a["label"] for a in ref.predict(TEXTS)]


def test_export_is_reused_until_the_weights_change(artifact: Path) -> None:
    onnx_file = onnx_backend.export_onnx(artifact)
    first = onnx_file.stat().st_mtime_ns
    onnx_backend.export_onnx(artifact)
    assert onnx_file.stat().st_mtime_ns == first  # cached: not rewritten

    weights = artifact / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # "retrained"
    onnx_backend.export_onnx(artifact)
    assert onnx_file.stat().st_mtime_ns != first
    manifest = json.loads((artifact / "onnx" / "export.json").read_text())
    assert manifest["source"]["model.safetensors"][1] == weights.stat().st_mtime_ns


def test_int8_graph_is_smaller_and_close_to_fp32(artifact: Path) -> None:
    # No validation data recorded for this artifact: accepted unmeasured (tests/test_int8.py
    # covers the agreement gate).
    int8 = onnx_backend.export_onnx(artifact, int8=True, min_agreement=0.0)
    fp32 = artifact / "onnx" / "model.onnx"
    assert int8.name == "model.int8.onnx" and fp32.is_file()
    # The tiny encoder's embeddings stay fp32; its linear layers shrink 4x.
    assert int8.stat().st_size < fp32.stat().st_size
    ref = load_predictor(artifact, device="cpu", backend="torch").logits(TEXTS)
    q = load_predictor(artifact, device="cpu", backend="onnx", dtype="int8").logits(TEXTS)
    assert q.shape == ref.shape
    assert np.abs(q - ref).max() < 0.25 * np.abs(ref).max()


def test_mismatching_export_is_refused_and_auto_falls_back_to_torch(
    artifact: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(onnx_backend, "TOLERANCE", -1.0)  # any difference is "too large"
    with pytest.raises(ModelError, match="--backend torch"):
        load_predictor(artifact, device="cpu", backend="onnx")
    assert not (artifact / "onnx" / "model.onnx").exists()  # nothing half-verified is kept
    assert not list((artifact / "onnx").glob(".*.tmp-*"))
    with caplog.at_level(logging.WARNING, logger="intentkit.export.loader"):
        pred = load_predictor(artifact, device="cpu", backend="auto")
    assert pred.backend == "torch"
    assert "ONNX backend unavailable" in caplog.text


def test_backend_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_backend("auto", "cpu", "fp32") == "onnx"
    assert resolve_backend("auto", "cpu", "int8") == "onnx"
    assert resolve_backend("auto", "cuda", "bf16") == "torch"
    assert resolve_backend("torch", "cpu", "fp32") == "torch"
    with pytest.raises(ConfigError, match="--backend onnx runs on CPU"):
        resolve_backend("onnx", "cuda", "fp32")
    with pytest.raises(ConfigError, match="--backend must be one of"):
        resolve_backend("tensorrt", "cpu", "fp32")
    monkeypatch.setattr(onnx_backend, "onnx_available", lambda: False)
    assert resolve_backend("auto", "cpu", "fp32") == "torch"
    with pytest.raises(ConfigError, match=r"intentkit\[onnx\]"):
        resolve_backend("onnx", "cpu", "fp32")


def test_read_only_model_dir_uses_a_shipped_export_or_the_user_cache(
    artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root may write anywhere, so "read-only" is simulated at the one place it is checked.
    monkeypatch.setattr(onnx_backend, "_writable", lambda folder: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cached = onnx_backend.export_onnx(artifact)
    assert cached.is_relative_to(tmp_path / "cache") and not (artifact / "onnx").exists()

    monkeypatch.undo()
    shipped = onnx_backend.export_onnx(artifact)  # e.g. `intentkit export` before packaging
    monkeypatch.setattr(onnx_backend, "_writable", lambda folder: False)
    assert onnx_backend.export_onnx(artifact) == shipped == artifact / "onnx" / "model.onnx"


def test_concurrent_starts_export_once(artifact: Path, caplog: pytest.LogCaptureFixture) -> None:
    results: list[Path] = []
    with caplog.at_level(logging.INFO, logger="intentkit.export.onnx_graph"):
        threads = [
            threading.Thread(target=lambda: results.append(onnx_backend.export_onnx(artifact)))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert sum("exporting" in r.getMessage() for r in caplog.records) == 1


def test_server_on_onnx_backend_answers_like_pytorch(artifact: Path) -> None:
    cfg = ServeConfig(backend="onnx", device="cpu", max_wait_ms=1)
    with running(create_app(cfg, model_dir=artifact)) as srv:
        wait_ready(srv.url)
        info = httpx.get(f"{srv.url}/info", timeout=30).json()
        got = httpx.post(f"{srv.url}/invocations", json={"text": TEXTS}, timeout=60).json()
    assert info["backend"] == "onnx"
    ref = load_predictor(artifact, device="cpu", backend="torch").predict(TEXTS)
    assert [g["predicted_class"] for g in got] == [a["label"] for a in ref]
    np.testing.assert_allclose(
        [g["confidence"] for g in got], [a["confidence"] for a in ref], atol=1e-4
    )


def test_export_cli(artifact: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["export", str(artifact), "--int8", "--min-agreement", "0"]) == 0
    out = capsys.readouterr().out
    assert "fp32:" in out and "int8:" in out and "max |logit - PyTorch|" in out
    assert main(["export", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err
