"""What SageMaker training and batch-transform jobs share: names, checks, records, waiting, logs.

Waiting polls ``Describe*Job`` (SageMaker has no push API for job status) and shows one live
status line on a terminal, or one line per status change elsewhere (CI logs stay readable).
The job's CloudWatch log lines are printed as they appear; a log group or stream that does not
exist yet is normal (the instance is still starting), not an error; logs that cannot be read
never end the wait. Each job is recorded in ``jobs.json`` beside the endpoint registry when
SageMaker accepts it (:func:`record_job`), for :mod:`intentkit.sagemaker.job_records`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from intentkit.endpoints.registry import Registry, default_state_dir
from intentkit.errors import ConfigError
from intentkit.sagemaker.session import Aws, AwsError

#: SageMaker's rule for job and model names (63 characters, no underscores).
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
#: An image URI: registry host, then a repository path, then an optional tag or digest.
_IMAGE = re.compile(r"^[^\s/]+(/[^\s/:@]+)+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})?$")
#: Seconds between ``Describe*Job`` calls; jobs take minutes, and the API is rate-limited.
POLL_SECONDS = 15.0
TERMINAL = ("Completed", "Failed", "Stopped")


class JobFailedError(AwsError):
    """The job ran and ended Failed or Stopped: the request was fine, so not exit code 2."""

    exit_code = 1


def default_job_name(prefix: str = "intentkit", now: datetime | None = None) -> str:
    """``intentkit-YYYYmmdd-HHMMSS-mmm`` (UTC): unique per millisecond, sortable, valid."""
    now = now or datetime.now(timezone.utc)
    return f"{prefix}-{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}"


def check_name(name: str, flag: str = "--job-name") -> str:
    """A valid SageMaker job/model name, or a one-line error saying the rule."""
    if not _NAME.match(name):
        raise ConfigError(
            f"{flag} {name!r}: SageMaker names are 1-63 letters, digits and '-' (no '_' or '.', "
            "not starting with '-'); e.g. intentkit-clinc150-1"
        )
    return name


def check_image(image: str | None, flag: str = "--image") -> str:
    """The container image URI, or a one-line error saying where it comes from."""
    if not image:
        raise ConfigError(
            f"{flag}: the intentkit container image is required; build and push it to ECR "
            f"(README 'Docker and SageMaker') and pass {flag} "
            "ACCOUNT.dkr.ecr.REGION.amazonaws.com/intentkit:TAG"
        )
    if not _IMAGE.match(image):
        raise ConfigError(
            f"{flag} {image}: not an image URI; expected REGISTRY/REPOSITORY[:TAG], e.g. "
            "ACCOUNT.dkr.ecr.REGION.amazonaws.com/intentkit:latest"
        )
    return image


def check_instances(instance_type: str, count: int) -> None:
    """Instance type and count as SageMaker spells them (``ml.*``, at least one)."""
    if not re.match(r"^ml\.[a-z0-9]+\.[a-z0-9]+$", instance_type):
        raise ConfigError(
            f"--instance-type {instance_type}: not a SageMaker instance type; expected e.g. "
            "ml.g5.xlarge or ml.c7i.xlarge"
        )
    if count < 1:
        raise ConfigError(f"--instance-count must be at least 1, got {count}")


def check_s3_uri(uri: str, flag: str) -> str:
    """An ``s3://BUCKET/...`` URI, or a one-line error naming ``flag``."""
    if not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", uri):
        raise ConfigError(f"{flag} {uri}: expected an S3 URI, s3://BUCKET/KEY")
    return uri


def console_url(region: str, kind: str, name: str) -> str:
    """The SageMaker console page of a job (``kind``: ``jobs`` or ``transform-jobs``) in its
    partition's console (commercial, China, GovCloud); the region where there is none."""
    from intentkit.sagemaker.session import console_host

    host = console_host(region)
    if host is None:
        return f"(no public console for {region})"
    return f"https://{host}/sagemaker/home?region={region}#/{kind}/{name}"


#: CloudWatch's answers to too many requests (seen once botocore's own retries are spent).
THROTTLED = ("ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded")
#: Longest pause between reads (log lines, job status) while AWS keeps throttling them.
MAX_BACKOFF_S = 60.0


JOBS_FILE = "jobs.json"


def job_registry(state_dir: str | Path | None = None) -> Registry:
    """The job records in ``state_dir`` (default: the user state folder, as for endpoints)."""
    return Registry(state_dir or default_state_dir(), file=JOBS_FILE, key="jobs")


