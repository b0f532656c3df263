"""Jobs you can come back to: ``intentkit jobs``, ``jobs attach JOB`` and ``jobs stop JOB``.

Every training and transform job intentkit creates gets a record in ``jobs.json``, beside the
endpoint registry (same state folder, same locked atomic writes), the moment SageMaker accepts
it: kind, region, and what the waiting command would have done at the end (``--out`` for a
training job, the output prefix and any temporary model for a transform). So a wait that was
interrupted (Ctrl-C, a closed laptop, ``--no-wait``) can be resumed from any shell: ``attach``
follows the live status and log lines and then does exactly what ``train --target sagemaker`` or
``predict --target sagemaker`` would have done. The records are written by
:func:`intentkit.sagemaker.jobs.record_job`; this module reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intentkit.endpoints.registry import Registry
from intentkit.errors import ConfigError
from intentkit.sagemaker.jobs import TERMINAL, follow_job, shown_status
from intentkit.sagemaker.session import Aws, AwsError, AwsSettings


def lookup_job(jobs: Registry, name: str) -> dict[str, Any]:
    """The record of job ``name``, or a one-line error listing the known ones."""
    record = jobs.get(name)
    if record is None:
        known = ", ".join(sorted(jobs.all())) or "none"
        raise ConfigError(
            f"JOB {name!r}: not a job intentkit started here (known: {known}); see `intentkit jobs`"
        )
    return record


def _aws(record: dict[str, Any]) -> Aws:
    return Aws(AwsSettings.resolve(region=record["region"]))


def _status_key(record: dict[str, Any]) -> str:
    return f"{record['kind'].capitalize()}JobStatus"


def _describe(aws: Aws, record: dict[str, Any]) -> dict[str, Any]:
    kind, name = record["kind"], record["name"]
    return aws.call(
        "sagemaker",
        f"describe_{kind}_job",
        step=f"checking {kind} job {name}",
        **{f"{kind.capitalize()}JobName": name},
    )


def job_status(record: dict[str, Any]) -> str:
    """SageMaker's status (``InProgress (Training)``, ``Completed``...), ``gone`` when it has no
    such job any more, ``unreachable`` without credentials or network."""
    try:
        desc = _describe(_aws(record), record)
    except AwsError as exc:
        return "gone" if exc.code in ("ValidationException", "ResourceNotFound") else "unreachable"
    except ConfigError:
        return "unreachable"
    return shown_status(desc, _status_key(record))


def attach(record: dict[str, Any], *, force: bool = False) -> None:
    """Follow the job to its end, then do what the command that started it would have done:
    unpack a training job's model into its ``--out``, or delete a transform's temporary model.

    Raises:
        JobFailedError: the job ended Failed or Stopped.
    """
    from intentkit.fsutil import check_output_dir

    aws = _aws(record)
    kind, name = record["kind"], record["name"]
    if kind == "training":
        out = Path(record["out"])
        check_output_dir(out, force=force or bool(record.get("force")))
        final = follow_job(aws, kind, name)
        from intentkit.sagemaker.training_job import fetch_model

        fetch_model(aws, name, final, out)
        return
    from intentkit.sagemaker.transform import finish_transform

    final = follow_job(aws, kind, name)
    finish_transform(aws, name, final, record["output"], record.get("temporary_model"))


def stop(record: dict[str, Any]) -> str:
    """Ask SageMaker to stop the job; the status it had (one-line error if it had ended)."""
    aws = _aws(record)
    kind, name = record["kind"], record["name"]
    desc = _describe(aws, record)
    shown = shown_status(desc, _status_key(record))
    if desc.get(_status_key(record)) in (*TERMINAL, "Stopping"):
        raise ConfigError(f"{kind} job {name} is {shown}; there is nothing to stop")
    aws.call(
        "sagemaker",
        f"stop_{kind}_job",
        step=f"stopping {kind} job {name}",
        **{f"{kind.capitalize()}JobName": name},
    )
    return shown
