"""Token lengths and the one ``max_length`` rule (99th percentile rounded up to 8)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.errors import DataError


def token_lengths(texts: Sequence[str], tokenizer: Any, batch_size: int = 8192) -> np.ndarray:
    """Token counts (special tokens included, no truncation) of ``texts``, in batches.

    Uses the Rust tokenizer's batch encoder on a copy with truncation and padding off, so a
    tokenizer saved with ``truncation=128`` still reports true lengths.
    """
    texts = list(texts)
    out = np.empty(len(texts), dtype=np.int64)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        from tokenizers import Tokenizer

        fast = Tokenizer.from_str(backend.to_str())
        fast.no_truncation()
        fast.no_padding()
        for i in range(0, len(texts), batch_size):
            encs = fast.encode_batch_fast(texts[i : i + batch_size], add_special_tokens=True)
            out[i : i + len(encs)] = [len(e) for e in encs]
        return out
    for i in range(0, len(texts), batch_size):  # slow tokenizers: still one call per batch
        ids = tokenizer(texts[i : i + batch_size], truncation=False)["input_ids"]
        out[i : i + len(ids)] = [len(x) for x in ids]
    return out


def p99_max_length(lengths: Any, limit: int) -> int:
    """The ``max_length`` rule: the 99th percentile of token lengths (numpy's ``higher`` method,
    so it is a length that occurs) rounded up to a multiple of 8, within [8, ``limit`` // 8 * 8].

    Longer texts (about 1 %) are truncated; multiples of 8 suit tensor cores.
    """
    arr = np.asarray(lengths, dtype=np.int64)
    if arr.size == 0:
        raise DataError("no texts to measure; prepare a dataset first")
    p99 = int(np.percentile(arr, 99, method="higher"))
    cap = max(8, limit // 8 * 8)
    return int(min(max(8, -(-p99 // 8) * 8), cap))


def recommend_max_length(texts: Sequence[str], tokenizer: Any, limit: int) -> int:
    """:func:`p99_max_length` of ``texts`` measured with ``tokenizer``."""
    return p99_max_length(token_lengths(texts, tokenizer), limit)


def length_percentiles(lengths: np.ndarray) -> dict[str, float]:
    """p50/p90/p99/max (lengths that occur) and the mean, for ``inspect.json``."""
    if not len(lengths):
        return {}
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99], method="higher")
    return {
        "p50": int(p50),
        "p90": int(p90),
        "p99": int(p99),
        "max": int(lengths.max()),
        "mean": round(float(lengths.mean()), 2),
    }


def max_length_for(data_dir: Path, texts: Sequence[str], tokenizer: Any, limit: int) -> int:
    """``max_length`` for training: the prepared folder's ``inspect.json`` recommendation when
    it has one (``intentkit data inspect`` wrote it), else :func:`recommend_max_length`.
    """
    inspect_file = Path(data_dir) / "inspect.json"
    if inspect_file.is_file():
        try:
            value = json.loads(inspect_file.read_text("utf-8")).get("recommended_max_length")
        except json.JSONDecodeError:
            value = None
        if isinstance(value, int) and value >= 8:
            return min(value, limit)
    return recommend_max_length(list(texts), tokenizer, limit)
