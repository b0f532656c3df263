"""AWS access for ``--target sagemaker``: settings, clients, one-line errors and dry runs.

boto3 directly, not the ``sagemaker`` SDK (see pyproject's ``sagemaker`` extra for why).
Credentials and region come from boto3's usual chain (environment, profile, instance role);
``--region``, ``--role`` and ``--bucket`` may also come from ``INTENTKIT_SAGEMAKER_REGION``,
``INTENTKIT_SAGEMAKER_ROLE`` and ``INTENTKIT_SAGEMAKER_BUCKET``, read once by
:meth:`AwsSettings.resolve` when a command starts (never at import).

Every request a command sends goes through :meth:`Aws.call`. With ``--dry-run`` nothing is
sent, not even the account lookup: each request is printed as one JSON line
``{"service", "operation", "params"}`` and answered with ``{}``, so the printout is exactly the
list of requests the command would make.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intentkit.errors import ConfigError, IntentkitError, first_line

ENV_PREFIX = "INTENTKIT_SAGEMAKER_"
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
#: Shown in place of values a dry run cannot know without asking AWS.
DRY_ACCOUNT = "<account-id>"


class AwsError(IntentkitError):
    """An AWS request failed for a reason the user can act on (credentials, role, quota...)."""

    #: AWS's error code (``ValidationException``, ``ResourceNotFoundException``...) when AWS
    #: answered with one, so callers can treat "not found" as an answer instead of a failure.
    code: str | None = None


def require_boto3() -> Any:
    """Import boto3, or a one-line error naming the extra to install."""
    try:
        import boto3
    except ImportError:
        raise ConfigError(
            "--target sagemaker needs boto3: pip install 'intentkit[sagemaker]'"
        ) from None
    return boto3


@dataclass
class AwsSettings:
    """Where and as whom SageMaker work runs; every field may be None until needed."""

    region: str | None = None  #: --region / $INTENTKIT_SAGEMAKER_REGION / boto3's chain
    role: str | None = None  #: --role / $INTENTKIT_SAGEMAKER_ROLE: the SageMaker execution role
    bucket: str | None = None  #: --bucket / $INTENTKIT_SAGEMAKER_BUCKET; default per account
    dry_run: bool = False  #: --dry-run: print the requests, send none
    #: Seconds between Describe* calls while waiting ($INTENTKIT_SAGEMAKER_POLL_SECONDS; the
    #: tests' stand-in sets it low so its realistic state changes take milliseconds).
    poll_s: float = 15.0

    @classmethod
    def resolve(
        cls,
        *,
        region: str | None = None,
        role: str | None = None,
        bucket: str | None = None,
        dry_run: bool = False,
    ) -> AwsSettings:
        """Flags first, then ``INTENTKIT_SAGEMAKER_*`` (read here, once, at command start)."""

        def pick(value: str | None, name: str) -> str | None:
            return value or os.environ.get(ENV_PREFIX + name) or None

        poll = os.environ.get(ENV_PREFIX + "POLL_SECONDS")
        try:
            poll_s = float(poll) if poll else 15.0
        except ValueError:
            raise AwsError(
                f"INTENTKIT_SAGEMAKER_POLL_SECONDS={poll!r} is not a number of seconds"
            ) from None
        return cls(
            pick(region, "REGION"), pick(role, "ROLE"), pick(bucket, "BUCKET"), dry_run, poll_s
        )


@contextmanager
def aws_errors(step: str) -> Iterator[None]:
    """Turn botocore failures inside ``step`` into one-line :class:`AwsError` messages."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise AwsError(
            f"{step}: no AWS credentials found; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run where an instance role is attached"
        ) from None
    except NoRegionError:
        raise AwsError(
            f"{step}: no AWS region; pass --region (or set INTENTKIT_SAGEMAKER_REGION or "
            "AWS_REGION)"
        ) from None
    except EndpointConnectionError as exc:
        raise AwsError(f"{step}: cannot reach AWS ({first_line(exc)})") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        error = AwsError(
            f"{step}: {err.get('Code', 'error')}: {err.get('Message', first_line(exc))}"
        )
        error.code = err.get("Code")
        raise error from None
    except BotoCoreError as exc:
        raise AwsError(f"{step}: {first_line(exc)}") from None


