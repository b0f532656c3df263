"""The stand-in proxy itself: it forwards to moto unchanged, and a rule can answer or rewrite."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from standin import Reply, StandIn


def test_forwards_to_moto_unchanged(standin: StandIn) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="standin-bucket")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["standin-bucket"]
    assert any(a.startswith("PUT /standin-bucket") for a in standin.actions())


def test_a_rule_answers_with_an_aws_error(standin: StandIn) -> None:
    standin.on(
        "SageMaker.ListEndpoints",
        lambda call, forward: Reply.error("ThrottlingException", "Rate exceeded"),
    )
    with pytest.raises(ClientError) as err:
        boto3.client("sagemaker").list_endpoints()
    assert err.value.response["Error"]["Code"] == "ThrottlingException"


def test_a_rule_rewrites_motos_answer(standin: StandIn) -> None:
    def renamed(call, forward):  # noqa: ANN001, ANN202
        reply = forward()
        data = reply.json()
        data["Endpoints"] = [{"EndpointName": "from-the-rule"}] + data.get("Endpoints", [])
        return Reply.of_json(data, reply.status)

    standin.on("SageMaker.ListEndpoints", renamed)
    names = [e["EndpointName"] for e in boto3.client("sagemaker").list_endpoints()["Endpoints"]]
    assert names == ["from-the-rule"]
