"""``intentkit predict``: texts through an endpoint (any target), locally, or as a batch transform.

``--endpoint NAME|URL`` sends them to a deployed endpoint through its target's invoker,
``--model MODEL_DIR`` predicts in this process (``--file``: a streaming, resumable bulk run,
:mod:`intentkit.bulk.scoring`), and ``--target sagemaker`` runs a SageMaker batch transform from
S3 to S3. One JSON line (or Parquet row) per text, whichever way.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from intentkit.cli.app import app
from intentkit.cli.aws_options import DryRun, Image, JobName, NoWait, Region, Role
from intentkit.cli.common import ApiKey, StateDir, env, jobs, registry, target_option
from intentkit.errors import ConfigError


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
        from intentkit.export.loader import load_predictor

        self.predictor = load_predictor(model_dir, reject=not no_reject, backend=backend)

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
        typer.Option(
            help="Texts to classify: .txt (one per line), .csv, .tsv, .jsonl or .parquet, "
            "streamed whatever its size (sagemaker: s3:// JSON Lines)."
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            help="Write JSONL here, or Parquet with --file OUT.parquet (default stdout; "
            "sagemaker: s3:// prefix)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per request / forward.")] = 64,
    text_column: Annotated[
        str | None,
        typer.Option(help="--file: the text column of CSV/TSV/JSONL/Parquet (detected)."),
    ] = None,
    on_error: Annotated[
        str | None,
        typer.Option(
            help="--file: skip a bad line (listed in OUT.errors.jsonl) or fail on it "
            "(exit 2). skip | fail [default: skip]"
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="--file: continue an interrupted run into the same --output."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="--file: overwrite an existing --output.")
    ] = False,
    chunk_size: Annotated[
        int,
        typer.Option(
            help="--file: texts per committed chunk (--model: length-sorted into batches)."
        ),
    ] = 4096,
    api_key: ApiKey = None,
    no_reject: Annotated[bool, typer.Option("--no-reject", help="Local only.")] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            help="Local only: torch | onnx | auto [default: auto with --file (ONNX Runtime on "
            "CPU), else torch]"
        ),
    ] = None,
    state_dir: StateDir = None,
    target: target_option("local | sagemaker (a batch transform from S3 to S3).") = "local",
    region: Region = None,
    role: Role = None,
    image: Image = None,
    instance_type: Annotated[
        str | None, typer.Option(help="SageMaker: instance type (default ml.c7i.xlarge).")
    ] = None,
    instance_count: Annotated[int | None, typer.Option(help="SageMaker: instances.")] = None,
    job_name: JobName = None,
    no_wait: NoWait = False,
    dry_run: DryRun = False,
) -> None:
    """Classify texts via an endpoint (--endpoint) or locally (--model); one JSON line per text.

    --model MODEL_DIR (or --endpoint NAME|URL) --file BIG.txt|.csv|.tsv|.jsonl|.parquet --output
    OUT.jsonl|.parquet streams any file size in constant memory, with a progress bar; each row is
    {line, text, predicted_class, confidence, rejected}, in input order (rejected: null through
    an endpoint, which answers only the class and confidence). Bad lines are skipped and listed
    (--on-error fail stops at the first); an interrupted run continues with --resume.

    --target sagemaker runs a batch transform: --file s3://.../texts.jsonl ({"text": ...} per
    line) --output s3://.../ --model NAME|s3://.../model.tar.gz (the latter with --image and
    --role; its temporary SageMaker model is deleted when the job ends). Each request gets 600 s
    (1 retry; the Hugging Face image's model server is told the same) and carries at most
    600 s / 4 x (50 texts/s per vCPU, ModernBERT-base fp32 measured in bench/RESULTS.md) x
    52 bytes per text: 1 MB (~19k texts, ~96 s) on ml.c7i.xlarge, up to 6 MB from 16 vCPUs.
    Ctrl-C stops waiting, not the job: `intentkit jobs attach JOB` resumes, `intentkit jobs
    stop JOB` stops it.
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
    if file is not None:
        if texts:
            raise ConfigError("give texts as arguments or --file, not both")
        # One reader for every --file (intentkit.bulk.readers): an endpoint reads the same
        # formats, --text-column and bad lines as --model, and resumes the same way.
        from intentkit.bulk.rows import Remote
        from intentkit.bulk.scoring import summary_line
        from intentkit.endpoints import get_target

        source: Any = Path(model) if model is not None else None
        if endpoint is not None:
            key = api_key or env("INTENTKIT_API_KEY")
            source = Remote(endpoint, _remote(endpoint, key, state_dir))
        options = {
            "text_column": text_column,
            "on_error": on_error or "skip",
            "resume": resume,
            "force": force,
            "batch_size": batch_size,
            "chunk_size": chunk_size,
            "backend": backend or "auto",
            "reject": not no_reject,
        }
        result = get_target(target, registry(state_dir)).transform(source, file, output, options)
        print(summary_line(result), file=sys.stderr)
        return
    bulk_only = {
        "--text-column": text_column,
        "--on-error": on_error,
        "--resume": resume or None,
        "--force": force or None,
    }
    if given := [k for k, v in bulk_only.items() if v is not None]:
        raise ConfigError(f"{', '.join(given)}: only with --file FILE")
    if endpoint is not None:
        run = _remote(endpoint, api_key or env("INTENTKIT_API_KEY"), state_dir)
    else:
        assert model is not None
        run = _Local(Path(model), no_reject, backend or "torch")

    out = open(output, "w", encoding="utf-8") if output else sys.stdout
    try:
        for batch in _batches(iter(texts or []), batch_size):
            _write(out, batch, run(batch))
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
    """``predict --target sagemaker``: a batch transform (``intentkit.sagemaker.transform``)."""
    from intentkit.endpoints import get_target
    from intentkit.sagemaker.session import AwsSettings
    from intentkit.sagemaker.transform import TransformOptions

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
            sm["region"] = _endpoint_region(model, rec, sm["region"])
            model = str(rec["model_name"])  # an intentkit SageMaker endpoint: its model
    settings = AwsSettings.resolve(
        region=sm["region"], role=sm["role"], dry_run=bool(sm["dry_run"])
    )
    given = {k: sm[k] for k in ("instance_type", "instance_count", "job_name") if sm[k] is not None}
    options = TransformOptions(image=sm["image"], wait=not sm["no_wait"], **given)
    run = {"settings": settings, "options": options, "jobs": jobs(state_dir)}
    get_target(target, registry(state_dir)).transform(model, file, output, run)


def _endpoint_region(name: str, record: dict[str, Any], region: str | None) -> str | None:
    """The region of endpoint ``name``'s model: its record's (one line if --region differs)."""
    recorded = record.get("region")
    if region and recorded and region != recorded:
        raise ConfigError(
            f"--region {region}: endpoint {name}'s model is in {recorded}; drop --region"
        )
    return region or recorded


def _write(out: Any, texts: list[str], answers: list[dict[str, Any]]) -> None:
    for text, ans in zip(texts, answers, strict=True):
        row = {"text": text, **ans}
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    out.flush()
