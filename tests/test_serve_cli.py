"""``intentkit serve`` start-up contract: defaults for containers, env read at start, errors."""

from __future__ import annotations

import socket
from pathlib import Path

from intentkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_serve_without_model_dir_uses_sagemaker_path(monkeypatch, capsys) -> None:
    monkeypatch.delenv("INTENTKIT_MODEL_DIR", raising=False)
    assert main(["serve"]) == 2
    assert "/opt/ml/model" in capsys.readouterr().err  # SageMaker runs `IMAGE serve`


def test_serve_reads_env_at_start(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("INTENTKIT_MODEL_DIR", str(tmp_path / "from-env"))
    assert main(["serve"]) == 2
    assert "from-env" in capsys.readouterr().err
    monkeypatch.setenv("INTENTKIT_PORT", "eighty")
    assert main(["serve"]) == 2
    assert "$INTENTKIT_PORT" in capsys.readouterr().err


def test_serve_port_in_use_is_one_line(tmp_path: Path, capsys, tiny_model_dir: Path) -> None:
    from serve_helpers import make_artifact

    art = make_artifact(tiny_model_dir, tmp_path / "art")
    capsys.readouterr()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", str(art), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --port") and err.count("\n") == 1


def test_dockerfile_matches_the_sagemaker_contract(capsys) -> None:
    """SageMaker runs `docker run IMAGE train|serve`: the entrypoint + that one argument must
    reach `intentkit container train|serve` (checked by running the resulting argv's --help)."""
    import json as _json
    import re

    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    entry = _json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = _json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert entry[0] == "intentkit" and cmd == ["serve"]
    for arg in ("train", "serve"):
        assert main([*entry[1:], arg, "--help"]) == 0
        assert "/opt/ml" in capsys.readouterr().out
    assert "EXPOSE 8080" in text and "HEALTHCHECK" in text and "/ping" in text
    assert ".[serve]" in text
