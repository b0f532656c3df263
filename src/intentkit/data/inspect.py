"""``intentkit data inspect``: label balance, token lengths, two plots and ``inspect.json``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.data.lengths import length_percentiles, p99_max_length, token_lengths
from intentkit.errors import ModelError
from intentkit.fsutil import atomic_write_json

log = logging.getLogger(__name__)


def _inspect_tokenizer(model: str | None, warn: Callable[[str], None]) -> tuple[Any, str]:
    from intentkit import modeling

    try:
        return modeling.load_tokenizer(model), model or modeling.DEFAULT_MODEL
    except ModelError as exc:
        if model is not None:  # an explicit choice fails loudly, no fallback
            raise
        warn(
            f"the default tokenizer ({modeling.DEFAULT_MODEL}) cannot be loaded, so lengths are "
            "measured with --model minilm instead (token counts differ between tokenizers); pass "
            f"--model NAME for the model you will train. Cause: {exc}"
        )
        return modeling.load_tokenizer("minilm"), "minilm"


def inspect(
    path: str | Path,
    model: str | None = None,
    top_n: int = 20,
    *,
    on_warning: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Label balance and token lengths of a prepared folder; writes plots and ``inspect.json``.

    ``model`` picks the tokenizer (default modernbert-base, falling back to minilm with a warning
    when it cannot be loaded). Returns what ``inspect.json`` holds: per-label counts, imbalance
    ratio, token-length percentiles per split and the recommended ``max_length``.
    """
    from intentkit import modeling
    from intentkit.data import plots
    from intentkit.data.dataset import load_prepared

    ds = load_prepared(path)
    tokenizer, used = _inspect_tokenizer(model, on_warning or log.warning)
    try:
        config = modeling.load_config(used)
    except ModelError:
        config = None
    limit = modeling.model_max_length(tokenizer, config)
    splits = {s: ds.split(s) for s in ("train", "val", "test") if getattr(ds, s) is not None}
    lengths = {s: token_lengths(f["text"].tolist(), tokenizer) for s, f in splits.items()}
    every = np.concatenate(list(lengths.values()))
    recommended = p99_max_length(every, limit)
    counts = {
        s: {str(k): int(v) for k, v in f["label"].value_counts().items()} for s, f in splits.items()
    }
    train_counts = counts["train"].values()
    out = Path(path)
    result: dict[str, Any] = {
        "model": used,
        "model_max_length": limit,
        "recommended_max_length": recommended,
        "truncated_share": round(float((every > recommended).mean()), 6),
        "token_lengths": {**{s: length_percentiles(v) for s, v in lengths.items()}},
        "rows": {s: len(f) for s, f in splits.items()},
        "num_labels": len(ds.labels),
        "imbalance_ratio": round(max(train_counts) / min(train_counts), 3),
        "label_counts": counts,
        "fingerprint": ds.fingerprint,
        "plots": ["label_distribution.png", "token_lengths.png"],
    }
    result["token_lengths"]["all"] = length_percentiles(every)
    plots.label_distribution(counts, out / "label_distribution.png", top_n=top_n)
    plots.token_length_histogram(lengths, out / "token_lengths.png", max_length=recommended)
    atomic_write_json(out / "inspect.json", result)
    return result
