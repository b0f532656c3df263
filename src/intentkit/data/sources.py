"""Read a dataset source into per-split ``text``/``label`` frames (the first step of ``prepare``).

A source is a bundled dataset name, a local file (CSV, TSV, JSON, JSONL, Parquet; read by
:mod:`intentkit.data.files`), a folder saved with ``datasets`` (``save_to_disk``) or a Hugging
Face dataset id. Every reader returns the same :class:`RawSource`: string columns ``text`` and
``label`` per split, plus a description for ``stats.json``. Cleaning, dedupe and splitting happen
in :mod:`intentkit.data.prepare`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from intentkit.config import DataConfig
from intentkit.data.files import FILE_TYPES, pick_columns, read_file, short_error, to_frame
from intentkit.errors import ConfigError, DataError

#: Split names of hub / save_to_disk datasets and what they become in the prepared folder.
VAL_NAMES = ("validation", "valid", "val", "dev")
HUB_SPLITS = {"train": "train", "test": "test"} | dict.fromkeys(VAL_NAMES, "val")


@dataclass(frozen=True)
class Bundled:
    """A dataset shipped in ``intentkit/bundled/<folder>`` with its official splits."""

    folder: str
    files: dict[str, str]  #: split -> file name
    description: str
    license: str
    citation: str
    oos_files: dict[str, str] = field(default_factory=dict)  #: split -> out-of-scope rows
    domain: str | None = None  #: keep only this domain's intents (CLINC150 domains.json)


_CLINC = dict(
    folder="clinc150",
    files={"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl"},
    oos_files={"train": "oos_train.jsonl", "val": "oos_val.jsonl", "test": "oos_test.jsonl"},
    license="CC BY 3.0",
    citation="Larson et al., EMNLP-IJCNLP 2019, https://www.aclweb.org/anthology/D19-1131",
)
BUNDLED: dict[str, Bundled] = {
    "clinc150": Bundled(**_CLINC, description="CLINC150: 150 intents in 10 domains"),
    "clinc150-travel": Bundled(
        **_CLINC, domain="travel", description="CLINC150, travel domain: 15 intents"
    ),
    "banking77": Bundled(
        folder="banking77",
        files={"train": "train.csv", "test": "test.csv"},
        description="Banking77: 77 banking intents",
        license="CC BY 4.0",
        citation="Casanueva et al., NLP4ConvAI 2020, https://arxiv.org/abs/2003.04807",
    ),
}


@dataclass
class RawSource:
    """Rows as read: ``frames`` maps split (train/val/test, or ``all``) to a text/label frame."""

    frames: dict[str, Any]
    info: dict[str, Any]  #: source description for stats.json (kind, name, columns, fingerprint)
    official: bool  #: True when the splits come from the source (kept unless --resplit)


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _from_datasets(obj: Any, cfg: DataConfig, where: str) -> tuple[dict[str, Any], dict, list]:
    """A ``datasets.Dataset``/``DatasetDict`` -> frames per split (ClassLabel ids -> names)."""
    import datasets

    if isinstance(obj, datasets.Dataset):
        obj = datasets.DatasetDict({"all": obj})
    names = list(obj)
    mapped = {n: HUB_SPLITS.get(n.lower()) for n in names}
    if "train" not in mapped.values() and len(names) > 1:
        raise DataError(
            f"{where} has splits {', '.join(names)} but none is called train; "
            "save one split named train (and optionally validation/test)"
        )
    if len(names) == 1:
        mapped = {names[0]: "all"}
    frames, notes, info = {}, [], {}
    for name, split in mapped.items():
        if split is None or split in frames:
            continue
        ds = obj[name]
        text_col, label_col, notes = pick_columns(list(ds.column_names), cfg, where)
        table = ds.select_columns([text_col, label_col]).with_format("arrow")[:]
        frame = to_frame(table, text_col, label_col, where)
        feature = ds.features[label_col]
        if isinstance(feature, datasets.ClassLabel):  # integer ids -> the class names
            names_arr = {str(i): n for i, n in enumerate(feature.names)}
            frame["label"] = frame["label"].map(names_arr)
        frames[split] = frame
        info = dict(columns=ds.column_names, text_column=text_col, label_column=label_col)
    info["source_splits"] = {n: (mapped[n] or "ignored") for n in names}
    return frames, info, notes


def _read_hub(dataset_id: str, cfg: DataConfig) -> tuple[dict[str, Any], dict, list]:
    import datasets

    name, _, config = dataset_id.partition(":")
    try:
        obj = datasets.load_dataset(name, config or None)
    except ConnectionError as exc:
        raise DataError(
            f"cannot reach the Hugging Face hub for dataset {name!r} ({short_error(exc)}); check "
            "the network, or download it and pass a local file or a save_to_disk folder"
        ) from exc
    except FileNotFoundError as exc:  # DatasetNotFoundError and friends
        raise DataError(
            f"no dataset {name!r} on the Hugging Face hub (or it is gated/private: run "
            "`hf auth login`); bundled names are " + ", ".join(BUNDLED)
        ) from exc
    except ValueError as exc:  # e.g. "Config name is missing" for multi-config datasets
        raise DataError(
            f"dataset {name!r}: {short_error(exc)}; choose a config as SOURCE {name}:CONFIG"
        ) from exc
    frames, info, notes = _from_datasets(obj, cfg, dataset_id)
    return frames, {"format": "hub", **info}, notes


def _read_bundled(name: str, cfg: DataConfig) -> tuple[dict[str, Any], dict, list, list[Path]]:
    import pandas as pd

    spec = BUNDLED[name]
    root = resources.files("intentkit") / "bundled" / spec.folder
    used: list[Path] = []
    frames = {}
    with resources.as_file(root) as folder:
        keep = None
        if spec.domain:
            domains = json.loads((folder / "domains.json").read_text("utf-8"))
            keep = set(domains[spec.domain])
        notes: list[str] = []
        for split, fname in spec.files.items():
            parts = [fname] + ([spec.oos_files[split]] if cfg.include_oos else [])
            chunk = []
            for part in parts:
                frame, info, notes = read_file(folder / part, cfg)
                if keep is not None and not part.startswith("oos"):
                    frame = frame[frame["label"].isin(keep)]
                chunk.append(frame)
                used.append(folder / part)
            frames[split] = pd.concat(chunk, ignore_index=True)
    info = {"format": info["format"], "description": spec.description, "license": spec.license}
    info |= {"citation": spec.citation, "files": [p.name for p in used]}
    if spec.oos_files:
        keep_oos = "included as label 'oos'"
        info["oos"] = keep_oos if cfg.include_oos else "excluded (pass --include-oos to keep them)"
    if spec.domain:
        info["domain"] = spec.domain
    return frames, info, notes, used


def _looks_like_path(source: str) -> bool:
    return (
        source.startswith((".", "/", "~"))
        or Path(source).suffix.lower() in FILE_TYPES
        or source.count("/") > 1
        or "\\" in source
        or (source.count("/") == 1 and Path(source).parent.is_dir())  # data/x, not owner/name
    )


def load_source(source: str, cfg: DataConfig) -> RawSource:
    """Resolve ``source`` (existing path > bundled name > ``owner/name`` hub id) and read it.

    ``hf:NAME`` forces the hub for ids without an owner; ``ID:CONFIG`` picks a hub config.
    """
    path = Path(source).expanduser()
    with_oos = [name for name, spec in BUNDLED.items() if spec.oos_files]
    if cfg.include_oos and source not in with_oos:
        raise ConfigError(
            f"--include-oos applies only to {', '.join(with_oos)} (they ship out-of-scope rows); "
            f"{source} has none: drop --include-oos"
        )
    if source in BUNDLED and not path.exists():
        frames, info, notes, used = _read_bundled(source, cfg)
        info = {"kind": "bundled", "name": source, **info, "fingerprint": _sha256_files(used)}
        return RawSource(frames, {**info, "notes": notes}, official=True)
    if path.is_dir():
        if not any((path / f).is_file() for f in ("dataset_dict.json", "state.json")):
            raise DataError(
                f"{path} is a folder but not one saved with datasets (save_to_disk); pass a "
                "CSV/TSV/JSON/JSONL/Parquet file or such a folder"
            )
        import datasets

        try:
            obj = datasets.load_from_disk(str(path))
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: cannot load it with datasets ({short_error(exc)})") from exc
        frames, info, notes = _from_datasets(obj, cfg, str(path))
        info = {"kind": "datasets-folder", "path": str(path.resolve()), "format": "arrow", **info}
        return RawSource(frames, {**info, "notes": notes}, official="all" not in frames)
    if path.is_file():
        frame, info, notes = read_file(path, cfg)
        fingerprint = _sha256_files([path])
        info = {"kind": "file", "path": str(path.resolve()), **info, "fingerprint": fingerprint}
        return RawSource({"all": frame}, {**info, "notes": notes}, official=False)
    if _looks_like_path(source):
        raise DataError(f"{source}: no such file; check the path (or run from another folder)")
    if source.startswith("hf:") or source.count("/") == 1:
        dataset_id = source.removeprefix("hf:")
        frames, info, notes = _read_hub(dataset_id, cfg)
        info = {"kind": "hub", "id": dataset_id, **info}
        return RawSource(frames, {**info, "notes": notes}, official="all" not in frames)
    raise DataError(
        f"{source}: not a bundled dataset, a file or a Hugging Face id; bundled names are "
        f"{', '.join(BUNDLED)}; hub ids look like owner/name (or hf:name)"
    )
