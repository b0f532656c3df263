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

import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from intentkit.artifact import check_artifact_dir
from intentkit.endpoints.base import Invoke, Target
from intentkit.errors import ConfigError, IntentkitError, ModelError
from intentkit.sagemaker import endpoint_requests as req
from intentkit.sagemaker.session import Aws, AwsError, AwsSettings

#: SageMaker's EndpointName rule (CreateEndpoint API reference).
ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
#: Endpoint states that will not turn into InService by waiting.
FAILED_STATES = ("Failed", "OutOfService", "RollingBack", "UpdateRollbackFailed", "Deleting")
#: Longer AWS messages are cut (one line that still fits a terminal's scrollback).
MAX_REASON = 300
#: Invocations per instance per minute the autoscaling policy aims at. ModernBERT-base fp32 served
#: ~100 single-text req/s on 2 physical cores (bench/RESULTS.md); an ml.c7i.large has 2 vCPUs, i.e.
#: one core, so ~50 req/s. AWS suggests targeting about half the measured peak (~1500/min), and
#: `predict --file` sends 64 texts per invocation, so 1000/min leaves room; MiniLM can take more.
DEFAULT_TARGET_INVOCATIONS = 1000


@dataclass
class SageMakerOptions:
    """What ``intentkit deploy --target sagemaker`` takes. Checked as a whole when built."""

    #: --region / --role / --bucket / --dry-run, resolved with ``INTENTKIT_SAGEMAKER_*``.
    settings: AwsSettings = field(default_factory=AwsSettings)
    #: --image: the serving image in ECR: intentkit's own (``intentkit container serve``) or a
    #: ``huggingface-pytorch-inference`` image (then the archive carries ``code/inference.py``).
    image: str | None = None
    #: --image-version: with ``--image huggingface``, the transformers version of the image.
    image_version: str | None = None
    #: --instance-type. c7i (Sapphire Rapids: AVX-512, AMX) is the cheapest fast CPU family for
    #: encoder inference; moto's validator predates it, so the tests pass ml.c5.large.
    instance_type: str = "ml.c7i.large"
    #: --instance-count: instances the endpoint starts with.
    instance_count: int = 1
    #: --min-instances: autoscaling floor (default: --instance-count); needs --max-instances.
    min_instances: int | None = None
    #: --max-instances: autoscaling ceiling; above 1 registers a target-tracking policy.
    max_instances: int | None = None
    #: --target-invocations: the policy's target of invocations per instance per minute.
    target_invocations: int = DEFAULT_TARGET_INVOCATIONS
    #: --timeout: seconds to wait for InService (SageMaker usually takes 5-10 minutes).
    timeout: float = 1800.0

    def __post_init__(self) -> None:
        problems = []
        if not self.image:
            problems.append(
                "--image is required for --target sagemaker: huggingface (AWS's Hugging Face "
                "image for the region), the intentkit image pushed to ECR (see README, Docker "
                "and SageMaker) or a huggingface-pytorch-inference image URI"
            )
        if self.instance_count < 1:
            problems.append(f"--instance-count must be at least 1, got {self.instance_count}")
        if self.min_instances is not None and self.max_instances is None:
            problems.append("--min-instances needs --max-instances (it bounds autoscaling)")
        lo, hi = self.min_instances, self.max_instances
        if lo is not None and lo < 1:
            problems.append(f"--min-instances must be at least 1, got {lo}")
        if hi is not None:
            floor = self.instance_count if lo is None else lo
            if hi < floor:
                flag = "--instance-count" if lo is None else "--min-instances"
                problems.append(f"--max-instances {hi} is below {flag} {floor}")
            elif not floor <= self.instance_count <= hi:
                problems.append(
                    f"--instance-count {self.instance_count} must lie within --min-instances "
                    f"{floor} and --max-instances {hi}"
                )
        if self.target_invocations < 1:
            problems.append(
                f"--target-invocations must be at least 1, got {self.target_invocations}"
            )
        if self.timeout <= 0:
            problems.append(f"--timeout must be positive, got {self.timeout:g}")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def autoscaling(self) -> dict[str, int] | None:
        """``{"min", "max", "target_invocations"}`` when --max-instances > 1, else None."""
        if self.max_instances is None or self.max_instances <= 1:
            return None
        lo = self.instance_count if self.min_instances is None else self.min_instances
        return {"min": lo, "max": self.max_instances, "target_invocations": self.target_invocations}


