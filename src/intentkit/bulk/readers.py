"""Streaming readers for bulk prediction (:mod:`intentkit.bulk.scoring`).

Readers yield one :class:`Item` per input record and expose a resumable :attr:`position`:
``(offset, line)`` after the last record handed out. Text, JSON Lines and CSV/TSV are read as
binary lines from a byte offset, so resuming is a ``seek`` and every record keeps the line
number an editor shows; Parquet is read with ``ParquetFile.iter_batches`` from a row index.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from intentkit.data.files import TEXT_ALIASES, pick_column
from intentkit.errors import ConfigError, DataError

INPUT_TYPES = {".txt": "txt", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
INPUT_TYPES[".parquet"] = "parquet"
_BOM = b"\xef\xbb\xbf"


class Item(NamedTuple):
    """One input record: its 1-based line (row for Parquet) and its text, or why it is bad."""

    line: int
    text: str | None
    error: str | None


def input_kind(path: Path) -> str:
    """The reader for ``path``'s extension, or a one-line error naming the accepted ones."""
    kind = INPUT_TYPES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"--file {path}: unsupported extension {path.suffix or '(none)'!r}; use .txt (one "
            "text per line), .csv, .tsv, .jsonl or .parquet"
        )
    return kind


def fingerprint(path: Path) -> dict[str, Any]:
    """Size, mtime and SHA-256 of the first MiB: enough to tell a resumed input is unchanged."""
    st = path.stat()
    with path.open("rb") as fh:
        head = hashlib.sha256(fh.read(1 << 20)).hexdigest()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_sha256": head}


def _utf8_ok(text: str) -> bool:
    # Lone surrogates (a JSON "\ud800" escape, or undecodable CSV bytes kept by surrogateescape)
    # cannot be written as UTF-8 output; they are bad lines, not a crash at write time.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Reader:
    """Base reader: iterate for :class:`Item` s; :attr:`position` is where a resume restarts."""

    kind: str
    #: The text column used (None for .txt); ``note`` says when it was detected, not given.
    column: str | None = None
    note: str | None = None
    #: Progress in ``unit`` (bytes, or rows for Parquet): ``done`` of ``total``.
    unit = "bytes"
    total = 0

    def __init__(self, path: Path, text_column: str | None, offset: int, line: int) -> None:
        self.path = path
        self.offset, self.line = offset, line
        self.start = (offset, line)  #: position before the last item (where a bad line began)

    @property
    def position(self) -> tuple[int, int]:
        """``(offset, line)`` just after the last item handed out."""
        return self.offset, self.line

    @property
    def done(self) -> int:
        """Progress so far, in :attr:`unit`."""
        return self.offset

    def __iter__(self) -> Iterator[Item]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""


class _LineReader(Reader):
    """Binary lines from a byte offset, counted so that each item knows its line number."""

    def __init__(self, path: Path, text_column: str | None, offset: int, line: int) -> None:
        super().__init__(path, text_column, offset, line)
        self.total = path.stat().st_size
        self.fh: BinaryIO = path.open("rb")
        self.fh.seek(offset)
        self.line_start = self.position

    def _raw_lines(self) -> Iterator[bytes]:
        for raw in self.fh:
            self.line_start = self.position
            size = len(raw)
            if self.offset == 0 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            self.offset += size
            self.line += 1
            yield raw

    def close(self) -> None:
        """Close the file."""
        self.fh.close()


class TextReader(_LineReader):
    """``.txt``: one text per line, stripped; blank lines are skipped (not errors)."""

    kind = "txt"

    def __init__(self, path: Path, text_column: str | None, offset: int, line: int) -> None:
        if text_column is not None:
            raise ConfigError(
                f"--text-column {text_column}: {path.name} is plain text (one text per line); "
                "drop --text-column or pass a CSV/TSV/JSONL/Parquet file"
            )
        super().__init__(path, None, offset, line)

    def __iter__(self) -> Iterator[Item]:
        for raw in self._raw_lines():
            start, self.start = self.line, self.line_start
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                yield Item(start, None, "not UTF-8 text")
                continue
            if text:
                yield Item(start, text, None)


class JsonlReader(_LineReader):
    """``.jsonl``: one JSON object per line; the text column is detected on the first object."""

    kind = "jsonl"

    def __init__(self, path: Path, text_column: str | None, offset: int, line: int) -> None:
        super().__init__(path, text_column, offset, line)
        self.given = text_column
        self._detect()

    def _detect(self) -> None:
        # Peek at the first object (from the start of the file, whatever the resume point) so
        # that a resumed run picks the same column and a bad --text-column fails before work.
        with self.path.open("rb") as fh:
            for raw in fh:
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    where = f"{self.path} (keys of its first object)"
                    self.column, self.note = pick_column(
                        list(obj), self.given, TEXT_ALIASES, "text", where
                    )
                    return
        raise DataError(
            f'--file {self.path}: no JSON object in it; expected lines like {{"text": "..."}}'
        )

    def __iter__(self) -> Iterator[Item]:
        col = self.column
        for raw in self._raw_lines():
            start, self.start = self.line, self.line_start
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except UnicodeDecodeError:
                yield Item(start, None, "not UTF-8 text")
                continue
            except ValueError as exc:
                yield Item(start, None, f"invalid JSON ({getattr(exc, 'msg', exc)})")
                continue
            if not isinstance(obj, dict):
                yield Item(start, None, f"a JSON {type(obj).__name__}, not an object")
                continue
            yield _checked(start, obj.get(col, _MISSING), col)


