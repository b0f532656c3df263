"""``intentkit monitor`` and ``intentkit review``: learn from captured live traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from intentkit.cli.app import app

Captures = Annotated[
    list[Path],
    typer.Argument(
        help="Capture folders or files: `serve --capture` output or SageMaker data capture.",
        show_default=False,
    ),
]
Model = Annotated[Path, typer.Option("--model", help="The served model's artifact folder.")]


@app.command()
def monitor(
    captures: Captures,
    model: Model,
    out: Annotated[Path, typer.Option(help="Folder for monitor.json and monitor.html.")] = Path(
        "monitor"
    ),
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when any threshold is passed.")
    ] = False,
    max_answer_js: Annotated[float, typer.Option(help="Answers vs training.")] = 0.1,
    max_confidence_js: Annotated[float, typer.Option(help="Last window vs reference.")] = 0.1,
    max_oos_js: Annotated[float, typer.Option(help="Last window vs reference.")] = 0.1,
    max_rejection_increase: Annotated[
        float, typer.Option(help="Rejection rate rise, last window vs first.")
    ] = 0.1,
) -> None:
    """Compare captured traffic with training: writes OUT/monitor.json and OUT/monitor.html.

    Traffic and rejection rate over time, answers vs the training label distribution
    (Jensen-Shannon, per label), confidence and out-of-scope-score drift vs the first window.
    Corrupt or cut-off capture lines are skipped and counted. With --fail-on-drift the exit
    code is 1 past a threshold (for cron or CI).
    """
    from intentkit.loop.monitor import Thresholds
    from intentkit.loop.monitor import monitor as run_monitor
    from intentkit.loop.monitor_page import write_monitor

    limits = Thresholds(max_answer_js, max_confidence_js, max_oos_js, max_rejection_increase)
    summary = run_monitor(captures, model, thresholds=limits)
    write_monitor(summary, out)
    read = summary["read"]
    bad = [k for k, d in summary["drift"].items() if d["drifted"]]
    print(
        f"{summary['rows']:,} texts from {read['files']} file(s), {read['skipped']} line(s) "
        f"skipped; drift: {', '.join(bad) or 'none'} -> {out / 'monitor.html'}"
    )
    if fail_on_drift and bad:
        raise typer.Exit(1)


@app.command()
def review(
    captures: Captures,
    model: Model,
    labels: Annotated[
        Path, typer.Option("--labels", help="Labels JSONL: decisions are appended here.")
    ],
    port: Annotated[int, typer.Option(help="Port of the local review page.")] = 8765,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write the ranked queue as CSV and exit.")
    ] = None,
    import_: Annotated[
        Path | None,
        typer.Option("--import", help="Append a labelled CSV (text, label columns) and exit."),
    ] = None,
) -> None:
    """Label captured texts, most worth a label first: rejected, then unsure answers.

    Serves a keyboard-driven page on http://127.0.0.1:PORT/ (accept, relabel with type-ahead,
    new label for a whole cluster of rejected texts, out-of-scope, skip). Every decision is
    appended to LABELS at once, so a closed tab loses nothing and reopening resumes. Without a
    browser: --export queue.csv, label it elsewhere, then --import labelled.csv.
    Feed LABELS to `intentkit data add`.
    """
    from intentkit.loop.review import LabelsFile, build_queue, model_labels
    from intentkit.loop.review_page import export_csv, import_csv, make_server

    decisions = LabelsFile(labels, model_labels(model))  # another model's file: refused first
    if import_ is not None:
        n = import_csv(import_, decisions)
        print(f"imported {n} labelled rows into {labels}")
    if import_ is not None and export is None:
        return
    queue = build_queue(captures, model)
    if export is not None:
        n = export_csv(queue, decisions, export)
        print(f"exported {n} texts ({len(queue.clusters)} clusters) to {export}")
        return
    server = make_server(queue, decisions, port, str(model))
    print(
        f"review {len(queue.items)} texts at http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
