"""Promote and rollback of a SageMaker endpoint on the stand-in (tests/standin/endpoints.py):
UpdateEndpoint to a new model and config, Updating for several polls, failed updates that keep
the old config, refusals while in progress, and Ctrl-C of a real process during the wait."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from aws_helpers import default_sigint
from intentkit.cli import main
from intentkit.endpoints.registry import Registry
from intentkit.sagemaker.endpoint_update import settle, switch
from intentkit.sagemaker.session import Aws, AwsError, AwsSettings
from serve_helpers import make_artifact
from standin import StandIn
from standin.endpoints import Lifecycle, install
from test_gate import gate_data, untrained  # noqa: F401 - module fixtures shared with the gate
from test_sagemaker_endpoint_life import _subprocess_env
from test_sagemaker_endpoints import NOTHING, REGION, _deploy, _left_behind


@pytest.fixture(scope="module")
def artifacts(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two model folders (the deployed one and its successor)."""
    return tuple(  # type: ignore[return-value]
        make_artifact(tiny_model_dir, tmp_path_factory.mktemp(f"sm-promote-{i}")).resolve()
        for i in (1, 2)
    )


@pytest.fixture
def life(standin: StandIn) -> Lifecycle:
    return install(standin)


def _config_in_use() -> str:
    desc = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName="e1")
    return desc["EndpointConfigName"]


def _counts() -> tuple[int, int, int]:
    left = _left_behind()
    return len(left["models"]), len(left["configs"]), len(left["objects"])


