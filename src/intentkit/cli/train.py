"""``intentkit train`` (locally, under torchrun, or as a SageMaker training job).

Every option defaults to None so that only flags the user typed override the preset:
``build(TrainConfig, preset["train"], **flags)`` ignores None values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from intentkit.cli.app import app
from intentkit.cli.aws_options import (
    Bucket,
    DryRun,
    Image,
    ImageVersion,
    JobName,
    NoWait,
    Region,
    Role,
)
from intentkit.cli.common import target_option

# Optional[...] (not `X | None`): Typer reads these annotations at runtime on Python 3.10.
_Int = Optional[int]  # noqa: UP045
_Float = Optional[float]  # noqa: UP045
_Str = Optional[str]  # noqa: UP045
_Bool = Optional[bool]  # noqa: UP045

#: Options of ``--target sagemaker`` (popped from the TrainConfig overrides) and their defaults.
_SAGEMAKER_FLAGS = {
    "role": None,
    "image": None,
    "image_version": None,
    "instance_type": None,
    "instance_count": None,
    "spot": False,
    "max_runtime": None,
    "volume_size": None,
    "region": None,
    "bucket": None,
    "job_name": None,
    "no_wait": False,
    "dry_run": False,
}


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option("--data", help="Prepared dataset folder.")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    model: Annotated[
        _Str, typer.Option(help="Alias (modernbert-base, minilm), local folder or hub id.")
    ] = None,
    preset: Annotated[
        _Str, typer.Option(help="Preset name (intentkit/presets) or a YAML file.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out.")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")
    ] = False,
    checkpoint_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Checkpoint folder (default OUT/checkpoints)."),
    ] = None,
    max_length: Annotated[_Int, typer.Option(help="Truncate inputs (default: data's p99).")] = None,
    epochs: Annotated[_Float, typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[_Int, typer.Option(help="Batch size per device.")] = None,
    eval_batch_size: Annotated[_Int, typer.Option(help="Evaluation batch size.")] = None,
    lr: Annotated[_Float, typer.Option(help="Peak learning rate.")] = None,
    warmup_steps: Annotated[_Int, typer.Option(help="Warm-up steps (absolute).")] = None,
    warmup_ratio: Annotated[_Float, typer.Option(help="Warm-up share of steps (0.1).")] = None,
    weight_decay: Annotated[_Float, typer.Option(help="AdamW weight decay.")] = None,
    grad_accum: Annotated[_Int, typer.Option(help="Gradient accumulation steps.")] = None,
    dropout: Annotated[_Float, typer.Option(help="Set every dropout of the model.")] = None,
    label_smoothing: Annotated[_Float, typer.Option(help="Label smoothing.")] = None,
    class_weights: Annotated[_Str, typer.Option(help="none | balanced | sqrt.")] = None,
    metric: Annotated[_Str, typer.Option(help="Best checkpoint by: macro_f1 | ...")] = None,
    patience: Annotated[_Int, typer.Option(help="Early-stopping patience (evals).")] = None,
    early_stopping_threshold: Annotated[
        _Float, typer.Option(help="Minimum improvement for early stopping.")
    ] = None,
    eval_steps: Annotated[
        _Int, typer.Option(help="Evaluate every N steps (default: epoch).")
    ] = None,
    val_size: Annotated[_Float, typer.Option(help="Validation share if no val split.")] = None,
    seed: Annotated[_Int, typer.Option(help="Random seed.")] = None,
    device: Annotated[_Str, typer.Option(help="auto | cpu | cuda | mps.")] = None,
    gradient_checkpointing: Annotated[
        _Bool, typer.Option(help="Trade speed for memory.", show_default=False)
    ] = None,
    report_to: Annotated[_Str, typer.Option(help="none | tensorboard.")] = None,
    save_total_limit: Annotated[_Int, typer.Option(help="Checkpoints kept.")] = None,
    layerwise_lr_decay: Annotated[_Float, typer.Option(help="LR factor per layer down.")] = None,
    oos_label: Annotated[_Str, typer.Option(help="Data label meaning out-of-scope.")] = None,
    reject_label: Annotated[_Str, typer.Option(help="Answer for rejected inputs.")] = None,
    oos_target: Annotated[_Float, typer.Option(help="Validation in-scope accuracy kept.")] = None,
    oos_scorer: Annotated[
        _Str,
        typer.Option(
            help="softmax | mahalanobis | knn | combined | auto (on validation; "
            "mahalanobis without out-of-scope validation rows)."
        ),
    ] = None,
    oos_prior: Annotated[
        _Float, typer.Option(help="Expected out-of-scope share of traffic (default 0.1).")
    ] = None,
    calibrate: Annotated[
        _Bool, typer.Option(help="Fit temperature + threshold.", show_default=False)
    ] = None,
    objective: Annotated[
        _Str, typer.Option(help="ce | contrastive | auto (contrastive if a class has <= 32 rows).")
    ] = None,
    pair_epochs: Annotated[
        _Int, typer.Option(help="Contrastive: epochs of align and of contrast (5).")
    ] = None,
    pair_lr: Annotated[_Float, typer.Option(help="Contrastive: contrast-step LR (3e-5).")] = None,
    head_epochs: Annotated[
        _Float, typer.Option(help="Contrastive: head epochs on the frozen encoder (10).")
    ] = None,
    head_lr: Annotated[_Float, typer.Option(help="Contrastive: head LR (1e-3).")] = None,
    supcon_weight: Annotated[
        _Float, typer.Option(help="Weight of a SupCon term on the CLS feature (0 = off).")
    ] = None,
    target: target_option("local | sagemaker (a SageMaker training job; see --image).") = "local",
    role: Role = None,
    image: Image = None,
    image_version: ImageVersion = None,
    instance_type: Annotated[
        _Str, typer.Option(help="SageMaker: instance type (default ml.g5.xlarge).")
    ] = None,
    instance_count: Annotated[
        _Int, typer.Option(help="SageMaker: instances (more than 1: DDP across hosts).")
    ] = None,
    spot: Annotated[
        bool,
        typer.Option("--spot", help="SageMaker: managed spot (cheaper; resumes from checkpoints)."),
    ] = False,
    max_runtime: Annotated[
        _Int, typer.Option(help="SageMaker: seconds before the job is stopped (default 86400).")
    ] = None,
    volume_size: Annotated[
        _Int, typer.Option(help="SageMaker: GB of disk per instance (default 30).")
    ] = None,
    region: Region = None,
    bucket: Bucket = None,
    job_name: JobName = None,
    no_wait: NoWait = False,
    dry_run: DryRun = False,
) -> None:
    """Fine-tune a classifier on a prepared dataset and write the model folder to --out.

    Example: intentkit train --data data/clinc150 --model minilm --preset cpu-fast --out model

    Checkpoints go to OUT/checkpoints (or --checkpoint-dir); the artifact (config.json,
    model.safetensors, tokenizer, intentkit.json, README.md) appears at OUT's top level only
    when training has finished.
    Runs unchanged under `torchrun --nproc_per_node N -m intentkit train ...`.

    --target sagemaker runs the same training as a SageMaker training job (needs --role and
    --image): uploads --data to S3, waits while printing the job's status and logs, then
    unpacks the model into --out. Example: intentkit train --data data/clinc150 --out model
    --target sagemaker --role arn:aws:iam::ACCOUNT:role/NAME --image ECR_URI --spot
    --image huggingface runs it on AWS's Hugging Face PyTorch training image for the region
    (GPU instances; intentkit goes in as the job's source code, nothing to build or push).
    Ctrl-C stops waiting, not the job: `intentkit jobs attach JOB` resumes and fetches the
    model into --out, `intentkit jobs stop JOB` stops it.
    """
    flags = dict(locals())  # first statement: exactly the options, one per TrainConfig field
    for name in ("data", "out", "preset", "force", "resume", "checkpoint_dir", "target"):
        flags.pop(name)
    sagemaker = {name: flags.pop(name) for name in _SAGEMAKER_FLAGS}
    from intentkit.cli.common import registry
    from intentkit.endpoints import get_target

    runner = get_target(target, registry(None))
    if _sagemaker_target(target, sagemaker, resume=resume, checkpoint_dir=checkpoint_dir):
        from intentkit.cli.common import jobs

        args = _sagemaker_args(sagemaker)
        runner.train(
            data, out, {"preset": preset, "force": force, "jobs": jobs(None), **args, **flags}
        )
        return
    from intentkit.training.timing import process_start_time, summary_line

    options = {"preset": preset, "force": force, "resume": resume, "checkpoint_dir": checkpoint_dir}
    # started_at: the phases then include start-up and imports
    out_dir = runner.train(data, out, {**options, "started_at": process_start_time(), **flags})
    typer.echo(f"model written to {out_dir}")
    rejection = _rejection(out_dir)
    if rejection:
        typer.echo(rejection)
    training = _training_record(out_dir)
    if training.get("objective"):
        typer.echo(f"objective: {training['objective']} ({training.get('objective_reason')})")
    if training.get("phases"):
        typer.echo(summary_line(training["phases"]))


def _training_record(out_dir: Path) -> dict:
    """``intentkit.json["training"]`` ({} on ranks > 0, which write no artifact)."""
    from intentkit.artifact import read_meta

    try:
        return read_meta(out_dir).get("training") or {}
    except Exception:  # noqa: BLE001 - a summary line is never worth failing a finished run
        return {}


def _rejection(out_dir: Path) -> str | None:
    """The out-of-scope scorer the run chose and why (None on ranks > 0 or uncalibrated)."""
    from intentkit.artifact import read_meta
    from intentkit.evaluation.scorer_choice import describe_choice

    try:
        return describe_choice(read_meta(out_dir).get("calibration"))
    except Exception:  # noqa: BLE001 - a summary line is never worth failing a finished run
        return None


def _sagemaker_target(
    target: str, sagemaker: dict, *, resume: bool, checkpoint_dir: Path | None
) -> bool:
    """True for --target sagemaker; one-line errors for flags that do not fit the target."""
    from intentkit.errors import ConfigError

    if target == "local":
        given = [n for n, v in sagemaker.items() if v != _SAGEMAKER_FLAGS[n]]
        if given:
            shown = ", ".join("--" + n.replace("_", "-") for n in given)
            raise ConfigError(f"{shown}: only for --target sagemaker; add that or drop {shown}")
        return False
    if resume or checkpoint_dir is not None:
        raise ConfigError(
            "--resume/--checkpoint-dir: a SageMaker job keeps its checkpoints in S3 and resumes "
            "from them by itself (spot); drop the flag"
        )
    return True


def _sagemaker_args(sm: dict) -> dict:
    """``train_on_sagemaker``'s settings and options from the popped CLI flags."""
    from intentkit.sagemaker.session import AwsSettings
    from intentkit.sagemaker.training_job import SageMakerTrainOptions

    settings = AwsSettings.resolve(
        region=sm["region"], role=sm["role"], bucket=sm["bucket"], dry_run=sm["dry_run"]
    )
    given = {
        k: sm[k]
        for k in ("instance_type", "instance_count", "max_runtime", "volume_size", "job_name")
        if sm[k] is not None
    }
    options = SageMakerTrainOptions(
        image=sm["image"],
        image_version=sm["image_version"],
        spot=sm["spot"],
        wait=not sm["no_wait"],
        **given,
    )
    return {"settings": settings, "options": options}
