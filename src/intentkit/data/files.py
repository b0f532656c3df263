"""Read one local file (CSV, TSV, JSON, JSONL, Parquet) into ``text``/``label`` columns.

Column detection (:func:`pick_column`) is shared with bulk prediction, which reads only a text
column. Used by :mod:`intentkit.data.sources` for file and folder sources.
"""

from __future__ import annotations

import codecs
import csv
import json
from pathlib import Path
from typing import Any

from intentkit.config import DataConfig
from intentkit.errors import ConfigError, DataError, first_line

TEXT_ALIASES = ("text", "instruction", "utterance", "sentence", "query", "question", "prompt")


LABEL_ALIASES = ("label", "category", "intent", "class", "labels")


FILE_TYPES = {f".{kind}": kind for kind in ("csv", "tsv", "json", "jsonl", "parquet")}


def short_error(exc: BaseException) -> str:
    """The first line of ``exc``'s message, at most 300 characters."""
    return first_line(exc, limit=300)  # a parser's message can quote a whole record


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


def to_frame(table: Any, text_col: str, label_col: str, where: str) -> Any:
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
            f"{path}: cannot read it as {kind} ({short_error(exc)}); fix or re-export the file"
        ) from exc
    text_col, label_col, notes = pick_columns(columns, cfg, str(path))
    info = {"format": kind, "columns": columns, "text_column": text_col, "label_column": label_col}
    return to_frame(table, text_col, label_col, str(path)), info, notes


def _not_utf8(path: Path) -> DataError:
    return DataError(
        f"{path} is not UTF-8 text; re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT)"
    )
