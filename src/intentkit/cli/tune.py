"""``intentkit tune``: hyper-parameter search with Optuna over ``intentkit train``.

Options default to None so that only flags the user typed reach the base config; a searched
field given as a flag (``--epochs 3``) is fixed instead of searched.
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

_FIX = "Fix (don't search) "


@app.command("tune")
def tune_cmd(
    data: Annotated[Path, typer.Option("--data", help="Prepared dataset folder.")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    trials: Annotated[
        _Int, typer.Option(help="Finished trials the study should hold (default 20).")
    ] = None,
    time_budget: Annotated[
        _Str, typer.Option(help="Stop starting trials after this: 30m, 1800s, 1h.")
    ] = None,
    model: Annotated[
        _Str, typer.Option(help="Alias (modernbert-base, minilm), local folder or hub id.")
    ] = None,
    preset: Annotated[_Str, typer.Option(help="Base config: preset name or YAML file.")] = None,
    metric: Annotated[
        _Str, typer.Option(help="Validation metric to maximise (default macro_f1).")
    ] = None,
    seed: Annotated[_Int, typer.Option(help="Seed of training and of the sampler.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the study in OUT/tune/study.db.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out.")] = False,
    device: Annotated[_Str, typer.Option(help="auto | cpu | cuda | mps.")] = None,
    eval_steps: Annotated[
        _Int, typer.Option(help="Evaluate (and report to the pruner) every N steps.")
    ] = None,
    max_length: Annotated[_Int, typer.Option(help="Truncate inputs (default: data's p99).")] = None,
    val_size: Annotated[_Float, typer.Option(help="Validation share if no val split.")] = None,
    eval_batch_size: Annotated[_Int, typer.Option(help="Evaluation batch size.")] = None,
    lr: Annotated[_Float, typer.Option(help=_FIX + "the peak learning rate.")] = None,
    epochs: Annotated[_Float, typer.Option(help=_FIX + "the epochs.")] = None,
    batch_size: Annotated[_Int, typer.Option(help=_FIX + "the batch size.")] = None,
    warmup_ratio: Annotated[_Float, typer.Option(help=_FIX + "the warm-up share.")] = None,
    weight_decay: Annotated[_Float, typer.Option(help=_FIX + "the weight decay.")] = None,
    label_smoothing: Annotated[_Float, typer.Option(help=_FIX + "label smoothing.")] = None,
    layerwise_lr_decay: Annotated[
        _Float, typer.Option(help=_FIX + "layer-wise LR decay (0 = off).")
    ] = None,
    class_weights: Annotated[_Str, typer.Option(help=_FIX + "class weights.")] = None,
) -> None:
    """Search training hyper-parameters on validation and write the best model to --out.

    Example: intentkit tune --data data/banking77 --preset banking77-minilm --time-budget 30m
    --out model

    Optuna's TPE (seeded) searches learning rate, epochs, batch size, warm-up, weight decay,
    label smoothing, layer-wise LR decay and class weights, starting from the base config
    (--preset / --model); each trial is an ordinary `intentkit train` run, scored by its best
    validation --metric (the test split is never read), and bad trials are pruned from their
    first evaluation. The study lives in OUT/tune/study.db: after any interruption, rerun with
    --resume. --time-budget stops starting trials when another would not fit (a running trial
    finishes). Writes the best model to OUT (a normal artifact), OUT/tune/best-preset.yaml
    (use it with `intentkit train --preset FILE`) and OUT/tune/tune.json (every trial).
    """
    flags = dict(locals())  # first statement: exactly the options
    for name in ("data", "out", "trials", "time_budget", "preset", "resume", "force"):
        flags.pop(name)
    from intentkit.training.tune import tune

    out_dir = tune(
        data,
        out,
        trials=trials,
        time_budget=time_budget,
        preset=preset,
        resume=resume,
        force=force,
        **flags,
    )
    typer.echo(f"model written to {out_dir}")
