"""``intentkit deploy``, ``endpoints``, ``predict`` and ``delete``: the endpoint lifecycle.

Each command works on every target (:mod:`intentkit.endpoints`); a registry record says which
target owns an endpoint, so only ``deploy`` takes ``--target``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from intentkit.cli.app import app
from intentkit.cli.aws_options import Bucket, DryRun, Image, Region, Role, aws_settings
from intentkit.cli.common import ApiKey, StateDir, env, registry
from intentkit.errors import ConfigError

Target = Annotated[
    str, typer.Option(help="Where the endpoint runs: local (a detached server) | sagemaker.")
]


@app.command()
def deploy(
    model_dir: Annotated[Path, typer.Argument(help="Artifact folder to serve.")],
    name: Annotated[str, typer.Option(help="Endpoint name (unique).")],
    target: Target = "local",
    port: Annotated[int, typer.Option(help="Local only: port to bind.")] = 8080,
    host: Annotated[str, typer.Option(help="Local only: bind address.")] = "127.0.0.1",
    api_key: ApiKey = None,
    no_reject: Annotated[
        bool, typer.Option("--no-reject", help="Local only: turn rejection off.")
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
    """
    from intentkit.endpoints import get_target

    local_flags = {
        "--port": port != 8080,
        "--host": host != "127.0.0.1",
        "--api-key": api_key is not None,
        "--no-reject": no_reject,
        "--max-wait-ms": max_wait_ms is not None,
        "--max-batch-tokens": max_batch_tokens is not None,
        "--threads": threads is not None,
        "--dtype": dtype is not None,
        "--backend": backend is not None,
    }
    sagemaker_flags = {
        "--region": region,
        "--role": role,
        "--bucket": bucket,
        "--image": image,
        "--instance-type": instance_type,
        "--instance-count": instance_count,
        "--min-instances": min_instances,
        "--max-instances": max_instances,
        "--target-invocations": target_invocations,
        "--dry-run": dry_run or None,
    }
    reg = registry(state_dir)
    if target == "sagemaker":
        _refuse(local_flags, "local", "drop them (the image decides how it serves)")
        opts: Any = _sagemaker_options(
            aws_settings(region, role, bucket, dry_run),
            image=image,
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
    for flag, value in (
        ("--max-wait-ms", max_wait_ms),
        ("--max-batch-tokens", max_batch_tokens),
        ("--threads", threads),
        ("--dtype", dtype),
        ("--backend", backend),
    ):
        if value is not None:
            args += [flag, str(value)]
    local = LocalOptions(
        host=host,
        port=port,
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
    from intentkit.endpoints.sagemaker import SageMakerOptions

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


def _read_texts(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield line


def _batches(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Local:
    """Predict in this process (no server)."""

    def __init__(self, model_dir: Path, no_reject: bool, backend: str) -> None:
        from intentkit.predict import Predictor

        self.predictor = Predictor.from_dir(model_dir, reject=not no_reject, backend=backend)

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        return [
            {"predicted_class": a["label"], "confidence": a["confidence"]}
            for a in self.predictor.predict(texts)
        ]


def _remote(endpoint: str, api_key: str | None, state_dir: Path | None) -> Any:
    """The invoker for ``--endpoint NAME|URL``: a URL is a local-style HTTP server."""
    from intentkit.endpoints import target_of
    from intentkit.endpoints.local import HttpInvoker

    if endpoint.startswith(("http://", "https://")):
        return HttpInvoker(endpoint, api_key)
    reg = registry(state_dir)
    rec = reg.get(endpoint)
    if rec is None:
        raise ConfigError(
            f"--endpoint {endpoint}: no such endpoint; see `intentkit endpoints` or pass a URL"
        )
    return target_of(rec, reg).invoker(rec, api_key=api_key)


@app.command()
def predict(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Endpoint name (see `intentkit endpoints`) or URL.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Predict locally with this artifact folder (sagemaker: a SageMaker model or "
            "endpoint name, or s3://.../model.tar.gz)."
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(help="Text file, one query per line (sagemaker: s3:// JSON Lines)."),
    ] = None,
    output: Annotated[
        str | None, typer.Option(help="Write JSONL here (default stdout; sagemaker: s3:// prefix).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per request / forward.")] = 64,
    api_key: ApiKey = None,
    no_reject: Annotated[bool, typer.Option("--no-reject", help="Local only.")] = False,
    backend: Annotated[
        str, typer.Option(help="Local only: torch | onnx | auto (onnx pays off for big files).")
    ] = "torch",
    state_dir: StateDir = None,
    target: Annotated[
        str, typer.Option(help="local | sagemaker (a batch transform from S3 to S3).")
    ] = "local",
    region: Region = None,
    role: Role = None,
    image: Image = None,
    instance_type: Annotated[
        str | None, typer.Option(help="SageMaker: instance type (default ml.c7i.xlarge).")
    ] = None,
    instance_count: Annotated[int | None, typer.Option(help="SageMaker: instances.")] = None,
    job_name: Annotated[
        str | None, typer.Option(help="SageMaker: job name (default intentkit-<timestamp>).")
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="SageMaker: print the job name and return.")
    ] = False,
    dry_run: DryRun = False,
) -> None:
    """Classify texts via an endpoint (--endpoint) or locally (--model); one JSON line per text.

    --target sagemaker runs a batch transform: --file s3://.../texts.jsonl ({"text": ...} per
    line) --output s3://.../ --model NAME|s3://.../model.tar.gz (the latter with --image and
    --role; its temporary SageMaker model is deleted when the job ends).
    """
    sagemaker = {
        "region": region,
        "role": role,
        "image": image,
        "instance_type": instance_type,
        "instance_count": instance_count,
        "job_name": job_name,
        "no_wait": no_wait or None,
        "dry_run": dry_run or None,
    }
    if target != "local":
        _predict_sagemaker(target, texts, endpoint, model, file, output, sagemaker, state_dir)
        return
    given = [f"--{k.replace('_', '-')}" for k, v in sagemaker.items() if v is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: only for --target sagemaker; add that or drop it")
    file = Path(file) if file is not None else None  # type: ignore[assignment]
    if (endpoint is None) == (model is None):
        raise ConfigError("pass exactly one of --endpoint NAME|URL or --model MODEL_DIR")
    if not texts and file is None:
        raise ConfigError("give texts as arguments or --file queries.txt")
    if file is not None and not file.is_file():
        raise ConfigError(f"--file {file}: no such file")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if endpoint is not None:
        run = _remote(endpoint, api_key or env("INTENTKIT_API_KEY"), state_dir)
    else:
        assert model is not None
        run = _Local(Path(model), no_reject, backend)

    out = open(output, "w", encoding="utf-8") if output else sys.stdout
    try:
        if file is None:
            for batch in _batches(iter(texts or []), batch_size):
                _write(out, batch, run(batch))
            return
        from rich.console import Console
        from rich.progress import Progress

        total = sum(1 for _ in _read_texts(file))  # a cheap pass so the bar has an end
        # The bar goes to stderr so stdout stays pure JSONL.
        with Progress(console=Console(stderr=True)) as bar:
            task = bar.add_task(f"predicting {file.name}", total=total)
            for batch in _batches(_read_texts(file), batch_size):
                _write(out, batch, run(batch))
                bar.advance(task, len(batch))
    finally:
        if output:
            out.close()


def _predict_sagemaker(
    target: str,
    texts: list[str] | None,
    endpoint: str | None,
    model: str | None,
    file: str | None,
    output: str | None,
    sm: dict[str, Any],
    state_dir: Path | None,
) -> None:
    """``predict --target sagemaker``: a batch transform (``intentkit.aws.transform``)."""
    from intentkit.aws.session import AwsSettings
    from intentkit.aws.transform import TransformOptions, transform_on_sagemaker

    if target != "sagemaker":
        raise ConfigError(f"--target {target}: unknown target; use local or sagemaker")
    if texts or endpoint is not None:
        raise ConfigError(
            "--target sagemaker reads --file s3://...; drop the texts and --endpoint (or use "
            "--endpoint NAME without --target for a deployed endpoint)"
        )
    if not model or not file or not output:
        raise ConfigError(
            "--target sagemaker needs --model NAME|s3://.../model.tar.gz, --file "
            "s3://.../texts.jsonl and --output s3://.../"
        )
    if not model.startswith("s3://"):
        if Path(model).is_dir():
            raise ConfigError(
                f"--model {model}: a local folder; package it with `intentkit export {model} "
                "--format sagemaker`, upload it to S3 and pass its s3:// URI with --image"
            )
        rec = registry(state_dir).get(model)
        if rec is not None and rec.get("target") == "sagemaker" and rec.get("model_name"):
            model = str(rec["model_name"])  # an intentkit SageMaker endpoint: its model
    settings = AwsSettings.resolve(
        region=sm["region"], role=sm["role"], dry_run=bool(sm["dry_run"])
    )
    given = {k: sm[k] for k in ("instance_type", "instance_count", "job_name") if sm[k] is not None}
    options = TransformOptions(image=sm["image"], wait=not sm["no_wait"], **given)
    transform_on_sagemaker(model, file, output, settings=settings, options=options)


def _write(out: Any, texts: list[str], answers: list[dict[str, Any]]) -> None:
    for text, ans in zip(texts, answers, strict=True):
        row = {"text": text, **ans}
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    out.flush()
