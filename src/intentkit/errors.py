"""Errors that reach users: one line, naming the field and the fix.

The CLI prints ``IntentkitError`` as ``error: <message>`` and exits with code 2; the HTTP
server maps its subclasses onto typed 4xx answers. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class IntentkitError(Exception):
    """A problem with the user's input or environment that they can fix."""

    exit_code = 2


class DataError(IntentkitError):
    """Bad dataset: missing file, unknown column, too few rows per label, ..."""


class ConfigError(IntentkitError):
    """Bad option value or option combination."""


class ModelError(IntentkitError):
    """A model that cannot be found, fetched or loaded."""


class OutputExistsError(IntentkitError):
    """Refusing to overwrite a non-empty output without --force."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's first message line (cut to ``limit`` characters), else its type name.

    Library errors can span many lines; user-facing errors here are one line.
    """
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__
