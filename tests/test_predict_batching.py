"""Predictor: batched equals single, per-batch padding, dtype rules, decide shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from intentkit.errors import ConfigError
from intentkit.inference.predictor import Predictor, resolve_dtype
from intentkit.serve.batcher import plan_batches
from serve_helpers import LABELS, REJECT_ALL, make_artifact

TEXTS = [
    "hi",
    "what time is my flight ?",
    "where is the gate of my flight ? i cannot find it on the board anywhere",
    "bags",
    "where can i store my bags ?",
]


@pytest.fixture(scope="module")
def predictor(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    art = make_artifact(tiny_model_dir, tmp_path_factory.mktemp("art"), calibration=REJECT_ALL)
    return Predictor.from_dir(art, device="cpu")


def test_batched_logits_equal_one_at_a_time(predictor: Predictor) -> None:
    batched = predictor.logits(TEXTS, batch_size=64)
    single = np.concatenate([predictor.logits([t]) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    # Rows come back in input order even though batches are length-sorted.
    np.testing.assert_allclose(predictor.logits(TEXTS[::-1]), batched[::-1], atol=1e-5)


def test_forward_ids_pads_to_the_batch_longest_only(predictor: Predictor) -> None:
    ids = predictor.encode(TEXTS)
    assert all(len(x) <= predictor.max_length for x in ids)
    seen = {}
    orig = predictor.model.forward

    def spy(**kw):
        seen["shape"] = tuple(kw["input_ids"].shape)
        return orig(**kw)

    predictor.model.forward = spy
    try:
        logits, oos_score = predictor.forward_ids([ids[0], ids[3]])
    finally:
        del predictor.model.forward
    assert seen["shape"] == (2, max(len(ids[0]), len(ids[3])))
    assert logits.shape == (2, len(predictor.labels))
    assert oos_score is None  # the softmax scorer reads no features


def test_decide_reject_and_no_reject(predictor: Predictor) -> None:
    logits = predictor.logits(TEXTS)
    rejected = predictor.decide(logits, top_k=2)
    assert all(a["label"] == "out_of_scope" for a in rejected)
    assert all(len(a["scores"]) == 2 for a in rejected)
    answered = predictor.decide(logits, top_k=None, reject=False)
    assert all(a["label"] in LABELS and len(a["scores"]) == 3 for a in answered)
    assert all(a["label"] == a["scores"][0]["label"] for a in answered)


def test_dtype_rules() -> None:
    import torch

    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("auto", "cuda") is torch.bfloat16
    with pytest.raises(ConfigError, match="needs a GPU"):
        resolve_dtype("bf16", "cpu")
    with pytest.raises(ConfigError, match="--dtype"):
        resolve_dtype("int4", "cpu")


def test_plan_batches_respects_budget_and_sorts() -> None:
    lengths = [30, 5, 7, 30, 6, 100]
    plan = plan_batches(lengths, max_batch_tokens=64, max_batch_size=3)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(6))
    assert [lengths[i] for i in flat] == sorted(lengths)
    for b in plan:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 64
    assert plan[-1] == [5]  # longer than the budget alone: its own batch


def test_plan_batches_splits_before_padding_on_cpu() -> None:
    lengths = [10] * 8 + [11] * 8 + [30]
    whole = plan_batches(lengths, max_batch_tokens=10_000, max_batch_size=256)
    assert len(whole) == 1  # split_tokens=0 (GPU): one forward, padded to 30
    split = plan_batches(lengths, max_batch_tokens=10_000, max_batch_size=256, split_tokens=64)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in split)
    assert padded < 17 * 30 and len(split) == 3  # 8x10, 8x11, 1x30 instead of 17x30
    # Equal lengths never split (no padding to save).
    assert (
        len(plan_batches([7] * 40, max_batch_tokens=10_000, max_batch_size=256, split_tokens=16))
        == 1
    )
