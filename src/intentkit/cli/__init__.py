"""Command-line entry point: ``intentkit <command>``.

Each command group lives in a small module of ``cli/`` (data, train, evaluate, serve, endpoints,
predict, quickstart, container, export, report, tune); a command is one function whose docstring
is its
``--help``.
User errors (:class:`IntentkitError`) print one line and exit with code 2; nothing else is
swallowed.
"""

from __future__ import annotations

import logging
import sys

from intentkit.errors import IntentkitError


def _load_commands() -> None:
    # Imported for their side effect of registering commands on the app; each keeps its heavy
    # imports (torch, transformers) inside the command function so `--help` stays fast.
    import importlib

    groups = (
        "data",
        "train",
        "evaluate",
        "serve",
        "endpoints",
        "predict",
        "quickstart",
        "container",
        "export",
    )
    groups += ("report", "tune")
    for name in groups:
        try:
            importlib.import_module(f"intentkit.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"intentkit.cli.{name}":
                raise


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    from intentkit.cli.app import app

    _load_commands()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=argv, prog_name="intentkit", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except IntentkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
