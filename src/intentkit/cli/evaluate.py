"""``intentkit evaluate``: score a trained model on a split of a prepared dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from intentkit.cli.app import app


@app.command("evaluate")
def evaluate_cmd(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by `intentkit train`.")],
    data: Annotated[Path, typer.Option("--data", help="Prepared dataset folder.")],
    split: Annotated[str, typer.Option(help="Split to score: test | val | train.")] = "test",
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Report folder (default MODEL_DIR/eval)."),
    ] = None,
    reject: Annotated[
        bool, typer.Option("--reject/--no-reject", help="Apply out-of-scope rejection.")
    ] = True,
) -> None:
    """Score a trained model on a split: report.json, report.html, predictions.parquet, PNGs.

    Example: intentkit evaluate model --data data/clinc150 --split test

    Predictions go through the same Predictor as serving (temperature + rejection), so the
    numbers are what the endpoint answers. Prints the headline metrics and the worst classes.
    """
    from rich.console import Console

    from intentkit.evaluation.evaluate import evaluate, rejection_line, worst_classes_table

    report = evaluate(model_dir, data, split=split, out=out, reject=reject)
    console = Console()
    keys = ("accuracy", "macro_f1", "weighted_f1", "in_scope_accuracy", "oos_recall")
    keys += ("ece_before", "ece_after")
    shown = "  ".join(
        f"{k}={report[k]:.4f}" for k in keys if isinstance(report.get(k), (int, float))
    )
    console.print(f"{split} n={report['n']}  {shown}")
    console.print(rejection_line(report))
    console.print(worst_classes_table(report))
    folder = Path(out) if out else Path(model_dir) / "eval"
    console.print(f"report: {folder / 'report.json'}")
    console.print(f"page: {folder / 'report.html'} (open it in a browser; works offline)")
