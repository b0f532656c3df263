"""Stratified, seeded splitting: the one rule for test, validation and ``--val-size`` splits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2  #: split codes returned by :func:`stratified_split`


SPLIT_NAMES = np.array(["train", "val", "test"], dtype=object)  #: indexed by split code


def _quota(counts: np.ndarray, share: float, cap: np.ndarray, rng: np.random.Generator) -> Any:
    """Rows per label for a held-out split: floor or ceil of ``counts*share``, never above ``cap``.

    Largest-remainder rounding (random tie-break) makes the total match ``share`` of all rows
    while every label stays within one row of its own target.
    """
    target = counts * share
    base = np.minimum(np.floor(target).astype(np.int64), cap)
    frac = target - np.floor(target)
    extra = int(round(counts.sum() * share)) - int(base.sum())
    order = np.lexsort((rng.random(len(counts)), -frac))  # last key sorts first
    order = order[((base < cap) & (frac > 0))[order]]
    base[order[: max(extra, 0)]] += 1
    return base


def stratified_split(
    labels: Sequence[str] | Any, *, test_size: float, val_size: float = 0.0, seed: int = 42
) -> np.ndarray:
    """Assign each row to TRAIN/VAL/TEST so that every label keeps the target shares.

    Each label gets ``floor`` or ``ceil`` of ``n*test_size`` test rows (and likewise for val),
    keeps at least one train row, and the same ``seed`` and input give the same split.
    Returns an int8 array of split codes aligned with ``labels``.
    """
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(labels, dtype="str"), sort=True)
    n, k = len(codes), len(uniques)
    rng = np.random.default_rng(seed)
    counts = np.bincount(codes, minlength=k)
    q_test = _quota(counts, test_size, counts - 1, rng)
    q_val = _quota(counts, val_size, counts - 1 - q_test, rng) if val_size > 0 else 0 * counts
    # Shuffle, then group by label (stable): a row's rank inside its label is random.
    order = rng.permutation(n)
    order = order[np.argsort(codes[order], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[codes[order]]
    out = np.full(n, TRAIN, dtype=np.int8)
    out[rank < q_test[codes]] = TEST
    out[(rank >= q_test[codes]) & (rank < (q_test + q_val)[codes])] = VAL
    return out


def split_frame(frame: Any, share: float, seed: int) -> tuple[Any, Any]:
    """Split a ``text``/``label`` frame into (rest, held-out ``share``), :func:`stratified_split`.

    ``intentkit train --val-size`` carves its validation split from train with this when the
    prepared folder has none.
    """
    codes = stratified_split(frame["label"], test_size=share, seed=seed)
    return (
        frame[codes == TRAIN].reset_index(drop=True),
        frame[codes == TEST].reset_index(drop=True),
    )
