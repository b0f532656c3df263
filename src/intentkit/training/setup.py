"""What :func:`intentkit.train` decides before the first step (the resolved config, the
Trainer's arguments, the attention kernel, the model, the paused garbage collector) and the
post-training calibration call with the outputs it can reuse (:class:`KnownOutputs`)."""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.config import TrainConfig, build, load_preset, to_dict

log = logging.getLogger(__name__)


def rank() -> int:
    """This process's rank under torchrun (``RANK``, read per call, never at import); 0 alone."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes in the torchrun job (``WORLD_SIZE``); 1 alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_config(
    out: Path,
    *,
    config: TrainConfig | None,
    preset: str | None,
    resume: bool,
    overrides: dict[str, Any],
    checkpoint_dir: Path | None = None,
) -> TrainConfig:
    """Defaults < preset (or the resumed run's stored config) < ``config`` < explicit overrides.

    The stored config is read from ``checkpoint_dir`` (default ``out/checkpoints``).
    """
    from intentkit.training.checkpoints import RUN_CONFIG_FILE, checkpoints_dir

    base: dict[str, Any] = {}
    stored = checkpoints_dir(out, checkpoint_dir) / RUN_CONFIG_FILE
    if resume and stored.is_file():
        # --resume with no other flags continues the same run, not a default-config one.
        base = json.loads(stored.read_text("utf-8"))
    if preset is not None:
        base = {**base, **load_preset(preset).get("train", {})}
    if config is not None:
        base = {**base, **to_dict(config)}
    return build(TrainConfig, base, **overrides)


@contextmanager
def paused_gc() -> Iterator[Callable[[], None]]:
    """No cyclic garbage collection until the yielded ``settle()``; restored on the way out.

    Each full collection walks every object torch and transformers created (~0.25 s at 450k
    objects, 8 of them before the first step), and accelerate's ``gc.collect()`` at the start
    of ``Trainer.train`` was 0.3 s (issue #12, bench/RESULTS.md "train overhead").

    Call ``settle()`` once the imports and the model are loaded: it freezes every object that
    exists (``gc.freeze``: later collections skip them) and turns collection back on. On exit
    the frozen objects are unfrozen (collectable again: the run's cycles, the Trainer with its
    model among them, go at the caller's next full collection, as without the pause) and the
    caller's setting is back. Does nothing when collection is off or objects are already frozen
    (the caller manages the collector itself). Results cannot change: only when collections
    run does, and the pause makes little cyclic garbage (imports, one model load).
    """
    if not gc.isenabled() or gc.get_freeze_count():
        yield lambda: None
        return
    state = {"frozen": False}

    def settle() -> None:
        if not state["frozen"]:
            gc.freeze()
            state["frozen"] = True
            gc.enable()

    gc.disable()
    try:
        yield settle
    finally:
        if state["frozen"]:
            gc.unfreeze()
        gc.enable()


def attention_impl(device: str) -> str:
    """flash-attention 2 on CUDA when it is installed, else PyTorch SDPA."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_model(resolved: str, model_config: Any, attn: str) -> Any:
    """The classification model in fp32 with ``attn``; eager kernels when it has no such path."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from intentkit.errors import ModelError

    try:
        return AutoModelForSequenceClassification.from_pretrained(
            resolved, config=model_config, attn_implementation=attn, dtype=torch.float32
        )
    except (ValueError, ImportError) as exc:
        if attn == "eager" or "attn" not in str(exc).lower() and "attention" not in str(exc):
            raise ModelError(
                f"--model {resolved}: cannot load it for classification: {exc}"
            ) from exc
        # An architecture without SDPA/flash support: fall back to the eager kernels.
        return load_model(resolved, model_config, "eager")
    except OSError as exc:
        raise ModelError(f"--model {resolved}: cannot load weights: {exc}") from exc


def validation_split(
    ds: Any, cfg: TrainConfig, labels: list[str]
) -> tuple[Any, Any, list[str], str]:
    """``(train_df, val_df, oos_val, source)`` of a prepared dataset for training and calibration.

    The folder's ``val.parquet`` when it has one: its rows with a model label form ``val_df`` and
    its texts labelled out-of-scope (``--oos-label`` or ``oos``) without a model class form
    ``oos_val``, which only the rejection threshold reads. Else ``--val-size`` of train, carved
    with the data stage's stratified split and ``--seed``.
    """
    from intentkit.data.split import split_frame

    if ds.val is None:
        train_df, val_df = split_frame(ds.train, cfg.val_size, cfg.seed)
        return train_df, val_df, [], f"{cfg.val_size:g} of train (stratified, seed {cfg.seed})"
    known = ds.val["label"].isin(labels)
    from intentkit.inference.decision import oos_names

    oos_val = ds.val.loc[~known & ds.val["label"].isin(oos_names(cfg.oos_label)), "text"].tolist()
    return ds.train, ds.val[known].reset_index(drop=True), oos_val, "val.parquet"


def model_oos_label(cfg: TrainConfig, labels: list[str]) -> str | None:
    """The model's oos class: ``--oos-label`` when it is a label of the data, else ``oos`` when
    the data has that class (CLINC150's name), else None."""
    if cfg.oos_label is not None:
        if cfg.oos_label in labels:
            return cfg.oos_label
        log.warning("--oos-label %s is not a label of the data; ignored", cfg.oos_label)
        return None
    from intentkit.inference.decision import OOS_NAMES

    return next((name for name in OOS_NAMES if name in labels), None)


#: Below this many val rows with a model class the temperature is not fitted but fixed at 1:
#: one scalar fitted by NLL on a few dozen rows swings with each row (few-shot runs, where
#: ``data sample`` leaves K val rows per label, on a handful of labels).
MIN_VAL_ROWS_FOR_TEMPERATURE = 50


def calibrate_on_val(
    cfg: TrainConfig,
    predictor: Any,
    val_logits: Any,
    val_df: Any,
    oos_val: list[str],
    labels: list[str],
    *,
    feats: Any = None,
) -> dict[str, Any]:
    """Fit temperature + rejection threshold on validation (``intentkit.evaluation.calibration``).

    The model's oos class follows :func:`model_oos_label`; out-of-scope val texts without a
    model class join the threshold choice as ``extra_oos_logits``. ``feats``
    (:class:`intentkit.training.oos_fit.OosFeatures`) brings the feature-space distances that
    ``--oos-scorer mahalanobis|knn|combined|auto`` reads; without it the scorer is softmax.
    Under :data:`MIN_VAL_ROWS_FOR_TEMPERATURE` val rows the temperature is fixed at 1;
    ``temperature_rule`` in the result says which rule was used.
    """
    from intentkit.evaluation.calibration import calibrate

    label2id = {name: i for i, name in enumerate(labels)}
    extra = predictor.logits(oos_val, batch_size=cfg.eval_batch_size) if oos_val else None
    small = len(val_df) < MIN_VAL_ROWS_FOR_TEMPERATURE
    distances = {}
    if feats is not None:
        distances = {
            "val_distances": feats.val_distances,
            "extra_oos_distances": feats.extra_oos_distances,
            "train_oos_distances": feats.train_oos_distances,
        }
    result = calibrate(
        val_logits,
        np.array([label2id[x] for x in val_df["label"]], dtype=np.int64),
        labels,
        oos_label=model_oos_label(cfg, labels),
        reject_label=cfg.reject_label,
        target_in_scope_accuracy=cfg.oos_target,
        extra_oos_logits=extra,
        scorer=cfg.oos_scorer if feats is not None else "softmax",
        prior=cfg.oos_prior,
        fixed_temperature=1.0 if small else None,
        **distances,
    )
    result["temperature_rule"] = (
        f"fixed at 1: {len(val_df)} val rows (< {MIN_VAL_ROWS_FOR_TEMPERATURE}) are too few to fit "
        "it; the threshold still comes from those rows, so it is rough (one row moves the "
        f"accuracy it keeps by {1 / max(len(val_df), 1):.1%})"
        if small
        else f"fitted on {len(val_df)} val rows (NLL)"
    )
    return result


class KnownOutputs:
    """The Predictor, with ``features``/``logits`` of texts it has already run answered again.

    The best evaluation's val rows went through the model in the Predictor's batches
    (``IntentTrainer.best_validation``), so calibration and the out-of-scope fit take their
    outputs from there: one pass over val instead of three.

    ``features(texts)`` of a text list given to :meth:`remember` (the best evaluation's val
    rows) or asked before, and ``logits(texts)`` of such a list, return the outputs already
    computed on the same batches, instead of one more forward pass. Anything else is the
    Predictor's.
    """

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor
        self.known: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def remember(self, texts: Sequence[str], logits: np.ndarray, features: np.ndarray) -> None:
        """Record ``(logits, features)`` of ``texts`` (rows in the order of ``texts``)."""
        self.known[tuple(texts)] = (logits, features)

    def features(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`intentkit.inference.predictor.Predictor.features`, once per text list."""
        key = tuple(texts)
        if key not in self.known:
            self.known[key] = self.predictor.features(texts, batch_size=batch_size)
        return self.known[key]

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """:meth:`intentkit.inference.predictor.Predictor.logits`, from the features pass if any."""
        known = self.known.get(tuple(texts))
        if known is not None:
            return known[0]
        return self.predictor.logits(texts, batch_size=batch_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)


def _checkpointing_arg() -> str:
    """``activation_checkpointing`` (transformers >= 5.2x) or its older name."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return (
        "activation_checkpointing"
        if "activation_checkpointing" in names
        else ("gradient_checkpointing")
    )


def training_arguments(
    cfg: TrainConfig, output_dir: Path, *, device: str, bf16: bool, world_size: int = 1
) -> dict[str, Any]:
    """The ``TrainingArguments`` keyword arguments for ``cfg`` (pure: tested per preset)."""
    strategy = "steps" if cfg.eval_steps else "epoch"
    # transformers 5: an int is absolute warm-up steps, a float a ratio of the total.
    warmup: int | float = (
        int(cfg.warmup_steps)
        if cfg.warmup_steps is not None
        else float(cfg.warmup_ratio if cfg.warmup_ratio is not None else 0.1)
    )
    on_cuda = device.startswith("cuda")
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": float(cfg.epochs),
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": cfg.eval_batch_size,
        "learning_rate": cfg.lr,
        "warmup_steps": warmup,
        "weight_decay": cfg.weight_decay,
        "gradient_accumulation_steps": cfg.grad_accum,
        _checkpointing_arg(): cfg.gradient_checkpointing,
        "eval_strategy": strategy,
        "save_strategy": strategy,  # load_best_model_at_end needs both on the same schedule
        "eval_steps": cfg.eval_steps,
        "save_steps": cfg.eval_steps or 500,
        "save_total_limit": cfg.save_total_limit,
        "load_best_model_at_end": True,
        "metric_for_best_model": cfg.metric,
        "greater_is_better": True,
        "logging_strategy": "steps",
        "logging_steps": 10,
        "report_to": [] if cfg.report_to == "none" else [cfg.report_to],
        "bf16": bf16,
        "use_cpu": device == "cpu",
        "ddp_backend": ("gloo" if device == "cpu" else None) if world_size > 1 else None,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "train_sampling_strategy": "group_by_length",
        "remove_unused_columns": False,  # our collator drops the length column itself
        "dataloader_pin_memory": on_cuda,
        "disable_tqdm": False,
        "log_level": "error",
    }