def test_promote_rollback_delete(
    life: Lifecycle, aws: str, artifacts: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    old, new = artifacts
    state = tmp_path / "s"
    assert _deploy(old, state) == 0
    reg = Registry(state)
    first = reg.get("e1")
    promoted = switch(reg, first, new, timeout=60)
    assert reg.get("e1") == promoted and "pending" not in promoted
    assert promoted["model"] == str(new) and promoted["previous"]["model"] == str(old)
    assert promoted["endpoint_config"] != first["endpoint_config"]
    assert _config_in_use() == promoted["endpoint_config"]
    # UpdateEndpoint was sent once and the wait saw Updating before InService.
    actions = life.standin.actions()
    assert actions.count("SageMaker.UpdateEndpoint") == 1
    assert _counts() == (2, 2, 2)  # the old version stays for rollback

    capsys.readouterr()
    assert main(["rollback", "e1", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert out == f"rolled back: e1 serves {old} (endpoint config {first['endpoint_config']})\n"
    back = reg.get("e1")
    assert back["model"] == str(old) and back["model_name"] == first["model_name"]
    assert back["previous"]["model"] == str(new)
    assert _config_in_use() == first["endpoint_config"]
    assert _counts() == (2, 2, 2)  # a rollback creates nothing

    assert main(["delete", "e1", "--state-dir", str(state)]) == 0
    assert _left_behind() == NOTHING and reg.all() == {}


@pytest.mark.parametrize("how", ["Failed", "UpdateRollbackFailed", "refused"])
def test_a_failed_update_leaves_nothing_new_and_the_old_model_serving(
    how: str, life: Lifecycle, aws: str, artifacts: tuple[Path, Path], tmp_path: Path
) -> None:
    old, new = artifacts
    state = tmp_path / "s"
    assert _deploy(old, state) == 0
    reg = Registry(state)
    before = reg.get("e1")
    if how == "refused":  # someone else's update is in progress: SageMaker refuses ours
        sm = boto3.client("sagemaker", region_name=REGION)
        sm.update_endpoint(EndpointName="e1", EndpointConfigName=before["endpoint_config"])
        life.endpoints["e1"]["polls"] = 10_000
        expected = "Cannot update in-progress endpoint"
    else:
        life.fail_update["e1"] = "the new model failed its health check"
        life.update_failure = how
        expected = f"the update ended {how}: the new model failed its health check"
    with pytest.raises(AwsError) as err:
        switch(reg, before, new, timeout=60)
    text = str(err.value)
    assert expected in text and "\n" not in text
    assert f"e1 still serves {old}" in text and "new model, config and archive were deleted" in text
    assert reg.get("e1") == before  # no pending, no previous: the record is the old one
    assert _counts() == (1, 1, 1)  # only the old version exists
    assert _config_in_use() == before["endpoint_config"]


def test_rollback_without_a_promote_is_one_line(
    life: Lifecycle, aws: str, artifacts: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    state = tmp_path / "s"
    assert _deploy(artifacts[0], state) == 0
    capsys.readouterr()
    assert main(["rollback", "e1", "--state-dir", str(state)]) == 2
    assert capsys.readouterr().err == "error: e1 has no previous model: it was never promoted\n"


def test_ctrl_c_during_the_update_keeps_the_registry_true(
    life: Lifecycle, aws: str, artifacts: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    """SIGINT to a real `intentkit rollback` process while the endpoint is Updating."""
    old, new = artifacts
    state = tmp_path / "s"
    assert _deploy(old, state) == 0
    reg = Registry(state)
    switch(reg, reg.get("e1"), new, timeout=60)
    life.updating_polls = 10_000
    cmd = [sys.executable, "-m", "intentkit", "rollback", "e1"]
    proc = subprocess.Popen(
        cmd,
        env=_subprocess_env(life.standin, state),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 120
    while (
        life.status("e1") != "Updating"
        or "SageMaker.DescribeEndpoint" not in life.standin.actions()[-3:]
    ):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the rollback never reached the wait"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "SageMaker goes on updating it" in err and "`intentkit delete e1`" in err
    rec = reg.get("e1")  # still the promoted version, the rollback's target pending
    assert rec["model"] == str(new) and rec["pending"]["model"] == str(old)

    life.finish("e1")  # SageMaker ends the update on its own: the endpoint runs the old config
    settled = settle(Aws(AwsSettings.resolve(region=REGION)), reg, rec)
    assert reg.get("e1") == settled and "pending" not in settled
    assert settled["model"] == str(old) and _config_in_use() == settled["endpoint_config"]
    assert main(["delete", "e1", "--state-dir", str(state)]) == 0
    assert _left_behind() == NOTHING and reg.all() == {}


def test_cli_promote_gates_then_updates_and_a_refused_gate_creates_nothing(
    life: Lifecycle,
    aws: str,
    untrained: Path,  # noqa: F811
    kw_model: Path,
    gate_data: Path,  # noqa: F811
    tmp_path: Path,
    capsys,
) -> None:
    """`intentkit promote` on a SageMaker endpoint: the same gate as local, then UpdateEndpoint."""
    state = tmp_path / "s"
    assert _deploy(kw_model, state) == 0
    promote = ["promote", "--endpoint", "e1", "--data", str(gate_data), "--state-dir", str(state)]
    capsys.readouterr()
    assert main([*promote[:1], str(untrained), *promote[1:]]) == 1  # worse: refused
    assert "significantly worse" in capsys.readouterr().err
    assert _counts() == (1, 1, 1) and "UpdateEndpoint" not in str(life.standin.actions())
    assert Registry(state).get("e1")["model"] == str(kw_model.resolve())

    # The other way round (the trained model replacing an untrained one) passes and moves.
    assert main(["delete", "e1", "--state-dir", str(state)]) == 0
    assert _deploy(untrained, state) == 0
    capsys.readouterr()
    assert main([*promote[:1], str(kw_model), *promote[1:]]) == 0
    out = capsys.readouterr().out
    rec = Registry(state).get("e1")
    assert (
        f"promoted: e1 serves {kw_model.resolve()} (endpoint config {rec['endpoint_config']})"
        in out
    )
    assert rec["previous"]["model"] == str(untrained.resolve())
    assert _config_in_use() == rec["endpoint_config"]
