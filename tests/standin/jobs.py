"""SageMaker training and batch-transform jobs as they really run, where moto ends them at once.

moto answers ``Completed`` from the first ``Describe*Job`` and has no ``Stop*Job``. Real jobs:

- ``TrainingJobStatus`` is ``InProgress`` for minutes while ``SecondaryStatus`` walks through
  ``Starting``, ``Downloading``, ``Training``, ``Uploading``, then ``Completed``; ``Failed`` comes
  with a ``FailureReason``; ``ModelArtifacts`` is there only once the model was uploaded.
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeTrainingJob.html
- ``StopTrainingJob`` turns the job ``Stopping`` (SIGTERM, up to 120 s), then ``Stopped``; a job
  that has already ended refuses it with a ``ValidationException``, an unknown one answers
  ``ResourceNotFound`` (the operation's only modelled error in botocore's
  ``sagemaker/2017-07-24/service-2.json``).
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_StopTrainingJob.html
- A transform job is ``InProgress`` (it has no secondary status), then ``Completed`` or
  ``Failed``; ``StopTransformJob`` goes through ``Stopping`` to ``Stopped``.
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeTransformJob.html
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_StopTransformJob.html
- ``CreateTransformJob`` refuses ``MaxPayloadInMB`` over 100, ``MaxConcurrentTransforms *
  MaxPayloadInMB`` over 100, ``InvocationsTimeoutInSeconds`` outside 1..3600 and
  ``InvocationsMaxRetries`` outside 0..3 (the API reference of CreateTransformJob and
  ModelClientConfig; the ranges are in botocore's service model).
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ModelClientConfig.html
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standin.logs import Throttle
from standin.proxy import Call, Reply, StandIn

#: Secondary statuses of a training job that completes, in the order SageMaker reports them.
TRAINING_STEPS = ("Starting", "Downloading", "Training", "Uploading")
#: Where a failing training job stops advancing (it fails while training).
FAILING_STEPS = ("Starting", "Downloading", "Training")
TERMINAL = ("Completed", "Failed", "Stopped")


@dataclass
class JobLife:
    """How the jobs of one kind run: ``polls`` Describe calls per step, then ``outcome``.

    ``held``: every job stays InProgress (in its last step) until :meth:`release`.
    """

    standin: StandIn
    kind: str  #: ``Training`` or ``Transform``
    outcome: str = "Completed"  #: ``Completed`` or ``Failed`` (Stop*Job makes it ``Stopped``)
    reason: str = "AlgorithmError: see the job's CloudWatch logs"  #: FailureReason when Failed
    polls: int = 2
    held: bool = False
    #: Per job: {"describes": n, "stop_at": n of the StopXJob call or None}.
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def release(self) -> None:
        """Let held jobs run on to their outcome."""
        self.held = False

    def _steps(self) -> tuple[str, ...]:
        if self.kind == "Transform":
            return ("InProgress",) * 3
        return FAILING_STEPS if self.outcome == "Failed" else TRAINING_STEPS

    def state(self, name: str) -> tuple[str, str | None]:
        """(status, secondary status) of job ``name`` at its current Describe count."""
        job = self.jobs.setdefault(name, {"describes": 0, "stop_at": None})
        n, stop_at = job["describes"], job["stop_at"]
        secondary = self.kind == "Training"
        if stop_at is not None:
            done = "Stopping" if n < stop_at + self.polls else "Stopped"
            return done, done if secondary else None
        steps = self._steps()
        if self.held:
            n = min(n, len(steps) * self.polls - 1)
        if n < len(steps) * self.polls:
            return "InProgress", steps[n // self.polls] if secondary else None
        return self.outcome, self.outcome if secondary else None

    def describe(self, call: Call, forward: Callable[[], Reply]) -> Reply:
        """DescribeXJob: moto's answer with the status and fields of the current step."""
        reply = forward()
        if reply.status != 200:
            return reply
        data = reply.json()
        name = data[f"{self.kind}JobName"]
        status, secondary = self.state(name)
        self.jobs[name]["describes"] += 1
        data[f"{self.kind}JobStatus"] = status
        if secondary is not None:
            data["SecondaryStatus"] = secondary
        if status != "Completed":
            data.pop("ModelArtifacts", None)  # uploaded only once the job completed
        if status not in TERMINAL:
            data.pop(f"{self.kind}EndTime", None)
        if status == "Failed":
            data["FailureReason"] = self.reason
        else:
            data.pop("FailureReason", None)
        return Reply.of_json(data)

    def stop(self, call: Call, forward: Callable[[], Reply]) -> Reply:
        """StopXJob: Stopping, then Stopped; refused for an ended or unknown job."""
        name = call.json()[f"{self.kind}JobName"]
        known = _describe_in_moto(self.standin, call, self.kind, name)
        if known.status != 200:
            return Reply.error("ResourceNotFound", f"Requested resource not found: {name}")
        status, _ = self.state(name)
        if status in TERMINAL or status == "Stopping":
            return Reply.error(
                "ValidationException",
                f"The request was rejected because the {self.kind.lower()} job is in status "
                f"{status}.",
            )
        self.jobs[name]["stop_at"] = self.jobs[name]["describes"]
        return Reply.of_json({})


