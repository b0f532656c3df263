"""The Typer app objects; command modules attach their commands to these."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="intentkit",
    help="Fine-tune, evaluate and serve intent classifiers (ModernBERT or any HF encoder).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Prepare and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