def record_job(jobs: Registry, aws: Aws, kind: str, name: str, **fields: Any) -> dict[str, Any]:
    """Record job ``name`` (``kind`` training|transform) as created now in ``aws``'s region."""
    record = {
        "name": name,
        "kind": kind,
        "region": aws.region,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "console": console_url(
            aws.region, "jobs" if kind == "training" else "transform-jobs", name
        ),
        **fields,
    }
    with jobs.edit() as records:
        records[name] = record
    return record


@dataclass
class LogTailer:
    """Print new CloudWatch lines of every stream ``<job>/...`` in ``group`` on each poll.

    Logs are a view on the job, never a reason to stop waiting for it: a read that is refused
    (``AccessDeniedException`` for a least-privilege role, or any other error) turns the view
    off with one warning; throttling backs off (doubling up to a minute) with one warning and
    reads again later, from where it left off.
    """

    aws: Aws
    group: str  #: ``/aws/sagemaker/TrainingJobs`` or ``/aws/sagemaker/TransformJobs``
    job: str
    echo: Callable[[str], None]
    backoff_s: float = POLL_SECONDS  #: the first pause after a throttled read
    _tokens: dict[str, str] = field(default_factory=dict)
    _off: bool = False
    _warned: bool = False
    _pause: float = 0.0
    _retry_at: float = 0.0

    def _missing(self, exc: AwsError) -> bool:
        return exc.code == "ResourceNotFoundException"

    def poll(self) -> None:
        """Print the lines written since the last poll (nothing when there are no logs yet)."""
        if self._off or time.monotonic() < self._retry_at:
            return
        try:
            self._read()
        except AwsError as exc:
            self._unreadable(exc)
        else:
            self._pause = 0.0

    def _unreadable(self, exc: AwsError) -> None:
        if exc.code in THROTTLED:
            self._pause = min(max(2 * self._pause, self.backoff_s), MAX_BACKOFF_S)
            self._retry_at = time.monotonic() + self._pause
            self._warn(f"{exc}; reading the logs less often, the wait goes on")
            return
        self._off = True
        self._warn(
            f"{exc}; the job's log lines are not shown (they need logs:DescribeLogStreams and "
            f"logs:GetLogEvents on {self.group}), the wait goes on"
        )

    def _warn(self, text: str) -> None:
        if not self._warned:
            self._warned = True
            self.echo(f"warning: {text}")

    def _read(self) -> None:
        try:
            streams = self.aws.call(
                "logs",
                "describe_log_streams",
                step="reading the job's log streams",
                logGroupName=self.group,
                logStreamNamePrefix=f"{self.job}/",
            ).get("logStreams", [])
        except AwsError as exc:
            if self._missing(exc):
                return
            raise
        for stream in sorted(s["logStreamName"] for s in streams):
            self._drain(stream)

    def _drain(self, stream: str) -> None:
        while True:
            params: dict[str, Any] = {"startFromHead": True}
            if stream in self._tokens:
                params["nextToken"] = self._tokens[stream]
            try:
                page = self.aws.call(
                    "logs",
                    "get_log_events",
                    step=f"reading log stream {stream}",
                    logGroupName=self.group,
                    logStreamName=stream,
                    **params,
                )
            except AwsError as exc:
                if self._missing(exc):
                    return
                raise
            events = page.get("events", [])
            for event in events:
                self.echo(f"[{stream.split('/', 1)[-1]}] {event.get('message', '').rstrip()}")
            token = page.get("nextForwardToken")
            # CloudWatch answers the same token again once a stream has no newer events.
            unchanged = token is None or token == self._tokens.get(stream)
            if token is not None:
                self._tokens[stream] = token
            if unchanged or not events:
                return


def shown_status(job: dict[str, Any], status_key: str) -> str:
    """``Status (SecondaryStatus)`` of a Describe answer; the status alone when they agree."""
    status = str(job.get(status_key, "Unknown"))
    secondary = job.get("SecondaryStatus")
    return f"{status} ({secondary})" if secondary and secondary != status else status


