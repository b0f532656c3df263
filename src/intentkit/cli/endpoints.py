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
from intentkit.cli.common import ApiKey, StateDir, env, registry, target_option
from intentkit.config import CaptureConfig, ServeConfig
from intentkit.errors import ConfigError

Target = target_option("Where the endpoint runs: local (a detached server) | sagemaker.")


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
        typer.Option(
            help="SageMaker: autoscaling target in requests (InvokeEndpoint calls, whatever the "
            "texts per call) per instance per minute; default 33 = 70 % of ModernBERT-base's "
            "47 requests/min of 64 texts on 2 vCPUs (README, SageMaker). Raise it for "
            "one-text requests or smaller models."
        ),
    ] = None,
    serverless: Annotated[
        bool,
        typer.Option(
            "--serverless",
            help="SageMaker: a serverless endpoint (billed per request and compute time; cold "
            "starts), instead of instances.",
        ),
    ] = False,
    memory_mb: Annotated[
        int | None,
        typer.Option(help="SageMaker --serverless: memory, 1024-6144 in steps of 1024 (2048)."),
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option(help="SageMaker --serverless: concurrent invocations, 1-200 (default 5)."),
    ] = None,
    capture: Annotated[
        str | None,
        typer.Option(
            help="Capture answered texts. Local: a folder (serve --capture DIR, one JSON line "
            "per text). SageMaker: s3://BUCKET/PREFIX (data capture of requests and answers, "
            "JSON Lines under PREFIX/NAME/AllTraffic/yyyy/mm/dd/hh/)."
        ),
    ] = None,
    capture_sample: Annotated[
        int | None,
        typer.Option(help="SageMaker --capture: percentage of requests captured (default 100)."),
    ] = None,
    capture_rotate_s: Annotated[
        float | None,
        typer.Option(help="Local --capture: publish a capture file after this many seconds (300)."),
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
        "--capture-rotate-s": capture_rotate_s is not None,
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
        "--serverless": serverless or None,
        "--memory-mb": memory_mb,
        "--max-concurrency": max_concurrency,
        "--capture-sample": capture_sample,
        "--dry-run": dry_run or None,
    }
    reg = registry(state_dir)
    # --capture is both targets' flag: a folder here, an S3 prefix there (SageMakerOptions checks
    # the prefix; a local deploy must not take one for a folder name).
    if target == "local" and capture is not None and capture.startswith("s3://"):
        raise ConfigError(
            f"--capture {capture}: expected a local folder with --target local "
            "(s3:// is SageMaker's data capture: add --target sagemaker)"
        )
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
            serverless=serverless,
            memory_mb=memory_mb,
            max_concurrency=max_concurrency,
            capture=capture,
            capture_sample=capture_sample,
        )
        rec = get_target(target, reg).deploy(name, model_dir, opts)
        if dry_run:
            print("dry run: the requests above were not sent; nothing was created", file=sys.stderr)
            return
        print(f"deployed {name} at {rec['url']} ({_capacity(rec)})")
        return
    _refuse(
        {k: v is not None for k, v in sagemaker_flags.items()},
        "sagemaker",
        "drop them or pass --target sagemaker",
    )
    from intentkit.endpoints.local import LocalOptions

    if capture_rotate_s is not None:  # checked here: the detached server's error is in its log
        if capture is None:
            raise ConfigError("--capture-rotate-s needs --capture DIR; add it or drop the flag")
        CaptureConfig(dir=capture, rotate_s=capture_rotate_s)
    args = ["--no-reject"] if no_reject else []
    if no_playground:
        args.append("--no-playground")
    for flag, value in (
        ("--max-wait-ms", max_wait_ms),
        ("--max-batch-tokens", max_batch_tokens),
        ("--threads", threads),
        ("--dtype", dtype),
        ("--backend", backend),
        ("--capture", capture and Path(capture).resolve()),  # the server runs elsewhere
        ("--capture-rotate-s", capture_rotate_s),
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


def _capacity(rec: dict[str, Any]) -> str:
    """What a SageMaker endpoint runs on and how it bills, for deploy's last line."""
    name = rec["name"]
    serverless = (rec.get("variant") or {}).get("ServerlessConfig")
    if serverless:
        text = (
            f"serverless {serverless['MemorySizeInMB']} MB, up to "
            f"{serverless['MaxConcurrency']} concurrent; billed per request and compute time"
        )
    else:
        scaling = rec["autoscaling"]
        extra = f", autoscaling {scaling['min']}-{scaling['max']}" if scaling else ""
        text = (
            f"{rec['instance_type']} x{rec['instance_count']}{extra}; billed per instance-hour "
            f"until `intentkit delete {name}`"
        )
    if rec.get("capture"):
        text += f"; capturing {rec['capture']['sample']} % of requests to {rec['capture']['uri']}/"
    return text


def _sagemaker_options(settings: Any, image: str | None, **given: Any) -> Any:
    """The :class:`SageMakerOptions` for the flags given (unset ones keep its defaults)."""
    from intentkit.sagemaker.endpoint_options import SageMakerOptions

    return SageMakerOptions(
        settings=settings, image=image, **{k: v for k, v in given.items() if v is not None}
    )


@app.command()
def endpoints(
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Forget endpoints whose resources are gone (a SageMaker endpoint deleted "
            "elsewhere: its leftover config, model and archive are deleted too).",
        ),
    ] = False,
) -> None:
    """List deployed endpoints of every target with live status (dead local ones are removed).

    A SageMaker endpoint deleted outside intentkit shows as `gone`; `--prune` forgets it.
    """
    from rich.console import Console
    from rich.table import Table

    from intentkit.endpoints import prune as prune_dead
    from intentkit.endpoints import target_of

    reg = registry(state_dir)
    gone = [(name, "process gone") for name in prune_dead(reg)]
    rows = []
    for rec in reg.all().values():
        target = target_of(rec, reg)
        status = target.status(rec)
        if prune and status in ("gone", "dead"):
            how = target.delete(rec)
            gone.append(
                (rec["name"], f"{how}: its {rec.get('target', 'local')} resources were gone")
            )
            continue
        rows.append({**rec, "target": rec.get("target", "local"), "status": status})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    # Piped or redirected output is not cut to 80 columns: names and paths stay whole.
    console = Console() if sys.stdout.isatty() else Console(width=100_000)
    for name, why in gone:
        console.print(f"[yellow]removed stale endpoint {name} ({why})[/yellow]")
    if not rows:
        console.print("no endpoints; start one with `intentkit deploy MODEL_DIR --name NAME`")
        return
    table = Table("name", "target", "status", "url", "model", "started")
    for column in table.columns[:2]:
        column.overflow = "fold"  # on a narrow terminal a name wraps, it is never cut short
    for r in rows:
        table.add_row(r["name"], r["target"], r["status"], r["url"], r["model"], r["started"])
    console.print(table)
    if any(r["status"] == "gone" for r in rows) and not prune:
        console.print(
            "`gone`: deleted outside intentkit; `intentkit endpoints --prune` forgets them"
        )


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds to wait: local, before SIGKILL (default 30); sagemaker, until "
            "SageMaker allows the delete, i.e. the endpoint leaves Creating/Updating "
            "(default 1800)."
        ),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Delete an endpoint and what deploy created (local: SIGTERM, in-flight requests finish).

    A SageMaker endpoint that is still Creating or Updating cannot be deleted yet: delete waits
    (with a live status line) until SageMaker allows it, then removes the autoscaling
    registration, endpoint, endpoint config, model and uploaded archive.
    """
    from intentkit.endpoints import lookup, target_of

    reg = registry(state_dir)
    rec = lookup(reg, name)
    how = target_of(rec, reg).delete(rec, timeout=timeout)
    print(f"deleted {name} ({how})")
