"""Fine-tune an encoder for intent classification with the Hugging Face Trainer.

What this adds over the reference recipe (see /work/shared/reference/README.md), and why:

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
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from intentkit.config import METRICS, TrainConfig, to_dict
from intentkit.errors import ConfigError, DataError
from intentkit.training import setup
from intentkit.training.setup import rank, world_size

log = logging.getLogger(__name__)


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
    from intentkit.training import timing as lo

    timer = lo.PhaseTimer(started_at)
    # No cyclic GC while importing and loading; what they built is frozen before the first step.
    with lo.paused_gc() as settle_gc:
        return _train(
            data,
            out,
            config=config,
            preset=preset,
            force=force,
            resume=resume,
            checkpoint_dir=checkpoint_dir,
            callbacks=callbacks,
            timer=timer,
            settle_gc=settle_gc,
            overrides=overrides,
        )


def _train(
    data: str | Path,
    out: str | Path,
    *,
    config: TrainConfig | None,
    preset: str | None,
    force: bool,
    resume: bool,
    checkpoint_dir: str | Path | None,
    callbacks: list[Any] | None,
    timer: Any,
    settle_gc: Any,
    overrides: dict[str, Any],
) -> Path:
    """:func:`train`'s body, under its phase timer and with ``settle_gc`` (:func:`paused_gc`)."""
    import torch
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

    from intentkit.artifact import library_versions, write_artifact
    from intentkit.data.dataset import load_prepared
    from intentkit.data.lengths import max_length_for
    from intentkit.fsutil import atomic_write_json
    from intentkit.inference.oos import STATS_FILE
    from intentkit.inference.oos import to_bytes as oos_to_bytes
    from intentkit.inference.predictor import Predictor, resolve_device
    from intentkit.modeling import (
        dropout_overrides,
        load_config,
        load_tokenizer,
        model_max_length,
        quiet_transformers,
        resolve_model,
    )
    from intentkit.training import checkpoints as ck
    from intentkit.training import timing as lo
    from intentkit.training import trainer as tu
    from intentkit.training.modelcard import render_model_card

    timer.mark("imports")
    out = Path(out)
    ckpt_arg = Path(checkpoint_dir) if checkpoint_dir is not None else None
    cfg = setup.resolve_config(
        out,
        config=config,
        preset=preset,
        resume=resume,
        overrides=overrides,
        checkpoint_dir=ckpt_arg,
    )
    ds = load_prepared(data)  # validates the folder before we touch --out
    device = resolve_device(cfg.device)
    resume_from = ck.check_run_out(
        out, force=force, resume=resume, rank=rank(), checkpoint_dir=ckpt_arg
    )

    labels = list(ds.labels)
    label2id = {name: i for i, name in enumerate(labels)}
    unknown = sorted(set(ds.train["label"]) - set(labels))
    if unknown:
        raise DataError(f"--data {ds.path}: train labels missing from labels.json: {unknown}")
    # oos_val: val texts labelled out-of-scope that the model has no class for
    train_df, val_df, oos_val, val_source = setup.validation_split(ds, cfg, labels)

    timer.mark("data")
    tokenizer = load_tokenizer(cfg.model)
    model_config = load_config(cfg.model)
    limit = model_max_length(tokenizer, model_config)
    if cfg.max_length is not None and cfg.max_length > limit:
        raise ConfigError(f"--max-length {cfg.max_length} is above the model's limit {limit}")
    max_length = cfg.max_length or max_length_for(
        ds.path, train_df["text"].tolist(), tokenizer, limit
    )
    tokenizer.model_max_length = max_length  # saved with the artifact: serving truncates the same
    for key, value in dropout_overrides(model_config, cfg.dropout).items():
        setattr(model_config, key, value)
    model_config.num_labels = len(labels)
    model_config.id2label = dict(enumerate(labels))
    model_config.label2id = label2id

    def encode(frame: Any) -> Any:
        ids = tokenizer(frame["text"].tolist(), truncation=True, max_length=max_length)["input_ids"]
        return Dataset.from_dict(
            {
                "input_ids": ids,
                "labels": [label2id[x] for x in frame["label"]],
                "length": [len(x) for x in ids],  # read by the length-grouped sampler
            }
        )

    train_set, val_set = encode(train_df), encode(val_df)
    # Length-sorted like the Predictor's batches: the best evaluation's logits are then the
    # calibration's (train_overhead), and shorter rows share batches (less padding).
    val_set, val_order = lo.sort_by_length(val_set)
    timer.mark("tokenise")
    if len(val_set) == 0:
        raise DataError(f"--data {ds.path}: the validation split is empty; raise --val-size")

    # Quiet transformers' info/warning chatter ("newly initialized weights", ...) and its
    # "Writing model shards" bars for the run; ours is tqdm's.
    with quiet_transformers(logs=True):
        set_seed(cfg.seed)  # the classification head is initialised here, before the Trainer
        attn = setup.attention_impl(device)
        model = setup.load_model(resolve_model(cfg.model), model_config, attn)
        attn = getattr(model.config, "_attn_implementation", attn)
        on_cuda = device.startswith("cuda")
        bf16 = bool(on_cuda and torch.cuda.is_bf16_supported())
        ckpt_dir = ck.checkpoints_dir(out, ckpt_arg)
        run_config = to_dict(cfg)
        if force:
            ck.clear_out(out, rank=rank(), checkpoint_dir=ckpt_arg)
        if rank() == 0:
            atomic_write_json(ckpt_dir / ck.RUN_CONFIG_FILE, run_config)
        args = TrainingArguments(
            **setup.training_arguments(
                cfg, ckpt_dir, device=device, bf16=bf16, world_size=world_size()
            )
        )
        weights = tu.class_weights(train_set["labels"], len(labels), cfg.class_weights)
        cbs = tu.callbacks_module()
        start = cbs.StartStepCallback()
        callbacks = [cbs.RunConfigCallback(run_config), start, *(callbacks or [])]
        if cfg.patience:
            callbacks.append(
                EarlyStoppingCallback(cfg.patience, cfg.early_stopping_threshold or 0.0)
            )
        optimizer = None
        if cfg.layerwise_lr_decay:
            groups = tu.layerwise_param_groups(
                model, cfg.lr, cfg.layerwise_lr_decay, cfg.weight_decay
            )
            optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        trainer = lo.lean_trainer_class(tu.weighted_trainer_class())(
            model=model,
            args=args,
            data_collator=tu.PadCollator(
                tokenizer.pad_token_id or 0, pad_to_multiple_of=8 if on_cuda else 1
            ),
            train_dataset=train_set,
            eval_dataset=val_set,
            processing_class=tokenizer,
            compute_metrics=tu.compute_metrics,
            callbacks=callbacks,
            loss_weights=weights,
            label_smoothing=cfg.label_smoothing,
            optimizers=(optimizer, None),
            predictor_batches=not on_cuda,  # CUDA pads to multiples of 8, the Predictor not
            world_size=world_size(),
            keep_features=bool(cfg.calibrate and cfg.oos_scorer != "softmax"),
        )
        trainer.remove_callback(cbs.ProgressCallback)
        trainer.add_callback(cbs.QuietProgressCallback())
        timer.mark("model_load")
        settle_gc()
        started = time.perf_counter()
        resumed_step = None
        if resume_from is not None:
            state = json.loads((resume_from / "trainer_state.json").read_text("utf-8"))
            resumed_step = int(state.get("global_step", 0))
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        # Snapshot before evaluate(): its log entry re-scores the best checkpoint at the last
        # step, which would read as one more point of the validation curve.
        history = tu.compact_log_history(trainer.state.log_history)
        timer.charge_trainer(trainer)
        # The best checkpoint's metrics, from the evaluation that chose it (not a second pass).
        best = lo.best_scores(trainer, ("loss", *METRICS))
        if best is None:
            scores = trainer.evaluate()  # the best checkpoint (loaded at the end)
            keys = ("loss", *METRICS)
            best = {k: float(scores[f"eval_{k}"]) for k in keys if f"eval_{k}" in scores}
        timer.mark("evaluation")
        runtime = time.perf_counter() - started

        if trainer.is_world_process_zero():
            model = trainer.model
            model_device = str(next(model.parameters()).device)
            predictor = Predictor(
                model, tokenizer, meta={"max_length": max_length}, device=model_device
            )
            # Outputs already computed are not computed again (the best evaluation's val rows).
            known = lo.KnownOutputs(predictor)
            val_texts = val_df["text"].tolist()
            val_logits = lo.best_val_logits(trainer, val_order)
            val_cls = lo.best_val_features(trainer, val_order)
            if val_logits is None:
                val_logits = predictor.logits(val_texts, batch_size=cfg.eval_batch_size)
            elif val_cls is not None:
                known.remember(val_texts, val_logits, val_cls)
            calibration, feats = None, None
            if cfg.calibrate:
                if cfg.oos_scorer != "softmax":
                    from intentkit.training.oos_fit import fit_features

                    # One more inference pass, over the train rows, for their CLS features.
                    feats = fit_features(
                        known,
                        train_df,
                        val_df,
                        oos_val,
                        labels,
                        setup.model_oos_label(cfg, labels),
                        cfg.eval_batch_size,
                    )
                calibration = setup.calibrate_on_val(
                    cfg, known, val_logits, val_df, oos_val, labels, feats=feats
                )
            timer.mark("calibration")
            counts = ds.stats.get("label_counts") or {
                "train": {str(k): int(v) for k, v in ds.train["label"].value_counts().items()}
            }
            meta = {
                "intentkit_version": library_versions()["intentkit"],
                "train_config": {**run_config, "model_resolved": resolve_model(cfg.model)},
                "data": {
                    "path": str(Path(ds.path).resolve()),
                    "fingerprint": ds.fingerprint,
                    "label_counts": counts,
                    "n_train": len(train_set),
                    "n_val": len(val_set),
                    "val_source": val_source,
                },
                "labels": labels,
                "max_length": max_length,
                "metrics": best,
                "calibration": calibration,
                "oos_stats": feats.describe() if feats is not None else None,
                "training": {
                    "global_step": int(trainer.state.global_step),
                    "epochs_completed": float(trainer.state.epoch or 0.0),
                    "best_checkpoint": trainer.state.best_model_checkpoint,
                    "resumed_from": str(resume_from) if resume_from else None,
                    "resumed_step": resumed_step,
                    "started_at_step": start.step,  # first optimiser step of *this* process
                    "train_loss": float(result.training_loss),
                    "runtime_s": round(runtime, 2),
                    "world_size": world_size(),
                    "phases": None,  # filled in once the artifact is written (lo.finish)
                    "device": device,
                    "precision": "bf16" if bf16 else "fp32",
                    "attention": attn,
                    # Loss and validation metrics per logging step/evaluation: the report's
                    # training curves (the checkpoints holding trainer_state.json are temporary).
                    "log_history": history,
                },
                "versions": library_versions(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            write_artifact(
                out,
                model=model,
                tokenizer=tokenizer,
                meta=meta,
                model_card=render_model_card(meta),
                files={} if feats is None else {STATS_FILE: oos_to_bytes(feats.stats)},
            )
            lo.finish(out, meta, timer, render_model_card)
        # Other ranks must not return (and exit) before rank 0 has written the artifact.
        trainer.accelerator.wait_for_everyone()
    return out
