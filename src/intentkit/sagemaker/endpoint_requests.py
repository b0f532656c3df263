"""The SageMaker requests behind ``deploy``/``delete --target sagemaker``: names, bodies, teardown.

Kept apart from the control flow in :mod:`intentkit.sagemaker.endpoint` so the full request list
(what a dry run prints, what a failure undoes) reads in one place. Every resource gets the tags
``created-by=intentkit`` and ``intentkit-endpoint=<name>``, so leftovers are easy to find in the
console or with ``aws resourcegroupstaggingapi get-resources``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from intentkit.sagemaker.session import Aws, AwsError, split_s3_uri
from intentkit.sagemaker.session import tags as session_tags

VARIANT = "AllTraffic"  #: the one production variant, as the SDK names it
NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
#: Scale out fast (a burst queues requests), scale in slowly (a new instance takes minutes).
SCALE_OUT_COOLDOWN_S = 60
SCALE_IN_COOLDOWN_S = 300
_STAMP_LEN = len("20250101-120000")
#: deploy's way to go without the ``onnx`` extra: the Hugging Face image runs PyTorch.
NO_ONNX = "deploy on a Hugging Face inference image: --image ...huggingface-pytorch-inference:..."


def tags(name: str) -> list[dict[str, str]]:
    """The tags on every SageMaker resource deploy creates (:func:`session.tags`'s rule)."""
    return session_tags("endpoint", name)


#: The record fields that change with each model an endpoint serves (deploy, promote, rollback).
VERSION_FIELDS = ("model", "started", "model_name", "endpoint_config", "model_data")


def version(name: str, bucket: str, model_dir: Path, now: datetime) -> dict[str, str]:
    """The names of one model version of endpoint ``name``: its SageMaker model, endpoint config
    and uploaded archive, stamped with ``now`` (the :data:`VERSION_FIELDS` of a record)."""
    stamp = now.strftime("%Y%m%d-%H%M%S")
    # Model and config names share the 63-character limit: keep room for "-<stamp>".
    resource = f"{name[: 63 - _STAMP_LEN - 1].rstrip('-')}-{stamp}"
    return {
        "model": str(model_dir),
        "started": now.isoformat(timespec="seconds"),
        "model_name": resource,
        "endpoint_config": resource,
        "model_data": f"s3://{bucket}/intentkit/endpoints/{name}/{stamp}/model.tar.gz",
    }


def new_record(
    name: str,
    region: str,
    bucket: str,
    image: str,
    opts: Any,
    model_dir: Path,
    now: datetime,
) -> dict[str, Any]:
    """The registry record of a deploy, with every resource name fixed up front (so a deploy
    killed half-way leaves a record that ``intentkit delete`` can clean up from)."""
    return {
        "name": name,
        "target": "sagemaker",
        "url": f"sagemaker://{region}/{name}",
        **version(name, bucket, model_dir, now),
        "status": "creating",
        "region": region,
        "endpoint": name,
        "image": image,
        "instance_type": opts.instance_type,
        "instance_count": opts.instance_count,
        "variant": opts.variant(),
        "autoscaling": opts.autoscaling,
        "capture": (
            {"uri": opts.capture.rstrip("/"), "sample": opts.capture_sample}
            if opts.capture
            else None
        ),
    }


def s3_location(record: dict[str, Any]) -> tuple[str, str]:
    """(bucket, key) of the record's uploaded ``model.tar.gz``."""
    return split_s3_uri(record["model_data"])


def _scaling_target(record: dict[str, Any]) -> dict[str, str]:
    return {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": f"endpoint/{record['endpoint']}/variant/{VARIANT}",
        "ScalableDimension": DIMENSION,
    }


def _policy_name(record: dict[str, Any]) -> str:
    return f"{record['endpoint']}-invocations"


def _capacity(record: dict[str, Any]) -> dict[str, Any]:
    """The variant's instances or ServerlessConfig (records before serverless: instances)."""
    if "variant" in record:
        return record["variant"]
    return {
        "InstanceType": record["instance_type"],
        "InitialInstanceCount": record["instance_count"],
    }


def _data_capture(record: dict[str, Any]) -> dict[str, Any]:
    """``DataCaptureConfig`` when ``--capture`` was given: requests and answers, as JSON.

    Listing the JSON content types makes SageMaker write the bodies as text in its JSON Lines
    capture files instead of base64 (DataCaptureConfig.CaptureContentTypeHeader, SageMaker API
    reference). Files land under ``<uri>/<endpoint>/AllTraffic/yyyy/mm/dd/hh/*.jsonl``
    (https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture-endpoint.html).
    """
    capture = record.get("capture")
    if not capture:
        return {}
    return {
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": capture["sample"],
            "DestinationS3Uri": capture["uri"],
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {
                "JsonContentTypes": ["application/json", "application/jsonlines"]
            },
        }
    }


