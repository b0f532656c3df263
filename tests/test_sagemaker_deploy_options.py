"""deploy --target sagemaker's options on the realistic stand-in: serverless, data capture, the
ONNX-less hint, and `intentkit endpoints` (whole names when piped, --prune)."""

from __future__ import annotations

import sys
from pathlib import Path

import boto3
import pytest

from aws_helpers import ROLE
from intentkit.cli import main
from intentkit.endpoints.registry import Registry
from serve_helpers import make_artifact
from standin import StandIn
from standin.endpoints import Lifecycle, install
from test_sagemaker_endpoints import IMAGE, NOTHING, REGION, _left_behind, _one_line_error

SM = ["--target", "sagemaker", "--role", ROLE, "--image", IMAGE, "--region", REGION]


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tiny_model_dir, tmp_path_factory.mktemp("sm-opt-art"))


@pytest.fixture
def life(standin: StandIn) -> Lifecycle:
    """The realistic endpoint lifecycle switched on for one test."""
    return install(standin)


def _deploy(artifact: Path, state: Path, *extra: str, name: str = "e1") -> int:
    return main(["deploy", str(artifact), "--name", name, *SM, "--state-dir", str(state), *extra])


def test_serverless_endpoint(life: Lifecycle, aws: str, artifact: Path, tmp_path: Path, capsys):
    state = tmp_path / "s"
    assert _deploy(artifact, state, "--serverless", "--memory-mb", "3072") == 0
    out = capsys.readouterr().out
    assert "(serverless 3072 MB, up to 5 concurrent; billed per request" in out
    rec = Registry(state).get("e1")
    sm = boto3.client("sagemaker", region_name=REGION)
    [variant] = sm.describe_endpoint_config(EndpointConfigName=rec["endpoint_config"])[
        "ProductionVariants"
    ]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 5}
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    assert rec["autoscaling"] is None
    assert main(["delete", "e1", "--state-dir", str(state)]) == 0
    assert _left_behind() == NOTHING


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--serverless", "--instance-type", "ml.c5.large", "--max-instances", "3"],
            "--instance-type, --max-instances: instance settings do not apply to --serverless",
        ),
        (["--serverless", "--memory-mb", "1500"], "--memory-mb must be one of 1024, 2048,"),
        (["--serverless", "--memory-mb", "8192"], "--memory-mb must be one of"),
        (["--serverless", "--max-concurrency", "201"], "--max-concurrency must be 1-200, got 201"),
        (["--memory-mb", "2048"], "--memory-mb: only with --serverless"),
        (["--serverless", "--capture", "s3://b/p"], "serverless endpoints do not support data"),
        (["--capture-sample", "50"], "--capture-sample needs --capture"),
        (["--capture", "b/p"], "--capture b/p: expected s3://BUCKET/PREFIX with --target"),
        (["--capture", "s3://b/p", "--capture-sample", "0"], "--capture-sample must be a"),
    ],
)
def test_option_mistakes_are_one_line_and_create_nothing(
    flags: list[str],
    expected: str,
    life: Lifecycle,
    aws: str,
    artifact: Path,
    tmp_path: Path,
    capsys,
):
    assert _deploy(artifact, tmp_path / "s", *flags) == 2
    assert expected in _one_line_error(capsys)
    assert _left_behind() == NOTHING and Registry(tmp_path / "s").all() == {}


def test_the_stand_in_refuses_what_sagemaker_refuses(life: Lifecycle, aws: str) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    serverless = {"VariantName": "v", "ModelName": "m"}
    with pytest.raises(sm.exceptions.ClientError, match="maxConcurrency"):
        sm.create_endpoint_config(
            EndpointConfigName="c1",
            ProductionVariants=[
                {**serverless, "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 300}}
            ],
        )
    capture = {
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": "s3://b/p",
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }
    with pytest.raises(sm.exceptions.ClientError, match="not supported for serverless"):
        sm.create_endpoint_config(
            EndpointConfigName="c2",
            ProductionVariants=[
                {**serverless, "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}
            ],
            DataCaptureConfig=capture,
        )


def test_data_capture(life: Lifecycle, aws: str, artifact: Path, tmp_path: Path, capsys):
    state = tmp_path / "s"
    uri = "s3://capture-bucket/traffic"
    args = ["--instance-type", "ml.c5.large", "--capture", uri + "/", "--capture-sample", "50"]
    assert _deploy(artifact, state, *args) == 0
    assert f"capturing 50 % of requests to {uri}/" in capsys.readouterr().out
    rec = Registry(state).get("e1")
    sm = boto3.client("sagemaker", region_name=REGION)
    config = sm.describe_endpoint_config(EndpointConfigName=rec["endpoint_config"])
    capture = config["DataCaptureConfig"]
    assert capture["DestinationS3Uri"] == uri and capture["InitialSamplingPercentage"] == 50
    assert capture["EnableCapture"] is True
    modes = sorted(o["CaptureMode"] for o in capture["CaptureOptions"])
    assert modes == ["Input", "Output"]
    # JSON bodies are captured as text (not base64), so the files are readable JSON Lines.
    assert "application/json" in capture["CaptureContentTypeHeader"]["JsonContentTypes"]
    assert main(["delete", "e1", "--state-dir", str(state)]) == 0


def test_without_onnx_the_error_names_what_works(
    aws: str, artifact: Path, tmp_path: Path, capsys, monkeypatch
):
    for module in ("onnxruntime", "onnx"):  # the `onnx` extra not installed
        monkeypatch.setitem(sys.modules, module, None)
    assert _deploy(artifact, tmp_path / "s", "--instance-type", "ml.c5.large") == 2
    err = _one_line_error(capsys)
    assert "pip install 'intentkit[onnx]'" in err and "huggingface-pytorch-inference" in err
    assert "--no-onnx" not in err  # deploy has no such flag
    assert _left_behind() == NOTHING and Registry(tmp_path / "s").all() == {}


def test_endpoints_never_cut_a_name_when_piped(
    aws: str, artifact: Path, tmp_path: Path, capsys
) -> None:
    state = tmp_path / "s"
    name = "a-very-long-endpoint-name-for-the-travel-intents-model-v2-2026"
    assert _deploy(artifact, state, "--instance-type", "ml.c5.large", name=name) == 0
    capsys.readouterr()
    assert main(["endpoints", "--state-dir", str(state)]) == 0  # capsys: not a terminal
    out = capsys.readouterr().out
    assert name in out and str(artifact.resolve()) in out
    assert main(["delete", name, "--state-dir", str(state)]) == 0


def test_prune_forgets_an_endpoint_deleted_elsewhere(
    aws: str, artifact: Path, tmp_path: Path, capsys
) -> None:
    state = tmp_path / "s"
    assert _deploy(artifact, state, "--instance-type", "ml.c5.large") == 0
    boto3.client("sagemaker", region_name=REGION).delete_endpoint(EndpointName="e1")
    capsys.readouterr()
    assert main(["endpoints", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "gone" in out and "intentkit endpoints --prune" in out
    assert Registry(state).get("e1") is not None  # listing alone forgets nothing billed

    assert main(["endpoints", "--prune", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "removed stale endpoint e1" in out and "no endpoints" in out
    # The config, model and archive the console left behind went with the record.
    assert _left_behind() == NOTHING and Registry(state).all() == {}
