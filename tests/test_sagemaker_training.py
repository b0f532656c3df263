"""``train --target sagemaker`` and ``predict --target sagemaker`` against moto's server.

moto records jobs but runs nothing: a training job is ``Completed`` the moment it is created,
with ``ModelArtifacts`` pointing at ``<output>/<job>/output/model.tar.gz``. So a test that
needs a trained model puts a real artifact's archive there first (where SageMaker would), and
a failed job is faked at the one place we may fake: AWS's answer to ``DescribeTrainingJob``.
"""

from __future__ import annotations

import filecmp
import json
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aws_helpers import ROLE
from intentkit.cli import main

BUCKET = "intentkit-test-bucket"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/intentkit:test"


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service, region_name="us-east-1")  # AWS_ENDPOINT_URL: moto


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--data", str(data), "--out", str(out), "--target", "sagemaker",
        "--role", ROLE, "--image", IMAGE, "--bucket", BUCKET, *extra,
    ]  # fmt: skip


def _s3_objects(bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = _client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"][len(prefix) :]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listed
    }


def test_training_job_request(aws: str, kw_data: Path, tmp_path: Path, capsys) -> None:
    from intentkit.config import to_dict
    from intentkit.training.setup import resolve_config

    out = tmp_path / "model"
    extra = [
        "--job-name", "job-a", "--no-wait", "--preset", "cpu-fast", "--epochs", "2",
        "--batch-size", "8", "--no-calibrate", "--spot", "--instance-type", "ml.g5.2xlarge",
        "--instance-count", "2", "--max-runtime", "3600", "--volume-size", "50",
    ]  # fmt: skip
    assert main(_train_args(kw_data, out, *extra)) == 0
    stdout = capsys.readouterr().out
    assert "job-a" in stdout
    assert not out.exists()  # --no-wait: nothing to unpack yet

    job = _client("sagemaker").describe_training_job(TrainingJobName="job-a")
    root = f"s3://{BUCKET}/intentkit/job-a"
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert job["RoleArn"] == ROLE
    [channel] = job["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    source = channel["DataSource"]["S3DataSource"]
    assert source == {
        "S3DataType": "S3Prefix",
        "S3Uri": f"{root}/data/",
        "S3DataDistributionType": "FullyReplicated",
    }
    # The channel holds exactly the prepared folder's files, byte for byte.
    uploaded = _s3_objects(BUCKET, "intentkit/job-a/data/")
    assert uploaded == {p.name: p.read_bytes() for p in kw_data.iterdir() if p.is_file()}
    assert job["OutputDataConfig"]["S3OutputPath"] == f"{root}/output/"
    assert job["ResourceConfig"] == {
        "InstanceType": "ml.g5.2xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 50,
    }
    stop = job["StoppingCondition"]
    assert stop["MaxRuntimeInSeconds"] == 3600 and stop["MaxWaitTimeInSeconds"] >= 3600
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"] == {
        "S3Uri": f"{root}/checkpoints/",
        "LocalPath": "/opt/ml/checkpoints",
    }

    # Hyperparameters: strings, the config resolved from preset + flags, and the container's
    # own parser reads back exactly that config.
    hp = job["HyperParameters"]
    assert hp and all(isinstance(v, str) for v in hp.values())
    assert hp["epochs"] == "2.0" and hp["batch-size"] == "8" and hp["calibrate"] == "false"
    expected = resolve_config(
        out,
        config=None,
        preset="cpu-fast",
        resume=False,
        overrides={"epochs": 2, "batch_size": 8, "calibrate": False},
    )
    from intentkit.sagemaker.image.hyperparameters import check_train_config, parse_hyperparameters

    assert to_dict(check_train_config(parse_hyperparameters(hp))) == to_dict(expected)


def _tar_artifact(src: Path, archive: Path) -> Path:
    # As SageMaker packs /opt/ml/model: the folder's contents at the archive's root.
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(src.rglob("*")):
            tar.add(path, arcname=path.relative_to(src).as_posix(), recursive=False)
    return archive


def test_completed_job_fills_model_dir(
    aws: str, kw_data: Path, tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    from intentkit.artifact import check_artifact_dir
    from serve_helpers import make_artifact

    src = make_artifact(tiny_model_dir, tmp_path / "artifact")
    s3 = _client("s3")
    s3.create_bucket(Bucket=BUCKET)
    key = "intentkit/job-b/output/job-b/output/model.tar.gz"  # where the job writes it
    s3.upload_file(str(_tar_artifact(src, tmp_path / "model.tar.gz")), BUCKET, key)
    logs = _client("logs")
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="job-b/algo-1-1700000000"
    )
    logs.put_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamName="job-b/algo-1-1700000000",
        # Now, not a fixed date: CloudWatch (and moto) drop events older than 14 days.
        logEvents=[{"timestamp": int(time.time() * 1000), "message": "epoch 1: macro_f1 0.97"}],
    )

    out = tmp_path / "model"
    assert main(_train_args(kw_data, out, "--job-name", "job-b", "--epochs", "1")) == 0
    captured = capsys.readouterr()
    job = _client("sagemaker").describe_training_job(TrainingJobName="job-b")
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/{key}"
    assert "epoch 1: macro_f1 0.97" in captured.err  # the job's CloudWatch lines
    assert "Completed" in captured.err
    assert f"model written to {out}" in captured.out
    check_artifact_dir(out)
    theirs = sorted(p.relative_to(src) for p in src.rglob("*"))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == theirs
    assert all(filecmp.cmp(src / p, out / p, shallow=False) for p in theirs if (src / p).is_file())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _fake_describe(monkeypatch: pytest.MonkeyPatch, operation: str, answer: dict) -> None:
    """Make AWS answer ``operation`` with ``answer`` (botocore's before-call hook; the request
    is not sent). Every other request still goes to moto."""
    from intentkit.sagemaker.session import Aws

    original = Aws.client

    def client(self: Aws, service: str) -> Any:
        c = original(self, service)
        if service == "sagemaker":
            c.meta.events.register(
                f"before-call.sagemaker.{operation}",
                lambda **_: (SimpleNamespace(status_code=200), answer),
                unique_id=f"fake-{operation}",
            )
        return c

    monkeypatch.setattr(Aws, "client", client)


