"""The ``sagemaker`` target: SageMaker real-time endpoints, as the reference notebook deployed them.

``deploy`` packs the artifact (:func:`intentkit.sagemaker.pack.pack_model`), uploads it to
``s3://BUCKET/intentkit/endpoints/<name>/<stamp>/model.tar.gz`` and creates a model, an endpoint
config (one ``AllTraffic`` variant) and the endpoint, waits for ``InService``, and optionally
registers target-tracking autoscaling. Everything is created with boto3 through
:meth:`intentkit.sagemaker.session.Aws.call`, so ``--dry-run`` prints the exact request list.
A failure at any step deletes what that call created, newest first. ``delete`` runs the same
teardown for a recorded endpoint (the reference's three deletes, plus autoscaling and the
uploaded archive).

The request list itself (names, bodies, teardown order) lives in
:mod:`intentkit.sagemaker.endpoint_requests`; this module is the control flow.
"""

from __future__ import annotations

import re
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from intentkit.artifact import check_artifact_dir
from intentkit.endpoints.base import Invoke, Target
from intentkit.errors import ConfigError, IntentkitError
from intentkit.sagemaker import endpoint_requests as req
from intentkit.sagemaker.endpoint_invoke import SageMakerInvoker
from intentkit.sagemaker.endpoint_options import SageMakerOptions
from intentkit.sagemaker.endpoint_requests import NO_ONNX
from intentkit.sagemaker.endpoint_update import delete_versions
from intentkit.sagemaker.endpoint_wait import IN_PROGRESS, StillInProgress, wait_while
from intentkit.sagemaker.session import Aws, AwsError, AwsSettings

#: SageMaker's EndpointName rule (CreateEndpoint API reference).
ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
#: Longer AWS messages are cut (one line that still fits a terminal's scrollback).
MAX_REASON = 300
#: How long ``deploy``'s clean-up waits for an endpoint it deleted to be gone (it is no longer
#: billed once Deleting; waiting only lets the error say that nothing is left).
CLEANUP_WAIT_S = 120.0
#: ``delete``'s default wait until SageMaker allows the delete (a new endpoint takes 5-10 min).
DELETE_TIMEOUT_S = 1800.0