def _describe_in_moto(standin: StandIn, call: Call, kind: str, name: str) -> Reply:
    """Ask moto for job ``name`` (the Stop call's own signature is fine: moto does not check)."""
    headers = dict(call.headers)
    headers["X-Amz-Target"] = f"SageMaker.Describe{kind}Job"
    body = json.dumps({f"{kind}JobName": name}).encode()
    return standin.forward(
        Call(f"SageMaker.Describe{kind}Job", call.method, call.path, headers, body)
    )


def job_life(standin: StandIn, kind: str, **settings: Any) -> JobLife:
    """Make ``kind`` jobs (``Training`` or ``Transform``) run as :class:`JobLife` says."""
    life = JobLife(standin, kind, **settings)
    standin.on(f"SageMaker.Describe{kind}Job", life.describe)
    standin.on(f"SageMaker.Stop{kind}Job", life.stop)
    return life


def throttle_describe(standin: StandIn, kind: str, times: int) -> Throttle:
    """The first ``times`` ``Describe{kind}Job`` calls answer ThrottlingException, as the
    SageMaker API does over an account's request rate (register after :func:`job_life`, which
    it then wraps). https://docs.aws.amazon.com/sagemaker/latest/APIReference/CommonErrors.html
    """
    throttle = Throttle(times)
    standin.on(f"SageMaker.Describe{kind}Job", throttle)
    return throttle


def transform_limits(call: Call, forward: Callable[[], Reply]) -> Reply:
    """CreateTransformJob refuses what the real API refuses (ranges in the module docstring)."""
    body = call.json()
    payload = body.get("MaxPayloadInMB", 6)
    concurrent = body.get("MaxConcurrentTransforms", 1) or 1
    client = body.get("ModelClientConfig", {})
    problems = []
    if not 0 <= payload <= 100:
        problems.append(f"MaxPayloadInMB {payload} must be within 0..100")
    if payload * concurrent > 100:
        problems.append("MaxConcurrentTransforms * MaxPayloadInMB must not exceed 100 MB")
    timeout = client.get("InvocationsTimeoutInSeconds", 600)
    if not 1 <= timeout <= 3600:
        problems.append(f"InvocationsTimeoutInSeconds {timeout} must be within 1..3600")
    retries = client.get("InvocationsMaxRetries", 3)
    if not 0 <= retries <= 3:
        problems.append(f"InvocationsMaxRetries {retries} must be within 0..3")
    if problems:
        return Reply.error("ValidationException", "; ".join(problems))
    return forward()


def enforce_limits(standin: StandIn) -> None:
    """Register :func:`transform_limits`."""
    standin.on("SageMaker.CreateTransformJob", transform_limits)
