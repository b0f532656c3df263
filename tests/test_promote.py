"""promote / rollback on a real local endpoint while traffic flows: zero failed requests."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from intentkit.cli import main
from intentkit.endpoints.local import process_alive
from intentkit.endpoints.registry import Registry
from serve_helpers import Traffic, free_port, make_artifact


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints", "eval", "onnx"))
    return dst


def _served(url: str) -> str:
    return httpx.get(f"{url}/info", timeout=10).json()["model_path"]  # a fresh connection


@pytest.mark.slow
def test_promote_and_rollback_under_traffic(
    kw_model: Path, kw_data: Path, tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    import pandas as pd

    data = _copy(kw_data, tmp_path / "data")
    pd.read_parquet(kw_data / "val.parquet").to_parquet(data / "reviewed_test.parquet")
    old = make_artifact(tiny_model_dir, tmp_path / "old", labels=["car", "flight", "hotel"])
    same = _copy(old, tmp_path / "same-as-old")
    new = _copy(kw_model, tmp_path / "new")
    state, port = tmp_path / "state", free_port()
    common = ["--state-dir", str(state)]
    assert (
        main(
            ["deploy", str(old), "--name", "ep", "--port", str(port), "--backend", "torch", *common]
        )
        == 0
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # The gate first: a model no better than the served one is refused, the table printed.
        capsys.readouterr()
        assert main(["promote", str(same), "--endpoint", "ep", "--data", str(data), *common]) == 1
        out, err = capsys.readouterr()
        assert "reviewed_test" in out and "McNemar p" in out
        assert err.splitlines()[-1].startswith("error: promote refused: not better on reviewed")
        assert _served(url) == str(old.resolve())

        blue = Registry(state).get("ep")
        with Traffic(url) as traffic:
            assert (
                main(["promote", str(new), "--endpoint", "ep", "--data", str(data), *common]) == 0
            )
            assert _served(url) == str(new.resolve())
            middle = traffic.ok
            assert main(["rollback", "ep", *common]) == 0
            assert _served(url) == str(old.resolve())
        assert traffic.failures == []
        assert middle > 0 and traffic.ok > middle  # requests flowed through both switches
        rec = Registry(state).get("ep")
        assert rec["model"] == str(old.resolve()) and rec["previous"]["model"] == str(new.resolve())
        assert not process_alive(blue["pid"], blue["create_time"])  # the first server drained
    finally:
        main(["delete", "ep", *common])
