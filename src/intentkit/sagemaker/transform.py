"""``intentkit predict --target sagemaker``: a SageMaker batch transform over JSON Lines in S3.

Each input line is one ``{"text": ...}`` object; the intentkit container's ``/invocations``
answers ``application/jsonlines`` with one ``{"predicted_class", "confidence"}`` line per input
line, in order, so SageMaker can split the input by line and join the answers by line.

Requests that finish: ``MultiRecord`` packs as many lines into one request as fit
``MaxPayloadInMB``, and SageMaker gives each request ``InvocationsTimeoutInSeconds`` (600 s by
default, retried 3 times) while the Hugging Face inference image's model server gives up after
its own 60 s. So the job sets the timeout and retries itself (``ModelClientConfig``), passes the
same timeout to the model server (``SAGEMAKER_MODEL_SERVER_TIMEOUT`` in the job's environment),
and sizes the payload so that a full request takes a quarter of the timeout on the instance
(:func:`max_payload_mb`). ``intentkit container serve`` admits up to 6 MB
(:func:`intentkit.sagemaker.image.serving.container_serve_config`), the cap here too.
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
from intentkit.sagemaker.session import Aws, AwsError, AwsSettings, tags

JSONLINES = "application/jsonlines"
#: MB per request at most: SageMaker's real-time cap, which the container's server always admits.
MAX_PAYLOAD_MB = 6
#: Seconds SageMaker waits for one request (ModelClientConfig; the API allows 1..3600).
INVOCATION_TIMEOUT_S = 600
#: Retries of a request that failed (the API's default 3 makes a stuck request cost 4 timeouts).
INVOCATION_RETRIES = 1
#: Bytes per input line: 52,322,089 bytes of JSON Lines held 1,000,000 CLINC150 texts
#: (bench/RESULTS.md, section 6, "Bulk prediction", 1,000,000 texts).
BYTES_PER_TEXT = 52
#: Texts/s of one vCPU for the slowest model served: ModernBERT-base fp32 under ONNX Runtime
#: served 115.8 texts/s on 2 vCPUs (bench/RESULTS.md, section 4, run 3, concurrency 32);
#: rounded down to 50 per vCPU. MiniLM is ~5x faster, so its requests end sooner still.
TEXTS_PER_S_PER_VCPU = 50
#: A full request may take at most this share of the timeout (slower texts, a cold instance).
SAFETY_FACTOR = 4


@dataclass
class TransformOptions:
    """How the batch transform runs (the ``--target sagemaker`` flags of ``intentkit predict``)."""

    instance_type: str = "ml.c7i.xlarge"  #: --instance-type (CPU: the server's ONNX/torch path)
    instance_count: int = 1  #: --instance-count; input files are spread across instances
    image: str | None = None  #: --image: needed only for an s3:// model
    job_name: str | None = None  #: --job-name; default intentkit-<UTC timestamp>
    wait: bool = True  #: False (--no-wait): print the job name and return


def instance_vcpus(instance_type: str) -> int:
    """vCPUs of an ``ml.FAMILY.SIZE`` instance from its size, as EC2 names them (large 2,
    xlarge 4, Nxlarge 4N); 2 for a size it does not know."""
    size = instance_type.rsplit(".", 1)[-1]
    if size == "xlarge":
        return 4
    if size.endswith("xlarge") and size[: -len("xlarge")].isdigit():
        return 4 * int(size[: -len("xlarge")])
    return {"medium": 1, "large": 2}.get(size, 2)


def max_payload_mb(instance_type: str) -> int:
    """``MaxPayloadInMB`` for ``instance_type``: what one instance scores within a quarter of
    the request timeout, between 1 and 6 MB.

    600 s / 4 x (50 texts/s x vCPUs) x 52 bytes per text: 1 MB on 2-8 vCPUs (ml.c7i.xlarge: a
    full 1 MB request, ~19k texts, takes ~96 s), 6 MB from 16 vCPUs (ml.c7i.4xlarge).
    """
    texts_per_s = TEXTS_PER_S_PER_VCPU * instance_vcpus(instance_type)
    mb = INVOCATION_TIMEOUT_S / SAFETY_FACTOR * texts_per_s * BYTES_PER_TEXT / 1e6
    return max(1, min(MAX_PAYLOAD_MB, int(mb)))


def transform_job_request(
    *, job: str, model_name: str, input_uri: str, output_uri: str, options: TransformOptions
) -> dict[str, Any]:
    """The ``CreateTransformJob`` parameters (pure: no request is sent)."""

    return {
        "TransformJobName": job,
        "ModelName": model_name,
        # Many lines per request: one HTTP round trip per MB instead of per text, sized to end
        # well inside the request timeout (max_payload_mb).
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": max_payload_mb(options.instance_type),
        "ModelClientConfig": {
            "InvocationsTimeoutInSeconds": INVOCATION_TIMEOUT_S,
            "InvocationsMaxRetries": INVOCATION_RETRIES,
        },
        # The Hugging Face inference image's model server stops a request after 60 s unless
        # told otherwise (sagemaker-inference-toolkit's SAGEMAKER_MODEL_SERVER_TIMEOUT); the
        # intentkit image ignores it.
        "Environment": {"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(INVOCATION_TIMEOUT_S)},
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
        "Tags": tags("transform-job", job),
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
        Tags=tags("transform-job", name, temporary="true"),
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
        from intentkit.sagemaker.jobs import job_registry, record_job

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
