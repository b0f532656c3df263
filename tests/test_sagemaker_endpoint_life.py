"""Endpoints on a stand-in that behaves like SageMaker (tests/standin/endpoints.py): Creating for a
while, deletes refused while in progress, Deleting before gone, 6 MB bodies, serverless limits.

Each test here reproduces what a real user would hit; every one of them failed before its fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from aws_helpers import FAKE_ENV, ROLE, default_sigint
from intentkit.cli import main
from intentkit.endpoints.registry import Registry
from serve_helpers import make_artifact
from standin import StandIn
from standin.endpoints import Lifecycle, install
from test_sagemaker_endpoints import (
    IMAGE,
    INSTANCE,
    NOTHING,
    REGION,
    _deploy,
    _left_behind,
    _one_line_error,
    _queue_answers,
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


def test_deploy_timeout_while_creating_keeps_the_record(
    life: Lifecycle, aws: str, artifact: Path, tmp_path: Path, capsys
) -> None:
    """SageMaker refuses DeleteEndpoint while Creating: the record stays, the error says how."""
    life.creating_polls = 10_000
    state = tmp_path / "s"
    assert _deploy(artifact, state, "--timeout", "0.3", "--max-instances", "2") == 2
    err = _one_line_error(capsys)
    assert "still Creating after 0.3 s" in err
    assert "left behind: endpoint e1" in err and "`intentkit delete e1`" in err
    left = _left_behind()
    assert [e["EndpointName"] for e in left["endpoints"]] == ["e1"]
    # What the endpoint still uses stays too (deleting it would make the creation fail).
    assert len(left["models"]) == len(left["configs"]) == len(left["objects"]) == 1
    assert left["targets"] == []  # autoscaling is registered only once InService
    rows = _endpoints_json(state, capsys)
    assert [(r["name"], r["status"]) for r in rows] == [("e1", "creating")]

    life.finish("e1")  # it becomes InService on its own, as on AWS
    assert main(["delete", "e1", "--state-dir", str(state)]) == 0
    assert _left_behind() == NOTHING and Registry(state).all() == {}


def test_delete_waits_until_sagemaker_allows_it(
    life: Lifecycle, aws: str, artifact: Path, tmp_path: Path, capsys
) -> None:
    state = tmp_path / "s"
    assert _deploy(artifact, state, "--max-instances", "2") == 0
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.update_endpoint(
        EndpointName="e1", EndpointConfigName=Registry(state).get("e1")["endpoint_config"]
    )
    life.updating_polls = 5
    life.endpoints["e1"]["polls"] = 5
    capsys.readouterr()
    assert main(["delete", "e1", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out == "deleted e1 (deleted)\n"
    assert _left_behind() == NOTHING and Registry(state).all() == {}


def test_delete_of_an_endpoint_stuck_in_progress_times_out_and_keeps_the_record(
    life: Lifecycle, aws: str, artifact: Path, tmp_path: Path, capsys
) -> None:
    state = tmp_path / "s"
    assert _deploy(artifact, state) == 0
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.update_endpoint(
        EndpointName="e1", EndpointConfigName=Registry(state).get("e1")["endpoint_config"]
    )
    life.endpoints["e1"]["polls"] = 10_000
    capsys.readouterr()
    assert main(["delete", "e1", "--timeout", "0.2", "--state-dir", str(state)]) == 2
    err = _one_line_error(capsys)
    assert "still Updating after 0.2 s" in err and "`intentkit delete e1`" in err
    assert Registry(state).get("e1") is not None
    assert len(_left_behind()["models"]) == 1  # nothing was deleted


def test_endpoint_that_fails_is_deleted(
    life: Lifecycle, aws: str, artifact: Path, tmp_path: Path, capsys
) -> None:
    life.fail["e1"] = "image pull failed"
    assert _deploy(artifact, tmp_path / "s", "--max-instances", "2") == 2
    err = _one_line_error(capsys)
    assert "deploy e1: waiting for InService: the endpoint is Failed: image pull failed" in err
    assert "nothing was left behind" in err
    assert _left_behind() == NOTHING and Registry(tmp_path / "s").all() == {}


def test_predict_splits_requests_under_the_6_mb_limit(
    life: Lifecycle, aws: str, artifact: Path, tmp_path: Path, capsys
) -> None:
    state = tmp_path / "s"
    assert _deploy(artifact, state) == 0
    texts = [f"{i} " + "x" * 1_500_000 for i in range(6)]  # 9 MB in one request of 64
    answer = {"predicted_class": "flight_status", "confidence": 0.9}
    _queue_answers(aws, *[[answer] * n for n in (4, 2)])
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join(texts) + "\n")
    capsys.readouterr()
    args = ["predict", "--endpoint", "e1", "--file", str(queries), "--state-dir", str(state)]
    assert main(args) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(rows) == 6 and all(r["predicted_class"] == "flight_status" for r in rows)
    bodies = [c.body for c in life.standin.calls if c.action.startswith("POST /endpoints/")]
    assert len(bodies) == 2 and all(len(b) <= 6 * 1024 * 1024 for b in bodies)


def test_predict_one_text_over_the_limit_is_one_line(
    life: Lifecycle, aws: str, artifact: Path, tmp_path: Path, capsys
) -> None:
    state = tmp_path / "s"
    assert _deploy(artifact, state) == 0
    capsys.readouterr()
    big = "x" * (7 * 1024 * 1024)
    assert main(["predict", "--endpoint", "e1", "--state-dir", str(state), big]) == 2
    assert "6 MB" in _one_line_error(capsys)


def _subprocess_env(standin: StandIn, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INTENTKIT_"))}
    env.update(FAKE_ENV)
    env["AWS_ENDPOINT_URL"] = standin.url
    env["INTENTKIT_SAGEMAKER_POLL_SECONDS"] = "0.02"
    env["INTENTKIT_STATE_DIR"] = str(state)
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(state / "none")
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def test_ctrl_c_while_creating_keeps_the_record(
    life: Lifecycle, aws: str, artifact: Path, tmp_path: Path, capsys
) -> None:
    """SIGINT to a real `intentkit deploy` process while the endpoint is Creating."""
    life.creating_polls = 10_000
    state = tmp_path / "s"
    cmd = [sys.executable, "-m", "intentkit", "deploy", str(artifact), "--name", "e1"]
    cmd += ["--target", "sagemaker", "--role", ROLE, "--image", IMAGE, "--region", REGION]
    cmd += ["--instance-type", INSTANCE]
    proc = subprocess.Popen(
        cmd,
        preexec_fn=default_sigint,
        env=_subprocess_env(life.standin, state),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while (
        life.status("e1") != "Creating"
        or "SageMaker.DescribeEndpoint" not in life.standin.actions()[-3:]
    ):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the deploy never reached the wait"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "left behind: endpoint e1" in err and "`intentkit delete e1`" in err
    assert Registry(state).get("e1") is not None
    assert [(r["name"], r["status"]) for r in _endpoints_json(state, capsys)] == [
        ("e1", "creating")
    ]

    life.finish("e1")
    assert main(["delete", "e1", "--state-dir", str(state)]) == 0
    assert _left_behind() == NOTHING and Registry(state).all() == {}
