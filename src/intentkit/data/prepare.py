"""Prepare a dataset: clean, dedupe, split and write the folder training reads.

``prepare`` turns any source (see :mod:`intentkit.data.sources`) into the folder that
:func:`intentkit.data.dataset.load_prepared` reads;
``intentkit data inspect`` (:mod:`intentkit.data.inspect`) adds statistics and plots.
All work is vectorised (pandas on Arrow strings, numpy) so a million rows take seconds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.config import DataConfig, to_dict
from intentkit.data.split import SPLIT_NAMES, stratified_split
from intentkit.errors import ConfigError, DataError
from intentkit.fsutil import atomic_dir, atomic_write_json, check_output_dir

log = logging.getLogger(__name__)

DROP_REASONS = (
    "empty_text",  # blank after stripping whitespace
    "null_label",  # label missing or blank
    "duplicate",  # same text and label again in the same split
    "conflicting_label",  # the same text carries several labels: every copy goes
    "leakage_test",  # test text that is also in train
    "leakage_val",  # val text that is also in train or test
)


def _rows_sha256(frames: dict[str, Any]) -> str:
    """sha256 of split names, texts and labels (order included): identical data, identical hash."""
    digest = hashlib.sha256()
    for split in sorted(frames):
        digest.update(f"\x1d{split}\x1d".encode())
        for col in ("text", "label"):
            values = frames[split][col].fillna("\x00").tolist()
            digest.update("\x1f".join(values).encode("utf-8", "surrogatepass") + b"\x1e")
    return digest.hexdigest()


def _clean(df: Any, official: bool) -> tuple[Any, dict[str, dict[str, int]]]:
    """Strip, drop empty texts / null labels, duplicates, conflicting labels and leakage."""
    import pandas as pd

    dropped: dict[str, Any] = {}

    def drop(mask: Any, reason: str) -> Any:
        mask = np.asarray(mask, dtype=bool)
        dropped[reason] = df["split"][mask].value_counts().to_dict() if mask.any() else {}
        return df[~mask]

    text, label = df["text"].str.strip(), df["label"].str.strip()
    df = pd.DataFrame({"text": text, "label": label, "split": df["split"]})
    empty = (text.isna() | (text == "")).to_numpy()
    df = drop(empty, "empty_text")
    df = drop((df["label"].isna() | (df["label"] == "")).to_numpy(), "null_label")
    df = drop(df.duplicated(["split", "text", "label"]).to_numpy(), "duplicate")
    pairs = df.drop_duplicates(["text", "label"])["text"]
    conflicting = pairs[pairs.duplicated()].unique()
    df = drop(df["text"].isin(conflicting).to_numpy(), "conflicting_label")
    if official:
        in_train = df["text"].isin(df["text"][df["split"] == "train"])
        df = drop(((df["split"] == "test") & in_train).to_numpy(), "leakage_test")
        seen = df["text"][df["split"] != "val"]  # train and (already cleaned) test texts
        df = drop(((df["split"] == "val") & df["text"].isin(seen)).to_numpy(), "leakage_val")
    dropped = {
        r: {str(s): int(n) for s, n in dropped.get(r, {}).items() if n} for r in DROP_REASONS
    }
    return df, dropped


def _check_labels(df: Any, official: bool, cfg: DataConfig, dropped: dict[str, Any]) -> None:
    """Errors for data a classifier cannot learn from; each names the fix."""
    if df.empty:
        why = ", ".join(f"{sum(v.values())} {r}" for r, v in dropped.items() if v) or "no rows"
        raise DataError(
            f"no rows left after cleaning ({why}); check --text-column and --label-column"
        )
    base = df[df["split"] == "train"] if official else df
    counts = base["label"].value_counts()
    if len(counts) < 2:
        only = counts.index[0] if len(counts) else "none"
        raise DataError(
            f"only one label ({only!r}) after cleaning; a classifier needs at least two: "
            "check --label-column"
        )
    unseen = sorted(set(df["label"].unique()) - set(counts.index))
    if unseen:
        raise DataError(
            f"labels {_names(unseen)} occur in val/test but not in train; pass --resplit to "
            "pool the official splits and split them anew"
        )
    few = counts[counts < cfg.min_per_label].sort_values()
    if len(few):
        where = "train rows" if official else "rows"
        raise DataError(
            f"{len(few)} label(s) have fewer than {cfg.min_per_label} {where}: "
            f"{_names([f'{k} ({v})' for k, v in few.items()])}; add rows, remove them from the "
            f"source, or pass --min-per-label {int(few.min())}"
        )


def _names(items: Sequence[str], limit: int = 8) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _assign_splits(df: Any, official: bool, cfg: DataConfig, notes: list[str]) -> Any:
    """Split pooled rows, or carve the splits an official source lacks out of its train split."""
    if not official:
        codes = stratified_split(
            df["label"], test_size=cfg.test_size, val_size=cfg.val_size, seed=cfg.seed
        )
        return df.assign(split=SPLIT_NAMES[codes])
    have = set(df["split"].unique())
    test = cfg.test_size if "test" not in have else 0.0
    val = cfg.val_size if "val" not in have else 0.0
    if "val" in have and cfg.val_size > 0:
        notes.append("--val-size ignored: the source has its own val split (--resplit to redo)")
    if "test" in have and cfg.test_size != DataConfig.test_size:
        notes.append("--test-size ignored: the source has its own test split (--resplit to redo)")
    if test == 0 and val == 0:
        return df
    carve = (df["split"] == "train").to_numpy()
    if test == 0:  # only val to carve: reuse the splitter with val as its "test" share
        codes = stratified_split(df["label"][carve], test_size=val, seed=cfg.seed)
        names = np.array(["train", "val", "val"], dtype=object)[codes]
    else:
        codes = stratified_split(df["label"][carve], test_size=test, val_size=val, seed=cfg.seed)
        names = SPLIT_NAMES[codes]
    carved = [n for n, s in (("test", test), ("val", val)) if s]
    notes.append(f"{' and '.join(carved)} carved from the source's train split (stratified)")
    split = df["split"].to_numpy(dtype=object, copy=True)
    split[carve] = names
    return df.assign(split=split)


def prepare(
    source: str, out: str | Path, *, config: DataConfig | None = None, force: bool = False
) -> dict[str, Any]:
    """Read ``source``, clean, dedupe and split it, and write the prepared folder ``out``.

    ``source`` is a bundled name (clinc150, clinc150-travel, banking77), a CSV/TSV/JSON/JSONL/
    Parquet file, a folder saved with ``datasets.save_to_disk`` or a Hugging Face dataset id.
    Writes train/test(/val).parquet, labels.json and stats.json atomically; returns the stats.
    ``stats["fingerprint"]`` hashes the prepared rows (split, text, label), so any change to the
    data or the split changes it; ``stats["source"]["fingerprint"]`` hashes the source files'
    bytes (or, for hub/datasets sources, the rows as read).
    """
    import pandas as pd

    from intentkit import __version__
    from intentkit.data.sources import load_source

    cfg = config or DataConfig()
    out = check_output_dir(out, force=force)
    src = Path(source).expanduser().resolve()
    if force and src.exists() and out.resolve() in (src, *src.parents):
        raise ConfigError(
            f"--out {out} holds SOURCE {source} and --force would delete it; choose another --out"
        )
    raw = load_source(source, cfg)
    official = raw.official and not cfg.resplit
    if "fingerprint" not in raw.info:  # hub / datasets folder: hash the rows as read
        raw.info["fingerprint"] = _rows_sha256(raw.frames)
    source_rows = {s: len(f) for s, f in raw.frames.items()}
    df = pd.concat(
        [f.assign(split=s if official else "all") for s, f in raw.frames.items()],
        ignore_index=True,
    )
    df, dropped = _clean(df, official)
    _check_labels(df, official, cfg, dropped)
    notes = list(raw.info.pop("notes", []))
    if raw.official and cfg.resplit:
        notes.append("official splits pooled and split anew (--resplit)")
    df = _assign_splits(df, official, cfg, notes)
    frames = {s: df[df["split"] == s][["text", "label"]] for s in ("train", "val", "test")}
    if not len(frames["test"]):
        raise DataError(
            f"the test split is empty: {len(df)} rows over {df['label'].nunique()} labels are too "
            f"few for --test-size {cfg.test_size}; add rows or raise --test-size"
        )
    if cfg.val_size > 0 and not len(frames["val"]):
        notes.append(f"--val-size {cfg.val_size} left no val rows: too few rows per label")
    frames = {s: f for s, f in frames.items() if len(f)}
    labels = sorted(df["label"].unique().tolist())
    stats: dict[str, Any] = {
        "intentkit_version": __version__,
        "source": {**raw.info, "rows": source_rows},
        "options": to_dict(cfg),
        "split": "official" if official else "stratified",
        "rows": {s: len(f) for s, f in frames.items()},
        "num_labels": len(labels),
        "label_counts": {
            s: {str(k): int(v) for k, v in f["label"].value_counts().sort_index().items()}
            for s, f in frames.items()
        },
        "dropped": {r: sum(v.values()) for r, v in dropped.items()},
        "dropped_by_split": dropped,
        "fingerprint": _rows_sha256(frames),
        "notes": notes,
    }
    _write(out, frames, labels, stats)
    return stats


def _write(out: Path, frames: dict[str, Any], labels: list[str], stats: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("text", pa.string()), ("label", pa.string())])
    with atomic_dir(out) as tmp:
        for split, frame in frames.items():
            table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
            pq.write_table(table, tmp / f"{split}.parquet", compression="zstd")
        atomic_write_json(tmp / "labels.json", labels)
        atomic_write_json(tmp / "stats.json", stats)


# ---------------------------------------------------------------------------------------------
# inspect
