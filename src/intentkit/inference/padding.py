"""Pad token-id rows into ``input_ids`` + ``attention_mask``: one rule for training batches, the
predictor and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_rows(
    rows: Sequence[Sequence[int]], pad_id: int, *, width: int | None = None, multiple: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad ``rows`` to ``width`` (default: the longest row) rounded up to ``multiple``.

    Returns int64 ``(input_ids, attention_mask)`` of shape (len(rows), width). Filled in numpy:
    a per-row ``torch.tensor`` costs ~10 us each at batch 256. Rows longer than ``width`` are
    cut (the reference recipe pads and truncates every row to 64).
    """
    longest = max((len(r) for r in rows), default=0)
    width = longest if width is None else int(width)
    step = max(1, int(multiple))
    width = -(-width // step) * step
    ids = np.full((len(rows), width), int(pad_id), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        n = min(len(row), width)
        ids[i, :n] = row[:n]
        mask[i, :n] = 1
    return ids, mask
