"""Committed writers for bulk prediction (:mod:`intentkit.bulk.scoring`): JSON Lines and Parquet.

A writer appends rows and, on ``commit``, makes them durable and returns the point a resumed
run truncates back to: a byte size for JSON Lines, a part count for Parquet.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from intentkit.errors import ConfigError, DataError
from intentkit.fsutil import atomic_open

OUTPUT_TYPES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def output_kind(path: Path) -> str:
    """The writer for ``path``'s extension (``jsonl`` or ``parquet``)."""
    kind = OUTPUT_TYPES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"--output {path}: unsupported extension {path.suffix or '(none)'!r}; use .jsonl or "
            ".parquet"
        )
    return kind


@dataclass
class JsonlSink:
    """Appends JSON lines to ``path``; on open, truncates it to ``committed`` bytes.

    Rows past the last commit are the work of a run killed mid-chunk: the resumed run redoes
    that chunk, so they are cut, never kept twice. The file is created lazily (an errors file
    exists only when there were errors).
    """

    path: Path
    committed: int = 0
    lazy: bool = False  #: create the file only when a first row is written

    def __post_init__(self) -> None:
        self.fh: BinaryIO | None = None
        size = self.path.stat().st_size if self.path.exists() else 0
        if size < self.committed:
            raise DataError(
                f"--resume: {self.path} is shorter than when the run was interrupted (changed "
                "since); pass --force to start over"
            )
        if self.path.exists():
            if self.committed == 0:
                self.path.unlink()
            else:
                self.fh = self.path.open("r+b")
                self.fh.truncate(self.committed)
                self.fh.seek(self.committed)
        if self.fh is None and not self.lazy:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = self.path.open("ab")

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` (not yet durable)."""
        if not rows:
            return
        if self.fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = self.path.open("ab")
        self.fh.write(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
        )

    def commit(self) -> int:
        """Flush and fsync; return the committed size in bytes."""
        if self.fh is None:
            return 0
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.committed = self.fh.tell()
        return self.committed

    def finish(self) -> None:
        """Close the file (everything was committed)."""
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def parts_dir(path: Path) -> Path:
    """Where a Parquet output keeps its committed chunks until the run ends."""
    return path.with_name(path.name + ".parts")


@dataclass
class ParquetSink:
    """Parquet output: each commit is one part file; :meth:`finish` merges them into ``path``.

    A Parquet file is readable only once its footer is written, so a file being written cannot
    survive a kill; committed parts can. The merge streams the parts through one
    ``ParquetWriter`` into a temp file renamed over ``path``, in row groups of
    ``row_group_rows``.
    """

    path: Path
    committed: int = 0
    row_group_rows: int = 65536

    def __post_init__(self) -> None:
        self.dir = parts_dir(self.path)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.iterdir():  # parts past the commit point, temp files of a kill
            number = stale.name.removeprefix("part-").removesuffix(".parquet")
            if not number.isdigit() or int(number) >= self.committed:
                stale.unlink()
        if any(not self._part(i).is_file() for i in range(self.committed)):
            raise DataError(
                f"--resume: committed parts are missing from {self.dir}; pass --force to start over"
            )
        self.rows: list[dict[str, Any]] = []

    def _part(self, i: int) -> Path:
        return self.dir / f"part-{i:06d}.parquet"

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Buffer ``rows`` until the next commit."""
        self.rows.extend(rows)

    def commit(self) -> int:
        """Write the buffered rows as the next part, atomically; return the part count."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.rows:
            table = pa.Table.from_pylist(self.rows, schema=output_schema())
            with atomic_open(self._part(self.committed)) as fh:
                pq.write_table(table, fh)
            self.committed += 1
            self.rows = []
        return self.committed

    def finish(self) -> None:
        """Merge the parts into ``path`` (temp file + rename); the caller removes the parts."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        with atomic_open(self.path) as fh, pq.ParquetWriter(fh, output_schema()) as writer:
            pending: list[Any] = []
            for i in range(self.committed):
                pending.append(pq.read_table(self._part(i)))
                if sum(t.num_rows for t in pending) >= self.row_group_rows:
                    writer.write_table(pa.concat_tables(pending), self.row_group_rows)
                    pending = []
            if pending:
                writer.write_table(pa.concat_tables(pending), self.row_group_rows)


def output_schema() -> Any:
    """The Parquet output schema (JSON Lines rows carry the same keys); built on call so that
    importing this module does not import pyarrow."""
    import pyarrow as pa

    return pa.schema(
        [
            ("line", pa.int64()),
            ("text", pa.string()),
            ("predicted_class", pa.string()),
            ("confidence", pa.float64()),
            ("rejected", pa.bool_()),
        ]
    )
