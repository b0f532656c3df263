"""deploy -> endpoints -> predict -> delete --target sagemaker against moto's server on 127.0.0.1.

Tests that take the ``life`` fixture run on the stand-in's realistic endpoint lifecycle
(tests/standin/endpoints.py: Creating, then InService; Deleting, then gone).

Every resource is checked through boto3 (pointed at moto by the ``aws`` fixture) before and after.
moto quirks these tests work around: its instance-type validator predates ml.c7i (so deploys pass
``--instance-type ml.c5.large``), ``InvokeEndpoint`` answers canned bodies queued through
``/moto-api/static/sagemaker/endpoint-results`` (one per distinct request body, in order), and
endpoints are InService at once.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from aws_helpers import ACCOUNT, ROLE
from intentkit.cli import main
from intentkit.endpoints.registry import Registry
from serve_helpers import make_artifact
from standin import StandIn
from standin.endpoints import Lifecycle, install

REGION = "us-east-1"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/intentkit:latest"
HF_IMAGE = (
    f"763104351884.dkr.ecr.{REGION}.amazonaws.com/huggingface-pytorch-inference:"
    "2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04"
)
INSTANCE = "ml.c5.large"  # moto rejects ml.c7i.* (its list of instance types is older)
BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"
QUERIES = [
    "what time is my flight ?",
    "where is the gate of my flight ?",
    "where can i store my bags ?",
]
ANSWERS = [
    {"predicted_class": "flight_status", "confidence": 0.9996},
    {"predicted_class": "book_flight", "confidence": 0.74},
    {"predicted_class": "lost_luggage", "confidence": 0.79},
]


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tiny_model_dir, tmp_path_factory.mktemp("sm-art"))


@pytest.fixture
def life(standin: StandIn) -> Lifecycle:
    """The realistic endpoint lifecycle switched on for one test."""
    return install(standin)


def _client(service: str):  # noqa: ANN202 - a boto3 client
    import boto3

    return boto3.client(service, region_name=REGION)


def _deploy(artifact: Path, state: Path, *extra: str, name: str = "e1") -> int:
    args = ["deploy", str(artifact), "--name", name, "--target", "sagemaker", "--role", ROLE]
    args += ["--image", IMAGE, "--instance-type", INSTANCE, "--region", REGION]
    return main([*args, "--state-dir", str(state), *extra])


def _left_behind() -> dict[str, list]:
    """Everything SageMaker, autoscaling and the deploy prefix in S3 hold."""
    sm, scaling = _client("sagemaker"), _client("application-autoscaling")
    objects: list = []
    if any(b["Name"] == BUCKET for b in _client("s3").list_buckets()["Buckets"]):
        listing = _client("s3").list_objects_v2(Bucket=BUCKET, Prefix="intentkit/endpoints/")
        objects = [o["Key"] for o in listing.get("Contents", [])]
    return {
        "models": sm.list_models()["Models"],
        "configs": sm.list_endpoint_configs()["EndpointConfigs"],
        "endpoints": sm.list_endpoints()["Endpoints"],
        "objects": objects,
        "targets": scaling.describe_scalable_targets(ServiceNamespace="sagemaker")[
            "ScalableTargets"
        ],
        "policies": scaling.describe_scaling_policies(ServiceNamespace="sagemaker")[
            "ScalingPolicies"
        ],
    }


NOTHING = {k: [] for k in ("models", "configs", "endpoints", "objects", "targets", "policies")}


def _one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _queue_answers(moto_url: str, *bodies: list[dict]) -> None:
    """What the intentkit server answers, queued for moto's InvokeEndpoint (one per request)."""
    results = [{"Body": json.dumps(b), "ContentType": "application/json"} for b in bodies]
    url = f"{moto_url}/moto-api/static/sagemaker/endpoint-results"
    httpx.post(url, json={"region": REGION, "results": results}, timeout=10).raise_for_status()


def _json_lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


