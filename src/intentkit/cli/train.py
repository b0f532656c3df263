"""``intentkit train`` and ``intentkit evaluate``.

Every option defaults to None so that only flags the user typed override the preset:
``build(TrainConfig, preset["train"], **flags)`` ignores None values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from intentkit.cli.app import app

# Optional[...] (not `X | None`): Typer reads these annotations at runtime on Python 3.10.
_Int = Optional[int]  # noqa: UP045
_Float = Optional[float]  # noqa: UP045
_Str = Optional[str]  # noqa: UP045
_Bool = Optional[bool]  # noqa: UP045


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option("--data", help="Prepared dataset folder.")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    model: Annotated[
        _Str, typer.Option(help="Alias (modernbert-base, minilm), local folder or hub id.")
    ] = None,
    preset: Annotated[_Str, typer.Option(help="Preset from intentkit/presets.")] = None,
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
    calibrate: Annotated[
        _Bool, typer.Option(help="Fit temperature + threshold.", show_default=False)
    ] = None,
) -> None:
    """Fine-tune a classifier on a prepared dataset and write the model folder to --out.

    Example: intentkit train --data data/clinc150 --model minilm --preset cpu-fast --out model

    Checkpoints go to OUT/checkpoints (or --checkpoint-dir); the artifact (config.json,
    model.safetensors, tokenizer, intentkit.json, README.md) appears at OUT's top level only
    when training has finished.
    Runs unchanged under `torchrun --nproc_per_node N -m intentkit train ...`.
    """
    flags = dict(locals())  # first statement: exactly the options, one per TrainConfig field
    for name in ("data", "out", "preset", "force", "resume", "checkpoint_dir"):
        flags.pop(name)
    from intentkit.train import train

    out_dir = train(
        data,
        out,
        preset=preset,
        force=force,
        resume=resume,
        checkpoint_dir=checkpoint_dir,
        **flags,
    )
    typer.echo(f"model written to {out_dir}")


@app.command("evaluate")
def evaluate_cmd(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by `intentkit train`.")],
    data: Annotated[Path, typer.Option("--data", help="Prepared dataset folder.")],
    split: Annotated[str, typer.Option(help="Split to score: test | val | train.")] = "test",
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Report folder (default MODEL_DIR/eval)."),
    ] = None,
    reject: Annotated[
        bool, typer.Option("--reject/--no-reject", help="Apply out-of-scope rejection.")
    ] = True,
) -> None:
    """Score a trained model on a split: report.json, confusion_matrix.png, reliability.png.

    Example: intentkit evaluate model --data data/clinc150 --split test

    Predictions go through the same Predictor as serving (temperature + rejection), so the
    numbers are what the endpoint answers. Prints the headline metrics and the worst classes.
    """
    from rich.console import Console

    from intentkit.evaluate import evaluate, worst_classes_table

    report = evaluate(model_dir, data, split=split, out=out, reject=reject)
    console = Console()
    keys = ("accuracy", "macro_f1", "weighted_f1", "in_scope_accuracy", "oos_recall")
    keys += ("ece_before", "ece_after")
    shown = "  ".join(
        f"{k}={report[k]:.4f}" for k in keys if isinstance(report.get(k), (int, float))
    )
    console.print(f"{split} n={report['n']}  {shown}")
    console.print(worst_classes_table(report))
    console.print(f"report: {Path(out) if out else Path(model_dir) / 'eval'}/report.json")
