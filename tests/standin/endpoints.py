"""SageMaker real-time endpoints as the real service runs them, where moto does not.

moto's endpoints are ``InService`` the moment ``CreateEndpoint`` returns and can be deleted or
updated at any time. The real lifecycle, from the SageMaker API reference:

* CreateEndpoint (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpoint.html):
  "When SageMaker receives the request, it sets the endpoint status to Creating. After it creates
  the endpoint, it sets the status to InService", or ``Failed`` with a ``FailureReason``
  (DescribeEndpoint, ``EndpointStatus`` and ``FailureReason``:
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html).
* UpdateEndpoint (.../API_UpdateEndpoint.html): "it sets the endpoint status to Updating".
* DeleteEndpoint / UpdateEndpoint while the endpoint is Creating, Updating or Deleting are
  refused with ``ValidationException: Cannot update in-progress endpoint "ARN".`` (the code and
  message prefix AWS's own SageMaker operator for Kubernetes matches:
  aws/amazon-sagemaker-operator-for-k8s, controllers/sdkutil/clientwrapper/sagemaker_client.go,
  ``DeleteEndpointInProgressMessagePrefix``; same file: ``Could not find endpoint``).
* A deleted endpoint is ``Deleting`` for a while (DeleteEndpoint: "SageMaker asynchronously
  deletes associated endpoint resources"), then DescribeEndpoint answers
  ``ValidationException: Could not find endpoint "ARN".``
* InvokeEndpoint's body is at most 6 MB ("Maximum length of 6291456", the ``Body`` member of
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html;
  botocore does not check a blob's maximum length itself). The service answers HTTP 413 without
  an error code, so botocore reports ``(413)``, as in
  https://github.com/aws/sagemaker-python-sdk/issues/171 (then a 5 MB limit).
* ProductionVariant: ``ServerlessConfig`` (MemorySizeInMB 1024-6144 in 1024 steps, MaxConcurrency
  1-200: botocore's service model, shapes ``ServerlessMemorySizeInMB``/``ServerlessMaxConcurrency``)
  *instead of* instance settings; serverless endpoints do not support data capture
  (https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html, "Feature
  exclusions").
* RegisterScalableTarget for a variant of an endpoint that is Creating or Updating is refused
  with ``ValidationException`` "... The status should be in 'InService' to register it as a
  scalable target" (the same operator, controllers/sdkutil/clientwrapper/autoscaling_client.go,
  ``HDPendingMessage``; the start of the message is the stand-in's own).

Polls are counted per DescribeEndpoint call, so a test controls how long each state lasts in
calls, not seconds (the code under test polls every ``$INTENTKIT_SAGEMAKER_POLL_SECONDS``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from standin.proxy import Call, Reply, StandIn

#: InvokeEndpoint's maximum body (bytes).
MAX_PAYLOAD = 6 * 1024 * 1024
IN_PROGRESS = ("Creating", "Updating", "Deleting", "SystemUpdating", "RollingBack")
SERVERLESS_MEMORY = (1024, 2048, 3072, 4096, 5120, 6144)


@dataclass
class Lifecycle:
    """How the stand-in's endpoints behave; change fields from a test at any time."""

    standin: StandIn
    #: DescribeEndpoint calls an endpoint stays Creating (Updating, Deleting) before it moves on.
    creating_polls: int = 3
    updating_polls: int = 3
    deleting_polls: int = 2
    #: endpoint name -> FailureReason: that endpoint ends Creating as Failed instead of InService.
    fail: dict[str, str] = field(default_factory=dict)
    #: endpoint name -> FailureReason: its next update ends as ``update_failure`` instead of
    #: InService on the new config; the endpoint keeps its old config (UpdateEndpoint: "If the
    #: update fails, SageMaker rolls back to the previous configuration"... or says it could not).
    fail_update: dict[str, str] = field(default_factory=dict)
    update_failure: str = "Failed"
    #: endpoint name -> {"status", "polls", "arn", "desc", "config"}: what moto does not keep.
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)

    def status(self, name: str) -> str | None:
        """The endpoint's status as the stand-in answers it (None when it has no such endpoint)."""
        state = self.endpoints.get(name)
        return state["status"] if state else None

    def finish(self, name: str) -> None:
        """End the endpoint's current in-progress state at its next DescribeEndpoint."""
        self.endpoints[name]["polls"] = 0

    # -- the rules ------------------------------------------------------------------------------

    def create_endpoint(self, call: Call, forward: Any) -> Reply:
        reply = forward()
        if reply.status == 200:
            name = call.json()["EndpointName"]
            arn = reply.json()["EndpointArn"]
            self.endpoints[name] = {"status": "Creating", "polls": self.creating_polls, "arn": arn}
        return reply

    def describe_endpoint(self, call: Call, forward: Any) -> Reply:
        name = call.json().get("EndpointName", "")
        state = self.endpoints.get(name)
        if state is None:
            return forward()
        if state["status"] == "Deleting":
            if state["polls"] <= 0:
                self._delete_in_moto(call, name)
                del self.endpoints[name]
                return _not_found(state["arn"])
            state["polls"] -= 1
            return Reply.of_json({**state["desc"], "EndpointStatus": "Deleting"})
        reply = forward()
        if reply.status != 200:
            return reply
        desc = reply.json()
        if state["status"] in IN_PROGRESS:
            if state["polls"] <= 0:
                self._end_in_progress(name, state)
            else:
                state["polls"] -= 1
        desc["EndpointStatus"] = state["status"]
        desc["EndpointConfigName"] = state.get("config") or desc["EndpointConfigName"]
        if state.get("reason"):
            desc["FailureReason"] = state["reason"]
        state["desc"] = desc
        return Reply.of_json(desc)

    def _end_in_progress(self, name: str, state: dict[str, Any]) -> None:
        if state["status"] == "Updating":
            reason = self.fail_update.pop(name, None)
            ended = self.update_failure if reason else "InService"
            to = state.pop("updating_to", None)
            if not reason:  # only a successful update moves the endpoint to the new config
                state["config"] = to
        else:
            reason = self.fail.get(name) if state["status"] == "Creating" else None
            ended = "Failed" if reason else "InService"
        state["status"] = ended
        if reason:
            state["reason"] = reason

    def list_endpoints(self, call: Call, forward: Any) -> Reply:
        reply = forward()
        if reply.status != 200:
            return reply
        data = reply.json()
        for summary in data.get("Endpoints", []):
            status = self.status(summary["EndpointName"])
            if status:
                summary["EndpointStatus"] = status
        return Reply.of_json(data)

    def delete_endpoint(self, call: Call, forward: Any) -> Reply:
        name = call.json().get("EndpointName", "")
        state = self.endpoints.get(name)
        if state is None:
            return forward()  # moto: Could not find endpoint
        if state["status"] in IN_PROGRESS:
            return _in_progress(state["arn"])
        if "desc" not in state:  # never described: take moto's description now
            state["desc"] = self.standin.forward(_as(call, "DescribeEndpoint", name)).json()
        state.update(status="Deleting", polls=self.deleting_polls)
        return Reply.of_json({})

    def update_endpoint(self, call: Call, forward: Any) -> Reply:
        # moto has no UpdateEndpoint: the stand-in answers it (the endpoint keeps moto's config).
        name = call.json().get("EndpointName", "")
        state = self.endpoints.get(name)
        if state is None:
            return self.standin.forward(_as(call, "DescribeEndpoint", name))  # not found
        if state["status"] in IN_PROGRESS:
            return _in_progress(state["arn"])
        config = call.json().get("EndpointConfigName", "")
        headers = {**call.headers, "X-Amz-Target": "SageMaker.DescribeEndpointConfig"}
        body = json.dumps({"EndpointConfigName": config}).encode()
        found = self.standin.forward(
            Call("SageMaker.DescribeEndpointConfig", "POST", "/", headers, body)
        )
        if found.status != 200:
            return Reply.error(
                "ValidationException", f'Could not find endpoint configuration "{config}".'
            )
        state.update(status="Updating", polls=self.updating_polls, updating_to=config)
        state.pop("reason", None)
        return Reply.of_json({"EndpointArn": state["arn"]})

    def create_endpoint_config(self, call: Call, forward: Any) -> Reply:
        body = call.json()
        for i, variant in enumerate(body.get("ProductionVariants", []), start=1):
            problem = _variant_problem(i, variant)
            if problem:
                return Reply.error("ValidationException", problem)
            if variant.get("ServerlessConfig") and body.get("DataCaptureConfig"):
                return Reply.error(
                    "ValidationException",
                    "DataCaptureConfig is not supported for serverless endpoint configurations.",
                )
        return forward()

    def register_scalable_target(self, call: Call, forward: Any) -> Reply:
        body = call.json()
        m = re.match(r"^endpoint/([^/]+)/variant/", body.get("ResourceId", ""))
        if body.get("ServiceNamespace") == "sagemaker" and m:
            status = self.status(m.group(1))
            if status is not None and status != "InService":
                return Reply.error(
                    "ValidationException",
                    f"Endpoint {m.group(1)} is {status}. The status should be in 'InService' to "
                    "register it as a scalable target.",
                )
        return forward()

    def invoke_endpoint(self, call: Call, forward: Any) -> Reply:
        if len(call.body) > MAX_PAYLOAD:
            body = json.dumps({"message": f"HTTP content length exceeded {MAX_PAYLOAD} bytes."})
            return Reply(413, body.encode(), {"Content-Type": "application/json"})
        m = re.match(r"^POST /endpoints/([^/]+)/invocations", call.action)
        status = self.status(m.group(1)) if m else None
        if status is not None and status not in ("InService", "Updating"):
            return Reply.error(
                "ValidationError", f"Endpoint {m.group(1)} is not available (status {status})."
            )
        return forward()

    def _delete_in_moto(self, call: Call, name: str) -> None:
        self.standin.forward(_as(call, "DeleteEndpoint", name))


