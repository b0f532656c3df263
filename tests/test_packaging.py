"""SageMaker packing: intentkit-image archives (fresh ONNX inside) and the Hugging Face handler."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from intentkit.cli import main
from intentkit.export import onnx_graph as onnx_backend
from intentkit.export.loader import load_predictor
from intentkit.inference.predictor import Predictor
from intentkit.sagemaker.image import hf_inference as handler
from intentkit.sagemaker.pack import is_hf_image, pack_model
from serve_helpers import make_artifact

TEXTS = [
    "what time is my flight ?",
    "my bag never arrived",
    "book me a flight to paris next friday please",
    "is flight ua 90 on time",
    "hi",
    "where can i store my bags ?",
    "cancel my hotel",
    "i need to rebook the connection that i missed because my first flight was late and the "
    "airline did not tell me anything about it until i was already at the gate",  # > max_length
    "refund",
    "what is the weather like in rome",
    "seat upgrade",
    "lost my passport at the airport",
]
LABELS = ["book_flight", "lost_luggage", "flight_status", "cancel_trip"]


def _read_only(folder: Path) -> None:
    for p in [folder, *folder.rglob("*")]:
        mode = p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        os.chmod(p, mode)


def _writable_again(folder: Path) -> None:
    for p in [folder, *folder.rglob("*")]:
        os.chmod(p, p.stat().st_mode | stat.S_IWUSR)


def _members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {m.name: m for m in tar.getmembers()}


# ------------------------------------------------------------------------ intentkit's image
def test_intentkit_archive_ships_a_fresh_onnx_export(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_artifact(tiny_model_dir, tmp_path / "model")
    (model / "README.md").write_text("# card\n")
    # By-products that must stay out of the archive.
    (model / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (model / "checkpoints" / "checkpoint-5" / "model.safetensors").write_bytes(b"x")
    (model / "eval").mkdir()
    (model / "eval" / "report.json").write_text("{}")
    (model / ".DS_Store").write_bytes(b"x")
    (model / ".intentkit.json.abc.tmp").write_text("{}")
    (model / "old.tar.gz").write_bytes(b"x")
    # The model folder is read-only (as root, chmod alone does not stop writes): the export
    # goes to the user cache, and is packed from there.
    monkeypatch.setattr(onnx_backend, "_writable", lambda folder: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "build-cache"))
    _read_only(model)
    try:
        # No training data recorded for this artifact: its int8 graph is accepted unmeasured
        # (the agreement gate itself: tests/test_int8.py).
        archive = pack_model(model, tmp_path / "out" / "model.tar.gz", int8=True, min_agreement=0)
    finally:
        _writable_again(model)
    assert not (model / "onnx").exists()
    assert list((tmp_path / "build-cache").rglob("model.onnx"))

    members = _members(archive)
    assert set(members) == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "intentkit.json",
        "README.md",
        "onnx",
        "onnx/model.onnx",
        "onnx/model.int8.onnx",
        "onnx/export.json",
    }
    assert all(m.uid == 0 and m.uname == "" and m.mode & 0o444 == 0o444 for m in members.values())
    assert [p.name for p in archive.parent.iterdir()] == ["model.tar.gz"]  # no temp file left

    # Python's tarfile restores the same whole-second mtimes: the manifest matches there too.
    copy = tmp_path / "tarfile-copy"
    with tarfile.open(archive) as tar:
        tar.extractall(copy, filter="data")
    manifest = json.loads((copy / "onnx" / "export.json").read_text())
    assert manifest["source"] == onnx_backend.fingerprint(copy)
    assert set(manifest["files"]) == {"fp32", "int8"}

    # Extract as SageMaker does (GNU tar), make it read-only, start from an empty user cache.
    served = tmp_path / "opt-ml-model"
    served.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(served)], check=True)
    shipped = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (served / "onnx").iterdir()}
    _read_only(served)
    cache = tmp_path / "serve-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    try:
        ort = load_predictor(served, device="cpu", backend="onnx")
        ort8 = load_predictor(served, device="cpu", backend="onnx", dtype="int8")
        ref = load_predictor(served, device="cpu", backend="torch")
        assert ort.runner.path == served / "onnx" / "model.onnx"
        assert ort8.runner.path == served / "onnx" / "model.int8.onnx"
        assert not cache.exists()  # nothing exported again
        after = {
            p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (served / "onnx").iterdir()
        }
        assert after == shipped
        np.testing.assert_allclose(ort.logits(TEXTS), ref.logits(TEXTS), atol=1e-4)
        assert [a["label"] for a in ort.predict(TEXTS)] == [a["label"] for a in ref.predict(TEXTS)]
    finally:
        _writable_again(served)


def test_intentkit_archive_without_onnx_is_the_artifact_alone(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = make_artifact(tiny_model_dir, tmp_path / "model")
    archive = pack_model(model, tmp_path / "model.tar.gz", onnx=False)
    assert set(_members(archive)) == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "intentkit.json",
    }
    assert not (model / "onnx").exists()


def test_a_failed_pack_leaves_the_old_archive_and_no_temp_file(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from intentkit.sagemaker import pack

    model = make_artifact(tiny_model_dir, tmp_path / "model")
    dest = tmp_path / "out" / "model.tar.gz"
    dest.parent.mkdir()
    dest.write_bytes(b"previous archive")

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pack, "_add_dir", disk_full)  # fails after the model files are in
    with pytest.raises(OSError, match="No space"):
        pack_model(model, dest, fmt="sagemaker-hf")
    assert [p.name for p in dest.parent.iterdir()] == ["model.tar.gz"]
    assert dest.read_bytes() == b"previous archive"


# ------------------------------------------------------------------------ Hugging Face image
def _calibrated_artifact(tiny_model_dir: Path, out: Path) -> tuple[Path, dict]:
    """An artifact whose calibration rejects some TEXTS by threshold, some by the model's own
    oos class, and answers the rest (chosen from the model's actual logits)."""
    import torch
    from safetensors.torch import load_file, save_file

    from intentkit.inference.decision import softmax

    model = make_artifact(tiny_model_dir, out, labels=LABELS)
    logits = Predictor.from_dir(model, device="cpu").logits(TEXTS)
    # A random head answers one class for every text with near-equal logits. Centring them on
    # these texts and scaling them to a std of 2 makes the classes split the texts with clear
    # margins, as a trained head would: logits' = a * (logits - mean) via the head's W and b.
    centred = logits - logits.mean(axis=0)
    scale = 2.0 / float(centred.std())
    weights = load_file(model / "model.safetensors")
    weights["classifier.weight"] *= scale
    weights["classifier.bias"] = scale * (
        weights["classifier.bias"] - torch.from_numpy(logits.mean(axis=0))
    )
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    logits = Predictor.from_dir(model, device="cpu").logits(TEXTS)

    temperature = 1.3
    conf = softmax(logits, temperature).max(axis=1)
    pred = logits.argmax(axis=1)
    ranked = np.sort(conf)
    gaps = np.diff(ranked)[2:8]  # reject 3 to 8 of the 12 texts, at the widest gap
    cut = 2 + int(gaps.argmax())
    assert gaps.max() > 1e-3, "confidences too close to set a threshold between them"
    threshold = float((ranked[cut] + ranked[cut + 1]) / 2)
    kept = [int(p) for p, c in zip(pred, conf, strict=True) if c >= threshold]
    assert len(set(kept)) >= 2, "the answered texts share one class; cannot pick an oos class"
    calibration = {
        "temperature": temperature,
        "threshold": threshold,
        "reject_label": "out_of_scope",
        "oos_label": LABELS[kept[0]],
    }
    meta = json.loads((model / "intentkit.json").read_text())
    (model / "intentkit.json").write_text(json.dumps({**meta, "calibration": calibration}))
    return model, calibration


HF_RUNNER = r"""
import json, sys
sys.modules["intentkit"] = None  # as in the Hugging Face containers: intentkit is not there
try:
    import intentkit  # noqa: F401
except ImportError:
    pass
else:
    sys.exit("intentkit is importable")
model_dir, requests = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, model_dir + "/code")  # what the toolkit does before importing `inference`
import inference

model = inference.model_fn(model_dir)
out = []
for body, content_type, accept in requests:
    if content_type != "application/json":  # the toolkit decodes only JSON and CSV bodies
        body = body.encode("utf-8")
    data = inference.input_fn(body, content_type)
    out.append(inference.output_fn(inference.predict_fn(data, model), accept))
print(json.dumps(out))
"""


def test_hf_handler_answers_like_intentkit_predict_without_intentkit(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, calibration = _calibrated_artifact(tiny_model_dir, tmp_path / "model")
    archive = tmp_path / "hf.tar.gz"
    assert main(["export", str(model), "--format", "sagemaker-hf", "--output", str(archive)]) == 0
    assert capsys.readouterr().out.startswith(f"{archive} (")
    assert set(_members(archive)) == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "intentkit.json",
        "code",
        "code/inference.py",
    }
    served = tmp_path / "opt-ml-model"
    with tarfile.open(archive) as tar:
        tar.extractall(served, filter="data")

    lines = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:5]) + "\n"
    requests = [
        (json.dumps({"text": TEXTS[0]}), "application/json", "application/json"),
        (json.dumps({"text": TEXTS}), "application/json", "application/json"),
        (json.dumps({"inputs": TEXTS[3:]}), "application/json; charset=utf-8", "*/*"),
        (lines, "application/jsonlines", "application/json"),
        (json.dumps({"text": TEXTS[:2]}), "application/json", "application/jsonlines"),
    ]
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, "-c", HF_RUNNER, str(served), json.dumps(requests)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single, batch, inputs, jsonl, jsonl_accept = json.loads(proc.stdout.splitlines()[-1])

    def predict(texts: list[str]) -> list[dict]:
        """`intentkit predict --model` on the texts of one request (batches change the floats)."""
        assert main(["predict", "--model", str(model), *texts]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    expected = predict(TEXTS)
    labels = [e["predicted_class"] for e in expected]
    # The calibration exercises every branch of the rule: answered, below the threshold, oos.
    assert "out_of_scope" in labels and set(labels) - {"out_of_scope"}
    logits = Predictor.from_dir(model, device="cpu").logits(TEXTS)
    oos = LABELS.index(calibration["oos_label"])
    below = [c < calibration["threshold"] for c in (e["confidence"] for e in expected)]
    assert any(below) and not all(below)
    assert any(row.argmax() == oos and not low for row, low in zip(logits, below, strict=True)), (
        "no text rejected as the model's own oos class"
    )

    def check(got: list[dict], want: list[dict]) -> None:
        assert [g["predicted_class"] for g in got] == [w["predicted_class"] for w in want]
        np.testing.assert_allclose(
            [g["confidence"] for g in got], [w["confidence"] for w in want], atol=1e-5
        )
        assert all(set(g) == {"predicted_class", "confidence"} for g in got)

    check([json.loads(single)], predict(TEXTS[:1]))
    check(json.loads(batch), expected)
    check(json.loads(inputs), predict(TEXTS[3:]))
    check([json.loads(x) for x in jsonl.splitlines()], predict(TEXTS[:5]))
    assert jsonl.endswith("\n") and len(jsonl.splitlines()) == 5
    check([json.loads(x) for x in jsonl_accept.splitlines()], predict(TEXTS[:2]))


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("{not json", "application/json", "invalid JSON"),
        ('{"txt": "hi"}', "application/json", '{"text": "..."}'),
        ('["hi"]', "application/json", '{"text": "..."}'),
        ('{"text": []}', "application/json", "empty list"),
        ('{"text": ["hi", " "]}', "application/json", "`text[1]` is empty"),
        ('{"text": 3}', "application/json", "string or a list of strings"),
        ('{"text": "hi"}', "text/csv", "send application/json or application/jsonlines"),
        ('{"text": "hi"}\n{"text": 3}\n', "application/jsonlines", "line 2"),
        ('{"text": "hi"}\nnope\n', "application/jsonlines", "line 2: invalid JSON"),
        ("\n\n", "application/jsonlines", "no lines"),
        (b"\xff\xfe", "application/jsonlines", "not UTF-8"),
    ],
)
def test_hf_handler_rejects_bad_bodies_with_a_clear_message(
    body: str | bytes, content_type: str, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        handler.input_fn(body, content_type)
    assert message in str(info.value)


def test_hf_handler_tokenizer_fallback_gives_the_same_ids(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    model = make_artifact(tiny_model_dir, tmp_path / "model")
    reference = AutoTokenizer.from_pretrained(model)
    want = reference(TEXTS, truncation=True, max_length=16)

    # transformers 4.x (most Hugging Face containers) cannot load a tokenizer that transformers 5
    # saved as "TokenizersBackend".
    calls = []

    def unknown_class(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise ValueError("Tokenizer class TokenizersBackend does not exist")

    monkeypatch.setattr(handler.AutoTokenizer, "from_pretrained", unknown_class)
    tok = handler._load_tokenizer(str(model))
    assert calls and isinstance(tok, PreTrainedTokenizerFast)  # built from tokenizer.json
    got = tok(TEXTS, truncation=True, max_length=16)
    assert got["input_ids"] == want["input_ids"]
    assert tok.pad_token_id == reference.pad_token_id


def test_is_hf_image() -> None:
    ecr = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
    assert is_hf_image(
        f"{ecr}/huggingface-pytorch-inference:2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04"
    )
    assert is_hf_image(f"{ecr}/huggingface-pytorch-inference@sha256:abc")
    assert is_hf_image("huggingface-pytorch-inference-neuronx:2.1.2-transformers4.43.2-neuronx")
    assert not is_hf_image(f"{ecr}/huggingface-pytorch-tgi-inference:2.0.1-tgi0.9.3-gpu-py39")
    assert not is_hf_image(f"{ecr}/huggingface-pytorch-training:2.0.0-transformers4.28.1-gpu")
    assert not is_hf_image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/intentkit:latest")


# ------------------------------------------------------------------------ CLI errors
def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_export_cli_errors(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(tmp_path / "nope"), "--format", "sagemaker"]) == 2
    assert "no such folder" in _one_line_error(capsys)

    model = make_artifact(tiny_model_dir, tmp_path / "model")
    capsys.readouterr()  # transformers' load report
    out = tmp_path / "model.tar.gz"
    out.write_bytes(b"keep me")
    assert main(["export", str(model), "--format", "sagemaker-hf", "--output", str(out)]) == 2
    assert "--force" in _one_line_error(capsys)
    assert out.read_bytes() == b"keep me"

    assert main(["export", str(model), "--format", "sagemaker-hf", "--int8"]) == 2
    assert "--int8" in _one_line_error(capsys)
    assert main(["export", str(model), "--format", "zip"]) == 2
    assert "--format" in _one_line_error(capsys)
    assert main(["export", str(model), "--output", str(out)]) == 2  # the onnx format has no file
    assert "--output" in _one_line_error(capsys)
    inside = model / "model.tar.gz"
    assert main(["export", str(model), "--format", "sagemaker-hf", "--output", str(inside)]) == 2
    assert "inside MODEL_DIR" in _one_line_error(capsys)

    # The default output sits beside MODEL_DIR; --force replaces an existing one.
    assert main(["export", str(model), "--format", "sagemaker-hf"]) == 0
    default = tmp_path / "model-sagemaker-hf.tar.gz"
    assert capsys.readouterr().out.startswith(str(default))
    assert (
        main(["export", str(model), "--format", "sagemaker-hf", "--output", str(out), "--force"])
        == 0
    )
    assert "code/inference.py" in _members(out)
