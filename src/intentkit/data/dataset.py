"""The prepared dataset on disk: the contract between ``data prepare`` and everything after it.

A prepared folder holds ``train.parquet``, ``test.parquet`` and optionally ``val.parquet`` (columns
``text`` and ``label``, both strings), ``labels.json`` (the sorted label list) and ``stats.json``
(counts, what was dropped and why, and the source fingerprint).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intentkit.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class PreparedDataset:
    """A loaded prepared-dataset folder. ``val`` is None when the folder has no val split."""

    path: Path
    train: Any  # pandas.DataFrame with columns text, label
    test: Any
    val: Any | None
    labels: list[str]
    stats: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Any:
        """Return the DataFrame of split ``name`` or a DataError naming the existing splits."""
        frame = getattr(self, name, None) if name in SPLITS else None
        if frame is None:
            have = [s for s in SPLITS if getattr(self, s) is not None]
            raise DataError(f"--split {name}: no such split in {self.path}; have {', '.join(have)}")
        return frame

    @property
    def fingerprint(self) -> str | None:
        """sha256 of the prepared rows recorded by ``data prepare`` (None if absent)."""
        return self.stats.get("fingerprint")


def load_prepared(path: str | Path) -> PreparedDataset:
    """Load and validate a folder written by ``intentkit data prepare``."""
    import pandas as pd

    path = Path(path)
    if not path.is_dir():
        raise DataError(f"--data {path}: no such folder; create it with `intentkit data prepare`")
    required = ("labels.json", "train.parquet", "test.parquet")
    missing = [n for n in required if not (path / n).is_file()]
    if missing:
        raise DataError(
            f"--data {path}: missing {', '.join(missing)}; (re)create it with "
            "`intentkit data prepare SOURCE --out DIR`"
        )
    labels = json.loads((path / "labels.json").read_text("utf-8"))
    stats_file = path / "stats.json"
    stats = json.loads(stats_file.read_text("utf-8")) if stats_file.is_file() else {}
    frames = {}
    for split in SPLITS:
        f = path / f"{split}.parquet"
        if f.is_file():
            df = pd.read_parquet(f)
            if not {"text", "label"} <= set(df.columns):
                raise DataError(f"{f}: expected columns text and label, found {list(df.columns)}")
            frames[split] = df.reset_index(drop=True).astype({"text": str, "label": str})
    return PreparedDataset(
        path=path,
        train=frames["train"],
        test=frames["test"],
        val=frames.get("val"),
        labels=list(labels),
        stats=stats,
    )
