"""SageMaker jobs as they really run (the stand-in's job and log rules): waits that survive
unreadable logs, jobs you can come back to, tags, partitions, batch-transform limits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aws_helpers import ROLE
from intentkit.cli import main
from standin import StandIn
from standin.jobs import job_life
from standin.logs import deny_logs, throttle_logs
from test_sagemaker_training import (
    BUCKET,
    IMAGE,
    _client,
    _tar_artifact,
    _train_args,
)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The registry folder (endpoints and jobs) for one test."""
    path = tmp_path / "state"
    monkeypatch.setenv("INTENTKIT_STATE_DIR", str(path))
    return path


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
    standin: StandIn, kw_data: Path, tiny_model_dir: Path, tmp_path: Path, state: Path, capsys
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
    state: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # botocore retries a throttled call itself; with one attempt the test sees what a user sees
    # once those retries are spent, without waiting for their back-off.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    job_life(standin, "Training", polls=6)
    throttle = throttle_logs(standin, times=2)
    src = _put_model("job-throttled", tiny_model_dir, tmp_path)
    _log_line("job-throttled", "epoch 1: macro_f1 0.97")
    out = tmp_path / "model"
    assert main(_train_args(kw_data, out, "--job-name", "job-throttled")) == 0
    err = capsys.readouterr().err
    assert throttle.seen > throttle.times  # it tried again after being throttled
    assert len([x for x in err.splitlines() if "ThrottlingException" in x]) == 1
    assert err.count("epoch 1: macro_f1 0.97") == 1
    assert _same_files(src, out)
