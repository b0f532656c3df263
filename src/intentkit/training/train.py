"""Fine-tune an encoder for intent classification with the Hugging Face Trainer.

What this adds over the reference SageMaker notebook's recipe (README.md, "The job, step by
step"), and why:

* **Dynamic padding + length-grouped batches** instead of padding every row to 64: intents are
  short (CLINC150's median is ~10 tokens), so most of a padded batch was wasted compute.
* **Pre-tokenised once** (fast tokenizer, batched) with a precomputed ``length`` column that the
  length-grouped sampler reads, instead of tokenising per step.
* **fp32 on CPU, bf16 only on CUDA devices that support it** (bf16 is ~300x slower on CPUs
  without bf16 units); SDPA (or flash-attention 2 when installed on CUDA), no gradient
  checkpointing unless asked: the model is small, memory is not the bottleneck.
* **Stable label ids** from the sorted ``labels.json`` (the reference used ``set()`` order).
* **Resumable and atomic**: checkpoints (safetensors weights + the Trainer's optimizer/scheduler/
  RNG state files, which are torch pickles and are only ever read back by ``--resume``) live in
  ``MODEL_DIR/checkpoints``; the artifact appears at ``MODEL_DIR``'s top level only when complete.

:func:`train` reads top to bottom as its phases, each a function with typed inputs and
outputs (cf. litgpt ``finetune/full.py``): ``prepare_data`` (``prepare.py``) ->
:func:`build_trainer` -> :func:`fit` -> :func:`calibrate` (temperature, threshold, out-of-scope
statistics) -> :func:`write` (the artifact, once). :mod:`intentkit.training.timing` times them.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intentkit.config import METRICS, TrainConfig
from intentkit.training import setup
from intentkit.training.prepare import Run, prepare_data
from intentkit.training.setup import rank, world_size
from intentkit.training.timing import PhaseTimer

if TYPE_CHECKING:  # heavy (torch, transformers): imported by the phases themselves
    from intentkit.training.oos_fit import OosFeatures
    from intentkit.training.trainer import IntentTrainer

#: Imported before the first phase, so that the ``imports`` phase holds their cost.
_LIBRARIES = (
    "datasets",
    "intentkit.training.trainer",  # torch, transformers
    "intentkit.training.callbacks",
    "intentkit.inference.predictor",
    "intentkit.artifact",
)


def train(
    data: str | Path,
    out: str | Path,
    *,
    config: TrainConfig | None = None,
    preset: str | None = None,
    force: bool = False,
    resume: bool = False,
    checkpoint_dir: str | Path | None = None,
    callbacks: list[Any] | None = None,
    started_at: float | None = None,
    **overrides: Any,
) -> Path:
    """Fine-tune on a prepared dataset folder and write the artifact to ``out``; return ``out``.

    Args:
        data: a folder written by ``intentkit data prepare`` (train/test[/val].parquet,
            labels.json).
        out: the model folder; the artifact goes to ``out``.
        config: a full TrainConfig (else defaults, or the preset).
        preset: name of a preset in ``intentkit/presets`` whose ``train`` section is applied.
        force: replace a non-empty ``out``.
        resume: continue from the last complete checkpoint in the checkpoint folder.
        checkpoint_dir: where checkpoints go (default ``out/checkpoints``); the SageMaker
            container puts them in ``/opt/ml/checkpoints``, which SageMaker syncs to S3.
        callbacks: extra ``TrainerCallback`` objects appended to the Trainer's (``intentkit
            tune`` reports each evaluation to Optuna through one).
        started_at: ``time.time()`` at which the process started (the CLI passes it) so the
            phases in ``intentkit.json`` include interpreter start-up and the CLI's imports.
        **overrides: TrainConfig fields (``model="minilm"``, ``epochs=1``...); None is ignored.
    """
    timer = PhaseTimer(started_at)
    # No cyclic GC while importing and loading; what they built is frozen before the first step.
    with setup.paused_gc() as settle_gc:
        for name in _LIBRARIES:
            importlib.import_module(name)
        timer.mark("imports")
        run = prepare_data(
            data,
            out,
            config=config,
            preset=preset,
            force=force,
            resume=resume,
            checkpoint_dir=checkpoint_dir,
            overrides=overrides,
            timer=timer,
        )
        from intentkit.modeling import quiet_transformers

        # Quiet transformers' info/warning chatter ("newly initialized weights", ...) and its
        # "Writing model shards" bars for the run; ours is tqdm's.
        with quiet_transformers(logs=True):
            trainer = build_trainer(run, force=force, callbacks=callbacks)
            timer.mark("model_load")
            run.objective = pair_stage(trainer, run)
            timer.mark("pair_training")
            settle_gc()
            if run.objective.get("head", {}).get("epochs") == 0:
                fitted = score_fitted_head(trainer, run, timer)
            else:
                fitted = fit(trainer, run, timer)
            if trainer.is_world_process_zero():
                calibrated = calibrate(fitted, run)
                timer.mark("calibration")
                write(run, fitted, calibrated, timer)
            # Other ranks must not return (and exit) before rank 0 has written the artifact.
            trainer.accelerator.wait_for_everyone()
    return run.out


# ----------------------------------------------------------------------------- build trainer
def build_trainer(run: Run, *, force: bool, callbacks: list[Any] | None) -> IntentTrainer:
    """The model (head initialised from ``--seed``) in an :class:`IntentTrainer`.

    ``--force`` empties ``out`` here, once every input is validated; the resolved config is
    written beside the checkpoints so ``--resume`` needs no flags.
    """
    import torch
    from transformers import EarlyStoppingCallback, TrainingArguments, set_seed
    from transformers.trainer_callback import ProgressCallback

    from intentkit.fsutil import atomic_write_json
    from intentkit.modeling import resolve_model
    from intentkit.training import callbacks as cb
    from intentkit.training import checkpoints as ck
    from intentkit.training import trainer as tr

    cfg = run.cfg
    set_seed(cfg.seed)  # the classification head is initialised here, before the Trainer
    attention = setup.attention_impl(run.device)
    model = setup.load_model(resolve_model(cfg.model), run.model_config, attention)
    on_cuda = run.device.startswith("cuda")
    bf16 = bool(on_cuda and torch.cuda.is_bf16_supported())
    ckpt_dir = ck.checkpoints_dir(run.out, run.checkpoint_dir)
    if force:
        ck.clear_out(run.out, rank=rank(), checkpoint_dir=run.checkpoint_dir)
    if rank() == 0:
        atomic_write_json(ckpt_dir / ck.RUN_CONFIG_FILE, run.run_config)
    args = TrainingArguments(
        **setup.training_arguments(
            cfg, ckpt_dir, device=run.device, bf16=bf16, world_size=world_size()
        )
    )
    extra = [cb.RunConfigCallback(run.run_config), *(callbacks or [])]
    if cfg.patience:
        extra.append(EarlyStoppingCallback(cfg.patience, cfg.early_stopping_threshold or 0.0))
    optimizer = None
    if cfg.layerwise_lr_decay:
        groups = tr.layerwise_param_groups(model, cfg.lr, cfg.layerwise_lr_decay, cfg.weight_decay)
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    trainer = tr.IntentTrainer(
        model=model,
        args=args,
        data_collator=tr.PadCollator(
            run.tokenizer.pad_token_id or 0, pad_to_multiple_of=8 if on_cuda else 1
        ),
        train_dataset=run.train_set,
        eval_dataset=run.val_set,
        processing_class=run.tokenizer,
        callbacks=extra,
        loss_weights=tr.class_weights(run.train_set["labels"], len(run.labels), cfg.class_weights),
        label_smoothing=cfg.label_smoothing,
        optimizers=(optimizer, None),
        predictor_batches=not on_cuda,  # CUDA pads to multiples of 8, the Predictor not
        supcon_weight=cfg.supcon_weight,
        keep_features=bool(cfg.calibrate and cfg.oos_scorer != "softmax"),
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(cb.QuietProgressCallback())
    return trainer


# ----------------------------------------------------------------------------- pair stage
def pair_stage(trainer: IntentTrainer, run: Run) -> dict[str, Any]:
    """Resolve ``--objective``; for ``contrastive``, tune the encoder and set up its head
    (:func:`intentkit.training.objectives.contrastive_training`). Returns the fields
    ``intentkit.json["training"]`` records."""
    from intentkit.training.objectives import choose_objective, contrastive_training

    objective, reason = choose_objective(run.cfg.objective, run.train_df["label"])
    record: dict[str, Any] = {"objective": objective, "objective_reason": reason}
    if objective != "contrastive":
        return record
    return {**record, **contrastive_training(trainer, run, world_size())}


# ----------------------------------------------------------------------------- fit
@dataclass
class Fitted:
    """What :func:`fit` hands on: the trainer holding the best weights, and the run's record."""

    trainer: IntentTrainer
    metrics: dict[str, float]  #: the best checkpoint's validation metrics
    train_loss: float | None  #: None when no training step ran (a head fitted in closed form)
    history: list[dict[str, Any]]  #: the compact log history (the report's curves)
    resumed_step: int | None
    started_at_step: int | None  #: first optimiser step of *this* process
    runtime_s: float


