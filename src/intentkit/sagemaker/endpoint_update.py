"""Promote and roll back a SageMaker endpoint: a new model and endpoint config, then
UpdateEndpoint (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpoint.html).

SageMaker keeps serving the old config while the endpoint is ``Updating``, and when the update
fails it stays on (or rolls back to) the old config. So a promote:

1. packs and uploads the new model, creates its SageMaker model and endpoint config (same
   variant, capacity and data capture as the endpoint has now, same tags);
2. records them as the endpoint's ``pending`` version, then sends UpdateEndpoint and waits with a
   live status line until the endpoint leaves ``Updating``;
3. on ``InService`` with the new config: the new version becomes the record's own, the old one
   its ``previous`` (for ``intentkit rollback``) and joins ``retired`` (``intentkit delete``
   removes every version that still exists);
4. on a refused or failed update: deletes the new model, config and archive, drops ``pending``;
   the record still names the old version, which still serves.

Ctrl-C or a timeout during the wait leaves ``pending`` in the record (SageMaker goes on with
the update): ``intentkit endpoints`` shows ``updating``, ``intentkit delete`` removes both
versions, and the next promote or rollback first settles it by asking SageMaker which config
the endpoint ended on.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from intentkit.artifact import check_artifact_dir
from intentkit.endpoints.registry import Registry
from intentkit.errors import ConfigError
from intentkit.sagemaker import endpoint_requests as req
from intentkit.sagemaker.endpoint_wait import IN_PROGRESS, StillInProgress, describe, wait_while
from intentkit.sagemaker.session import Aws, AwsError, AwsSettings

#: What a version owns, in the ``created`` vocabulary of :func:`endpoint_requests.teardown`.
VERSION_RESOURCES = ["create_endpoint_config", "create_model", "s3"]
#: Seconds an update may take by default (SageMaker starts new instances, then shifts traffic).
UPDATE_TIMEOUT_S = 1800.0


def _version_of(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in req.VERSION_FIELDS if k in record}


def _names(version: dict[str, Any]) -> set[str]:
    return {version["model_name"], version["endpoint_config"], version["model_data"]}


def _new_version(aws: Aws, record: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    """Fresh names for ``model_dir``; stamped a second later while they clash with a known one."""
    known = set().union(*(_names(v) for v in versions(record)))
    bucket, _ = req.s3_location(record)
    now = datetime.now(timezone.utc)
    new = req.version(record["name"], bucket, model_dir, now)
    while _names(new) & known:
        now += timedelta(seconds=1)
        new = req.version(record["name"], bucket, model_dir, now)
    return new


def versions(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every version the record knows: its own, then ``pending``, then the ``retired`` ones."""
    extra = [record["pending"]] if record.get("pending") else []
    return [_version_of(record), *extra, *record.get("retired", [])]


def delete_versions(aws: Aws, record: dict[str, Any]) -> list[str]:
    """Delete the model, config and archive of every version but the record's own (``delete``
    tears that one down with the endpoint); what is left, as :func:`teardown` says it."""
    left: list[str] = []
    for version in versions(record)[1:]:
        left += req.teardown(aws, {**record, **version}, created=VERSION_RESOURCES)
    return left


def _save(registry: Registry, record: dict[str, Any]) -> None:
    with registry.edit() as records:
        records[record["name"]] = record


def settle(aws: Aws, registry: Registry, record: dict[str, Any]) -> dict[str, Any]:
    """Resolve a ``pending`` version left by an interrupted promote: adopt it when the endpoint
    runs its config, else delete it. Refuses while SageMaker is still updating."""
    pending = record.get("pending")
    if not pending:
        return record
    name = record["name"]
    desc = describe(aws, record["endpoint"], f"{name}: checking the interrupted update") or {}
    state = desc.get("EndpointStatus", "gone")
    if state in IN_PROGRESS:
        raise ConfigError(
            f"{name} is still {state} (an earlier promote or rollback); run this again once "
            "`intentkit endpoints` shows it ready"
        )
    record = {k: v for k, v in record.items() if k != "pending"}
    if desc.get("EndpointConfigName") == pending["endpoint_config"]:
        record = _adopt(record, pending)
    else:
        req.teardown(aws, {**record, **pending}, created=VERSION_RESOURCES)
    _save(registry, record)
    return record