def test_failed_job_prints_failure_reason(
    aws: str, kw_data: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    reason = "AlgorithmError: hyperparameter 'epochs': 'x' is not a number;\npass e.g. \"3\""
    answer = {"TrainingJobStatus": "Failed", "SecondaryStatus": "Failed", "FailureReason": reason}
    _fake_describe(monkeypatch, "DescribeTrainingJob", answer)
    out = tmp_path / "model"
    assert main(_train_args(kw_data, out, "--job-name", "job-c")) == 1
    err = capsys.readouterr().err
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert "training job job-c failed" in line and "'epochs': 'x' is not a number" in line
    assert "Traceback" not in err
    assert not out.exists()


def test_dry_run_prints_requests_and_creates_nothing(
    aws: str, kw_data: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "model"
    assert main(_train_args(kw_data, out, "--job-name", "job-d", "--dry-run")) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    ops = [x["operation"] for x in lines]
    assert ops == ["upload_file"] * 4 + ["create_training_job"]
    assert lines[-1]["params"]["TrainingJobName"] == "job-d"
    assert _client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    assert _client("s3").list_buckets()["Buckets"] == []
    assert not out.exists()


@pytest.mark.parametrize(
    ("drop", "add", "needle"),
    [
        ("--role", [], "--role"),
        ("--image", [], "--image"),
        (None, ["--instance-count", "0"], "--instance-count"),
        (None, ["--job-name", "bad_name"], "--job-name"),
        (None, ["--model", "."], "--model"),
        ("--target", ["--spot"], "--spot"),  # a SageMaker flag on a local run
    ],
)
def test_user_errors_are_one_line_exit_2(
    aws: str, kw_data: Path, tmp_path: Path, capsys, drop: str | None, add: list, needle: str
) -> None:
    args = _train_args(kw_data, tmp_path / "model", *add)
    if drop is not None:
        i = args.index(drop)
        del args[i : i + 2]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err
    assert _client("s3").list_buckets()["Buckets"] == []  # checked before any request


# ------------------------------------------------------------------------ batch transform
def _predict_args(model: str, *extra: str) -> list[str]:
    return [
        "predict", "--target", "sagemaker", "--model", model,
        "--file", "s3://in-bucket/texts.jsonl", "--output", "s3://out-bucket/preds/", *extra,
    ]  # fmt: skip


def _check_transform(job: dict, model_name: str, count: int) -> None:
    assert job["ModelName"] == model_name
    assert job["BatchStrategy"] == "MultiRecord"
    # Sized to the instance (ml.c7i.xlarge: 1 MB, see test_sagemaker_jobs), within what
    # container serve admits (6 MB).
    assert job["MaxPayloadInMB"] == 1
    assert job["MaxConcurrentTransforms"] == 1
    assert job["TransformInput"]["DataSource"]["S3DataSource"] == {
        "S3DataType": "S3Prefix",
        "S3Uri": "s3://in-bucket/texts.jsonl",
    }
    assert job["TransformInput"]["ContentType"] == "application/jsonlines"
    assert job["TransformInput"]["SplitType"] == "Line"
    assert job["TransformOutput"] == {
        "S3OutputPath": "s3://out-bucket/preds/",
        "Accept": "application/jsonlines",
        "AssembleWith": "Line",
    }
    assert job["TransformResources"] == {"InstanceType": "ml.c7i.xlarge", "InstanceCount": count}


def test_batch_transform_with_a_model_name(aws: str, capsys) -> None:
    sm = _client("sagemaker")
    sm.create_model(
        ModelName="intent-model",
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://m-bucket/model.tar.gz"},
        ExecutionRoleArn=ROLE,
    )
    assert main(_predict_args("intent-model", "--job-name", "tj-1", "--instance-count", "2")) == 0
    assert "s3://out-bucket/preds/" in capsys.readouterr().out
    _check_transform(sm.describe_transform_job(TransformJobName="tj-1"), "intent-model", 2)
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["intent-model"]  # kept

    assert main(_predict_args("no-such-model", "--job-name", "tj-2")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --model no-such-model") and "\n" not in err


def test_batch_transform_from_s3_model_deletes_its_temporary_model(aws: str, capsys) -> None:
    sm = _client("sagemaker")
    uri = "s3://m-bucket/run/model.tar.gz"
    base = ["--image", IMAGE, "--role", ROLE]
    assert main(_predict_args(uri, *base, "--job-name", "tj-3")) == 0
    _check_transform(sm.describe_transform_job(TransformJobName="tj-3"), "tj-3", 1)
    assert sm.list_models()["Models"] == []  # created for the job, deleted when it ended

    # --no-wait: the running job still needs its model, which shows what was created.
    assert main(_predict_args(uri, *base, "--job-name", "tj-4", "--no-wait")) == 0
    model = sm.describe_model(ModelName="tj-4")
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == uri
    assert model["ExecutionRoleArn"] == ROLE
    assert "`intentkit jobs attach tj-4` waits for the job and then deletes it" in (
        capsys.readouterr().err
    )

    assert main(_predict_args(uri, "--role", ROLE, "--job-name", "tj-5")) == 2  # no --image
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --image") and "\n" not in err
