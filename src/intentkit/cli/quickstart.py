"""``intentkit quickstart``: the whole job offline, bundled dataset to deleted endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from intentkit.cli.app import app
from intentkit.cli.common import StateDir, state_dir_or_env


@app.command()
def quickstart(
    model: Annotated[
        str | None,
        typer.Option(help="Encoder (default: modernbert-base if loadable, else minilm)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("demo-output"),
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 2.0,
    port: Annotated[int, typer.Option(help="Endpoint port (0 = a free one).")] = 0,
    state_dir: StateDir = None,
) -> None:
    """Run the whole job offline: prepare clinc150-travel, train, evaluate, deploy, predict."""
    from rich.console import Console

    from intentkit.quickstart import render_summary, run_quickstart

    console = Console(stderr=True)
    summary = run_quickstart(
        out,
        model=model,
        force=force,
        epochs=epochs,
        port=port,
        state_dir=state_dir_or_env(state_dir),
        console=console,
    )
    render_summary(summary, Console())
