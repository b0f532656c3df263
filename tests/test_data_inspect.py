"""`intentkit data inspect`: tables, plots, inspect.json and the max_length recommendation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from figure_helpers import distinct_colours
from intentkit.cli import main
from intentkit.data.inspect import inspect
from intentkit.data.lengths import p99_max_length, recommend_max_length, token_lengths
from intentkit.data.prepare import prepare
from intentkit.errors import DataError


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from intentkit.modeling import load_tokenizer

    return load_tokenizer("minilm")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, keywords_jsonl: Path) -> Path:
    out = tmp_path_factory.mktemp("inspect") / "data"
    prepare(str(keywords_jsonl), out)
    return out


def test_cli_inspect_falls_back_to_minilm_and_writes_outputs(
    prepared: Path, capsys: pytest.CaptureFixture
) -> None:
    # The default model (modernbert-base) is not available offline: inspect warns and goes on.
    assert main(["data", "inspect", str(prepared), "--top-n", "2"]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err and "--model minilm" in captured.err
    assert "recommended --max-length" in captured.out
    assert "2 of 3 labels" in captured.out
    for name in ("label_distribution.png", "token_lengths.png"):
        png = prepared / name
        assert png.stat().st_size > 10_000, name
        assert distinct_colours(png) > 50, name
    report = json.loads((prepared / "inspect.json").read_text())
    assert report["model"] == "minilm"
    assert report["recommended_max_length"] % 8 == 0
    assert 8 <= report["recommended_max_length"] <= report["model_max_length"] == 512
    assert set(report["token_lengths"]) == {"train", "test", "all"}
    assert set(report["token_lengths"]["all"]) >= {"p50", "p90", "p99", "max"}
    assert report["imbalance_ratio"] >= 1
    stats = json.loads((prepared / "stats.json").read_text())
    assert report["fingerprint"] == stats["fingerprint"]


def test_explicit_model_that_fails_is_an_error(prepared: Path, capsys) -> None:
    assert main(["data", "inspect", str(prepared), "--model", "./no-such-model"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "--model minilm" in err


def test_inspect_api_with_local_model_and_warning_hook(
    prepared: Path, tiny_model_dir: Path
) -> None:
    warnings: list[str] = []
    result = inspect(prepared, model=str(tiny_model_dir), top_n=0, on_warning=warnings.append)
    assert not warnings
    assert result["model_max_length"] == 128  # the tiny model's limit caps the recommendation
    assert result["recommended_max_length"] % 8 == 0
    inspect(prepared, on_warning=warnings.append)
    assert len(warnings) == 1 and "--model minilm" in warnings[0]


def test_inspect_on_a_folder_that_is_not_prepared(tmp_path: Path, capsys) -> None:
    assert main(["data", "inspect", str(tmp_path / "nothing")]) == 2
    assert "intentkit data prepare" in capsys.readouterr().err


def test_token_lengths_ignore_saved_truncation(minilm_tokenizer) -> None:
    # The packaged MiniLM tokenizer is saved with truncation at 128: lengths must still be true.
    long_text = " ".join(["flight"] * 300)
    lengths = token_lengths(["hi", long_text], minilm_tokenizer, batch_size=1)
    assert lengths[0] == 3 and lengths[1] == 302  # [CLS] ... [SEP]


def test_recommend_max_length(minilm_tokenizer) -> None:
    texts = [" ".join(["word"] * (i % 20 + 1)) for i in range(1000)]
    lengths = token_lengths(texts, minilm_tokenizer)
    p99 = int(np.percentile(lengths, 99, method="higher"))
    rec = recommend_max_length(texts, minilm_tokenizer, limit=512)
    assert rec % 8 == 0 and rec >= p99 and rec - p99 < 8
    assert recommend_max_length(texts, minilm_tokenizer, limit=12) == 8  # capped, still x8
    assert recommend_max_length(["a"] * 10, minilm_tokenizer, limit=512) == 8  # floor of 8


def test_p99_max_length_rounds_up_to_8() -> None:
    assert p99_max_length([5] * 90 + [13] * 10, 512) == 16
    assert p99_max_length(list(range(1, 301)), 64) == 64  # capped by the model
    assert p99_max_length([3], 512) == 8
    with pytest.raises(DataError):
        p99_max_length([], 512)
