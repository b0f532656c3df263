"""``intentkit monitor`` and ``intentkit review``: learn from captured live traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from intentkit.cli.app import app
from intentkit.cli.common import ApiKey, StateDir, env, registry

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


@app.command()
def promote(
    model_dir: Annotated[Path, typer.Argument(help="The new model's artifact folder.")],
    endpoint: Annotated[str, typer.Option("--endpoint", help="Endpoint to move (any target).")],
    data: Annotated[
        Path, typer.Option("--data", help="Prepared folder from `data add` (test + reviewed_test).")
    ],
    alpha: Annotated[float, typer.Option(help="McNemar significance level.")] = 0.05,
    api_key: ApiKey = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds the new model gets to take over (local 180, sagemaker 1800)."),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Gate MODEL_DIR against the endpoint's model, then switch the endpoint to it (blue/green).

    Both models answer the frozen test split and reviewed_test of --data; the switch happens only
    when the new model is not significantly worse on test (McNemar) and better on reviewed_test,
    else exit 1 with the table. The new server joins the port, takes new connections once warm,
    and the old one drains: no request fails. A SageMaker endpoint gets a new model and
    endpoint config through UpdateEndpoint (it serves the old one until the update ends); if
    SageMaker refuses or fails the update, the new model and config are deleted and it keeps
    serving the old one. `intentkit rollback NAME` goes back.
    """
    from intentkit.loop.promote import GateRefused
    from intentkit.loop.promote import promote as run_promote

    key = api_key or env("INTENTKIT_API_KEY")
    try:
        verdict, rec = run_promote(
            registry(state_dir), endpoint, model_dir, data, alpha=alpha, api_key=key,
            timeout=timeout,
        )  # fmt: skip
    except GateRefused as exc:
        _print_verdict(exc.verdict)  # type: ignore[attr-defined]
        raise
    _print_verdict(verdict)
    print(f"promoted: {endpoint} serves {rec['model']} ({_where(rec)}); rollback: "
          f"`intentkit rollback {endpoint}`")  # fmt: skip


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="Endpoint to move back (any target).")],
    api_key: ApiKey = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds the old model gets to take over (local 180, sagemaker 1800)."),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Switch NAME back to the model it served before the last promote (no gate).

    Local: blue/green on the same port. SageMaker: UpdateEndpoint back to the previous model's
    endpoint config (kept until `intentkit delete NAME`).
    """
    from intentkit.loop.promote import rollback as run_rollback

    key = api_key or env("INTENTKIT_API_KEY")
    rec = run_rollback(registry(state_dir), name, api_key=key, timeout=timeout)
    print(f"rolled back: {name} serves {rec['model']} ({_where(rec)})")


def _where(rec: dict) -> str:
    """What runs the model: a local server's pid, a SageMaker endpoint's config."""
    if rec.get("target") == "sagemaker":
        return f"endpoint config {rec['endpoint_config']}"
    return f"pid {rec['pid']}"


def _print_verdict(verdict: dict) -> None:
    print(f"{'split':<14}{'rows':>6}{'old acc':>9}{'new acc':>9}{'b':>5}{'c':>5}{'McNemar p':>11}")
    for split in ("test", "reviewed_test"):
        r = verdict.get(split)
        if r:
            print(f"{split:<14}{r['rows']:>6}{r['accuracy_old']:>9.3f}{r['accuracy_new']:>9.3f}"
                  f"{r['b']:>5}{r['c']:>5}{r['p_value']:>11.3g}")  # fmt: skip
    print("b: rows only the old model gets right; c: only the new one")
