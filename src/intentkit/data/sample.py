"""Few-shot training sets: ``intentkit data sample DATA_DIR --per-label K --seed S --out DIR``.

A new prepared folder (:mod:`intentkit.data.dataset`) drawn from a parent, never an edit of it:

- **train**: K rows per label, seeded and stratified; a label with fewer than K train rows keeps
  them all and is listed in ``stats.json`` (``sample.short_labels``) and on the console.
- **val**: the parent's val split sampled the same way (``min(K, available)`` rows per label);
  when the parent has no val split, ``min(K, remaining)`` rows per label are carved from the
  train rows *not* chosen for train, so val never overlaps train. A label with no row left gets
  no val rows (listed as ``sample.labels_without_val``).
- **test**: copied as is, so every K and seed is scored on the same official rows.

The same parent, K and seed give the same rows: each split is shuffled with one
``numpy.random.default_rng(seed)`` and the first K rows of each label are kept. ``stats.json``
keeps the parent's record and adds ``sample`` (parent path and fingerprint, K, seed, rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from intentkit.data.dataset import load_prepared
from intentkit.data.prepare import _rows_sha256, _write
from intentkit.errors import ConfigError
from intentkit.fsutil import check_output_dir

RULE = (
    "train: {k} rows per label (seeded shuffle, first K per label; fewer kept whole); "
    "val: min({k}, available) per label from {val_from}; test: copied unchanged"
)


def take_per_label(frame: Any, k: int, rng: np.random.Generator) -> tuple[Any, Any]:
    """Split ``frame`` (text/label) into (``k`` random rows of each label, the rest).

    A label with fewer than ``k`` rows goes whole into the first part. Row order inside each
    part follows the random draw, so the result depends only on ``frame``, ``k`` and ``rng``.
    """
    shuffled = frame.iloc[rng.permutation(len(frame))]
    chosen = (shuffled.groupby("label", sort=False).cumcount() < k).to_numpy()
    return shuffled[chosen].reset_index(drop=True), shuffled[~chosen].reset_index(drop=True)


def sample(
    data_dir: str | Path, out: str | Path, *, per_label: int, seed: int = 42, force: bool = False
) -> dict[str, Any]:
    """Write ``out``: ``per_label`` train (and val) rows per label of ``data_dir``; test as is.

    Returns the new ``stats.json`` (rules in the module docstring).
    """
    if per_label < 1:
        raise ConfigError(f"--per-label must be at least 1, got {per_label}; pass e.g. 5")
    parent = load_prepared(data_dir)  # DataError naming DATA_DIR when it is missing
    out = check_output_dir(out, force=force)
    if Path(out).resolve() == Path(data_dir).resolve():
        raise ConfigError("--out must differ from DATA_DIR: data sample writes a new folder")
    rng = np.random.default_rng(seed)
    train, rest = take_per_label(parent.train, per_label, rng)
    val_source, val_from = (
        (parent.val, "the parent's val split")
        if parent.val is not None
        else (rest, "train rows not chosen for train")
    )
    val, _ = take_per_label(val_source, per_label, rng)
    frames = {"train": train, "test": parent.test}
    if len(val):
        frames["val"] = val
    train_counts = train["label"].value_counts()
    short = {str(k): int(v) for k, v in train_counts.sort_index().items() if v < per_label}
    missing_val = sorted(set(parent.labels) - set(val["label"]))
    stats = {
        **parent.stats,
        "rows": {s: len(f) for s, f in frames.items()},
        "label_counts": {
            s: {str(k): int(v) for k, v in f["label"].value_counts().sort_index().items()}
            for s, f in frames.items()
        },
        "fingerprint": _rows_sha256(frames),
        "parent": {"path": str(Path(data_dir).resolve()), "fingerprint": parent.fingerprint},
        "sample": {
            "per_label": per_label,
            "seed": seed,
            "short_labels": short,
            "labels_without_val": missing_val,
            "rule": RULE.format(k=per_label, val_from=val_from),
        },
    }
    _write(Path(out), frames, list(parent.labels), stats)
    return stats
