"""``intentkit report`` and ``intentkit compare``: the evaluation pages, without running a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from intentkit.cli.app import app


@app.command("report")
def report_cmd(
    path: Annotated[Path, typer.Argument(help="Model folder with eval/, or an evaluation folder.")],
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the page in the default browser.")
    ] = False,
) -> None:
    """Rebuild report.html from an existing evaluation (report.json + predictions.parquet).

    Example: intentkit report models/clinc150 --open

    One self-contained file (no network access needed): summary, sortable per-class table,
    interactive confusion matrix, searchable errors, threshold trade-off, reliability diagram,
    data and training curves. `intentkit evaluate` writes it too.
    """
    from intentkit.evaluation.report.page import write_report

    written = write_report(path)
    typer.echo(f"report: {written}")
    if open_page:
        import webbrowser

        webbrowser.open(written.resolve().as_uri())


@app.command("compare")
def compare_cmd(
    eval_a: Annotated[Path, typer.Argument(help="Model A's evaluation (or model folder).")],
    eval_b: Annotated[Path, typer.Argument(help="Model B's evaluation, on the same rows.")],
    out: Annotated[
        Optional[Path],  # noqa: UP045 - Typer reads this annotation at runtime on Python 3.10
        typer.Option(help="Folder for compare.html and compare.json (default: current folder)."),
    ] = None,
) -> None:
    """Compare two evaluations of the same rows: compare.html + compare.json.

    Example: intentkit compare models/small models/large --out cmp

    Headline metrics with deltas (B - A), per-class F1 deltas, the sentences one model gets
    right and the other wrong, and McNemar's test on the paired correctness (exact binomial
    below 25 discordant rows, else chi-square with continuity correction).
    """
    from intentkit.evaluation.report.compare import write_compare

    html_path, json_path = write_compare(eval_a, eval_b, out)
    typer.echo(f"compare: {html_path} (+ {json_path.name})")
