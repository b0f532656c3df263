"""SageMaker jobs as they really run (the stand-in's job and log rules): waits that survive
unreadable logs, jobs you can come back to, tags, partitions, batch-transform limits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aws_helpers import ROLE, default_sigint
from intentkit.cli import main
from standin import StandIn
from standin.jobs import enforce_limits, job_life, throttle_describe
from standin.logs import deny_logs, throttle_logs
from test_sagemaker_training import (
    BUCKET,
    IMAGE,
    _client,
    _predict_args,
    _tar_artifact,
    _train_args,
)


def _put_model(job: str, tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A real artifact's model.tar.gz where the training job ``job`` writes it; its source."""
    from serve_helpers import make_artifact

    src = make_artifact(tiny_model_dir, tmp_path / f"artifact-{job}")
    s3 = _client("s3")
    s3.create_bucket(Bucket=BUCKET)
    key = f"intentkit/{job}/output/{job}/output/model.tar.gz"
    s3.upload_file(str(_tar_artifact(src, tmp_path / f"{job}.tar.gz")), BUCKET, key)
    return src


def _log_line(job: str, message: str) -> None:
    logs = _client("logs")
    group = "/aws/sagemaker/TrainingJobs"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=f"{job}/algo-1-1700000000")
    logs.put_log_events(
        logGroupName=group,
        logStreamName=f"{job}/algo-1-1700000000",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": message}],
    )


def _same_files(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        (a / f).read_bytes() == (b / f).read_bytes() for f in files
    )


