"""``intentkit train --target sagemaker``: the same training, run as a SageMaker training job.

Everything that can be checked here is checked before the first request (data, ``--out``,
role, image, instance settings, the resolved config), so a typo costs nothing. Then: upload
the prepared folder to ``s3://BUCKET/intentkit/JOB/data/`` (channel ``train``), create the
job with the *resolved* training config as its hyperparameters (defaults < preset < flags,
resolved here, so the job does not depend on the image's copy of the preset), wait while
printing its status and CloudWatch lines, and unpack ``model.tar.gz`` into ``--out``.

Checkpoints go to ``s3://BUCKET/intentkit/JOB/checkpoints/`` <-> ``/opt/ml/checkpoints``:
SageMaker syncs them both ways, so a spot job that is interrupted restarts from the last
checkpoint (the container resumes a complete checkpoint of the same config by itself).
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from intentkit.config import TrainConfig
from intentkit.endpoints.registry import Registry
from intentkit.errors import ConfigError, ModelError
from intentkit.sagemaker.jobs import (
    JobFailedError,
    check_instances,
    check_name,
    console_url,
    default_job_name,
    follow_job,
    raise_unless_completed,
)
from intentkit.sagemaker.session import Aws, AwsSettings, tags

#: Key prefix of everything one job puts in the bucket.
S3_PREFIX = "intentkit"
TRAIN_CHANNEL = "train"  #: the channel the container reads (``container/channels.py``)
CHECKPOINT_LOCAL = "/opt/ml/checkpoints"  #: where the container writes checkpoints
#: SageMaker's hard ceiling on MaxRuntimeInSeconds (28 days; accounts start lower, 5 days).
MAX_RUNTIME_LIMIT = 28 * 24 * 3600
#: SageMaker's limits on HyperParameters.
MAX_HP_KEYS, MAX_HP_KEY_CHARS, MAX_HP_VALUE_CHARS = 100, 256, 2500


@dataclass
class SageMakerTrainOptions:
    """How and where the job runs (the ``--target sagemaker`` flags of ``intentkit train``)."""

    image: str | None = None  #: --image: the intentkit image in ECR, or ``huggingface``
    image_version: str | None = None  #: --image-version: with ``huggingface``, its transformers
    instance_type: str = "ml.g5.xlarge"  #: --instance-type (the reference's GPU)
    instance_count: int = 1  #: --instance-count; >1 runs DDP across hosts (torchrun)
    spot: bool = False  #: --spot: managed spot training (cheaper, may be interrupted)
    max_runtime: int = 86400  #: --max-runtime seconds of training before SageMaker stops it
    volume_size: int = 30  #: --volume-size GB of EBS per instance (data, checkpoints, model)
    job_name: str | None = None  #: --job-name; default intentkit-<UTC timestamp>
    wait: bool = True  #: False (--no-wait): print the job name and return

    def check(self) -> None:
        """One-line errors for values SageMaker would refuse (before any request)."""
        from intentkit.sagemaker.hf_images import check_image_flags

        check_image_flags(self.image, self.image_version)
        check_instances(self.instance_type, self.instance_count)
        if not 1 <= self.max_runtime <= MAX_RUNTIME_LIMIT:
            raise ConfigError(
                f"--max-runtime must be 1..{MAX_RUNTIME_LIMIT} seconds (28 days), "
                f"got {self.max_runtime}"
            )
        if self.volume_size < 1:
            raise ConfigError(f"--volume-size must be at least 1 GB, got {self.volume_size}")
        if self.job_name is not None:
            check_name(self.job_name)

    @property
    def max_wait(self) -> int:
        """Spot only: runtime plus as long again to wait for capacity (AWS needs >= runtime)."""
        return max(self.max_runtime, min(2 * self.max_runtime, MAX_RUNTIME_LIMIT))


def _hp_value(value: Any) -> str:
    # The container's parser (container/hyperparameters.py) reads "true"/"false", numbers as
    # Python prints them (repr round-trips floats exactly) and dicts as JSON.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def hyperparameters(cfg: TrainConfig) -> dict[str, str]:
    """The job's HyperParameters: every non-None TrainConfig field as a string, keys dashed.

    The keys are the ``intentkit train`` option names (``batch-size``), which the container
    reads back into the same TrainConfig. A None field is left out: the container's default
    for every Optional field is None too.
    """
    from intentkit.config import to_dict

    hp = {
        name.replace("_", "-"): _hp_value(value)
        for name, value in to_dict(cfg).items()
        if value is not None
    }
    if len(hp) > MAX_HP_KEYS:
        raise ConfigError(f"{len(hp)} hyperparameters; SageMaker accepts at most {MAX_HP_KEYS}")
    for key, value in hp.items():
        if len(key) > MAX_HP_KEY_CHARS or len(value) > MAX_HP_VALUE_CHARS:
            raise ConfigError(
                f"hyperparameter {key!r} is {len(value)} characters; SageMaker accepts at most "
                f"{MAX_HP_VALUE_CHARS}: shorten it in the preset"
            )
    return hp


def _check_remote_model(name: str) -> None:
    """``--model`` must be reachable from the job: an alias or hub id, not a local folder."""
    from intentkit.modeling import ALIASES

    if name.lower() in ALIASES:
        return
    if Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        raise ModelError(
            f"--model {name}: a local folder is not visible to a SageMaker job; pass an alias "
            "(minilm, modernbert-base) or a Hugging Face hub id"
        )


def data_files(data: Path) -> list[Path]:
    """The prepared folder's files to upload (recursively; hidden files are not data)."""
    return sorted(
        p
        for p in data.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(data).parts)
    )


