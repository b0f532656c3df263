"""The promote gate: real models on the same rows, McNemar on the frozen test split."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from intentkit.loop.gate import gate
from serve_helpers import make_artifact


@pytest.fixture(scope="module")
def gate_data(kw_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The keyword data plus a reviewed_test slice (its val rows, as `data add` would write)."""
    import pandas as pd

    out = tmp_path_factory.mktemp("gate") / "data"
    shutil.copytree(kw_data, out)
    pd.read_parquet(kw_data / "val.parquet").to_parquet(out / "reviewed_test.parquet")
    return out


@pytest.fixture(scope="module")
def untrained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same labels on a random head: about chance on every split."""
    return make_artifact(
        tiny_model_dir, tmp_path_factory.mktemp("untrained"), labels=["car", "flight", "hotel"]
    )


def test_trained_model_passes_over_an_untrained_one(
    untrained: Path, kw_model: Path, gate_data: Path
) -> None:
    verdict = gate(untrained, kw_model, gate_data)
    assert verdict["passed"], verdict["reasons"]
    r = verdict["reviewed_test"]
    assert r["rows"] == 30 and r["accuracy_new"] > r["accuracy_old"]
    assert verdict["test"]["c"] > verdict["test"]["b"]  # the new one fixes more than it breaks


def test_worse_model_is_refused_with_the_p_value(
    untrained: Path, kw_model: Path, gate_data: Path
) -> None:
    verdict = gate(kw_model, untrained, gate_data)
    assert not verdict["passed"]
    assert verdict["test"]["p_value"] < 0.05
    assert any("significantly worse" in r and "McNemar p" in r for r in verdict["reasons"])


def test_same_model_is_not_better_and_no_slice_is_refused(
    kw_model: Path, gate_data: Path, kw_data: Path
) -> None:
    same = gate(kw_model, kw_model, gate_data)
    assert same["test"]["b"] == same["test"]["c"] == 0 and same["test"]["p_value"] == 1.0
    assert not same["passed"] and "not better on reviewed_test" in same["reasons"][0]
    no_slice = gate(kw_model, kw_model, kw_data)
    assert not no_slice["passed"] and "no reviewed_test rows" in no_slice["reasons"][0]
