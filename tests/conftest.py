"""Shared fixtures: a tiny random-init ModernBERT saved once per session, small datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aws_helpers import aws, moto_url, standin, standin_server  # noqa: F401 - fixtures for the SageMaker tests
from browser_helpers import browser, page  # noqa: F401 - a real Chromium for page tests

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _offline_env() -> None:
    # Tests never touch a hub; fail fast instead of waiting on a closed network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_tiny_modernbert(path: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Save a random-init ModernBERT encoder + the MiniLM WordPiece tokenizer into ``path``."""
    import torch
    from transformers import AutoTokenizer, ModernBertConfig, ModernBertModel

    from intentkit.modeling import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    cfg = ModernBertConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        max_position_embeddings=128,
        local_attention=16,
        pad_token_id=tok.pad_token_id,
        cls_token_id=tok.cls_token_id,
        sep_token_id=tok.sep_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
    )
    torch.manual_seed(seed)
    model = ModernBertModel(cfg)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.model_max_length = 128
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init ModernBERT encoder folder (no classification head yet)."""
    return make_tiny_modernbert(tmp_path_factory.mktemp("tiny-modernbert"))


@pytest.fixture(scope="session")
def keywords_jsonl() -> Path:
    """3-label fixture separable by one keyword per label (flight / hotel / car)."""
    return FIXTURES / "keywords.jsonl"


@pytest.fixture(scope="session")
def kw_data(tmp_path_factory: pytest.TempPathFactory, keywords_jsonl: Path) -> Path:
    """The keyword fixture as a prepared folder (train/val/test 120/30/30)."""
    from train_helpers import keywords_prepared

    return keywords_prepared(keywords_jsonl, tmp_path_factory.mktemp("kw") / "data")


@pytest.fixture(scope="session")
def kw_model(tmp_path_factory: pytest.TempPathFactory, kw_data: Path, tiny_model_dir: Path) -> Path:
    """The tiny ModernBERT trained on the keyword fixture (once per session; treat read-only)."""
    from intentkit.training.train import train
    from train_helpers import FAST

    out = tmp_path_factory.mktemp("kw-model") / "model"
    return train(kw_data, out, model=str(tiny_model_dir), **FAST)
