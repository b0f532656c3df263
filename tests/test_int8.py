"""The int8 export: recipe and measured agreement in the manifest, the --min-agreement gate,
loading an accepted graph, and how far its logits move from fp32's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from intentkit.cli import main
from intentkit.export import onnx_graph as onnx_backend
from intentkit.export import quantize
from intentkit.export.loader import load_predictor
from intentkit.export.quantize import Int8Refused
from serve_helpers import SAMPLE_TEXTS, make_artifact

TEXTS = SAMPLE_TEXTS
#: The tiny random encoder's int8 logits stay within this share of its fp32 logit range.
LOGIT_TOLERANCE = 0.1


def _with_data(artifact: Path, data: Path) -> Path:
    """Record ``data`` as the artifact's training data, as `intentkit train` does."""
    meta_file = artifact / "intentkit.json"
    meta = json.loads(meta_file.read_text())
    meta["data"] = {"path": str(data)}
    meta_file.write_text(json.dumps(meta))
    return artifact


def _int8_info(artifact: Path) -> dict:
    return json.loads((artifact / "onnx" / "export.json").read_text())["files"]["int8"]


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    return err


@pytest.fixture()
def artifact(tiny_model_dir: Path, tmp_path: Path, kw_data: Path) -> Path:
    """A fresh tiny classifier per test whose recorded training data is the keyword set."""
    return _with_data(make_artifact(tiny_model_dir, tmp_path / "model", max_length=32), kw_data)


@pytest.fixture()
def tied_artifact(artifact: Path, kw_data: Path) -> Path:
    """A classifier that int8 cannot follow on many validation texts, by construction.

    Rows 0 and 1 of the head differ by ~1e-6, far below one int8 step, in entries that do not
    set the row's scale, so per-channel int8 rounds both to the same integers with the same
    scale: its two logits differ by the bias difference alone, the same on every text. Setting
    that bias difference to minus the median of fp32's matmul difference makes fp32 answer
    class 0 on some texts and class 1 on others, while int8's answers barely depend on the text
    (measured: 83 % agreement). The third class is never the answer (bias -100).
    """
    import pandas as pd
    import torch
    from safetensors.torch import load_file, save_file

    weights = artifact / "model.safetensors"
    tensors = load_file(weights)
    w, b = tensors["classifier.weight"], tensors["classifier.bias"]
    row = w[0].clone()
    small = row.abs() < 0.5 * row.abs().max()
    noise = torch.randn(row.shape, generator=torch.Generator().manual_seed(0)) * 1e-6
    w[1] = row + torch.where(small, noise, torch.zeros_like(row))
    b.copy_(torch.tensor([0.0, 0.0, -100.0]))
    save_file(tensors, weights, metadata={"format": "pt"})
    texts = pd.read_parquet(kw_data / "val.parquet")["text"].tolist()
    logits = load_predictor(artifact, device="cpu", backend="torch").logits(texts)
    b[1] = -float(np.median(logits[:, 1] - logits[:, 0]))
    save_file(tensors, weights, metadata={"format": "pt"})
    return artifact


