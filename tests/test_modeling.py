from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from intentkit import fsutil
from intentkit.errors import ModelError, OutputExistsError
from intentkit.modeling import (
    dropout_overrides,
    load_config,
    load_tokenizer,
    model_max_length,
    resolve_model,
)


def test_aliases_resolve_offline() -> None:
    assert resolve_model("modernbert-base") == "answerdotai/ModernBERT-base"
    assert resolve_model(None) == "answerdotai/ModernBERT-base"
    assert resolve_model("modernbert-large") == "answerdotai/ModernBERT-large"
    minilm = Path(resolve_model("minilm"))
    assert (minilm / "config.json").is_file() and (minilm / "model.safetensors").is_file()


def test_local_folder_wins_and_is_validated(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir.resolve())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="no such folder"):
        resolve_model("./does/not/exist")


def test_unreachable_hub_fails_fast_with_the_way_forward() -> None:
    start = time.monotonic()
    with pytest.raises(ModelError) as err:
        load_tokenizer("modernbert-base")
    assert time.monotonic() - start < 30  # not huggingface_hub's ~50 s of retries
    msg = str(err.value)
    assert "--model minilm" in msg and "local model folder" in msg and "\n" not in msg


def test_minilm_tokenizer_and_limits() -> None:
    tok = load_tokenizer("minilm")
    cfg = load_config("minilm")
    assert tok("what time is my flight ?")["input_ids"][0] == tok.cls_token_id
    assert model_max_length(tok, cfg) == 512


def test_dropout_maps_to_each_family(tiny_model_dir: Path) -> None:
    modern = load_config(str(tiny_model_dir))
    assert dropout_overrides(modern, 0.3) == {
        "attention_dropout": 0.3,
        "embedding_dropout": 0.3,
        "mlp_dropout": 0.3,
        "classifier_dropout": 0.3,
    }
    bert = dropout_overrides(load_config("minilm"), 0.2)
    assert bert["hidden_dropout_prob"] == 0.2 and bert["attention_probs_dropout_prob"] == 0.2
    assert "mlp_dropout" not in bert
    assert dropout_overrides(modern, None) == {}


def test_atomic_dir_keeps_old_content_on_error_and_normal_modes(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), fsutil.atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("boom")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with fsutil.atomic_dir(target) as tmp:
        fsutil.atomic_write_json(tmp / "a.json", {"x": 1})
    assert [p.name for p in target.iterdir()] == ["a.json"]
    # Not mkdtemp's 0700 / mkstemp's 0600: other users and containers can read artifacts.
    assert stat.S_IMODE(target.stat().st_mode) & 0o055 == 0o055
    assert stat.S_IMODE((target / "a.json").stat().st_mode) & 0o044 == 0o044


def test_check_output_dir_refuses_non_empty(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("data")
    with pytest.raises(OutputExistsError, match="--force"):
        fsutil.check_output_dir(tmp_path, force=False)
    assert fsutil.check_output_dir(tmp_path, force=True) == tmp_path
    with pytest.raises(OutputExistsError, match="is a file"):
        fsutil.check_output_dir(tmp_path / "x", force=True)
