"""``code/inference.py`` answers like ``intentkit predict`` under the transformers of the images.

The Hugging Face inference images ship transformers 4.48 to 5.x while intentkit trains with 5.x,
so the handler runs here under both: this venv's transformers 5, and transformers 4.48.3 (the
oldest that has ModernBERT) installed with pip into a separate folder put first on PYTHONPATH,
reusing this venv's torch, numpy and safetensors. That folder is cached per version in the user
cache (a fresh machine needs PyPI once, ~15 s), for a MiniLM and a tiny ModernBERT package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from intentkit.cli import main
from test_packaging import HF_RUNNER, TEXTS, _calibrated_artifact

#: What ``pip install transformers==4.48.3`` needs beyond this venv: its own tokenizers and
#: huggingface_hub ranges (``tokenizers<0.22``, ``huggingface-hub<1.0``); the rest is shared.
PINS = {"4.48.3": ["transformers==4.48.3", "tokenizers==0.21.1", "huggingface_hub==0.36.0"]}


def transformers_env(version: str) -> Path:
    """A folder holding transformers ``version`` (pip --target), built once and cached."""
    from platformdirs import user_cache_dir

    root = Path(user_cache_dir("intentkit")) / "test-envs" / f"transformers-{version}"
    if (root / ".complete").is_file():
        return root
    tmp = root.with_name(f"{root.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(tmp)]
    proc = subprocess.run([*cmd, *PINS[version]], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"pip could not install transformers {version} (PyPI needed):\n{proc.stderr}")
    (tmp / ".complete").touch()
    try:
        tmp.rename(root)  # atomic: a concurrent run that got there first keeps its copy
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


@pytest.fixture(scope="module")
def packages(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A calibrated MiniLM and tiny ModernBERT artifact, each packed for the HF image and
    extracted as SageMaker extracts it to /opt/ml/model."""
    from intentkit.modeling import resolve_model

    out: dict[str, Path] = {}
    for name, encoder in (
        ("modernbert", tiny_model_dir),
        ("minilm", Path(resolve_model("minilm"))),
    ):
        root = tmp_path_factory.mktemp(f"hf-{name}")
        model, _ = _calibrated_artifact(encoder, root / "model")
        archive = root / "model.tar.gz"
        assert (
            main(["export", str(model), "--format", "sagemaker-hf", "--output", str(archive)]) == 0
        )
        with tarfile.open(archive) as tar:
            tar.extractall(root / "served", filter="data")
        out[name] = model
        out[f"{name}-served"] = root / "served"
    return out


@pytest.mark.parametrize("family", ["modernbert", "minilm"])
@pytest.mark.parametrize("transformers", ["venv", pytest.param("4.48.3", marks=pytest.mark.slow)])
def test_handler_answers_like_intentkit_predict(
    packages: dict[str, Path],
    transformers: str,
    family: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = "" if transformers == "venv" else str(transformers_env(transformers))
    lines = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:5])
    requests = [
        (json.dumps({"text": TEXTS[0]}), "application/json", "application/json"),
        (json.dumps({"text": TEXTS}), "application/json", "application/json"),
        (lines, "application/jsonlines", "application/jsonlines"),
    ]
    runner = "import transformers; print('TRANSFORMERS', transformers.__version__)\n" + HF_RUNNER
    proc = subprocess.run(
        [sys.executable, "-c", runner, str(packages[f"{family}-served"]), json.dumps(requests)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    version = proc.stdout.split("TRANSFORMERS ", 1)[1].split()[0]
    assert version == transformers if path else version.startswith("5.")
    single, batch, jsonl = json.loads(proc.stdout.splitlines()[-1])

    def predict(texts: list[str]) -> list[dict]:
        """`intentkit predict --model` (this venv, transformers 5) on one request's texts."""
        assert main(["predict", "--model", str(packages[family]), *texts]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    def check(got: list[dict], want: list[dict]) -> None:
        assert [g["predicted_class"] for g in got] == [w["predicted_class"] for w in want]
        np.testing.assert_allclose(
            [g["confidence"] for g in got], [w["confidence"] for w in want], atol=1e-5
        )

    expected = predict(TEXTS)
    assert len({e["predicted_class"] for e in expected}) >= 3  # rejections and classes both
    check([json.loads(single)], predict(TEXTS[:1]))
    check(json.loads(batch), expected)
    check([json.loads(x) for x in jsonl.splitlines()], predict(TEXTS[:5]))
