"""Pieces several command modules share: environment variables read at start, the registry.

Environment variables are an explicit alternative to flags and are read when a command starts
(never at import, never as option defaults): ``INTENTKIT_API_KEY``, ``INTENTKIT_STATE_DIR``,
and for containers ``INTENTKIT_MODEL_DIR``, ``INTENTKIT_HOST``, ``INTENTKIT_PORT``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer


def env(name: str) -> str | None:
    """The environment variable ``name``, or None when unset or empty."""
    value = os.environ.get(name)
    return value if value else None


def state_dir_or_env(state_dir: Path | None) -> Path | None:
    """``--state-dir``, else ``$INTENTKIT_STATE_DIR``, else None (the default location)."""
    value = env("INTENTKIT_STATE_DIR")
    return state_dir or (Path(value) if value else None)


def registry(state_dir: Path | None) -> Any:
    """The endpoint registry in ``--state-dir`` / ``$INTENTKIT_STATE_DIR`` / the user state dir."""
    from intentkit.endpoints.registry import Registry, default_state_dir

    return Registry(state_dir_or_env(state_dir) or default_state_dir())


StateDir = Annotated[
    Path | None,
    typer.Option(help="Registry folder (default: $INTENTKIT_STATE_DIR or the user state dir)."),
]
ApiKey = Annotated[
    str | None,
    typer.Option(help="Bearer token (default: $INTENTKIT_API_KEY); none = no auth."),
]


def _check_target(value: str) -> str:
    from intentkit.endpoints import check_target

    return check_target(value)


def target_option(help: str) -> Any:
    """The ``--target local|sagemaker`` option of every command that takes one: the same values
    and the same one-line error for any other (:func:`intentkit.endpoints.check_target`)."""
    return Annotated[str, typer.Option("--target", help=help, callback=_check_target)]


def jobs(state_dir: Path | None) -> Any:
    """The SageMaker job records (``jobs.json``) in the same folder as :func:`registry`."""
    from intentkit.sagemaker.jobs import job_registry

    return job_registry(state_dir_or_env(state_dir))
