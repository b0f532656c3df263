"""Command-line entry point: ``intentkit <command>``.

Each command group lives in a small module of ``cli/`` (data, train, evaluate, serve, endpoints,
jobs, predict, quickstart, container, export, report, tune); a command is one function whose
docstring is its ``--help``.
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
        "jobs",
        "predict",
        "quickstart",
        "container",
        "export",
    )
    groups += ("report", "tune", "loop")
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
    """Console-script entry point (also ``python -m intentkit``): the process exits after it."""
    code = main()
    _skip_exit_collections()
    sys.exit(code)


def _skip_exit_collections() -> None:
    # Interpreter shutdown runs full cyclic collections over every live object while it tears
    # the modules down: ~1.3 s after `intentkit train` (~0.25 s each over the ~500k objects
    # torch and transformers create). Freeze what is left instead: shutdown's collections skip
    # it, atexit handlers (logging.shutdown, tempfile cleanup) and the flushing of stdout and
    # stderr still run, and the OS takes the memory back. Skipped: finalising the garbage
    # cycles left at exit, which CPython does not promise either; after `intentkit train`
    # they are ~16k objects (the Trainer, its model, the datasets), no open file among them,
    # and the commands close their files themselves. Only here, at the real end of the
    # process, never in main(), which tests call in-process.
    import gc

    gc.freeze()