def test_deploy_endpoints_predict_delete(
    life: Lifecycle, aws: str, artifact: Path, tmp_path: Path, capsys
):
    state = tmp_path / "state"
    assert _left_behind() == NOTHING
    assert _deploy(artifact, state) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"deployed e1 at sagemaker://{REGION}/e1 ({INSTANCE} x1;")

    rec = Registry(state).get("e1")
    assert rec["target"] == "sagemaker" and rec["region"] == REGION and rec["image"] == IMAGE
    assert rec["model"] == str(artifact.resolve()) and rec["autoscaling"] is None
    assert rec["model_data"].startswith(f"s3://{BUCKET}/intentkit/endpoints/e1/")
    sm = _client("sagemaker")
    model = sm.describe_model(ModelName=rec["model_name"])
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == rec["model_data"]
    assert model["ExecutionRoleArn"] == ROLE
    tags = sm.list_tags(ResourceArn=model["ModelArn"])["Tags"]
    assert {"Key": "created-by", "Value": "intentkit"} in tags
    config = sm.describe_endpoint_config(EndpointConfigName=rec["endpoint_config"])
    [variant] = config["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic" and variant["ModelName"] == rec["model_name"]
    assert variant["InstanceType"] == INSTANCE and variant["InitialInstanceCount"] == 1
    endpoint = sm.describe_endpoint(EndpointName="e1")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == rec["endpoint_config"]
    key = rec["model_data"].split(f"s3://{BUCKET}/", 1)[1]
    body = _client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    names = tarfile.open(fileobj=io.BytesIO(body)).getnames()
    assert "config.json" in names and "onnx/model.onnx" in names  # intentkit's image: ONNX shipped
    assert not any(n.startswith("code/") for n in names)

    assert main(["endpoints", "--json", "--state-dir", str(state)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["target"], r["status"]) for r in rows] == [("e1", "sagemaker", "ready")]
    assert main(["endpoints", "--state-dir", str(state)]) == 0
    table = capsys.readouterr().out
    assert "e1" in table and "sagemaker" in table and "ready" in table

    # The name is taken: refused before anything is created.
    assert _deploy(artifact, state) == 2
    assert "already deployed" in _one_line_error(capsys)
    assert len(sm.list_models()["Models"]) == 1

    # Predictions: moto answers what the intentkit server would; the CLI prints them per text.
    _queue_answers(aws, ANSWERS, ANSWERS[:2], ANSWERS[2:])
    assert main(["predict", "--endpoint", "e1", "--state-dir", str(state), *QUERIES]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert rows == [{"text": q, **a} for q, a in zip(QUERIES, ANSWERS, strict=True)]
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join(QUERIES) + "\n")
    args = ["predict", "--endpoint", "e1", "--file", str(queries), "--batch-size", "2"]
    assert main([*args, "--state-dir", str(state)]) == 0
    rows = _json_lines(capsys.readouterr().out)
    # --file rows are the bulk reader's (intentkit.bulk): the input line, and rejected unknown.
    assert rows == [
        {"line": i, "text": q, **a, "rejected": None}
        for i, (q, a) in enumerate(zip(QUERIES, ANSWERS, strict=True), start=1)
    ]

    assert main(["delete", "e1", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out == "deleted e1 (deleted)\n"
    assert _left_behind() == NOTHING
    assert Registry(state).all() == {}
    assert main(["delete", "e1", "--state-dir", str(state)]) == 2


def test_autoscaling_registered_and_removed(
    life: Lifecycle, aws: str, artifact: Path, tmp_path: Path, capsys
):
    state = tmp_path / "state"
    assert _deploy(artifact, state, "--max-instances", "3") == 0
    assert "autoscaling 1-3" in capsys.readouterr().out
    scaling = _client("application-autoscaling")
    [target] = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert target["ResourceId"] == "endpoint/e1/variant/AllTraffic"
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    [policy] = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    metric = tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
    # Requests per instance per minute: 70 % of 47.4 (ModernBERT-base, 64 texts a request).
    assert metric == "SageMakerVariantInvocationsPerInstance" and tracking["TargetValue"] == 33
    assert Registry(state).get("e1")["autoscaling"] == {
        "min": 1,
        "max": 3,
        "target_invocations": 33,
    }
    assert main(["delete", "e1", "--state-dir", str(state)]) == 0
    assert _left_behind() == NOTHING


def _refuse_create_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make CreateEndpoint fail as a quota refusal would (moto itself never refuses it)."""
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

    original = BaseClient._make_api_call

    def refuse(self, operation_name, api_params):  # noqa: ANN001, ANN202 - botocore's signature
        if operation_name == "CreateEndpoint":
            error = {"Code": "ResourceLimitExceeded", "Message": "account limit of 0 instances"}
            raise ClientError({"Error": error}, operation_name)
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", refuse)


@pytest.mark.parametrize(
    "step", ["uploading", "creating the endpoint", "creating the endpoint config"]
)
def test_failed_step_deletes_what_it_created(
    step: str, aws: str, artifact: Path, tmp_path: Path, capsys, monkeypatch
):
    state = tmp_path / "state"
    if step == "uploading":  # the bucket vanished between the check and the upload
        from intentkit.sagemaker.session import Aws

        monkeypatch.setattr(Aws, "bucket", lambda self: "vanished-bucket")
        rc = _deploy(artifact, state)
    elif step == "creating the endpoint":
        _refuse_create_endpoint(monkeypatch)
        rc = _deploy(artifact, state, "--max-instances", "2")
    else:  # moto validates instance types in CreateEndpointConfig
        rc = _deploy(artifact, state, "--instance-type", "ml.nope.large")
    assert rc == 2
    err = _one_line_error(capsys)
    said = {"uploading": "uploading /", "creating the endpoint": "creating the endpoint: Resource"}
    assert f"deploy e1: {said.get(step, step + ':')}" in err and "nothing was left behind" in err
    assert _left_behind() == NOTHING
    assert Registry(state).all() == {}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no credentials", "no AWS credentials found"),
        ("no role", "--role: a SageMaker execution role is required"),
        ("unknown region", "--region mars-east-1: unknown region"),
        ("bad bucket", "--bucket ab: cannot create it: InvalidBucketName"),
        ("bad name", "--name 'e_1': SageMaker endpoint names"),
        ("no image", "--image is required"),
        ("min above max", "--max-instances 2 is below --min-instances 3"),
        ("local flag", "--port: only for --target local"),
    ],
)
def test_errors_are_one_line_and_create_nothing(
    case: str, expected: str, aws: str, artifact: Path, tmp_path: Path, capsys, monkeypatch
):
    state = tmp_path / "state"
    args = ["deploy", str(artifact), "--target", "sagemaker", "--state-dir", str(state)]
    flags = {"--name": "e1", "--role": ROLE, "--image": IMAGE, "--region": REGION}
    flags["--instance-type"] = INSTANCE
    extra: list[str] = []
    if case == "no credentials":
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(key)
    elif case == "no role":
        del flags["--role"]
    elif case == "unknown region":
        flags["--region"] = "mars-east-1"
    elif case == "bad bucket":
        flags["--bucket"] = "ab"  # moto checks only the length (3-63)
    elif case == "bad name":
        flags["--name"] = "e_1"
    elif case == "no image":
        del flags["--image"]
    elif case == "min above max":
        extra = ["--min-instances", "3", "--max-instances", "2"]
    elif case == "local flag":
        extra = ["--port", "9000"]
    argv = [*args, *(x for kv in flags.items() for x in kv), *extra]
    assert main(argv) == 2
    assert expected in _one_line_error(capsys)
    if case != "no credentials":
        assert _left_behind() == NOTHING
    assert Registry(state).all() == {}


def test_dry_run_prints_requests_and_creates_nothing(
    aws: str, artifact: Path, tmp_path: Path, capsys
):
    state = tmp_path / "state"
    assert _deploy(artifact, state, "--dry-run", "--max-instances", "2") == 0
    captured = capsys.readouterr()
    requests = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["service"], r["operation"]) for r in requests] == [
        ("sagemaker", "describe_endpoint"),
        ("s3", "upload_file"),
        ("sagemaker", "create_model"),
        ("sagemaker", "create_endpoint_config"),
        ("sagemaker", "create_endpoint"),
        ("sagemaker", "describe_endpoint"),
        ("application-autoscaling", "register_scalable_target"),
        ("application-autoscaling", "put_scaling_policy"),
    ]
    model = requests[2]["params"]
    assert model["PrimaryContainer"]["Image"] == IMAGE and model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["ModelDataUrl"].startswith("s3://sagemaker-us-east-1-<account")
    assert "nothing was created" in captured.err
    assert _left_behind() == NOTHING
    assert _client("s3").list_buckets()["Buckets"] == []
    assert Registry(state).all() == {}


def test_hf_image_ships_the_inference_handler(aws: str, artifact: Path, tmp_path: Path, capsys):
    state = tmp_path / "state"
    assert _deploy(artifact, state, "--image", HF_IMAGE) == 0
    rec = Registry(state).get("e1")
    assert rec["image"] == HF_IMAGE and rec["format"] == "sagemaker-hf"
    key = rec["model_data"].split(f"s3://{BUCKET}/", 1)[1]
    body = _client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    names = tarfile.open(fileobj=io.BytesIO(body)).getnames()
    assert "code/inference.py" in names and "model.safetensors" in names
    assert not any(n.startswith("onnx/") for n in names)
    assert main(["delete", "e1", "--state-dir", str(state)]) == 0
    assert _left_behind() == NOTHING


def test_endpoint_deleted_out_of_band(aws: str, artifact: Path, tmp_path: Path, capsys):
    state = tmp_path / "state"
    assert _deploy(artifact, state) == 0
    _client("sagemaker").delete_endpoint(EndpointName="e1")  # e.g. from the console
    capsys.readouterr()
    assert main(["endpoints", "--json", "--state-dir", str(state)]) == 0
    assert [r["status"] for r in json.loads(capsys.readouterr().out)] == ["gone"]
    # delete still removes the config, the model and the archive the console left behind.
    assert main(["delete", "e1", "--state-dir", str(state)]) == 0
    assert _left_behind() == NOTHING and Registry(state).all() == {}


def test_name_used_outside_the_registry(aws: str, artifact: Path, tmp_path: Path, capsys):
    assert _deploy(artifact, tmp_path / "a") == 0
    capsys.readouterr()
    assert _deploy(artifact, tmp_path / "b") == 2  # another registry, same SageMaker endpoint
    assert "SageMaker already has an endpoint e1" in _one_line_error(capsys)
    assert len(_client("sagemaker").list_models()["Models"]) == 1
    assert main(["delete", "e1", "--state-dir", str(tmp_path / "a")]) == 0