_MISSING = object()


def _checked(line: int, value: Any, col: str | None) -> Item:
    """An item for a column value: missing, non-string, empty or non-UTF-8 values are errors."""
    if value is _MISSING:
        return Item(line, None, f"no {col!r} field")
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        return Item(line, None, f"{col!r} is {kind}, not a string")
    if not value.strip():
        return Item(line, None, f"{col!r} is empty")
    if not _utf8_ok(value):
        return Item(line, None, "not UTF-8 text")
    return Item(line, value, None)


class CsvReader(_LineReader):
    """``.csv``/``.tsv`` with a header row, through the standard ``csv`` module.

    Python's csv reader pulls one line at a time and stops at a record's end, so the byte offset
    after each record is exact (a quoted value may span lines) and ragged rows are reported with
    their line instead of failing the whole block as pyarrow's streaming reader does.
    """

    kind = "csv"

    def __init__(self, path: Path, text_column: str | None, offset: int, line: int) -> None:
        super().__init__(path, text_column, offset, line)
        self.delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        with path.open("rb") as fh:
            head = fh.readline()
        try:
            header_text = head.removeprefix(_BOM).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"--file {path}: the header is not UTF-8; re-save it as UTF-8") from exc
        self.header = next(csv.reader([header_text], delimiter=self.delimiter), [])
        if not self.header:
            raise DataError(f"--file {path} is empty; expected a header row such as text")
        self.column, self.note = pick_column(
            self.header, text_column, TEXT_ALIASES, "text", str(path)
        )
        self.index = self.header.index(self.column)
        if offset == 0:  # the header is not a record
            self.fh.seek(0)
            next(self._raw_lines(), None)

    def _decoded(self) -> Iterator[str]:
        for raw in self._raw_lines():
            # surrogateescape keeps the reader going past bad bytes; _checked flags the row.
            yield raw.decode("utf-8", "surrogateescape")

    def __iter__(self) -> Iterator[Item]:
        rows = csv.reader(self._decoded(), delimiter=self.delimiter)
        width, col, index = len(self.header), self.column, self.index
        while True:
            start = self.line + 1
            self.start = self.position
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Item(start, None, f"unreadable CSV row ({exc})")
                continue
            if not row:
                continue  # a blank line
            if len(row) != width:
                yield Item(start, None, f"{len(row)} fields but the header has {width}")
                continue
            yield _checked(start, row[index], col)


class ParquetReader(Reader):
    """``.parquet``: the text column in batches (``iter_batches``); ``line`` is the row number."""

    kind = "parquet"
    unit = "rows"

    def __init__(
        self, path: Path, text_column: str | None, offset: int, line: int, batch_rows: int = 4096
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(path, text_column, offset, offset)
        try:
            self.pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"--file {path}: not a readable Parquet file ({exc})") from exc
        schema = self.pf.schema_arrow
        self.column, self.note = pick_column(
            schema.names, text_column, TEXT_ALIASES, "text", str(path)
        )
        kind = schema.field(self.column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise DataError(
                f"--text-column {self.column}: holds {kind} values in {path}, not strings; point "
                "--text-column at a string column"
            )
        self.total = self.pf.metadata.num_rows
        self.batch_rows = batch_rows

    def __iter__(self) -> Iterator[Item]:
        # Start at the row group holding row `offset`; skip the rows before it inside that group.
        meta, first, skip = self.pf.metadata, 0, self.offset
        while first < meta.num_row_groups and skip >= meta.row_group(first).num_rows:
            skip -= meta.row_group(first).num_rows
            first += 1
        groups = list(range(first, meta.num_row_groups))
        if not groups:
            return
        batches = self.pf.iter_batches(
            batch_size=self.batch_rows, row_groups=groups, columns=[self.column]
        )
        for batch in batches:
            values = batch.column(0).to_pylist()[skip:]
            skip = max(0, skip - batch.num_rows)
            for value in values:
                self.start = self.position
                self.offset += 1
                self.line = self.offset
                yield _checked(self.line, value, self.column)

    def close(self) -> None:
        """Close the file."""
        self.pf.close()


def open_reader(path: Path, text_column: str | None, offset: int = 0, line: int = 0) -> Reader:
    """A reader for ``path`` positioned at ``(offset, line)`` (a :attr:`Reader.position`)."""
    kinds = {"txt": TextReader, "csv": CsvReader, "tsv": CsvReader, "jsonl": JsonlReader}
    kinds["parquet"] = ParquetReader
    return kinds[input_kind(path)](path, text_column, offset, line)