# ------------------------------------------------------------------ the stand-in's job life
def test_standin_training_job_walks_its_statuses_and_stops(standin: StandIn, aws: str) -> None:
    life = job_life(standin, "Training", polls=1)
    sm = _client("sagemaker")
    sm.create_training_job(
        TrainingJobName="life-1",
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": "s3://b/out/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    seen = [sm.describe_training_job(TrainingJobName="life-1") for _ in range(5)]
    assert [(d["TrainingJobStatus"], d["SecondaryStatus"]) for d in seen] == [
        ("InProgress", "Starting"),
        ("InProgress", "Downloading"),
        ("InProgress", "Training"),
        ("InProgress", "Uploading"),
        ("Completed", "Completed"),
    ]
    assert "ModelArtifacts" not in seen[0] and "ModelArtifacts" in seen[-1]
    with pytest.raises(sm.exceptions.ClientError, match="status Completed"):
        sm.stop_training_job(TrainingJobName="life-1")
    life.jobs.clear()  # the same job, run again from the start, stopped while training
    sm.describe_training_job(TrainingJobName="life-1")
    sm.stop_training_job(TrainingJobName="life-1")
    states = [sm.describe_training_job(TrainingJobName="life-1")["TrainingJobStatus"] for _ in "ab"]
    assert states == ["Stopping", "Stopped"]


# ----------------------------------------------------------- logs never end the wait (item 5)
def test_access_denied_logs_warn_once_and_the_model_is_fetched(
    standin: StandIn, kw_data: Path, tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    job_life(standin, "Training", polls=2)
    deny_logs(standin)
    src = _put_model("job-denied", tiny_model_dir, tmp_path)
    out = tmp_path / "model"
    assert main(_train_args(kw_data, out, "--job-name", "job-denied")) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "AccessDeniedException" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning:")
    assert "Traceback" not in err
    assert _same_files(src, out)


def test_throttled_logs_back_off_and_lines_still_come(
    standin: StandIn,
    kw_data: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # botocore retries a throttled call itself; with one attempt the test sees what a user sees
    # once those retries are spent, without waiting for their back-off.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    job_life(standin, "Training", polls=6)
    throttle = throttle_logs(standin, times=2)
    busy = throttle_describe(standin, "Training", times=2)  # the status is throttled too
    src = _put_model("job-throttled", tiny_model_dir, tmp_path)
    _log_line("job-throttled", "epoch 1: macro_f1 0.97")
    out = tmp_path / "model"
    assert main(_train_args(kw_data, out, "--job-name", "job-throttled")) == 0
    err = capsys.readouterr().err
    assert throttle.seen > throttle.times  # it tried again after being throttled
    assert busy.seen > busy.times
    # One warning for the status, one for the logs, each once however often it happens.
    assert len([x for x in err.splitlines() if "ThrottlingException" in x]) == 2
    assert err.count("epoch 1: macro_f1 0.97") == 1
    assert _same_files(src, out)


# ------------------------------------------------------ jobs you can come back to (item 5)
def test_ctrl_c_says_how_to_reattach_and_attach_fetches_the_model(
    standin: StandIn, kw_data: Path, tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    life = job_life(standin, "Training", polls=1, held=True)
    out = tmp_path / "model"
    args = _train_args(kw_data, out, "--job-name", "job-int")
    stderr = _interrupt(standin, args, "SageMaker.DescribeTrainingJob")
    assert "intentkit jobs attach job-int" in stderr and "intentkit jobs stop job-int" in stderr
    assert not out.exists()

    assert main(["jobs", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "job-int" and row["kind"] == "training"
    assert row["region"] == "us-east-1" and row["out"] == str(out.resolve())
    assert row["status"].startswith("InProgress (")  # held in a secondary status

    src = _put_model("job-int", tiny_model_dir, tmp_path)
    life.release()
    assert main(["jobs", "attach", "job-int"]) == 0
    captured = capsys.readouterr()
    assert "Completed" in captured.err and f"model written to {out.resolve()}" in captured.out
    assert _same_files(src, out)


def test_stop_a_job_then_attach_reports_it_stopped(
    standin: StandIn, kw_data: Path, tmp_path: Path, capsys
) -> None:
    job_life(standin, "Training", polls=1, held=True)
    out = tmp_path / "model"
    assert main(_train_args(kw_data, out, "--job-name", "job-stop", "--no-wait")) == 0
    capsys.readouterr()
    assert main(["jobs", "stop", "job-stop"]) == 0
    assert "stopping training job job-stop" in capsys.readouterr().out
    assert "SageMaker.StopTrainingJob" in standin.actions()

    assert main(["jobs", "attach", "job-stop"]) == 1
    err = capsys.readouterr().err
    assert "Stopping" in err
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert "training job job-stop stopped" in line
    assert not out.exists()

    assert main(["jobs", "stop", "job-stop"]) == 2  # it has ended: one line, nothing sent
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: training job job-stop is Stopped") and "\n" not in err
    assert main(["jobs", "attach", "no-such-job"]) == 2
    assert "job-stop" in capsys.readouterr().err  # the known jobs are listed


def test_transform_attach_deletes_the_temporary_model(standin: StandIn, capsys) -> None:
    job_life(standin, "Transform", polls=1)
    uri = "s3://m-bucket/run/model.tar.gz"
    args = _predict_args(uri, "--image", IMAGE, "--role", ROLE, "--job-name", "tj-att")
    assert main([*args, "--no-wait"]) == 0
    assert "intentkit jobs attach tj-att" in capsys.readouterr().err
    sm = _client("sagemaker")
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["tj-att"]
    assert main(["jobs", "attach", "tj-att"]) == 0
    assert "s3://out-bucket/preds/" in capsys.readouterr().out
    assert sm.list_models()["Models"] == []


# ----------------------------------------------------- batch transform that finishes (item 3)
def test_standin_refuses_transform_settings_the_api_refuses(standin: StandIn) -> None:
    enforce_limits(standin)
    sm = _client("sagemaker")
    base = {
        "ModelName": "m",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/i"}}
        },
        "TransformOutput": {"S3OutputPath": "s3://b/o/"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    for bad, needle in [
        ({"MaxPayloadInMB": 101}, "MaxPayloadInMB"),
        ({"MaxPayloadInMB": 30, "MaxConcurrentTransforms": 4}, "MaxConcurrentTransforms"),
        ({"ModelClientConfig": {"InvocationsTimeoutInSeconds": 3601}}, "InvocationsTimeout"),
        ({"ModelClientConfig": {"InvocationsMaxRetries": 4}}, "InvocationsMaxRetries"),
    ]:
        with pytest.raises(sm.exceptions.ClientError, match=needle):
            sm.create_transform_job(TransformJobName="tj-bad", **base, **bad)


@pytest.mark.parametrize(("instance", "payload_mb"), [("ml.c7i.xlarge", 1), ("ml.c5.4xlarge", 6)])
def test_transform_requests_end_well_inside_their_timeout(
    standin: StandIn, instance: str, payload_mb: int, capsys
) -> None:
    from intentkit.sagemaker import transform as t

    enforce_limits(standin)
    job_life(standin, "Transform", polls=1)
    uri = "s3://m-bucket/run/model.tar.gz"
    args = ["--image", IMAGE, "--role", ROLE, "--job-name", "tj-fits", "--instance-type", instance]
    assert main(_predict_args(uri, *args)) == 0
    [create] = [c for c in standin.calls if c.action == "SageMaker.CreateTransformJob"]
    request = create.json()
    client = request["ModelClientConfig"]
    timeout = client["InvocationsTimeoutInSeconds"]
    assert 1 <= timeout <= 3600 and client["InvocationsMaxRetries"] <= 1
    # The Hugging Face image's model server gets the same timeout instead of its own 60 s.
    assert request["Environment"]["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == str(timeout)
    assert request["MaxPayloadInMB"] == payload_mb
    # A full request at the measured rate of this instance takes at most a quarter of it.
    texts = payload_mb * 1e6 / t.BYTES_PER_TEXT
    rate = t.TEXTS_PER_S_PER_VCPU * t.instance_vcpus(instance)
    assert texts / rate <= timeout / 4


# ------------------------------------------------------------- one tagging rule (item 10)
def test_jobs_and_their_models_carry_the_created_by_tag(
    standin: StandIn, kw_data: Path, tmp_path: Path
) -> None:
    sm = _client("sagemaker")
    assert main(_train_args(kw_data, tmp_path / "m", "--job-name", "job-tags", "--no-wait")) == 0
    arn = sm.describe_training_job(TrainingJobName="job-tags")["TrainingJobArn"]
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
    assert tags["created-by"] == "intentkit" and tags["intentkit-training-job"] == "job-tags"

    uri = "s3://m-bucket/run/model.tar.gz"
    args = _predict_args(uri, "--image", IMAGE, "--role", ROLE, "--job-name", "tj-tags")
    assert main([*args, "--no-wait"]) == 0
    for arn in (
        sm.describe_transform_job(TransformJobName="tj-tags")["TransformJobArn"],
        sm.describe_model(ModelName="tj-tags")["ModelArn"],
    ):
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
        assert tags["created-by"] == "intentkit" and tags["intentkit-transform-job"] == "tj-tags"


# ------------------------------------------------------------------- partitions (item 9)
@pytest.mark.parametrize(
    ("region", "console"),
    [
        ("cn-north-1", "https://console.amazonaws.cn/sagemaker/home?region=cn-north-1#/jobs/j"),
        ("cn-northwest-1", "https://console.amazonaws.cn/sagemaker/home?region=cn-northwest-1"),
        (
            "us-gov-west-1",
            "https://console.amazonaws-us-gov.com/sagemaker/home?region=us-gov-west-1",
        ),
        (
            "us-gov-east-1",
            "https://console.amazonaws-us-gov.com/sagemaker/home?region=us-gov-east-1",
        ),
        ("eu-west-1", "https://eu-west-1.console.aws.amazon.com/sagemaker/home?region=eu-west-1"),
    ],
)
def test_china_and_govcloud_regions_are_accepted_with_their_console(
    aws: str, kw_data: Path, tmp_path: Path, region: str, console: str, capsys
) -> None:
    from intentkit.sagemaker.jobs import console_url

    assert console_url(region, "jobs", "j").startswith(console)
    args = _train_args(kw_data, tmp_path / "m", "--job-name", "job-p", "--region", region)
    assert main([*args, "--dry-run"]) == 0, capsys.readouterr().err
    assert main([*args[:-2], "--region", "mars-north-1", "--dry-run"]) == 2
    assert "--region mars-north-1" in capsys.readouterr().err


# ----------------------------------------------- predict uses the endpoint's region (item 9)
def test_predict_with_an_endpoint_name_uses_its_recorded_region(
    standin: StandIn, tmp_path: Path, capsys
) -> None:
    import boto3

    from intentkit.endpoints.registry import Registry

    boto3.client("sagemaker", region_name="eu-west-1").create_model(
        ModelName="travel-model",
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://m-bucket/model.tar.gz"},
        ExecutionRoleArn=ROLE,
    )
    with Registry(os.environ["INTENTKIT_STATE_DIR"]).edit() as records:
        records["travel"] = {
            "name": "travel",
            "target": "sagemaker",
            "region": "eu-west-1",
            "model_name": "travel-model",
        }
    assert main(_predict_args("travel", "--job-name", "tj-region", "--no-wait")) == 0
    job = boto3.client("sagemaker", region_name="eu-west-1").describe_transform_job(
        TransformJobName="tj-region"
    )
    assert job["ModelName"] == "travel-model"
    assert main(_predict_args("travel", "--job-name", "tj-r2", "--region", "us-east-1")) == 2
    assert "eu-west-1" in capsys.readouterr().err


def _interrupt(standin: StandIn, args: list[str], action: str) -> str:
    """Run ``intentkit ARGS`` in a child process, SIGINT it once it polls ``action``; its
    stderr (exit code 130 asserted)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "intentkit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),  # the aws fixture's settings: the stand-in on 127.0.0.1
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 120
        while action not in standin.actions():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{action} was never called"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "aws sagemaker" not in stderr
    return stderr


def test_ctrl_c_during_a_transform_keeps_its_model_for_attach(standin: StandIn, capsys) -> None:
    life = job_life(standin, "Transform", polls=1, held=True)
    uri = "s3://m-bucket/run/model.tar.gz"
    args = _predict_args(uri, "--image", IMAGE, "--role", ROLE, "--job-name", "tj-int")
    stderr = _interrupt(standin, args, "SageMaker.DescribeTransformJob")
    assert "intentkit jobs attach tj-int" in stderr and "intentkit jobs stop tj-int" in stderr
    sm = _client("sagemaker")
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["tj-int"]  # the job needs it
    life.release()
    assert main(["jobs", "attach", "tj-int"]) == 0
    assert sm.list_models()["Models"] == []


def test_attach_never_overwrites_an_out_filled_since_without_force(
    standin: StandIn, kw_data: Path, tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    assert main(["jobs"]) == 0
    assert "no jobs" in capsys.readouterr().out
    out = tmp_path / "model"
    assert main(_train_args(kw_data, out, "--job-name", "job-full", "--no-wait")) == 0
    assert "intentkit jobs attach job-full" in capsys.readouterr().out
    src = _put_model("job-full", tiny_model_dir, tmp_path)
    capsys.readouterr()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["jobs", "attach", "job-full"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "--force" in err and "\n" not in err
    assert (out / "notes.txt").read_text() == "mine"
    assert main(["jobs", "attach", "job-full", "--force"]) == 0
    assert _same_files(src, out)