def _adopt(record: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The record once ``new`` serves: the old version becomes ``previous`` and is retired."""
    old = _version_of(record)
    retired = [v for v in record.get("retired", []) if _names(v) != _names(new)]
    return {**record, **new, "previous": old, "retired": [*retired, old], "status": "InService"}


def _create(aws: Aws, record: dict[str, Any], new: dict[str, Any], created: list[str]) -> None:
    """Pack, upload and create the new version's model and endpoint config."""
    from intentkit.sagemaker.pack import pack_model

    name = record["name"]
    # The role the endpoint's model runs under now: promote takes no --role.
    model = aws.call("sagemaker", "describe_model", ModelName=record["model_name"])
    fields = {**record, **new}
    with tempfile.TemporaryDirectory(prefix="intentkit-promote-") as tmp:
        tar = pack_model(
            Path(new["model"]), Path(tmp) / "model.tar.gz", fmt=record.get("format", "intentkit"),
            without_onnx=req.NO_ONNX,
        )  # fmt: skip
        created.append("s3")  # before the call: a half-finished upload is cleaned too
        aws.upload(tar, *req.s3_location(fields))
    for what, service, operation, params in req.create_requests(fields, model["ExecutionRoleArn"]):
        if operation not in VERSION_RESOURCES:
            break  # the endpoint exists: only the model and its config are new
        created.append(operation)
        aws.call(service, operation, step=f"promote {name}: {what}", **params)


def _update(
    aws: Aws, registry: Registry, record: dict[str, Any], new: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """UpdateEndpoint to ``new``'s config (already recorded as ``pending``) and wait; the
    adopted record, or AwsError when SageMaker refused the update or it ended anywhere but
    InService on ``new``'s config."""
    name = record["name"]
    step = f"{name}: updating to {new['endpoint_config']}"
    aws.call(
        "sagemaker",
        "update_endpoint",
        step=step,
        EndpointName=record["endpoint"],
        EndpointConfigName=new["endpoint_config"],
    )
    states = ("Updating", "SystemUpdating", "RollingBack")
    desc = wait_while(aws, record["endpoint"], states, timeout=timeout, step=step) or {}
    state = desc.get("EndpointStatus", "gone")
    if state != "InService" or desc.get("EndpointConfigName") != new["endpoint_config"]:
        reason = desc.get("FailureReason") or "no reason given"
        raise AwsError(f"{step}: the update ended {state}: {reason}")
    adopted = _adopt(record, new)
    _save(registry, adopted)
    print(f"endpoint {name}: InService, serving {new['model']}", file=sys.stderr)
    return adopted


def switch(
    registry: Registry,
    record: dict[str, Any],
    model_dir: str | Path,
    *,
    timeout: float = UPDATE_TIMEOUT_S,
    rollback: bool = False,
) -> dict[str, Any]:
    """Move SageMaker endpoint ``record`` to ``model_dir`` (``rollback``: to its ``previous``
    version, which still exists, so nothing is created); the new record.

    A refused or failed update deletes what this call created and raises a one-line error
    saying the endpoint still serves its old model.
    """
    aws = Aws(AwsSettings.resolve(region=record.get("region")))
    record = settle(aws, registry, record)
    name = record["name"]
    if rollback:
        if not record.get("previous"):
            raise ConfigError(f"{name} has no previous model: it was never promoted")
        new = record["previous"]
    else:
        model_dir = check_artifact_dir(model_dir).resolve()
        if str(model_dir) == record["model"]:
            raise ConfigError(f"{model_dir} is what {name} serves already")
        new = _new_version(aws, record, model_dir)
    created: list[str] = []
    sent = False  # once the update may have been sent, SageMaker decides which version serves
    try:
        if not rollback:
            _create(aws, record, new, created)
        _save(registry, {**record, "pending": new})
        sent = True
        return _update(aws, registry, record, new, timeout)
    except BaseException as exc:
        if sent and isinstance(exc, (StillInProgress, KeyboardInterrupt)):
            print(
                f"{name}: stopped waiting; SageMaker goes on updating it to {new['model']}. "
                "`intentkit endpoints` shows its status; the record keeps both models, so "
                f"`intentkit delete {name}` removes both, and the next promote or rollback "
                "settles which one serves",
                file=sys.stderr,
            )
            raise
        left = req.teardown(aws, {**record, **new}, created=created) if created else []
        _save(registry, record)  # no pending: the old version is what serves
        if not isinstance(exc, AwsError):
            raise
        undone = f"; left behind: {', '.join(left)}" if left else ""
        removed = "; its new model, config and archive were deleted" if created else ""
        raise AwsError(
            f"{'rollback' if rollback else 'promote'} {exc}; {name} still serves "
            f"{record['model']}{removed}{undone}"
        ) from None