def fit(trainer: IntentTrainer, run: Run, timer: PhaseTimer) -> Fitted:
    """Train (from ``run.resume_from`` when resuming) and end on the best checkpoint.

    Phases ``setup``, ``train_steps``, ``evaluation``, ``checkpoints`` and ``other``.
    """
    from intentkit.training.callbacks import ClockCallback, StartStepCallback
    from intentkit.training.trainer import compact_log_history

    clock, start = ClockCallback(), StartStepCallback()
    trainer.add_callback(clock)
    trainer.add_callback(start)
    started = time.perf_counter()
    resumed_step = None
    if run.resume_from is not None:
        state = json.loads((run.resume_from / "trainer_state.json").read_text("utf-8"))
        resumed_step = int(state.get("global_step", 0))
    result = trainer.train(resume_from_checkpoint=str(run.resume_from) if run.resume_from else None)
    # Snapshot before evaluate(): its log entry re-scores the best checkpoint at the last
    # step, which would read as one more point of the validation curve.
    history = compact_log_history(trainer.state.log_history)
    timer.charge_trainer(clock)
    # The best checkpoint's metrics, from the evaluation that chose it (not a second pass).
    keys = ("loss", *METRICS)
    best = trainer.best_metrics(keys)
    if best is None:
        scores = trainer.evaluate()  # the best checkpoint (loaded at the end)
        best = {k: float(scores[f"eval_{k}"]) for k in keys if f"eval_{k}" in scores}
    timer.mark("evaluation")
    return Fitted(
        trainer=trainer, metrics=best, train_loss=float(result.training_loss), history=history,
        resumed_step=resumed_step, started_at_step=start.step,
        runtime_s=time.perf_counter() - started,
    )  # fmt: skip