def check_endpoint_name(name: str) -> str:
    """SageMaker's endpoint-name rule, as a one-line error naming --name."""
    if not ENDPOINT_NAME.match(name or ""):
        raise ConfigError(
            f"--name {name!r}: SageMaker endpoint names are 1-63 letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def _aws_for(record: dict[str, Any]) -> Aws:
    """A session in the record's region (credentials from boto3's usual chain), polling every
    ``$INTENTKIT_SAGEMAKER_POLL_SECONDS`` like deploy."""
    return Aws(AwsSettings.resolve(region=record.get("region")))


class SageMakerTarget(Target):
    """Endpoints as SageMaker real-time endpoints (model + endpoint config + endpoint)."""

    kind = "sagemaker"

    def deploy(self, name: str, model_dir: Path, options: Any) -> dict[str, Any]:
        """Validate, pack, upload, create model/config/endpoint, wait for InService, autoscale.

        Returns the registry record (not recorded in a dry run, which only prints requests).
        """
        from intentkit.sagemaker.hf_images import resolve_image_flag
        from intentkit.sagemaker.pack import is_hf_image, pack_model

        opts: SageMakerOptions = options if options is not None else SageMakerOptions()
        check_endpoint_name(name)
        model_dir = check_artifact_dir(model_dir).resolve()
        self._check_free(name)
        aws = Aws(opts.settings)
        role = aws.role()
        region = aws.region  # an unknown --region fails here, before any request
        aws.account()  # credentials checked (STS) before anything is created
        self._check_not_in_aws(aws, name)
        image = resolve_image_flag(  # `huggingface`: the region's image; too old: refused here
            str(opts.image),
            opts.image_version,
            scope="inference",
            region=region,
            # serverless endpoints run on CPU: the CPU image
            instance_type=opts.instance_type or "ml.c7i.large",
            model=str(model_dir),
        )
        bucket = aws.bucket()
        fmt = "sagemaker-hf" if is_hf_image(image) else "intentkit"
        now = datetime.now(timezone.utc)
        record = req.new_record(name, region, bucket, image, opts, model_dir, now)
        record["format"] = fmt
        if not aws.dry_run:
            self._reserve(record)
        created: list[str] = []
        try:
            with tempfile.TemporaryDirectory(prefix="intentkit-deploy-") as tmp:
                tar = pack_model(
                    model_dir, Path(tmp) / "model.tar.gz", fmt=fmt, without_onnx=NO_ONNX
                )
                bucket_, key = req.s3_location(record)
                if not aws.dry_run:
                    created.append("s3")  # before the call: a half-finished upload is cleaned
                aws.upload(tar, bucket_, key)
            for what, service, operation, params in req.create_requests(record, role):
                if not aws.dry_run:  # before the call: one interrupted in flight is undone too
                    created.append(operation)
                aws.call(service, operation, step=f"deploy {name}: {what}", **params)
                if operation == "create_endpoint":
                    self._wait_in_service(aws, name, opts)
        except BaseException as exc:
            self._clean_up(aws, record, created, exc)
        if aws.dry_run:
            return record
        record["status"] = "InService"
        with self.registry.edit() as records:
            records[name] = record
        return record

    def _check_free(self, name: str) -> None:
        rec = self.registry.get(name)
        if rec is not None:
            raise ConfigError(
                f"--name {name}: an endpoint with that name is already deployed "
                f"({rec.get('target', 'local')}, {rec.get('url')}); choose another --name or "
                f"`intentkit delete {name}` first"
            )

    def _check_not_in_aws(self, aws: Aws, name: str) -> None:
        """Refuse a name another deployment (not in this registry) already uses in SageMaker."""
        try:
            desc = aws.call("sagemaker", "describe_endpoint", EndpointName=name)
        except AwsError as exc:
            if req.is_gone(exc):
                return
            raise
        if desc:  # {} in a dry run
            raise ConfigError(
                f"--name {name}: SageMaker already has an endpoint {name} in {aws.region} "
                f"({desc.get('EndpointStatus')}) that this registry does not know; choose "
                "another --name"
            )

    def _reserve(self, record: dict[str, Any]) -> None:
        # Recorded before anything is created: a concurrent deploy cannot take the name, and a
        # killed deploy leaves a record that `intentkit delete` can clean up from.
        with self.registry.edit() as records:
            if record["name"] in records:
                self._check_free(record["name"])
            records[record["name"]] = record

    def _release(self, name: str) -> None:
        with self.registry.edit() as records:
            records.pop(name, None)

    def _wait_in_service(self, aws: Aws, name: str, opts: SageMakerOptions) -> None:
        """Poll DescribeEndpoint with a live status line until InService, failure or timeout."""
        step = f"deploy {name}: waiting for InService"
        if aws.dry_run:  # one request stands for the polling loop
            aws.call("sagemaker", "describe_endpoint", step=step, EndpointName=name)
            return
        note = "; usually 5-10 minutes"
        desc = wait_while(aws, name, ("Creating",), timeout=opts.timeout, step=step, note=note)
        state = desc.get("EndpointStatus") if desc is not None else "gone"
        if state != "InService":
            reason = (desc or {}).get("FailureReason") or "no reason given"
            raise AwsError(f"{step}: the endpoint is {state}: {reason}")
        print(f"endpoint {name}: InService", file=sys.stderr)

    def _clean_up(
        self, aws: Aws, record: dict[str, Any], created: list[str], exc: BaseException
    ) -> NoReturn:
        """After a failed or interrupted deploy: delete what it created, newest first. What
        SageMaker will not delete yet (an endpoint still Creating) stays in the registry, and
        the message names it and the command that removes it; then ``exc`` goes on."""
        name = record["name"]
        left: list[str] = []
        if created and not aws.dry_run:
            left = req.teardown(
                aws, record, created=created, wait_gone=lambda: self._wait_gone(aws, record)
            )
        if left:
            record["status"] = "deploy-failed"
            with self.registry.edit() as records:
                records[name] = record
            undone = (
                f"; left behind: {', '.join(left)}; listed by `intentkit endpoints`, removed "
                f"by `intentkit delete {name}` (it waits until SageMaker allows the delete)"
            )
        else:
            if not aws.dry_run:
                self._release(name)
            undone = "; nothing was left behind" if created else ""
        if not isinstance(exc, IntentkitError):
            if created:  # Ctrl-C or a bug: say what is left before the exception goes on
                print(f"deploy {name}: interrupted{undone}", file=sys.stderr)
            raise exc
        text = str(exc) if str(exc).startswith(f"deploy {name}") else f"deploy {name}: {exc}"
        if len(text) > MAX_REASON:  # e.g. an invalid instance type: AWS lists every valid one
            text = text[:MAX_REASON] + "..."
        raise type(exc)(text + undone) from None

    def _wait_gone(self, aws: Aws, record: dict[str, Any], timeout: float = CLEANUP_WAIT_S) -> None:
        """Wait (bounded) until a deleted endpoint has left Deleting; billing already stopped."""
        step = f"deleting endpoint {record['endpoint']}"
        try:
            wait_while(aws, record["endpoint"], ("Deleting",), timeout=timeout, step=step)
        except StillInProgress:
            pass  # SageMaker finishes the delete on its own

    def train(self, data: Path, out: Path, options: dict[str, Any]) -> Path | None:
        """A SageMaker training job: :func:`intentkit.sagemaker.training_job.train_on_sagemaker`
        (``out`` holds the model once it ends; None with ``--no-wait``)."""
        from intentkit.sagemaker.training_job import train_on_sagemaker

        train_on_sagemaker(data, out, **options)
        return Path(out) if options["options"].wait and not options["settings"].dry_run else None

    def transform(
        self, model: Any, source: str, output: str | None, options: dict[str, Any]
    ) -> Any:
        """A batch transform from S3 to S3 (:func:`intentkit.sagemaker.transform`); the job."""
        from intentkit.sagemaker.transform import transform_on_sagemaker

        return transform_on_sagemaker(str(model), source, str(output), **options)

    def status(self, record: dict[str, Any]) -> str:
        """``ready`` (InService, as local calls a serving endpoint), SageMaker's other states
        lower-cased (``creating``, ``updating``, ``failed``...), ``gone`` when SageMaker has no
        such endpoint, ``unreachable`` without credentials or network."""
        try:
            desc = _aws_for(record).call(
                "sagemaker", "describe_endpoint", EndpointName=record["endpoint"]
            )
        except AwsError as exc:
            if req.is_gone(exc):
                return "gone"
            return f"unknown ({exc.code})" if exc.code else "unreachable"
        except ConfigError:
            return "unreachable"
        state = str(desc.get("EndpointStatus", "unknown"))
        return "ready" if state == "InService" else state.lower()

    def invoker(self, record: dict[str, Any], *, api_key: str | None = None) -> Invoke:
        """``InvokeEndpoint`` (IAM-signed; ``api_key`` does not apply and is ignored)."""
        return SageMakerInvoker(_aws_for(record), record["endpoint"])

    def delete(self, record: dict[str, Any], *, timeout: float | None = None) -> str:
        """Wait until SageMaker allows the delete (the endpoint leaves Creating/Updating), then
        remove autoscaling, endpoint, endpoint config, model and archive (of every model the
        endpoint served, promotes and rollbacks included), then the record.

        Returns ``deleted``, or ``gone`` when SageMaker had none of them already. A timeout or
        a failure keeps the record (run delete again) and names what is left.
        """
        aws = _aws_for(record)
        name = record["name"]
        wait = DELETE_TIMEOUT_S if timeout is None else timeout
        step = f"delete {name}: waiting until SageMaker allows the delete"
        try:
            wait_while(aws, record["endpoint"], IN_PROGRESS, timeout=wait, step=step)
        except StillInProgress as exc:
            raise AwsError(
                f"delete {name}: the endpoint is still {exc.status} after {wait:g} s and "
                "SageMaker refuses to delete it until that ends; nothing was deleted and the "
                f"record is kept; run `intentkit delete {name}` again later or raise --timeout"
            ) from None
        deleted: list[str] = []
        left = req.teardown(
            aws, record, deleted=deleted, wait_gone=lambda: self._wait_gone(aws, record, wait)
        )
        if not left:  # then every model/config the endpoint used before a promote or rollback
            left = delete_versions(aws, record)
        if left:
            raise AwsError(
                f"delete {name}: could not delete {'; '.join(left)}; the record is kept, run "
                f"`intentkit delete {name}` again"
            )
        self._release(name)
        return "deleted" if any(d != "s3" for d in deleted) else "gone"