def create_requests(record: dict[str, Any], role: str) -> Iterator[tuple[str, str, str, dict]]:
    """``(what, service, operation, params)`` for each create request, in order."""
    name = record["name"]
    yield (
        "creating the model",
        "sagemaker",
        "create_model",
        {
            "ModelName": record["model_name"],
            "ExecutionRoleArn": role,
            # Neither image needs environment variables: intentkit's serves /opt/ml/model on 8080,
            # the Hugging Face toolkit imports /opt/ml/model/code/inference.py on its own.
            "PrimaryContainer": {"Image": record["image"], "ModelDataUrl": record["model_data"]},
            "Tags": tags(name),
        },
    )
    yield (
        "creating the endpoint config",
        "sagemaker",
        "create_endpoint_config",
        {
            "EndpointConfigName": record["endpoint_config"],
            "ProductionVariants": [
                {"VariantName": VARIANT, "ModelName": record["model_name"], **_capacity(record)}
            ],
            **_data_capture(record),
            "Tags": tags(name),
        },
    )
    yield (
        "creating the endpoint",
        "sagemaker",
        "create_endpoint",
        {
            "EndpointName": record["endpoint"],
            "EndpointConfigName": record["endpoint_config"],
            "Tags": tags(name),
        },
    )
    scaling = record.get("autoscaling")
    if not scaling:
        return
    yield (
        "registering autoscaling",
        "application-autoscaling",
        "register_scalable_target",
        {
            **_scaling_target(record),
            "MinCapacity": scaling["min"],
            "MaxCapacity": scaling["max"],
            "Tags": {t["Key"]: t["Value"] for t in tags(name)},
        },
    )
    yield (
        "adding the autoscaling policy",
        "application-autoscaling",
        "put_scaling_policy",
        {
            **_scaling_target(record),
            "PolicyName": _policy_name(record),
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": float(scaling["target_invocations"]),
                "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
                "ScaleOutCooldown": SCALE_OUT_COOLDOWN_S,
                "ScaleInCooldown": SCALE_IN_COOLDOWN_S,
            },
        },
    )


def _delete_requests(record: dict[str, Any]) -> list[tuple[str, str, str, str, dict]]:
    """``(undoes, what, service, operation, params)``, newest resource first."""
    bucket, key = s3_location(record)
    return [
        (
            "put_scaling_policy",
            f"autoscaling policy {_policy_name(record)}",
            "application-autoscaling",
            "delete_scaling_policy",
            {**_scaling_target(record), "PolicyName": _policy_name(record)},
        ),
        (
            "register_scalable_target",
            f"scalable target {_scaling_target(record)['ResourceId']}",
            "application-autoscaling",
            "deregister_scalable_target",
            _scaling_target(record),
        ),
        (
            "create_endpoint",
            f"endpoint {record['endpoint']}",
            "sagemaker",
            "delete_endpoint",
            {"EndpointName": record["endpoint"]},
        ),
        (
            "create_endpoint_config",
            f"endpoint config {record['endpoint_config']}",
            "sagemaker",
            "delete_endpoint_config",
            {"EndpointConfigName": record["endpoint_config"]},
        ),
        (
            "create_model",
            f"model {record['model_name']}",
            "sagemaker",
            "delete_model",
            {"ModelName": record["model_name"]},
        ),
        ("s3", record["model_data"], "s3", "delete_object", {"Bucket": bucket, "Key": key}),
    ]


def is_gone(exc: AwsError) -> bool:
    """True when AWS said the resource does not exist (deleting it again is not an error).

    SageMaker answers ``ValidationException: Could not find ...``; Application Auto Scaling
    ``ObjectNotFoundException`` (moto: ``ValidationException: No scalable target/scaling policy
    found``).
    """
    code = getattr(exc, "code", None)
    if code in ("ObjectNotFoundException", "ResourceNotFound", "NoSuchKey", "NoSuchBucket", "404"):
        return True
    text = str(exc)
    return code in ("ValidationException", "ValidationError") and (
        "Could not find" in text or ("No scal" in text and "found" in text)
    )


#: What a live endpoint still uses: kept while the endpoint could not be deleted (deleting the
#: model or archive under an endpoint that is Creating would make it fail, and it still bills).
_USED_BY_ENDPOINT = ("create_endpoint_config", "create_model", "s3")


def _why(exc: AwsError) -> str:
    """A short reason for a resource left behind."""
    if "in-progress" in str(exc):
        return "in progress: SageMaker refuses to delete it until that ends"
    return exc.code or str(exc).split(": ", 1)[-1][:80]


def teardown(
    aws: Aws,
    record: dict[str, Any],
    *,
    created: list[str] | None = None,
    deleted: list[str] | None = None,
    wait_gone: Callable[[], None] | None = None,
) -> list[str]:
    """Delete the record's resources, newest first; those in ``created`` only when given.

    Something already gone is not an error. Every request is tried even after one fails, so a
    single refusal leaves as little as possible, except that when the endpoint itself cannot be
    deleted (SageMaker refuses while it is Creating or Updating) what it uses stays, so a later
    ``intentkit delete`` finds it whole. ``wait_gone`` runs once DeleteEndpoint is accepted.
    Returns ``"<what> (<reason>)"`` for each resource left behind; appends the ``undoes`` key of
    each deleted one to ``deleted``.
    """
    left: list[str] = []
    endpoint_kept = False
    for undoes, what, service, operation, params in _delete_requests(record):
        if created is not None and undoes not in created:
            continue
        if (
            created is None
            and service == "application-autoscaling"
            and not record.get("autoscaling")
        ):
            continue
        if endpoint_kept and undoes in _USED_BY_ENDPOINT:
            left.append(f"{what} (the endpoint uses it)")
            continue
        try:
            aws.call(service, operation, step=f"deleting {what}", **params)
        except AwsError as exc:
            if not is_gone(exc):
                left.append(f"{what} ({_why(exc)})")
                endpoint_kept = endpoint_kept or operation == "delete_endpoint"
            continue
        if operation == "delete_endpoint" and wait_gone is not None:
            wait_gone()
        if deleted is not None:
            deleted.append(undoes)
    return left
