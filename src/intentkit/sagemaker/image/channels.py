"""The training channel -> a prepared dataset folder that ``intentkit train`` reads.

A channel (``/opt/ml/input/data/<name>/``) holds either what ``intentkit data prepare`` writes
(``train.parquet`` + ``labels.json`` ...), used as is, or raw file(s) (CSV/TSV/JSON/JSONL/
Parquet), prepared here with :func:`intentkit.data.prepare.prepare`: the same column detection,
cleaning and seeded stratified split as the CLI, so every host of a multi-host job prepares the same
folder from the same bytes without talking to the others.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from intentkit.config import DataConfig
from intentkit.errors import DataError
from intentkit.sagemaker.image.hyperparameters import DATA_KEYS, Hyperparameters
from intentkit.sagemaker.image.paths import OptMl, channel_names

log = logging.getLogger(__name__)

#: The channel used when there are several (SageMaker's conventional name).
TRAIN_CHANNEL = "train"
#: Files that mark a folder written by ``intentkit data prepare``.
PREPARED_MARKERS = ("train.parquet", "labels.json")


def pick_channel(paths: OptMl) -> tuple[str, Path]:
    """The channel to train on: ``train``, or the only channel when there is exactly one."""
    names = channel_names(paths)
    if TRAIN_CHANNEL in names:
        name = TRAIN_CHANNEL
    elif len(names) == 1:
        name = names[0]
    elif not names:
        raise DataError(
            f"no data channel in {paths.data}; give the training job an input channel named "
            f"{TRAIN_CHANNEL!r} (a CSV/JSONL/Parquet file or an `intentkit data prepare` folder)"
        )
    else:
        raise DataError(
            f"channels {', '.join(names)}: which one is the training data? name it "
            f"{TRAIN_CHANNEL!r}"
        )
    folder = paths.data / name
    if not folder.is_dir():
        raise DataError(f"channel {name!r}: {folder} does not exist; check the input channel")
    ignored = [n for n in names if n != name]
    if ignored:
        log.warning("training on channel %r; channels %s are not used", name, ", ".join(ignored))
    return name, folder


def is_prepared(folder: Path) -> bool:
    """True when ``folder`` looks like the output of ``intentkit data prepare``."""
    return all((folder / m).is_file() for m in PREPARED_MARKERS)


def raw_files(folder: Path) -> list[Path]:
    """Data files in a channel (recursively, as S3 prefixes arrive), hidden ones skipped."""
    from intentkit.data.files import FILE_TYPES

    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in FILE_TYPES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _combine(files: list[Path], cfg: DataConfig, target: Path) -> Path:
    """Several files (e.g. an S3 prefix of part files) -> one text/label Parquet file.

    Each file goes through the same reader as ``data prepare`` (column detection included).
    """
    import pandas as pd

    from intentkit.data.files import read_file
    from intentkit.fsutil import atomic_dir

    frames = [read_file(f, cfg)[0] for f in files]
    with atomic_dir(target) as tmp:
        pd.concat(frames, ignore_index=True).to_parquet(tmp / "combined.parquet", index=False)
    return target / "combined.parquet"


def prepared_data(paths: OptMl, hp: Hyperparameters) -> Path:
    """The prepared dataset folder for this job: the channel itself, or prepared from it."""
    from intentkit.data.prepare import prepare

    name, folder = pick_channel(paths)
    given = [k.replace("_", "-") for k in DATA_KEYS if k in hp.data]
    if is_prepared(folder):
        if given:
            raise DataError(
                f"hyperparameter(s) {', '.join(given)} apply to raw data, but channel {name!r} "
                "holds a prepared dataset (train.parquet + labels.json); remove them"
            )
        return folder
    files = raw_files(folder)
    if not files:
        raise DataError(
            f"channel {name!r} ({folder}) holds no CSV/TSV/JSON/JSONL/Parquet file and is not a "
            "prepared dataset (train.parquet + labels.json); check the channel's S3 prefix"
        )
    cfg = hp.data_config()
    out = paths.prepared / name
    source = files[0]
    if len(files) > 1:
        log.info("channel %r: combining %d files", name, len(files))
        source = _combine(files, cfg, paths.prepared / f".{name}-combined")
        # The combined file has plain text/label columns, already picked per file.
        cfg = dataclasses.replace(cfg, text_column="text", label_column="label")
    # force: a restarted job (spot interruption) prepares again into the same folder; the
    # split is seeded, so the rows and their fingerprint come out identical.
    stats = prepare(str(source), out, config=cfg, force=True)
    for note in stats.get("notes", []):
        log.info("data: %s", note)
    return out