def score_fitted_head(trainer: IntentTrainer, run: Run, timer: PhaseTimer) -> Fitted:
    """:class:`Fitted` for a model whose head was fitted in closed form (no training steps):
    its validation metrics from one evaluation. Phase ``evaluation``."""
    from intentkit.training.trainer import compact_log_history

    started = time.perf_counter()
    scores = trainer.evaluate()
    metrics = {k: float(scores[f"eval_{k}"]) for k in ("loss", *METRICS) if f"eval_{k}" in scores}
    timer.mark("evaluation")
    return Fitted(
        trainer=trainer, metrics=metrics, train_loss=None,
        history=compact_log_history(trainer.state.log_history), resumed_step=None,
        started_at_step=None, runtime_s=time.perf_counter() - started,
    )  # fmt: skip


# ----------------------------------------------------------------------------- calibrate
@dataclass
class Calibrated:
    """What :func:`calibrate` hands on (both None with ``--no-calibrate``)."""

    calibration: dict[str, Any] | None  #: ``intentkit.json["calibration"]``
    feats: OosFeatures | None  #: the out-of-scope statistics unless the scorer is softmax


def calibrate(fitted: Fitted, run: Run) -> Calibrated:
    """Fit temperature, rejection threshold and the out-of-scope statistics on validation.

    The best evaluation's val logits (and CLS features) are reused when the trainer kept them,
    so the model runs over val again only when it did not.
    """
    from intentkit.inference.predictor import Predictor
    from intentkit.training.oos_fit import fit_features

    cfg = run.cfg
    if not cfg.calibrate:
        return Calibrated(calibration=None, feats=None)
    trainer, model = fitted.trainer, fitted.trainer.model
    device = str(next(model.parameters()).device)
    predictor = Predictor(model, run.tokenizer, meta={"max_length": run.max_length}, device=device)
    known = setup.KnownOutputs(predictor)
    val_texts = run.val_df["text"].tolist()
    val_logits, val_cls = trainer.best_validation(run.val_order)
    if val_logits is None:
        val_logits = predictor.logits(val_texts, batch_size=cfg.eval_batch_size)
    elif val_cls is not None:
        known.remember(val_texts, val_logits, val_cls)
    feats = None
    if cfg.oos_scorer != "softmax":
        # One more inference pass, over the train rows, for their CLS features.
        oos_label = setup.model_oos_label(cfg, run.labels)
        feats = fit_features(
            known, run.train_df, run.val_df, run.oos_val, run.labels, oos_label,
            cfg.eval_batch_size,
        )  # fmt: skip
    calibration = setup.calibrate_on_val(
        cfg, known, val_logits, run.val_df, run.oos_val, run.labels, feats=feats
    )
    return Calibrated(calibration=calibration, feats=feats)