def _as(call: Call, operation: str, name: str) -> Call:
    """``call`` (same signed headers, region) turned into ``SageMaker.<operation>`` for ``name``."""
    headers = {**call.headers, "X-Amz-Target": f"SageMaker.{operation}"}
    body = json.dumps({"EndpointName": name}).encode()
    return Call(f"SageMaker.{operation}", "POST", "/", headers, body)


def _in_progress(arn: str) -> Reply:
    return Reply.error("ValidationException", f'Cannot update in-progress endpoint "{arn}".')


def _not_found(arn: str) -> Reply:
    return Reply.error("ValidationException", f'Could not find endpoint "{arn}".')


def _variant_problem(i: int, variant: dict[str, Any]) -> str | None:
    """What the real CreateEndpointConfig refuses in a ProductionVariant that moto accepts."""
    serverless = variant.get("ServerlessConfig")
    if serverless is None:
        return None
    at = f"productionVariants.{i}.member.serverlessConfig"
    if "InstanceType" in variant or "InitialInstanceCount" in variant:
        return (
            "Serverless endpoint configurations cannot specify InstanceType or "
            "InitialInstanceCount."
        )
    memory, concurrency = serverless.get("MemorySizeInMB"), serverless.get("MaxConcurrency")
    if memory not in SERVERLESS_MEMORY:
        return (
            f"1 validation error detected: Value '{memory}' at '{at}.memorySizeInMB' failed to "
            f"satisfy constraint: Member must satisfy enum value set: {list(SERVERLESS_MEMORY)}"
        )
    if not isinstance(concurrency, int) or not 1 <= concurrency <= 200:
        return (
            f"1 validation error detected: Value '{concurrency}' at '{at}.maxConcurrency' failed "
            "to satisfy constraint: Member must have value between 1 and 200"
        )
    return None


def install(standin: StandIn, **settings: Any) -> Lifecycle:
    """Register the endpoint lifecycle rules on ``standin``; returns the lifecycle to steer."""
    life = Lifecycle(standin, **settings)
    for action, rule in (
        ("SageMaker.CreateEndpoint", life.create_endpoint),
        ("SageMaker.DescribeEndpoint", life.describe_endpoint),
        ("SageMaker.ListEndpoints", life.list_endpoints),
        ("SageMaker.DeleteEndpoint", life.delete_endpoint),
        ("SageMaker.UpdateEndpoint", life.update_endpoint),
        ("SageMaker.CreateEndpointConfig", life.create_endpoint_config),
        ("AnyScaleFrontendService.RegisterScalableTarget", life.register_scalable_target),
        ("POST /endpoints/", life.invoke_endpoint),
    ):
        standin.on(action, rule)
    standin.state["endpoints"] = life
    return life