@dataclass
class Aws:
    """boto3 clients for one command run, with dry-run recording and one-line errors."""

    settings: AwsSettings
    #: Where a dry run prints its requests (one JSON line each); stdout by default.
    echo: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stdout))
    #: Requests a dry run would have sent, in order (also printed through ``echo``).
    requests: list[dict[str, Any]] = field(default_factory=list)
    _session: Any = None
    _clients: dict[str, Any] = field(default_factory=dict)
    _account: str | None = None

    @property
    def dry_run(self) -> bool:
        """True when requests are printed instead of sent."""
        return self.settings.dry_run

    def session(self) -> Any:
        """The boto3 session (region checked against the regions SageMaker runs in)."""
        if self._session is None:
            boto3 = require_boto3()
            self._session = boto3.session.Session(region_name=self.settings.region)
            region = self._session.region_name
            if region is None and not self.dry_run:
                raise AwsError(
                    "no AWS region; pass --region (or set INTENTKIT_SAGEMAKER_REGION or AWS_REGION)"
                )
            known = sagemaker_regions(self._session)
            if region is not None and known and region not in known:
                raise ConfigError(
                    f"--region {region}: unknown region for SageMaker; use one of "
                    f"{', '.join(sorted(known)[:6])}, ..."
                )
        return self._session

    @property
    def region(self) -> str:
        """The resolved region (``<region>`` in a dry run without one)."""
        return self.session().region_name or "<region>"

    def client(self, service: str) -> Any:
        """A cached boto3 client for ``service`` in the resolved region."""
        if service not in self._clients:
            self._clients[service] = self.session().client(service)
        return self._clients[service]

    def call(self, service: str, operation: str, step: str | None = None, **params: Any) -> Any:
        """Send one request (``client(service).<operation>(**params)``) or, in a dry run,
        print and record it and answer ``{}``. ``step`` names it in error messages."""
        if self.dry_run:
            entry = {"service": service, "operation": operation, "params": params}
            self.requests.append(entry)
            self.echo(json.dumps(entry, default=str))
            return {}
        with aws_errors(step or f"{service} {operation}"):
            return getattr(self.client(service), operation)(**params)

    def account(self) -> str:
        """The caller's account id (STS), or a placeholder in a dry run."""
        if self._account is None:
            if self.dry_run:
                return DRY_ACCOUNT
            ident = self.call("sts", "get_caller_identity", step="checking AWS credentials")
            self._account = str(ident["Account"])
        return self._account

    def role(self, flag: str = "--role") -> str:
        """The execution role ARN, or a one-line error saying how to give one."""
        role = self.settings.role
        if not role:
            raise ConfigError(
                f"{flag}: a SageMaker execution role is required; pass {flag} "
                "arn:aws:iam::ACCOUNT:role/NAME or set INTENTKIT_SAGEMAKER_ROLE"
            )
        if not _ROLE_ARN.match(role):
            raise ConfigError(
                f"{flag} {role}: not an IAM role ARN; expected arn:aws:iam::ACCOUNT:role/NAME"
            )
        return role

    def bucket(self) -> str:
        """``--bucket``, else ``sagemaker-<region>-<account>`` (the SDK's default); created
        when missing, with a one-line error when it cannot be."""
        name = self.settings.bucket or f"sagemaker-{self.region}-{self.account()}"
        if self.dry_run:
            return name
        from botocore.exceptions import ClientError

        # aws_errors around the whole look-up: without credentials head_bucket raises
        # NoCredentialsError, which must be a one-line error too, not a traceback.
        with aws_errors(f"--bucket {name}"):
            try:
                self.client("s3").head_bucket(Bucket=name)
                return name
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code not in ("404", "NoSuchBucket", "NotFound"):
                    raise AwsError(
                        f"--bucket {name}: cannot use it ({code or first_line(exc)}); pass a "
                        "bucket you own with --bucket"
                    ) from None
        params: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            with aws_errors(f"--bucket {name}: cannot create it"):
                self.client("s3").create_bucket(**params)
        except AwsError as exc:
            raise AwsError(f"{exc}; pass a bucket you own with --bucket") from None
        return name

    def upload(self, path: Path, bucket: str, key: str) -> str:
        """Upload one file; return its ``s3://`` URI (printed, not sent, in a dry run)."""
        uri = f"s3://{bucket}/{key}"
        if self.dry_run:
            self.call("s3", "upload_file", Filename=str(path), Bucket=bucket, Key=key)
            return uri
        from boto3.exceptions import S3UploadFailedError

        step = f"uploading {path} to {uri}"
        with aws_errors(step):
            try:
                self.client("s3").upload_file(str(path), bucket, key)
            except S3UploadFailedError as exc:  # boto3's transfer wraps the ClientError in this
                raise AwsError(f"{step}: {first_line(exc)}") from None
        return uri

    def download(self, uri: str, path: Path) -> Path:
        """Download ``s3://bucket/key`` to ``path``."""
        bucket, key = split_s3_uri(uri)
        with aws_errors(f"downloading {uri}"):
            self.client("s3").download_file(bucket, key, str(path))
        return path