# ----------------------------------------------------------------------------- write
def write(run: Run, fitted: Fitted, calibrated: Calibrated, timer: PhaseTimer) -> None:
    """Write the artifact once, atomically (:func:`intentkit.artifact.write_artifact`).

    ``intentkit.json`` and the model card are made after the weights, tokenizer and
    out-of-scope statistics are saved, so the phases they record include that save (phase
    ``write``; the few ms of writing those two files and moving them in are not counted).
    """
    from intentkit.artifact import write_artifact
    from intentkit.inference.oos import STATS_FILE
    from intentkit.inference.oos import to_bytes as oos_to_bytes
    from intentkit.training.modelcard import render_model_card

    meta = artifact_meta(run, fitted, calibrated)

    def finished_meta() -> dict[str, Any]:
        timer.mark("write")
        meta["training"]["phases"] = timer.as_dict()
        return meta

    feats = calibrated.feats
    write_artifact(
        run.out,
        model=fitted.trainer.model,
        tokenizer=run.tokenizer,
        meta=finished_meta,
        model_card=render_model_card,
        files={} if feats is None else {STATS_FILE: oos_to_bytes(feats.stats)},
    )


def artifact_meta(run: Run, fitted: Fitted, calibrated: Calibrated) -> dict[str, Any]:
    """``intentkit.json`` of the run (``training.phases`` is filled in by :func:`write`)."""
    from intentkit.artifact import library_versions
    from intentkit.modeling import resolve_model

    cfg, ds, state = run.cfg, run.dataset, fitted.trainer.state
    model, args = fitted.trainer.model, fitted.trainer.args
    counts = ds.stats.get("label_counts") or {
        "train": {str(k): int(v) for k, v in ds.train["label"].value_counts().items()}
    }
    feats = calibrated.feats
    return {
        "intentkit_version": library_versions()["intentkit"],
        "train_config": {**run.run_config, "model_resolved": resolve_model(cfg.model)},
        "data": {
            "path": str(Path(ds.path).resolve()),
            "fingerprint": ds.fingerprint,
            "label_counts": counts,
            "n_train": len(run.train_set),
            "n_val": len(run.val_set),
            "val_source": run.val_source,
        },
        "labels": run.labels,
        "max_length": run.max_length,
        "metrics": fitted.metrics,
        "calibration": calibrated.calibration,
        "oos_stats": feats.describe() if feats is not None else None,
        "training": {
            "global_step": int(state.global_step),
            "epochs_completed": float(state.epoch or 0.0),
            "best_checkpoint": state.best_model_checkpoint,
            "resumed_from": str(run.resume_from) if run.resume_from else None,
            "resumed_step": fitted.resumed_step,
            "started_at_step": fitted.started_at_step,
            "train_loss": fitted.train_loss,
            **(run.objective or {}),
            "runtime_s": round(fitted.runtime_s, 2),
            "world_size": world_size(),
            "phases": None,
            "device": run.device,
            "precision": "bf16" if args.bf16 else "fp32",
            "attention": getattr(model.config, "_attn_implementation", None)
            or setup.attention_impl(run.device),
            # Loss and validation metrics per logging step/evaluation: the report's training
            # curves (the checkpoints holding trainer_state.json are temporary).
            "log_history": fitted.history,
        },
        "versions": library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
