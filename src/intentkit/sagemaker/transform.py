"""``intentkit predict --target sagemaker``: a SageMaker batch transform over JSON Lines in S3.

Each input line is one ``{"text": ...}`` object; the intentkit container's ``/invocations``
answers ``application/jsonlines`` with one ``{"predicted_class", "confidence"}`` line per input
line, in order, so SageMaker can split the input by line and join the answers by line.

Payload size: ``MultiRecord`` packs as many lines into one request as fit ``MaxPayloadInMB``.
``intentkit container serve`` sizes its request limits to that (6 MB, or the job's
``SAGEMAKER_MAX_PAYLOAD_IN_MB``: :func:`intentkit.sagemaker.image.serving.container_serve_config`),
so a full request of short lines is admitted instead of refused with a 413 that fails the job.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from intentkit.endpoints.registry import Registry
from intentkit.sagemaker.jobs import (
    check_image,
    check_instances,
    check_name,
    check_s3_uri,
    console_url,
    default_job_name,
    follow_job,
    raise_unless_completed,
)
from intentkit.sagemaker.session import Aws, AwsError, AwsSettings

JSONLINES = "application/jsonlines"
#: MB per request: SageMaker's real-time cap, which the container's server always admits.
MAX_PAYLOAD_MB = 6


@dataclass
class TransformOptions:
    """How the batch transform runs (the ``--target sagemaker`` flags of ``intentkit predict``)."""

    instance_type: str = "ml.c7i.xlarge"  #: --instance-type (CPU: the server's ONNX/torch path)
    instance_count: int = 1  #: --instance-count; input files are spread across instances
    image: str | None = None  #: --image: needed only for an s3:// model
    job_name: str | None = None  #: --job-name; default intentkit-<UTC timestamp>
    wait: bool = True  #: False (--no-wait): print the job name and return


def transform_job_request(
    *, job: str, model_name: str, input_uri: str, output_uri: str, options: TransformOptions
) -> dict[str, Any]:
    """The ``CreateTransformJob`` parameters (pure: no request is sent)."""
    from intentkit import __version__

    return {
        "TransformJobName": job,
        "ModelName": model_name,
        # Many lines per request: one HTTP round trip per ~6 MB instead of per text.
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": MAX_PAYLOAD_MB,
        # One request in flight per instance: the container's queue holds one full payload
        # (a 429 for a second one would fail the job), and one request already keeps every
        # core busy through the micro-batcher.
        "MaxConcurrentTransforms": 1,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": JSONLINES,
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": output_uri,
            "Accept": JSONLINES,
            "AssembleWith": "Line",
        },
        "TransformResources": {
            "InstanceType": options.instance_type,
            "InstanceCount": options.instance_count,
        },
        "Tags": [{"Key": "intentkit:version", "Value": __version__}],
    }


def _existing_model(aws: Aws, name: str) -> str:
    """Check that SageMaker model ``name`` exists (one line naming the fix if it does not)."""
    check_name(name, "--model")
    try:
        aws.call("sagemaker", "describe_model", step=f"--model {name}", ModelName=name)
    except AwsError as exc:
        if exc.code != "ValidationException":  # SageMaker's answer for an unknown model
            raise
        raise AwsError(
            f"--model {name}: no SageMaker model of that name in {aws.region}; pass a model "
            "from `aws sagemaker list-models`, an intentkit SageMaker endpoint name, or "
            "s3://.../model.tar.gz with --image and --role"
        ) from None
    return name


def _temporary_model(aws: Aws, name: str, model_data: str, image: str, role: str) -> str:
    """Create SageMaker model ``name`` serving ``model_data`` with the intentkit image."""
    aws.call(
        "sagemaker",
        "create_model",
        step=f"creating model {name} from {model_data}",
        ModelName=name,
        PrimaryContainer={"Image": image, "ModelDataUrl": model_data, "Mode": "SingleModel"},
        ExecutionRoleArn=role,
        Tags=[{"Key": "intentkit:temporary", "Value": "true"}],
    )
    return name


def transform_on_sagemaker(
    model: str,
    input_uri: str,
    output_uri: str,
    *,
    settings: AwsSettings,
    options: TransformOptions,
    jobs: Registry | None = None,
) -> str:
    """Run a batch transform of ``input_uri`` (JSON Lines) into ``output_uri``; return the job.

    Args:
        model: a SageMaker model name, or ``s3://.../model.tar.gz`` (then a temporary model is
            created from it with ``options.image`` and the role, and deleted when the job ends).
        input_uri: an S3 object or prefix of ``{"text": ...}`` lines.
        output_uri: an S3 prefix; SageMaker writes ``<input file name>.out`` there.
        settings: region, role, dry run (:meth:`AwsSettings.resolve`).
        options: instances, image, job name, wait.
        jobs: where the job is recorded for ``intentkit jobs attach`` (default: the user state
            folder's ``jobs.json``).

    Raises:
        JobFailedError: the job ended Failed or Stopped (its FailureReason is the message).
    """
    check_s3_uri(input_uri, "--file")
    check_s3_uri(output_uri, "--output")
    check_instances(options.instance_type, options.instance_count)
    aws = Aws(settings)
    from_s3 = model.startswith("s3://")
    if from_s3:
        check_s3_uri(model, "--model")
        role = aws.role()
        image = check_image(options.image)
    job = check_name(options.job_name or default_job_name())

    if from_s3:
        model_name = _temporary_model(aws, job, model, image, role)
    else:
        model_name = _existing_model(aws, model)
    # The temporary model goes once the job has ended or could not be created; a job still
    # running (--no-wait, Ctrl-C) needs it, so it stays, and `intentkit jobs attach` deletes it
    # once the job has ended.
    temporary = model_name if from_s3 else None
    created = False
    try:
        request = transform_job_request(
            job=job,
            model_name=model_name,
            input_uri=input_uri,
            output_uri=output_uri,
            options=options,
        )
        aws.call(
            "sagemaker", "create_transform_job", step=f"creating transform job {job}", **request
        )
        created = True
        if aws.dry_run:
            if temporary:
                _cleanup(aws, job, temporary, delete=True)
            print("dry run: the requests above were printed, none sent", file=sys.stderr)
            return job
        from intentkit.sagemaker.job_records import job_registry, record_job

        record_job(
            jobs or job_registry(),
            aws,
            "transform",
            job,
            output=output_uri,
            temporary_model=temporary,
        )
        print(f"transform job {job} created: {console_url(aws.region, 'transform-jobs', job)}")
        if not options.wait:
            if temporary:
                _cleanup(aws, job, temporary, delete=False)
            return job
        final = follow_job(aws, "transform", job)
    except BaseException:
        if temporary:
            _cleanup(aws, job, temporary, delete=not created)
        raise
    finish_transform(aws, job, final, output_uri, temporary)
    return job


def finish_transform(
    aws: Aws, job: str, final: dict[str, Any], output_uri: str, temporary_model: str | None
) -> None:
    """After the transform ``job`` ended (``final``: its last Describe answer): delete its
    temporary model, then :class:`JobFailedError` unless it completed."""
    if temporary_model:
        _cleanup(aws, job, temporary_model, delete=True)
    raise_unless_completed("transform", job, final)
    print(f"predictions written under {output_uri} (one <input file>.out per input file)")


def _cleanup(aws: Aws, job: str, model_name: str, *, delete: bool) -> None:
    """Delete the temporary model, or say which command deletes it once the job has ended."""
    if not delete:
        print(
            f"temporary model {model_name} stays while job {job} runs; `intentkit jobs attach "
            f"{job}` waits for the job and then deletes it",
            file=sys.stderr,
        )
        return
    try:
        aws.call(
            "sagemaker", "delete_model", step=f"deleting model {model_name}", ModelName=model_name
        )
    except AwsError as exc:  # never hide the job's own outcome behind a cleanup failure
        print(f"warning: {exc}", file=sys.stderr)