def sagemaker_regions(session: Any) -> list[str]:
    """The regions SageMaker runs in across every AWS partition (commercial, China, GovCloud,
    ...), from botocore's bundled endpoint data; ``get_available_regions`` alone lists only the
    commercial ``aws`` partition."""
    return [
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("sagemaker", partition_name=partition)
    ]


#: Console host per partition (botocore's data has API endpoints, not the console's domain):
#: https://docs.amazonaws.cn/en_us/aws/latest/userguide/endpoints-Beijing.html and
#: https://docs.aws.amazon.com/govcloud-us/latest/UserGuide/using-govcloud-endpoints.html
CONSOLE_HOSTS = {
    "aws": "{region}.console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}


def console_host(region: str) -> str | None:
    """The AWS console's host for ``region``'s partition; None where it has no public console."""
    import botocore.session
    from botocore.exceptions import UnknownRegionError

    try:
        partition = botocore.session.get_session().get_partition_for_region(region)
    except UnknownRegionError:  # newer than this botocore: most likely a commercial one
        partition = "aws"
    host = CONSOLE_HOSTS.get(partition)
    return host.format(region=region) if host else None


def tags(kind: str, name: str, **extra: str) -> list[dict[str, str]]:
    """The tags of every AWS resource intentkit creates, as SageMaker's ``Tags`` take them.

    ``created-by=intentkit``, ``intentkit-<kind>=<name>`` (``endpoint``, ``training-job``,
    ``transform-job``: what the resource belongs to), ``intentkit-version``, then
    ``intentkit-<key>=<value>`` for each ``extra``. So every leftover is found with
    ``aws resourcegroupstaggingapi get-resources --tag-filters Key=created-by,Values=intentkit``.
    Values are cut to AWS's 256 characters.
    """
    from intentkit import __version__

    pairs = {"created-by": "intentkit", f"intentkit-{kind}": name, "intentkit-version": __version__}
    pairs.update({f"intentkit-{key}": value for key, value in extra.items()})
    return [{"Key": key, "Value": str(value)[:256]} for key, value in pairs.items()]


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/...`` -> ``("bucket", "key/...")``, or a one-line error."""
    m = re.match(r"^s3://([^/]+)/?(.*)$", uri)
    if not m:
        raise ConfigError(f"{uri}: not an S3 URI; expected s3://BUCKET/KEY")
    return m.group(1), m.group(2)
