"""``intentkit jobs``, ``jobs attach JOB`` and ``jobs stop JOB``: SageMaker jobs intentkit started.

The records are written by ``train --target sagemaker`` and ``predict --target sagemaker`` when
SageMaker accepts a job (:mod:`intentkit.sagemaker.job_records`).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from intentkit.cli.app import app
from intentkit.cli.common import StateDir, jobs

jobs_app = typer.Typer(
    help="SageMaker training and transform jobs started by intentkit: list, attach, stop.",
    invoke_without_command=True,
)
app.add_typer(jobs_app, name="jobs")

Job = Annotated[
    str, typer.Argument(help="Job name (see `intentkit jobs`).", metavar="JOB", show_default=False)
]


@jobs_app.callback()
def list_jobs(
    ctx: typer.Context,
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the SageMaker jobs intentkit started, with SageMaker's live status.

    `intentkit jobs attach JOB` resumes waiting (and fetches a training job's model into its
    --out); `intentkit jobs stop JOB` stops one.
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = state_dir
        return
    from rich.console import Console
    from rich.table import Table

    from intentkit.sagemaker.job_records import job_status

    records = sorted(jobs(state_dir).all().values(), key=lambda r: r["started"])
    rows = [{**r, "status": job_status(r)} for r in records]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    console = Console()
    if not rows:
        console.print(
            "no jobs; `intentkit train --target sagemaker` or `predict --target "
            "sagemaker` start one"
        )
        return
    table = Table("name", "kind", "region", "status", "started", "writes to")
    for r in rows:
        table.add_row(
            r["name"],
            r["kind"],
            r["region"],
            r["status"],
            r["started"],
            r.get("out") or r.get("output") or "",
        )
    console.print(table)


@jobs_app.command("attach")
def attach_cmd(
    ctx: typer.Context,
    job: Job,
    force: Annotated[
        bool, typer.Option("--force", help="Training: replace a non-empty --out.")
    ] = False,
) -> None:
    """Follow JOB's live status and log lines until it ends, then finish what started it.

    A training job's model is unpacked into the --out it was started with (atomically, as
    `train --target sagemaker` would have); a transform's temporary model is deleted.
    """
    from intentkit.sagemaker.job_records import attach, lookup_job

    attach(lookup_job(jobs(ctx.obj), job), force=force)


@jobs_app.command("stop")
def stop_cmd(ctx: typer.Context, job: Job) -> None:
    """Stop JOB (SageMaker: Stopping, then Stopped; a training job gets 120 s to save)."""
    from intentkit.sagemaker.job_records import lookup_job, stop

    record = lookup_job(jobs(ctx.obj), job)
    was = stop(record)
    print(
        f"stopping {record['kind']} job {job} (was {was}); `intentkit jobs attach {job}` "
        "follows it to Stopped"
    )
