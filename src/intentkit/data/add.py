"""Fold reviewed traffic back: ``intentkit data add DATA_DIR LABELS.jsonl --out NEW_DATA_DIR``.

A new version of a prepared folder (:mod:`intentkit.data.dataset`), never an edit of the old one:

1. The labels file (``intentkit review`` appends one JSON object per decision: ``text`` and
   ``label`` required; a text labelled twice keeps its last label) is cleaned with ``data
   prepare``'s own rules (:func:`intentkit.data.prepare._clean`: strip, empty, missing label,
   duplicate, a text given several labels).
2. Rows whose text is already in the parent folder (any split) are dropped as
   ``already_in_data``: the parent's test and val splits stay **frozen**, so old and new models
   are compared on the same rows, and no reviewed row leaks into them or repeats a train row.
3. The **reviewed slice** rule: per label, a seeded 20 % (``--reviewed-test-size``,
   ``--seed``) of the new rows, chosen by the same stratified splitter as ``data prepare``
   (:func:`intentkit.data.split.stratified_split`, which keeps at least one row of each label
   for training), becomes ``reviewed_test.parquet``; the rest joins ``train``. New labels are
   allowed. A parent's own ``reviewed_test`` rows are kept, so the slice grows week by week.
4. ``stats.json`` keeps the parent's record and adds ``parent`` (path, fingerprint) and
   ``added`` (rows per split, new labels, what was dropped and why, the labels file's sha256).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.config import DEFAULT_REJECT_LABEL
from intentkit.data.dataset import load_prepared
from intentkit.data.prepare import _clean, _rows_sha256, _write
from intentkit.data.split import TEST, stratified_split
from intentkit.errors import ConfigError, DataError
from intentkit.fsutil import check_output_dir

REVIEWED_TEST = "reviewed_test"


#: The first line `intentkit review` writes into a labels file: the model's label set.
HEADER_KEY = "intentkit_review"


def iter_labels_file(path: Path, flag: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line of a labels JSONL file, the one reader of
    that format (``data add`` and ``review`` both call it). The header line carries
    :data:`HEADER_KEY`; every other line must have ``text`` and ``label`` strings. A line that is
    not so is a DataError naming ``flag``, the file and the line: labels are never skipped."""
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise DataError(f"{flag} {path} line {n}: not JSON; fix or delete it") from None
            if not isinstance(obj, dict):
                raise DataError(f"{flag} {path} line {n}: expected a JSON object")
            missing = [k for k in ("text", "label") if not isinstance(obj.get(k), str)]
            if missing and HEADER_KEY not in obj:
                raise DataError(
                    f"{flag} {path} line {n}: missing {' and '.join(missing)} (a string); "
                    "fix or delete the line"
                )
            yield n, obj


def read_labels_file(path: str | Path) -> Any:
    """The ``text``/``label`` rows of a labels JSONL file (pandas), last label per text winning;
    a line that is not a JSON object with both fields is a DataError naming its number."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"LABELS {path}: no such file; write it with `intentkit review`")
    rows = [
        (obj["text"], obj["label"])
        for _, obj in iter_labels_file(path, "LABELS")
        if HEADER_KEY not in obj  # the header: the model's label set, not a decision
    ]
    df = pd.DataFrame(rows, columns=["text", "label"], dtype=object)
    # A relabel is a later line for the same text: keep the last decision (stripped, as _clean).
    key = df["text"].str.strip()
    return df[~key.duplicated(keep="last")].reset_index(drop=True)


def add(
    data_dir: str | Path,
    labels_file: str | Path,
    out: str | Path,
    *,
    reviewed_test_size: float = 0.2,
    seed: int = 42,
    force: bool = False,
) -> dict[str, Any]:
    """Write ``out``: ``data_dir`` plus the reviewed rows of ``labels_file`` (rules above).

    Returns the new ``stats.json``. Raises DataError when no reviewed row is left to add.
    """
    import pandas as pd

    if not 0 <= reviewed_test_size < 1:
        raise ConfigError(f"--reviewed-test-size must be in [0, 1), got {reviewed_test_size}")
    out = check_output_dir(out, force=force)
    if Path(out).resolve() == Path(data_dir).resolve():
        raise ConfigError("--out must differ from DATA_DIR: data add writes a new version")
    parent = load_prepared(data_dir)
    prior = Path(data_dir) / f"{REVIEWED_TEST}.parquet"
    frames: dict[str, Any] = {
        "train": parent.train,
        **({"val": parent.val} if parent.val is not None else {}),
        "test": parent.test,
        **({REVIEWED_TEST: pd.read_parquet(prior)} if prior.is_file() else {}),
    }
    given = read_labels_file(labels_file)
    new, dropped = _clean(given.assign(split="reviewed"), official=False)
    known = pd.concat([f["text"] for f in frames.values()])
    seen = new["text"].isin(known).to_numpy()
    dropped = {r: sum(v.values()) for r, v in dropped.items()}
    dropped["already_in_data"] = int(seen.sum())
    new = new[~seen][["text", "label"]].reset_index(drop=True)
    if new.empty:
        why = ", ".join(f"{n} {r}" for r, n in dropped.items() if n) or "the file is empty"
        raise DataError(f"LABELS {labels_file}: no new rows to add ({why})")
    codes = (
        stratified_split(new["label"], test_size=reviewed_test_size, seed=seed)
        if reviewed_test_size > 0
        else np.zeros(len(new), dtype=np.int8)
    )
    to_test = codes == TEST
    frames["train"] = pd.concat([frames["train"], new[~to_test]], ignore_index=True)
    frames[REVIEWED_TEST] = pd.concat(
        [frames.get(REVIEWED_TEST, new.iloc[:0]), new[to_test]], ignore_index=True
    )
    labels = sorted(set(parent.labels) | set(new["label"]))
    notes = list(parent.stats.get("notes", []))
    if DEFAULT_REJECT_LABEL in set(new["label"]) - set(parent.labels):
        # `review` labels rejected-and-confirmed texts with the model's reject label.
        notes.append(
            f"reviewed rows labelled {DEFAULT_REJECT_LABEL} form a class: train with "
            f"--oos-label {DEFAULT_REJECT_LABEL} so the model treats it as out-of-scope"
        )
    stats = {
        **parent.stats,
        "rows": {s: len(f) for s, f in frames.items()},
        "num_labels": len(labels),
        "label_counts": {
            s: {str(k): int(v) for k, v in f["label"].value_counts().sort_index().items()}
            for s, f in frames.items()
        },
        "fingerprint": _rows_sha256(frames),
        "notes": notes,
        "parent": {"path": str(Path(data_dir).resolve()), "fingerprint": parent.fingerprint},
        "added": {
            "labels_file": str(Path(labels_file).resolve()),
            "labels_sha256": hashlib.sha256(Path(labels_file).read_bytes()).hexdigest(),
            "rows": {"train": int((~to_test).sum()), REVIEWED_TEST: int(to_test.sum())},
            "new_labels": sorted(set(new["label"]) - set(parent.labels)),
            "dropped": dropped,
            "rule": f"{REVIEWED_TEST}: stratified {reviewed_test_size:g} of the new rows per "
            f"label (seed {seed}, at least one row per label kept for train); test/val frozen",
        },
    }
    _write(Path(out), frames, labels, stats)
    return stats