def training_job_request(
    *,
    job: str,
    bucket: str,
    role: str,
    cfg: TrainConfig,
    options: SageMakerTrainOptions,
) -> dict[str, Any]:
    """The ``CreateTrainingJob`` parameters (pure: no request is sent)."""

    root = f"s3://{bucket}/{S3_PREFIX}/{job}"
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": options.max_runtime}
    if options.spot:
        stopping["MaxWaitTimeInSeconds"] = options.max_wait
    request: dict[str, Any] = {
        "TrainingJobName": job,
        "AlgorithmSpecification": {
            "TrainingImage": options.image,
            "TrainingInputMode": "File",
        },
        "RoleArn": role,
        "HyperParameters": hyperparameters(cfg),
        "InputDataConfig": [
            {
                "ChannelName": TRAIN_CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"{root}/data/",
                        # Every host trains on the whole set; DDP shards it per step.
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"{root}/output/"},
        "ResourceConfig": {
            "InstanceType": options.instance_type,
            "InstanceCount": options.instance_count,
            "VolumeSizeInGB": options.volume_size,
        },
        "StoppingCondition": stopping,
        "CheckpointConfig": {"S3Uri": f"{root}/checkpoints/", "LocalPath": CHECKPOINT_LOCAL},
        "EnableManagedSpotTraining": options.spot,
        "Tags": tags("training-job", job, model=cfg.model),
    }
    return request


def _safe_members(tar: Any, dest: Path) -> None:
    """Extract ``tar`` into ``dest`` refusing links out, absolute paths and devices."""
    import tarfile

    if hasattr(tarfile, "data_filter"):  # 3.10.12+/3.11.4+: the stdlib's own safe filter
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
            raise ModelError(f"model.tar.gz: refusing unsafe member {member.name!r}")
    tar.extractall(dest)


def unpack_model(aws: Aws, uri: str, out: Path) -> Path:
    """Download ``uri`` (a model.tar.gz) and unpack it into ``out`` atomically; validate it.

    The new folder replaces ``out`` in one rename only once it is a complete artifact, so a
    bad archive leaves ``out`` as it was.
    """
    import tarfile

    from intentkit.artifact import check_artifact_dir
    from intentkit.fsutil import atomic_dir

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".intentkit-model-", dir=out.parent) as scratch:
        archive = aws.download(uri, Path(scratch) / "model.tar.gz")
        with atomic_dir(out) as tmp:
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    _safe_members(tar, tmp)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ModelError(f"{uri}: not a readable model.tar.gz ({exc})") from None
            check_artifact_dir(tmp, flag=uri)
    return out


