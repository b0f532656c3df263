"""Endpoints on a stand-in that behaves like SageMaker (tests/standin/endpoints.py): Creating for a
while, deletes refused while in progress, Deleting before gone, 6 MB bodies, serverless limits.

Each test here reproduces what a real user would hit; every one of them failed before its fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from intentkit.cli import main
from intentkit.endpoints.registry import Registry
from serve_helpers import make_artifact
from standin import StandIn
from standin.endpoints import Lifecycle, install
from test_sagemaker_endpoints import (
    REGION,
    _deploy,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tiny_model_dir, tmp_path_factory.mktemp("sm-life-art"))


@pytest.fixture
def life(standin: StandIn) -> Lifecycle:
    """The realistic endpoint lifecycle switched on for one test."""
    return install(standin)


def _endpoints_json(state: Path, capsys: pytest.CaptureFixture) -> list[dict]:
    capsys.readouterr()
    assert main(["endpoints", "--json", "--state-dir", str(state)]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_lifecycle_itself(life: Lifecycle, aws: str, artifact: Path, tmp_path: Path) -> None:
    """The stand-in's own rules, through boto3: what the fixes below rely on."""
    assert _deploy(artifact, tmp_path / "s") == 0
    sm = boto3.client("sagemaker", region_name=REGION)
    config = Registry(tmp_path / "s").get("e1")["endpoint_config"]
    sm.update_endpoint(EndpointName="e1", EndpointConfigName=config)
    assert sm.describe_endpoint(EndpointName="e1")["EndpointStatus"] == "Updating"
    with pytest.raises(sm.exceptions.ClientError, match="Cannot update in-progress endpoint"):
        sm.delete_endpoint(EndpointName="e1")
    life.finish("e1")
    assert sm.describe_endpoint(EndpointName="e1")["EndpointStatus"] == "InService"
    sm.delete_endpoint(EndpointName="e1")
    assert sm.describe_endpoint(EndpointName="e1")["EndpointStatus"] == "Deleting"
    assert [e["EndpointStatus"] for e in sm.list_endpoints()["Endpoints"]] == ["Deleting"]
    life.finish("e1")
    with pytest.raises(sm.exceptions.ClientError, match='Could not find endpoint "arn:'):
        sm.describe_endpoint(EndpointName="e1")
    assert sm.list_endpoints()["Endpoints"] == []
