"""Shape buckets for CUDA serving, forced on here on CPU: the arithmetic, no filler row in any
result, and one warm-up forward per bucket at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from intentkit.config import ServeConfig
from intentkit.errors import ConfigError
from intentkit.export.loader import load_predictor
from intentkit.inference import buckets
from intentkit.inference.buckets import BucketPolicy, batch_sizes, round_up, widths
from intentkit.inference.padding import pad_rows
from intentkit.inference.predictor import Predictor
from intentkit.serve.app import create_app
from serve_helpers import SAMPLE_TEXTS, make_artifact, running, wait_ready


class CountingModel:
    """Stands in for ``predictor.model``: records each forward's input shape, then delegates."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.shapes: list[tuple[int, int]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.shapes.append(tuple(kwargs["input_ids"].shape))
        return self.inner(**kwargs)

    def __getattr__(self, name: str) -> Any:  # base_model for the feature hook, config, ...
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tiny_model_dir, tmp_path_factory.mktemp("art"), max_length=32)


def _load(artifact: Path) -> Predictor:
    return load_predictor(artifact, device="cpu", backend="torch")


def test_batch_sizes_and_widths() -> None:
    assert batch_sizes(1) == (1,)
    assert batch_sizes(32) == (1, 2, 4, 8, 16, 32)
    assert batch_sizes(48) == (1, 2, 4, 8, 16, 32, 48)
    assert widths(64) == (16, 32, 48, 64)
    assert widths(40) == (16, 32, 40)  # capped at max_length, never past it
    assert widths(8) == (8,)
    assert [round_up(n, (1, 2, 4, 8)) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 9]
    with pytest.raises(ValueError):
        batch_sizes(0)


def test_pad_to_bucket_with_filler_rows() -> None:
    policy = BucketPolicy.for_serving(max_length=32, max_batch_size=8)
    rows = [[5] * 5, [6] * 17, [7] * 2]
    ids, mask = policy.pad(rows, pad_id=0)
    assert ids.shape == mask.shape == (4, 32)
    plain_ids, plain_mask = pad_rows(rows, 0, width=32)
    np.testing.assert_array_equal(ids[:3], plain_ids)
    np.testing.assert_array_equal(mask[:3], plain_mask)
    # The filler row attends to one pad token only: never fully masked (no NaN softmax).
    assert ids[3].tolist() == [0] * 32 and mask[3].tolist() == [1] + [0] * 31
    assert policy.shape(8, 32) == (8, 32) and policy.shape(1, 1) == (1, 16)


def test_reachable_shapes_respect_the_token_budget() -> None:
    policy = BucketPolicy.for_serving(max_length=64, max_batch_size=32, max_batch_tokens=256)
    shapes = set(policy.reachable())
    assert (1, 64) in shapes  # one long text always gets its own batch
    assert (32, 16) in shapes  # 17 rows x 1 token fit 256
    assert (32, 32) not in shapes  # 17 rows x 17 tokens = 289 > 256: the batcher never sends it
    assert (16, 32) in shapes  # 9 x 17 = 153
    unbounded = BucketPolicy.for_serving(max_length=64, max_batch_size=32)
    assert len(unbounded.reachable()) == 6 * 4


def test_bucketed_forward_drops_filler_rows(artifact: Path) -> None:
    plain, bucketed = _load(artifact), _load(artifact)
    buckets.enable(bucketed, BucketPolicy.for_serving(plain.max_length, 8))
    counting = bucketed.model = CountingModel(bucketed.model)
    ids = plain.encode(SAMPLE_TEXTS[:3])
    got, cls = bucketed.forward(ids, features=True)
    want, want_cls = plain.forward(ids, features=True)
    assert counting.shapes == [(4, 16)]  # 3 rows -> 4, longest row -> width 16
    assert got.shape == want.shape and cls.shape == want_cls.shape  # 3 rows, not 4
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(cls, want_cls, atol=1e-5)
    # The whole predict path, in input order, over several batches of mixed lengths.
    texts = SAMPLE_TEXTS * 3
    np.testing.assert_allclose(bucketed.logits(texts, 5), plain.logits(texts, 5), atol=1e-5)
    assert all(s[0] in bucketed.buckets.sizes and s[1] in (16, 32) for s in counting.shapes)


def test_warm_runs_one_forward_per_bucket(artifact: Path) -> None:
    predictor = _load(artifact)
    policy = BucketPolicy.for_serving(predictor.max_length, 8)
    counting = predictor.model = CountingModel(predictor.model)
    assert buckets.warm(predictor) == 0  # no policy: nothing to warm (CPU default)
    assert buckets.warm(predictor, policy) == 8 == len(counting.shapes)
    assert sorted(counting.shapes) == sorted(policy.reachable())


def test_cpu_serving_is_unchanged_by_default(artifact: Path) -> None:
    predictor = _load(artifact)
    assert buckets.prepare_for_serving(predictor, ServeConfig()) is None
    assert predictor.buckets is None
    # Forced on with --compile on a CPU: buckets yes, compile no (CUDA only), with a warning.
    policy = buckets.prepare_for_serving(predictor, ServeConfig(buckets=True, compile=True))
    assert policy is not None and predictor.buckets is policy
    assert not hasattr(predictor.model, "_compiled_call_impl") or (
        predictor.model._compiled_call_impl is None
    )
    with pytest.raises(ConfigError, match="--compile-mode"):
        ServeConfig(compile_mode="fast")


def test_server_warms_every_bucket_before_ready(artifact: Path) -> None:
    predictor, plain = _load(artifact), _load(artifact)
    counting = predictor.model = CountingModel(predictor.model)
    cfg = ServeConfig(buckets=True, max_batch_size=4, max_wait_ms=20)
    with running(create_app(cfg, loader=lambda: predictor)) as srv:
        wait_ready(srv.url)
        warmed = len(counting.shapes)
        assert warmed == len(BucketPolicy.for_serving(32, 4).reachable()) == 3 * 2
        texts = SAMPLE_TEXTS[:3]
        r = httpx.post(f"{srv.url}/predict", json={"inputs": texts, "raw_scores": True})
        assert r.status_code == 200
        body = r.json()
        assert len(body) == 3  # one answer per text: no filler row leaked
        want = plain.logits(texts)
        for row, answer in zip(want, body, strict=True):
            top = max(answer, key=lambda s: s["score"])
            assert top["label"] == plain.labels[int(np.argmax(row))]
            assert top["score"] == pytest.approx(float(row.max()), abs=1e-4)
        assert set(counting.shapes[warmed:]) <= set(BucketPolicy.for_serving(32, 4).reachable())