def check_endpoint_name(name: str) -> str:
    """SageMaker's endpoint-name rule, as a one-line error naming --name."""
    if not ENDPOINT_NAME.match(name or ""):
        raise ConfigError(
            f"--name {name!r}: SageMaker endpoint names are 1-63 letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def _aws_for(record: dict[str, Any]) -> Aws:
    """A session in the record's region (credentials from boto3's usual chain)."""
    return Aws(AwsSettings(region=record.get("region")))


class SageMakerInvoker:
    """``sagemaker-runtime InvokeEndpoint`` with the local server's body: ``{"text": [...]}``."""

    def __init__(self, aws: Aws, endpoint: str) -> None:
        """Invoke ``endpoint`` through ``aws`` (IAM-signed; SageMaker has no bearer tokens)."""
        self.aws = aws
        self.endpoint = endpoint

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        """The endpoint's answers for ``texts``: ``[{"predicted_class", "confidence"}, ...]``."""
        resp = self.aws.call(
            "sagemaker-runtime",
            "invoke_endpoint",
            step=f"--endpoint {self.endpoint}",
            EndpointName=self.endpoint,
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps({"text": texts}).encode("utf-8"),
        )
        raw = resp["Body"].read()
        try:
            answers = json.loads(raw)
        except ValueError:
            raise ModelError(
                f"--endpoint {self.endpoint}: the endpoint answered non-JSON: {raw[:120]!r}"
            ) from None
        if isinstance(answers, dict):  # a one-element list may come back unwrapped
            answers = [answers]
        if not isinstance(answers, list) or len(answers) != len(texts):
            got = len(answers) if isinstance(answers, list) else type(answers).__name__
            raise ModelError(
                f"--endpoint {self.endpoint}: expected {len(texts)} answers, got {got}; "
                "is the endpoint serving an intentkit model?"
            )
        return answers


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
            instance_type=opts.instance_type,
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
                tar = pack_model(model_dir, Path(tmp) / "model.tar.gz", fmt=fmt)
                bucket_, key = req.s3_location(record)
                if not aws.dry_run:
                    created.append("s3")  # before the call: a half-finished upload is cleaned
                aws.upload(tar, bucket_, key)
            for what, service, operation, params in req.create_requests(record, role):
                aws.call(service, operation, step=f"deploy {name}: {what}", **params)
                created.append(operation)
                if operation == "create_endpoint":
                    self._wait_in_service(aws, name, opts)
        except BaseException as exc:
            undo = created and not aws.dry_run
            left = req.teardown(aws, record, created=created) if undo else []
            if not aws.dry_run:
                self._release(name)
            if not isinstance(exc, IntentkitError):
                raise  # a bug or Ctrl-C: what was created is gone, the traceback stays
            undone = (
                "; nothing was left behind" if not left else "; left behind: " + ", ".join(left)
            )
            text = str(exc) if str(exc).startswith(f"deploy {name}") else f"deploy {name}: {exc}"
            if len(text) > MAX_REASON:  # e.g. an invalid instance type: AWS lists every valid one
                text = text[:MAX_REASON] + "..."
            raise type(exc)(text + (undone if created else "")) from None
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
        from rich.console import Console

        console = Console(stderr=True)
        start = time.monotonic()
        with console.status(f"endpoint {name}: Creating") as line:
            while True:
                desc = aws.call("sagemaker", "describe_endpoint", step=step, EndpointName=name)
                state = desc.get("EndpointStatus", "unknown")
                elapsed = time.monotonic() - start
                line.update(f"endpoint {name}: {state} ({elapsed:.0f} s; usually 5-10 minutes)")
                if state == "InService":
                    break
                if state in FAILED_STATES:
                    reason = desc.get("FailureReason") or "no reason given"
                    raise AwsError(f"{step}: the endpoint is {state}: {reason}")
                if elapsed >= opts.timeout:
                    raise AwsError(
                        f"{step}: still {state} after {opts.timeout:g} s; raise --timeout"
                    )
                time.sleep(max(0.0, min(aws.settings.poll_s, opts.timeout - elapsed)))
        console.print(f"endpoint {name}: InService after {time.monotonic() - start:.0f} s")

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

    def delete(self, record: dict[str, Any], *, timeout: float = 30.0) -> str:
        """Autoscaling policy + scalable target, endpoint, endpoint config, model, archive; then
        the record. Returns ``deleted``, or ``gone`` when SageMaker had none of them already.
        A failure keeps the record (run delete again) and names what is left."""
        aws = _aws_for(record)
        name = record["name"]
        deleted: list[str] = []
        left = req.teardown(aws, record, deleted=deleted)
        if left:
            raise AwsError(
                f"delete {name}: could not delete {'; '.join(left)}; the record is kept, run "
                f"`intentkit delete {name}` again"
            )
        self._release(name)
        return "deleted" if any(d != "s3" for d in deleted) else "gone"
