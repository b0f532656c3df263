"""Read a dataset source into per-split ``text``/``label`` frames (the first step of ``prepare``).

A source is a bundled dataset name, a local file (CSV, TSV, JSON, JSONL, Parquet), a folder saved
with ``datasets`` (``save_to_disk``) or a Hugging Face dataset id. Every reader returns the same
:class:`RawSource`: string columns ``text`` and ``label`` per split, plus a description for
``stats.json``. Cleaning, dedupe and splitting happen in :mod:`intentkit.data.prepare`.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from intentkit.config import DataConfig
from intentkit.errors import ConfigError, DataError, first_line

TEXT_ALIASES = ("text", "instruction", "utterance", "sentence", "query", "question", "prompt")
LABEL_ALIASES = ("label", "category", "intent", "class", "labels")
FILE_TYPES = {f".{kind}": kind for kind in ("csv", "tsv", "json", "jsonl", "parquet")}
#: Split names of hub / save_to_disk datasets and what they become in the prepared folder.
VAL_NAMES = ("validation", "valid", "val", "dev")
SPLIT_NAMES = {"train": "train", "test": "test"} | dict.fromkeys(VAL_NAMES, "val")


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


def _first_line(exc: BaseException) -> str:
    return first_line(exc, limit=300)  # a parser's message can quote a whole record


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def pick_column(
    columns: list[str], given: str | None, aliases: tuple[str, ...], what: str, where: str
) -> tuple[str, str | None]:
    """Choose one column: ``given`` (the ``--{what}-column`` flag) if set, else the first alias.

    Returns ``(column, note)``; the note says which column was detected (None when it is the
    obvious one or was given). Also used by bulk prediction, which needs only a text column.
    """
    flag = f"--{what}-column"
    if given is not None:
        if given not in columns:
            raise DataError(
                f"{flag} {given}: no such column in {where}; columns are "
                f"{', '.join(columns)}; pass {flag} with one of them"
            )
        return given, None
    lower = {c.lower(): c for c in reversed(columns)}
    found = next((lower[a] for a in aliases if a in lower), None)
    if found is None:
        raise DataError(
            f"no {what} column in {where} (looked for {', '.join(aliases)}); columns are "
            f"{', '.join(columns)}; pass {flag} NAME"
        )
    if found != what:
        return found, f"{what} column {found!r} detected (pass {flag} to choose another)"
    return found, None


def pick_columns(columns: list[str], cfg: DataConfig, where: str) -> tuple[str, str, list[str]]:
    """Choose the text and label columns: the flags when given, else the first known alias.

    Returns ``(text_column, label_column, notes)``; notes say which columns were detected.
    """
    text, text_note = pick_column(columns, cfg.text_column, TEXT_ALIASES, "text", where)
    label, label_note = pick_column(columns, cfg.label_column, LABEL_ALIASES, "label", where)
    if text == label:
        raise ConfigError(f"--text-column and --label-column are both {text!r}; pick two")
    return text, label, [n for n in (text_note, label_note) if n]


def _to_frame(table: Any, text_col: str, label_col: str, where: str) -> Any:
    """Arrow table -> pandas frame with string columns text, label (labels stringified)."""
    import pyarrow as pa

    out = {}
    for name, col in (("text", text_col), ("label", label_col)):
        arr = table.column(col)
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            if pa.types.is_nested(arr.type) or pa.types.is_binary(arr.type):
                raise DataError(
                    f"column {col!r} in {where} holds {arr.type} values, not one string per row; "
                    f"point --{name}-column at a column of plain strings (one label per row)"
                )
            # Labels are always strings: 3 -> "3", True -> "true".
            arr = arr.cast(pa.string())
        out[name] = arr
    return pa.table(out).to_pandas()


def _csv_header(path: Path, delimiter: str) -> list[str]:
    # Read the header ourselves so every used column can be typed as string (pyarrow would turn
    # label "01" into the integer 1) and so a non-UTF-8 file fails here with a clear message.
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    with path.open("rb") as fh:
        head = decoder.decode(fh.read(1 << 16), final=False)
    line = head.splitlines()[0] if head else ""
    return next(csv.reader([line], delimiter=delimiter), [])


def _read_csv(path: Path, kind: str, cfg: DataConfig) -> tuple[Any, list[str]]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    delimiter = "," if kind == "csv" else "\t"
    columns = _csv_header(path, delimiter)
    if not columns:
        raise DataError(f"{path} is empty; expected a header row such as text,label")
    text_col, label_col, _ = pick_columns(columns, cfg, str(path))
    bad_rows: list[Any] = []

    def on_invalid(row: Any) -> str:
        bad_rows.append(row)
        return "error"

    try:
        table = pcsv.read_csv(
            path,
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=pcsv.ConvertOptions(
                include_columns=[text_col, label_col],
                column_types={text_col: pa.string(), label_col: pa.string()},
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        if not bad_rows:
            raise
        line, fields = _find_ragged(path, delimiter, len(columns)) or (
            None,
            bad_rows[0].actual_columns,
        )
        raise DataError(
            f"{path}: {'line ' + str(line) if line else 'a row'} has {fields} fields but the "
            f"header has {len(columns)}; quote fields that contain {delimiter!r} or fix that row"
        ) from exc
    return table, columns


def _find_ragged(path: Path, delimiter: str, expected: int) -> tuple[int, int] | None:
    # Error path only: pyarrow cannot number rows when values may hold newlines, Python's csv can.
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        for row in reader:
            if row and len(row) != expected:
                return reader.line_num, len(row)
    return None


def _read_json(path: Path, kind: str) -> Any:
    import pyarrow as pa
    import pyarrow.json as pjson

    if kind == "jsonl":
        try:
            return pjson.read_json(path)
        except pa.ArrowInvalid:
            pass  # mixed types in a column, or an error to locate: parse again in Python
    raw = path.read_text("utf-8-sig")
    # JSON Lines are parsed as one JSON array (blank lines as null) so that an error's line
    # number is the file's line.
    lines = (line if line.strip() else "null" for line in raw.splitlines())
    text = "[" + ",\n".join(lines) + "]" if kind == "jsonl" else raw
    try:
        records = json.loads(text)
        if kind == "jsonl":
            records = [r for r in records if r is not None]
    except json.JSONDecodeError as exc:
        if kind == "json" and exc.msg == "Extra data":  # JSON Lines saved as .json
            return _read_json(path, "jsonl")
        raise DataError(
            f"{path}: line {exc.lineno}: invalid JSON ({exc.msg}); fix that line"
        ) from exc
    if isinstance(records, dict) and len(records) == 1:
        records = next(iter(records.values()))  # {"data": [{...}, ...]}
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(
            f'{path}: expected a list of objects like [{{"text": "...", "label": "..."}}]; '
            "convert it to JSON Lines or CSV"
        )

    # Strings stay strings; anything else becomes its JSON text (3 -> "3").
    def as_text(value: Any) -> str | None:
        return value if value is None or isinstance(value, str) else json.dumps(value)

    keys = dict.fromkeys(key for rec in records for key in rec)
    return pa.table({k: pa.array([as_text(r.get(k)) for r in records], pa.string()) for k in keys})


def read_file(path: Path, cfg: DataConfig) -> tuple[Any, dict[str, Any], list[str]]:
    """Read one local file into a text/label frame, its description and detection notes."""
    import pyarrow as pa

    kind = FILE_TYPES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(none)'!r}; use CSV, TSV, JSON, "
            "JSONL or Parquet (e.g. save the sheet as CSV)"
        )
    try:
        if kind in ("csv", "tsv"):
            table, columns = _read_csv(path, kind, cfg)
        elif kind == "parquet":
            import pyarrow.parquet as pq

            columns = pq.read_schema(path).names
            text_col, label_col, _ = pick_columns(columns, cfg, str(path))
            table = pq.read_table(path, columns=[text_col, label_col])
        else:
            table = _read_json(path, kind)
            columns = table.column_names
    except UnicodeDecodeError as exc:
        raise _not_utf8(path) from exc
    except PermissionError as exc:
        raise DataError(f"{path}: permission denied; make it readable (chmod +r)") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        if "UTF8" in str(exc) or "UTF-8" in str(exc):
            raise _not_utf8(path) from exc
        raise DataError(
            f"{path}: cannot read it as {kind} ({_first_line(exc)}); fix or re-export the file"
        ) from exc
    text_col, label_col, notes = pick_columns(columns, cfg, str(path))
    info = {"format": kind, "columns": columns, "text_column": text_col, "label_column": label_col}
    return _to_frame(table, text_col, label_col, str(path)), info, notes


def _not_utf8(path: Path) -> DataError:
    return DataError(
        f"{path} is not UTF-8 text; re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT)"
    )


def _from_datasets(obj: Any, cfg: DataConfig, where: str) -> tuple[dict[str, Any], dict, list]:
    """A ``datasets.Dataset``/``DatasetDict`` -> frames per split (ClassLabel ids -> names)."""
    import datasets

    if isinstance(obj, datasets.Dataset):
        obj = datasets.DatasetDict({"all": obj})
    names = list(obj)
    mapped = {n: SPLIT_NAMES.get(n.lower()) for n in names}
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
        frame = _to_frame(table, text_col, label_col, where)
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
            f"cannot reach the Hugging Face hub for dataset {name!r} ({_first_line(exc)}); check "
            "the network, or download it and pass a local file or a save_to_disk folder"
        ) from exc
    except FileNotFoundError as exc:  # DatasetNotFoundError and friends
        raise DataError(
            f"no dataset {name!r} on the Hugging Face hub (or it is gated/private: run "
            "`hf auth login`); bundled names are " + ", ".join(BUNDLED)
        ) from exc
    except ValueError as exc:  # e.g. "Config name is missing" for multi-config datasets
        raise DataError(
            f"dataset {name!r}: {_first_line(exc)}; choose a config as SOURCE {name}:CONFIG"
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
            raise DataError(f"{path}: cannot load it with datasets ({_first_line(exc)})") from exc
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
