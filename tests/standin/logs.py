"""CloudWatch Logs as a least-privilege role or a busy account sees it, where moto always answers.

- A role without ``logs:DescribeLogStreams`` / ``logs:GetLogEvents`` gets
  ``AccessDeniedException`` ("User: ... is not authorized to perform: logs:...") for every read;
  SageMaker's execution role writes the logs, the caller's own policy decides who reads them.
  https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/CommonErrors.html
  https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/logs/iam-identity-based-access-control-cwl.html
- Reads are rate-limited per account and region (``DescribeLogStreams`` 25 and ``GetLogEvents``
  25 transactions per second); over that CloudWatch answers ``ThrottlingException``
  ("Rate exceeded"). https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/cloudwatch_limits_cwl.html
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from standin.proxy import Call, Reply, StandIn

#: The reads a log tailer makes (the JSON protocol's X-Amz-Target names).
READS = ("Logs_20140328.DescribeLogStreams", "Logs_20140328.GetLogEvents")


def deny_logs(standin: StandIn, account: str = "123456789012") -> None:
    """Every CloudWatch Logs read answers AccessDeniedException, as for a least-privilege role."""

    def denied(call: Call, forward: Callable[[], Reply]) -> Reply:
        operation = call.action.split(".", 1)[1]
        group = call.json().get("logGroupName", "*")
        return Reply.error(
            "AccessDeniedException",
            f"User: arn:aws:sts::{account}:assumed-role/least-privilege/cli is not authorized "
            f"to perform: logs:{operation} on resource: arn:aws:logs:us-east-1:{account}:"
            f"log-group:{group}:log-stream: because no identity-based policy allows the "
            f"logs:{operation} action",
        )

    for action in READS:
        standin.on(action, denied)


@dataclass
class Throttle:
    """The first ``times`` calls answer ThrottlingException; later ones go through."""

    times: int
    seen: int = 0

    def __call__(self, call: Call, forward: Callable[[], Reply]) -> Reply:
        """Throttle while the budget lasts, then forward to moto."""
        self.seen += 1
        if self.seen <= self.times:
            return Reply.error("ThrottlingException", "Rate exceeded")
        return forward()


def throttle_logs(standin: StandIn, times: int) -> Throttle:
    """Throttle the first ``times`` CloudWatch Logs reads (counted across both operations)."""
    throttle = Throttle(times)
    for action in READS:
        standin.on(action, throttle)
    return throttle
