"""Waiting on a SageMaker endpoint's status with one live status line: the single polling loop
behind ``deploy`` (until InService) and ``delete`` (until SageMaker allows the delete, then
until the endpoint is gone).

SageMaker refuses DeleteEndpoint and UpdateEndpoint while an endpoint is ``Creating``,
``Updating`` or ``Deleting`` (``ValidationException: Cannot update in-progress endpoint``), and
a new endpoint takes 5-10 minutes to leave ``Creating``
(https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html lists the
states). Polls are ``AwsSettings.poll_s`` apart.
"""

from __future__ import annotations

import time
from typing import Any

from intentkit.sagemaker.endpoint_requests import is_gone
from intentkit.sagemaker.session import Aws, AwsError

#: States SageMaker leaves on its own, and in which it refuses a delete.
IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


class StillInProgress(AwsError):
    """The endpoint was still in one of the awaited states when the timeout ran out."""

    def __init__(self, message: str, status: str = "") -> None:
        """``status``: the endpoint's state at the timeout (``Creating``, ``Updating``...)."""
        super().__init__(message)
        self.status = status


def describe(aws: Aws, name: str, step: str) -> dict[str, Any] | None:
    """DescribeEndpoint's answer, or None when SageMaker has no such endpoint."""
    try:
        return aws.call("sagemaker", "describe_endpoint", step=step, EndpointName=name)
    except AwsError as exc:
        if is_gone(exc):
            return None
        raise


def wait_while(
    aws: Aws, name: str, states: tuple[str, ...], *, timeout: float, step: str, note: str = ""
) -> dict[str, Any] | None:
    """Poll DescribeEndpoint while the endpoint's status is one of ``states``, showing it on a
    live status line (stderr); return the first other description, or None once it is gone.

    Raises :class:`StillInProgress` after ``timeout`` seconds. ``note`` follows the elapsed
    time on the status line (e.g. how long the state usually lasts).
    """
    from rich.console import Console

    console = Console(stderr=True)
    start = time.monotonic()
    with console.status(f"endpoint {name}: checking") as line:
        while True:
            desc = describe(aws, name, step)
            state = str(desc.get("EndpointStatus", "unknown")) if desc is not None else "gone"
            elapsed = time.monotonic() - start
            line.update(f"endpoint {name}: {state} ({elapsed:.0f} s{note})")
            if desc is None or state not in states:
                return desc
            if elapsed >= timeout:
                raise StillInProgress(f"{step}: still {state} after {timeout:g} s", state)
            time.sleep(max(0.0, min(aws.settings.poll_s, timeout - elapsed)))
