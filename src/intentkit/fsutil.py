"""Atomic file and directory writes: readers never see half-written output."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from intentkit.errors import OutputExistsError


def _umask() -> int:
    # os.umask can only be read by setting it; restore at once. Not cached: it may change.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _public_mode(path: str | Path, *, is_dir: bool) -> None:
    """Give a temp file/folder the mode a plain open()/mkdir() would (mkstemp uses 0600/0700)."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temp file in the same folder and ``os.replace``."""
    with atomic_open(path) as fh:
        fh.write(text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary file to fill; on success it replaces ``path`` in one rename.

    For output written in a stream (a tar archive): the temp file sits beside ``path`` (same
    filesystem, so ``os.replace`` is atomic) and is removed on error, leaving ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _public_mode(tmp, is_dir=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_figure(fig: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """Render a matplotlib ``Figure`` to PNG at ``path`` atomically, with normal file modes.

    Uses an Agg canvas attached to this figure only: no pyplot, no global backend switch, so
    importing or calling intentkit never changes a notebook's backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", **savefig_kwargs)
        _public_mode(tmp, is_dir=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_output_dir(path: str | Path, *, force: bool, flag: str = "--out") -> Path:
    """Refuse a non-empty output folder unless ``force``; return the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{flag} {path} is a file; pass a folder path")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OutputExistsError(
            f"{flag} {path} is not empty; pass --force to replace it or choose another folder"
        )
    return path


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` in one rename.

    On error the temp folder is removed and ``path`` is left exactly as it was. An existing
    ``path`` is moved aside first and deleted only after the new one is in place.
    """
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    _public_mode(tmp, is_dir=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