def wait_for_job(
    describe: Callable[[], dict[str, Any]],
    *,
    label: str,
    status_key: str,
    logs: LogTailer | None = None,
    poll_s: float | None = None,
    stop_hint: str = "",
) -> dict[str, Any]:
    """Poll ``describe`` until the job is Completed, Failed or Stopped; return its last answer.

    Shows ``label: Status (SecondaryStatus) mm:ss`` live on a terminal (stderr), else prints
    it on every change. Ctrl-C stops waiting, not the job: ``stop_hint`` says how to stop it.
    """
    from rich.console import Console

    # soft_wrap: a command line in a message must not be broken at the console's width.
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    poll = POLL_SECONDS if poll_s is None else poll_s
    started = time.monotonic()
    last_line = ""
    status_view = console.status(label) if console.is_terminal else None
    try:
        if status_view is not None:
            status_view.start()
        while True:
            job = describe()
            status = str(job.get(status_key, "Unknown"))
            shown = shown_status(job, status_key)
            elapsed = int(time.monotonic() - started)
            line = f"{label}: {shown}"
            if logs is not None:
                logs.poll()
            if status_view is not None:
                status_view.update(f"{line}  {elapsed // 60:02d}:{elapsed % 60:02d}")
            elif line != last_line:
                console.print(f"{line}  {elapsed // 60:02d}:{elapsed % 60:02d}")
            last_line = line
            if status in TERMINAL:
                return job
            time.sleep(poll)
    except KeyboardInterrupt:
        console.print(f"stopped waiting; the job keeps running. {stop_hint}".rstrip())
        raise
    finally:
        if status_view is not None:
            status_view.stop()


def failure_line(kind: str, name: str, job: dict[str, Any], status_key: str) -> str:
    """One line for a Failed/Stopped job: status, SageMaker's FailureReason, where logs are."""
    status = job.get(status_key, "Unknown")
    reason = " ".join(str(job.get("FailureReason") or "").split())
    if not reason:
        secondary = job.get("SecondaryStatus")
        reason = (
            f"no FailureReason given (secondary status {secondary})"
            if secondary
            else ("no FailureReason given (stopped by a user or a time limit)")
        )
    return f"{kind} {name} {str(status).lower()}: {reason}"


def _names(kind: str) -> tuple[str, str]:
    """(``Training``/``Transform``, its CloudWatch log group) for ``kind`` training|transform."""
    cap = kind.capitalize()
    return cap, f"/aws/sagemaker/{cap}Jobs"


def follow_job(aws: Aws, kind: str, job: str) -> dict[str, Any]:
    """Wait for the ``kind`` job (``training`` or ``transform``) to end, printing its CloudWatch
    lines on stderr; return its last ``Describe*Job`` answer."""
    from rich.console import Console

    cap, group = _names(kind)

    def describe() -> dict[str, Any]:
        return aws.call(
            "sagemaker",
            f"describe_{kind}_job",
            step=f"checking {kind} job {job}",
            **{f"{cap}JobName": job},
        )

    log_console = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
    return wait_for_job(
        patient(describe, aws.settings.poll_s, log_console.print),
        label=f"{kind} job {job}",
        status_key=f"{cap}JobStatus",
        logs=LogTailer(aws, group, job, log_console.print, backoff_s=aws.settings.poll_s),
        poll_s=aws.settings.poll_s,
        stop_hint=f"Reattach with `intentkit jobs attach {job}`; stop it with "
        f"`intentkit jobs stop {job}`",
    )


def patient(
    describe: Callable[[], dict[str, Any]], pause_s: float, echo: Callable[[str], None]
) -> Callable[[], dict[str, Any]]:
    """``describe``, asked again after a throttled answer (pauses doubling from ``pause_s`` up
    to a minute, one warning): an account's rate limit is no reason to stop waiting."""
    warned = False

    def call() -> dict[str, Any]:
        nonlocal warned
        pause = 0.0
        while True:
            try:
                return describe()
            except AwsError as exc:
                if exc.code not in THROTTLED:
                    raise
                if not warned:
                    warned = True
                    echo(f"warning: {exc}; asking less often, the wait goes on")
                pause = min(max(2 * pause, pause_s), MAX_BACKOFF_S)
                time.sleep(pause)

    return call


def raise_unless_completed(kind: str, job: str, final: dict[str, Any]) -> None:
    """:class:`JobFailedError` with the FailureReason and where the logs are, unless Completed."""
    cap, group = _names(kind)
    key = f"{cap}JobStatus"
    if final.get(key) != "Completed":
        raise JobFailedError(
            f"{failure_line(f'{kind} job', job, final, key)}; logs: CloudWatch {group}, "
            f"streams {job}/*"
        )
