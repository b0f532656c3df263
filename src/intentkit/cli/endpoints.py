"""``intentkit deploy``, ``endpoints`` and ``delete``: the endpoint lifecycle.

Each command works on every target (:mod:`intentkit.endpoints`); a registry record says which
target owns an endpoint, so only ``deploy`` takes ``--target``. ``predict`` is in
``cli/predict.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from intentkit.cli.app import app
from intentkit.cli.aws_options import (
    Bucket,
    DryRun,
    Image,
    ImageVersion,
    Region,
    Role,
    aws_settings,
)
from intentkit.cli.common import ApiKey, StateDir, env, registry
from intentkit.config import ServeConfig
from intentkit.errors import ConfigError

Target = Annotated[
    str, typer.Option(help="Where the endpoint runs: local (a detached server) | sagemaker.")
]


@app.command()
def deploy(
    model_dir: Annotated[Path, typer.Argument(help="Artifact folder to serve.")],
    name: Annotated[str, typer.Option(help="Endpoint name (unique).")],
    target: Target = "local",
    port: Annotated[
        int | None, typer.Option(help=f"Local only: port to bind [default: {ServeConfig.port}].")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help=f"Local only: bind address [default: {ServeConfig.host}].")
    ] = None,
    api_key: ApiKey = None,
    no_reject: Annotated[
        bool, typer.Option("--no-reject", help="Local only: turn rejection off.")
    ] = False,
    no_playground: Annotated[
        bool, typer.Option("--no-playground", help="Local only: no test page at GET /.")
    ] = False,
    max_wait_ms: Annotated[float | None, typer.Option(help="Local only: passed to serve.")] = None,
    max_batch_tokens: Annotated[
        int | None, typer.Option(help="Local only: passed to serve.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Local only: passed to serve.")] = None,
    dtype: Annotated[str | None, typer.Option(help="Local only: passed to serve.")] = None,
    backend: Annotated[str | None, typer.Option(help="Local only: passed to serve.")] = None,
    capture: Annotated[
        Path | None, typer.Option(help="Local only: serve --capture DIR (answered texts).")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait until it answers (local: 180, sagemaker: 1800)."),
    ] = None,
    region: Region = None,
    role: Role = None,
    bucket: Bucket = None,
    image: Image = None,
    image_version: ImageVersion = None,
    instance_type: Annotated[
        str | None, typer.Option(help="SageMaker: instance type (default ml.c7i.large).")
    ] = None,
    instance_count: Annotated[
        int | None, typer.Option(help="SageMaker: instances to start with (default 1).")
    ] = None,
    min_instances: Annotated[
        int | None,
        typer.Option(help="SageMaker: autoscaling floor (default --instance-count)."),
    ] = None,
    max_instances: Annotated[
        int | None,
        typer.Option(help="SageMaker: autoscaling ceiling; above 1 adds a target-tracking policy."),
    ] = None,
    target_invocations: Annotated[
        int | None,
        typer.Option(help="SageMaker: autoscaling target, invocations per instance per minute."),
    ] = None,
    dry_run: DryRun = False,
    state_dir: StateDir = None,
) -> None:
    """Start an endpoint for MODEL_DIR and wait until it answers.

    --target local starts a detached `intentkit serve` (the "Local only" flags are passed to
    it). --target sagemaker packs MODEL_DIR, uploads it to S3 and creates a SageMaker model,
    endpoint config and endpoint (billed per instance-hour until `intentkit delete NAME`);
    local-only flags are refused there, and SageMaker flags with --target local.
    --image huggingface serves it on AWS's Hugging Face PyTorch inference image for the region
    (CPU or GPU by --instance-type; intentkit's handler ships as code/inference.py).
    """
    from intentkit.endpoints import get_target

    local_flags = {
        # Given at all, even as the local default: a SageMaker endpoint cannot take it.
        "--port": port is not None,
        "--host": host is not None,
        "--api-key": api_key is not None,
        "--no-reject": no_reject,
        "--no-playground": no_playground,
        "--max-wait-ms": max_wait_ms is not None,
        "--max-batch-tokens": max_batch_tokens is not None,
        "--threads": threads is not None,
        "--dtype": dtype is not None,
        "--backend": backend is not None,
        "--capture": capture is not None,
    }
    sagemaker_flags = {
        "--region": region,
        "--role": role,
        "--bucket": bucket,
        "--image": image,
        "--image-version": image_version,
        "--instance-type": instance_type,
        "--instance-count": instance_count,
        "--min-instances": min_instances,
        "--max-instances": max_instances,
        "--target-invocations": target_invocations,
        "--dry-run": dry_run or None,
    }
    reg = registry(state_dir)
    if target == "sagemaker":
        _refuse(
            local_flags,
            "local",
            "drop them (a SageMaker endpoint always listens on 8080, and its image decides "
            "how it serves)",
        )
        opts: Any = _sagemaker_options(
            aws_settings(region, role, bucket, dry_run),
            image=image,
            image_version=image_version,
            instance_type=instance_type,
            instance_count=instance_count,
            min_instances=min_instances,
            max_instances=max_instances,
            target_invocations=target_invocations,
            timeout=timeout,
        )
        rec = get_target(target, reg).deploy(name, model_dir, opts)
        if dry_run:
            print("dry run: the requests above were not sent; nothing was created", file=sys.stderr)
            return
        scaling = rec["autoscaling"]
        extra = f", autoscaling {scaling['min']}-{scaling['max']}" if scaling else ""
        print(
            f"deployed {name} at {rec['url']} ({rec['instance_type']} x{rec['instance_count']}"
            f"{extra}; billed until `intentkit delete {name}`)"
        )
        return
    _refuse(
        {k: v is not None for k, v in sagemaker_flags.items()},
        "sagemaker",
        "drop them or pass --target sagemaker",
    )
    from intentkit.endpoints.local import LocalOptions

    args = ["--no-reject"] if no_reject else []
    if no_playground:
        args.append("--no-playground")
    for flag, value in (
        ("--max-wait-ms", max_wait_ms),
        ("--max-batch-tokens", max_batch_tokens),
        ("--threads", threads),
        ("--dtype", dtype),
        ("--backend", backend),
        ("--capture", capture and capture.resolve()),  # the server runs from another folder
    ):
        if value is not None:
            args += [flag, str(value)]
    local = LocalOptions(
        host=ServeConfig.host if host is None else host,
        port=ServeConfig.port if port is None else port,
        serve_args=args,
        api_key=api_key or env("INTENTKIT_API_KEY"),
        timeout=180.0 if timeout is None else timeout,
    )
    rec = get_target(target, reg).deploy(name, model_dir, local)
    print(f"deployed {name} at {rec['url']} (pid {rec['pid']}, log {rec['log']})")


def _refuse(given: dict[str, bool], kind: str, fix: str) -> None:
    """One error naming every flag that only applies to another target."""
    flags = [flag for flag, was_given in given.items() if was_given]
    if flags:
        other = "sagemaker" if kind == "local" else "local"
        raise ConfigError(
            f"{', '.join(flags)}: only for --target {kind}, not --target {other}; {fix}"
        )


def _sagemaker_options(settings: Any, image: str | None, **given: Any) -> Any:
    """The :class:`SageMakerOptions` for the flags given (unset ones keep its defaults)."""
    from intentkit.sagemaker.endpoint import SageMakerOptions

    return SageMakerOptions(
        settings=settings, image=image, **{k: v for k, v in given.items() if v is not None}
    )


@app.command()
def endpoints(
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List deployed endpoints of every target with live status (dead local ones are removed)."""
    from rich.console import Console
    from rich.table import Table

    from intentkit.endpoints import prune, target_of

    reg = registry(state_dir)
    gone = prune(reg)
    rows = [
        {**rec, "target": rec.get("target", "local"), "status": target_of(rec, reg).status(rec)}
        for rec in reg.all().values()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    console = Console()
    for name in gone:
        console.print(f"[yellow]removed stale endpoint {name} (process gone)[/yellow]")
    if not rows:
        console.print("no endpoints; start one with `intentkit deploy MODEL_DIR --name NAME`")
        return
    table = Table("name", "target", "status", "url", "model", "started")
    for r in rows:
        table.add_row(r["name"], r["target"], r["status"], r["url"], r["model"], r["started"])
    console.print(table)


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    timeout: Annotated[float, typer.Option(help="Seconds before SIGKILL (local).")] = 30.0,
    state_dir: StateDir = None,
) -> None:
    """Delete an endpoint and what deploy created (local: SIGTERM, in-flight requests finish)."""
    from intentkit.endpoints import lookup, target_of

    reg = registry(state_dir)
    rec = lookup(reg, name)
    how = target_of(rec, reg).delete(rec, timeout=timeout)
    print(f"deleted {name} ({how})")