def test_export_records_recipe_and_agreement_and_the_graph_serves(
    artifact: Path, kw_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(artifact), "--dtype", "int8", "--min-agreement", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "int8:" in out and "same answer as fp32" in out and "accepted" in out

    info = _int8_info(artifact)
    recipe = info["quantization"]
    assert {k: recipe[k] for k in quantize.RECIPE} == quantize.RECIPE
    assert recipe["per_channel"] is True
    # SmoothQuant scales came from kw_data's train texts (all of them: fewer than 512), one per
    # activation that feeds linear layers: Q/K/V share one, so fewer than the MatMuls.
    import pandas as pd

    n_train = len(pd.read_parquet(kw_data / "train.parquet"))
    assert recipe["calibration_texts"] == min(n_train, 512) and recipe["activations_scaled"] > 0
    agreement = info["agreement"]
    assert agreement["split"] == "val" and agreement["n"] == 30  # kw_data's val split
    assert agreement["data"] == str(kw_data.resolve())
    assert 0.5 <= agreement["value"] <= 1.0
    assert agreement["min"] == 0.5 and agreement["accepted"] is True
    # #21 item 5: as many boundary probes as val texts, and the gate reads the lower figure.
    assert agreement["n_probes"] == 30 and 0 <= agreement["probe_rejected"] <= 1
    assert agreement["value"] == min(agreement["val_value"], agreement["probe_value"])
    assert "30 boundary probes" in out

    int8 = load_predictor(artifact, device="cpu", backend="onnx", dtype="int8")
    assert int8.runner.path == artifact / "onnx" / "model.int8.onnx"
    fp32 = load_predictor(artifact, device="cpu", backend="onnx")
    ref, got = fp32.logits(TEXTS), int8.logits(TEXTS)
    assert np.abs(got - ref).max() <= LOGIT_TOLERANCE * np.ptp(ref)
    assert info["max_abs_logit_diff"] <= LOGIT_TOLERANCE * np.ptp(ref)


def test_export_below_min_agreement_exits_2_and_int8_is_refused_until_accepted(
    tied_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = tied_artifact
    assert main(["export", str(artifact), "--dtype", "int8"]) == 2  # default --min-agreement
    captured = capsys.readouterr()
    err = _one_line(captured.err)
    info = _int8_info(artifact)
    measured = info["agreement"]["value"]
    assert 0.2 < measured < 0.9  # the tied head: far under any sensible minimum
    assert f"{measured:.2%}" in err and "--min-agreement 99.50%" in err
    assert "REFUSED" in captured.out  # what was measured is printed before the refusal
    assert info["agreement"]["accepted"] is False
    graph = artifact / "onnx" / "model.int8.onnx"
    assert graph.is_file()  # kept for inspection, never served

    for backend in ("onnx", "auto"):  # auto must not fall back to PyTorch int8 either
        with pytest.raises(Int8Refused, match="--min-agreement"):
            load_predictor(artifact, device="cpu", backend=backend, dtype="int8")

    # Accepting it knowingly re-judges the recorded measurement; nothing is quantized again.
    before = graph.stat().st_mtime_ns
    floor = f"{int(measured * 1000) / 1000:g}"
    assert main(["export", str(artifact), "--int8", "--min-agreement", floor]) == 0
    assert graph.stat().st_mtime_ns == before
    assert _int8_info(artifact)["agreement"]["accepted"] is True
    pred = load_predictor(artifact, device="cpu", backend="onnx", dtype="int8")
    assert pred.runner.path == graph


def test_min_agreement_above_what_any_graph_can_reach_refuses(
    artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(artifact), "--dtype", "int8", "--min-agreement", "1.01"]) == 2
    assert "--min-agreement is a share between 0 and 1" in _one_line(capsys.readouterr().err)
    assert main(["export", str(artifact), "--dtype", "int4"]) == 2
    assert "--dtype must be fp32 or int8" in _one_line(capsys.readouterr().err)


def test_without_validation_data_int8_is_refused_unless_min_agreement_is_0(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = make_artifact(tiny_model_dir, tmp_path / "model", max_length=32)  # no data path
    capsys.readouterr()  # transformers' progress bars
    assert main(["export", str(artifact), "--dtype", "int8"]) == 2
    assert "names no data folder" in _one_line(capsys.readouterr().err)
    assert main(["export", str(artifact), "--dtype", "int8", "--data", str(tmp_path / "x")]) == 2
    assert "--data" in _one_line(capsys.readouterr().err)
    assert main(["export", str(artifact), "--dtype", "int8", "--min-agreement", "0"]) == 0
    info = _int8_info(artifact)
    assert info["agreement"]["value"] is None and info["agreement"]["accepted"] is True


def test_held_out_train_slice_when_there_is_no_val_split(
    tmp_path: Path, keywords_jsonl: Path
) -> None:
    from train_helpers import keywords_prepared

    data = keywords_prepared(keywords_jsonl, tmp_path / "data", with_val=False)
    texts, source = quantize.agreement_texts({"data": {"path": str(data)}})
    assert source["split"].startswith("train (held-out") and len(texts) == source["n"] == 15
    assert texts == quantize.agreement_texts({}, data)[0]  # deterministic, --data wins


def test_an_int8_graph_from_an_older_recipe_is_remade(
    artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx_backend.export_onnx(artifact, int8=True, min_agreement=0.0)
    graph = artifact / "onnx" / "model.int8.onnx"
    before = graph.stat().st_mtime_ns
    monkeypatch.setitem(quantize.RECIPE, "name", "next-recipe")
    onnx_backend.export_onnx(artifact, int8=True, min_agreement=0.0)
    assert graph.stat().st_mtime_ns != before
    assert _int8_info(artifact)["quantization"]["name"] == "next-recipe"


def test_boundary_probes_are_seeded_splices_and_shuffles_of_the_texts() -> None:
    texts = ["book a flight to paris", "what is my balance", "cancel my hotel room", "hi"]
    probes = quantize.boundary_probes(texts, 40)
    assert len(probes) == 40 and probes == quantize.boundary_probes(texts, 40)
    assert probes != quantize.boundary_probes(texts, 40, seed=1)
    vocab = {w for t in texts for w in t.split()}
    assert all(p and set(p.split()) <= vocab for p in probes)
    shuffles = probes[1::2]  # odd positions: one text's words, reordered
    assert all(sorted(p.split()) in [sorted(t.split()) for t in texts] for p in shuffles)
    splices = probes[0::2]  # even positions: two halves, often from two texts
    assert any(p not in texts and sorted(p.split()) not in [sorted(t.split()) for t in texts]
               for p in splices)  # fmt: skip


def test_the_gate_refuses_int8_that_agrees_in_scope_but_not_at_the_boundary(tmp_path: Path) -> None:
    measured = {"data": "d", "split": "val", "n": 1000, "val_value": 1.0, "probe_value": 0.97,
                "n_probes": 1000, "probe_rejected": 0.4, "value": 0.97}  # fmt: skip
    info = quantize.gate({"agreement": measured}, 0.995)
    assert info["agreement"]["accepted"] is False
    with pytest.raises(Int8Refused) as refused:
        quantize.check_accepted(info, tmp_path)
    message = str(refused.value)
    assert "val 100.00%" in message
    assert "1000 boundary probes 97.00%" in message and "\n" not in message
    assert quantize.gate({"agreement": {**measured, "probe_value": 0.996, "value": 0.996}},
                         0.995)["agreement"]["accepted"]  # fmt: skip