def _hf_training_image(options: SageMakerTrainOptions, region: str, model: str) -> str | None:
    """The Hugging Face training image's URI for ``--image huggingface``, else None."""
    from intentkit.sagemaker.hf_images import is_hf_choice, resolve_image_flag

    if not is_hf_choice(options.image):
        return None
    return resolve_image_flag(
        str(options.image),
        options.image_version,
        scope="training",
        region=region,
        instance_type=options.instance_type,
        model=model,
    )


def train_on_sagemaker(
    data: str | Path,
    out: str | Path,
    *,
    settings: AwsSettings,
    options: SageMakerTrainOptions,
    preset: str | None = None,
    force: bool = False,
    jobs: Registry | None = None,
    **overrides: Any,
) -> str:
    """Train on SageMaker and unpack the model into ``out``; return the job name.

    Args:
        data: a prepared dataset folder (``intentkit data prepare``), uploaded as channel
            ``train``.
        out: the model folder written when the job completes (refused when non-empty unless
            ``force``); untouched with ``options.wait`` False or a dry run.
        settings: region, role, bucket, dry run (:meth:`AwsSettings.resolve`).
        options: image, instances, spot, runtime, job name, wait.
        preset: applied under ``overrides`` exactly as for a local run.
        jobs: where the job is recorded for ``intentkit jobs attach`` (default: the user state
            folder's ``jobs.json``).
        **overrides: TrainConfig fields; None is ignored.

    Raises:
        JobFailedError: the job ended Failed or Stopped (its FailureReason is the message).
    """
    from intentkit.data.dataset import load_prepared
    from intentkit.fsutil import check_output_dir
    from intentkit.training.setup import resolve_config

    data, out = Path(data), Path(out)
    # Local checks first: each is free here and costs an instance start-up on SageMaker.
    cfg = resolve_config(out, config=None, preset=preset, resume=False, overrides=overrides)
    load_prepared(data)
    check_output_dir(out, force=force)
    aws = Aws(settings)
    role = aws.role()
    aws.session()  # an unknown --region fails here, before any upload
    options.check()
    _check_remote_model(cfg.model)
    files = data_files(data)
    job = options.job_name or default_job_name()
    check_name(job)
    hyperparameters(cfg)  # SageMaker's size limits, checked before anything is uploaded
    hf_image = _hf_training_image(options, aws.region, cfg.model)  # refused before any upload

    bucket = aws.bucket()
    prefix = f"{S3_PREFIX}/{job}/data"
    for path in files:
        aws.upload(path, bucket, f"{prefix}/{path.relative_to(data).as_posix()}")
    if hf_image is not None:  # no image to build: intentkit goes in as the job's source
        from intentkit.sagemaker.source_dir import ship_source_dir

        source = ship_source_dir(aws, bucket, f"{S3_PREFIX}/{job}/source", job)
        options = replace(options, image=hf_image)
    request = training_job_request(job=job, bucket=bucket, role=role, cfg=cfg, options=options)
    if hf_image is not None:
        request["HyperParameters"].update(source)
    aws.call("sagemaker", "create_training_job", step=f"creating training job {job}", **request)
    if aws.dry_run:
        print(f"dry run: {len(aws.requests)} requests printed, none sent", file=sys.stderr)
        return job
    from intentkit.sagemaker.jobs import job_registry, record_job

    record_job(jobs or job_registry(), aws, "training", job, out=str(out.resolve()), force=force)
    print(f"training job {job} created: {console_url(aws.region, 'jobs', job)}")
    if not options.wait:
        output = request["OutputDataConfig"]["S3OutputPath"]
        print(
            f"the model will be at {output}{job}/output/model.tar.gz once the job completes; "
            f"`intentkit jobs attach {job}` waits for it and unpacks it into {out}"
        )
        return job

    final = follow_job(aws, "training", job)
    fetch_model(aws, job, final, out)
    return job


def fetch_model(aws: Aws, job: str, final: dict[str, Any], out: Path) -> Path:
    """Unpack the model of the ended training ``job`` (its last ``DescribeTrainingJob`` answer
    ``final``) into ``out``; :class:`JobFailedError` unless it completed with a model."""
    raise_unless_completed("training", job, final)
    uri = (final.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if not uri:
        raise JobFailedError(f"training job {job} completed without ModelArtifacts; see its logs")
    unpack_model(aws, uri, out)
    print(f"model written to {out} (from {uri})")
    return out
