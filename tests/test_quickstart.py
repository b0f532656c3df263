"""``intentkit quickstart`` end to end with the tiny model (prepare, train, evaluate, serve)."""

from __future__ import annotations

from pathlib import Path

import pytest

from intentkit.cli import main
from intentkit.endpoints.registry import Registry
from intentkit.quickstart import DEMO_QUERIES


@pytest.mark.slow
def test_quickstart_end_to_end(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    out, state = tmp_path / "demo", tmp_path / "state"
    args = ["quickstart", "--model", str(tiny_model_dir), "--out", str(out), "--epochs", "0.25"]
    assert main([*args, "--state-dir", str(state)]) == 0
    printed = capsys.readouterr().out
    assert "intentkit quickstart" in printed and "test macro-F1" in printed
    assert "served on onnx" in printed  # the endpoint used the CPU default backend
    assert (out / "model" / "onnx" / "model.onnx").is_file()
    # Each served answer is the model's own answer (same label and confidence as a local predict).
    import intentkit

    local = intentkit.load(out / "model").predict(list(DEMO_QUERIES))
    for query, answer in zip(DEMO_QUERIES, local, strict=True):
        row = next(line for line in printed.splitlines() if f"'{query}'" in line)
        assert f"{answer['label']} ({answer['confidence']:.3f})" in row, (row, answer)
    assert (out / "data" / "train.parquet").is_file()
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "model" / "eval" / "report.json").is_file()
    # The summary ends with the page to open next.
    page = out / "model" / "eval" / "report.html"
    assert page.is_file() and printed.rstrip().endswith(f"report: {page}")
    assert Registry(state).all() == {}  # the endpoint was deleted
    # A second run refuses to overwrite without --force (one-line error, exit 2).
    assert main([*args, "--state-dir", str(state)]) == 2
    assert "--force" in capsys.readouterr().err


def test_quickstart_without_modernbert_warns_and_falls_back(monkeypatch) -> None:
    from rich.console import Console

    from intentkit import quickstart
    from intentkit.errors import ModelError

    def offline(name: str) -> None:
        raise ModelError("--model modernbert-base: cannot fetch it")

    monkeypatch.setattr("intentkit.modeling.load_config", offline)
    console = Console(record=True, width=100)
    assert quickstart.choose_model(None, console) == "minilm"
    assert "ModernBERT-base unavailable" in console.export_text()
    assert quickstart.choose_model("my-model", console) == "my-model"
