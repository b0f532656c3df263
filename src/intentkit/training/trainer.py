"""Pieces of the training loop that ``train.py`` wires into the Hugging Face Trainer.

Kept apart so each stays small and testable: the dynamic-padding collator, class weights, the
weighted-loss Trainer subclass, the metrics hook, callbacks and layer-wise learning rates.
Heavy imports (torch, transformers) happen inside functions or in :func:`weighted_trainer_class`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.evaluation.metrics import classification_metrics
from intentkit.training.checkpoints import RUN_CONFIG_FILE


# ----------------------------------------------------------------------------- batching
class PadCollator:
    """Pad a list of pre-tokenized rows to the longest row *of this batch* (never max_length).

    Rows are dicts with ``input_ids`` (list of ints) and ``labels``; any other key (the
    ``length`` column used by the length-grouped sampler) is dropped. ``pad_to_multiple_of``
    rounds the width up (8 helps tensor cores on GPUs; on CPU 1 is best).
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 1) -> None:
        self.pad_token_id = int(pad_token_id)
        self.multiple = max(1, int(pad_to_multiple_of))

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Return ``input_ids``, ``attention_mask`` (and ``labels`` if present) as tensors."""
        import torch

        from intentkit.inference.padding import pad_rows

        ids, mask = pad_rows(
            [r["input_ids"] for r in rows], self.pad_token_id, multiple=self.multiple
        )
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([int(r["labels"]) for r in rows], dtype=torch.long)
        return batch


# ----------------------------------------------------------------------------- class imbalance
def class_weights(label_ids: Sequence[int], n_classes: int, mode: str) -> np.ndarray | None:
    """Per-class loss weights for ``--class-weights``; None for ``none``.

    ``balanced`` is sklearn's n / (k * count_c); ``sqrt`` is its square root (a milder boost for
    rare classes). Both are normalised to mean 1 over the classes present so the effective
    learning rate does not change; classes absent from training get weight 1.
    """
    if mode == "none":
        return None
    counts = np.bincount(np.asarray(label_ids, dtype=np.int64), minlength=n_classes).astype(float)
    present = counts > 0
    w = np.ones(n_classes, dtype=np.float64)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    if mode == "sqrt":
        w[present] = np.sqrt(w[present])
    elif mode != "balanced":
        raise ValueError(f"unknown class weight mode {mode!r}")
    w[present] /= w[present].mean()
    return w.astype(np.float32)


def weighted_trainer_class() -> type:
    """The Trainer subclass whose loss is cross-entropy with class weights and label smoothing.

    Built lazily so importing this module does not import transformers.
    """
    import torch
    from transformers import Trainer

    class WeightedLossTrainer(Trainer):
        """``Trainer`` with ``F.cross_entropy(weight=..., label_smoothing=...)`` as its loss."""

        # Our loss is a per-batch mean, so the Trainer must still divide by grad-accum steps.
        loss_is_scaled_for_ga = False

        def __init__(
            self,
            *args: Any,
            loss_weights: np.ndarray | None = None,
            label_smoothing: float = 0.0,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            # Older transformers 5.x (no loss_is_scaled_for_ga) skip the grad-accum division
            # for models that accept loss kwargs; ours is a plain mean, so it must be divided.
            self.model_accepts_loss_kwargs = False
            self.loss_weights = None if loss_weights is None else torch.tensor(loss_weights)
            self.label_smoothing = float(label_smoothing)

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            """Weighted, smoothed cross-entropy over the batch (mean)."""
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
            weight = None
            if self.loss_weights is not None:
                weight = self.loss_weights.to(device=logits.device, dtype=torch.float32)
            # fp32 loss even under bf16 autocast: log-softmax over many classes loses precision.
            loss = torch.nn.functional.cross_entropy(
                logits.float(), labels, weight=weight, label_smoothing=self.label_smoothing
            )
            return (loss, outputs) if return_outputs else loss

    return WeightedLossTrainer


# ----------------------------------------------------------------------------- metrics


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    """``compute_metrics`` hook for the Trainer (argmax of logits vs labels)."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return classification_metrics(np.asarray(logits).argmax(axis=-1), np.asarray(labels))


#: Keys of the Trainer's log entries worth keeping in ``intentkit.json`` (the report's curves);
#: runtimes and throughputs are noise there.
LOG_KEYS = ("loss", "grad_norm", "learning_rate", "eval_loss") + tuple(
    f"eval_{m}" for m in ("accuracy", "macro_f1", "weighted_f1")
)


def compact_log_history(history: Sequence[dict[str, Any]], max_train: int = 500) -> list[dict]:
    """The Trainer's ``state.log_history`` reduced to step, epoch and :data:`LOG_KEYS`.

    Values are rounded to 5 significant digits and training-loss entries are thinned evenly to
    at most ``max_train`` (every evaluation is kept), so a long run adds a few tens of KB.
    """
    rows = []
    for entry in history:
        kept = {
            k: float(f"{entry[k]:.5g}") for k in LOG_KEYS if isinstance(entry.get(k), float | int)
        }
        if kept:
            rows.append(
                {
                    "step": int(entry.get("step", 0)),
                    "epoch": round(float(entry.get("epoch") or 0), 4),
                    **kept,
                }
            )
    train = [i for i, r in enumerate(rows) if "eval_loss" not in r]
    if len(train) > max_train:
        keep = {train[int(j)] for j in np.linspace(0, len(train) - 1, max_train)}
        rows = [r for i, r in enumerate(rows) if "eval_loss" in r or i in keep]
    return rows


# ----------------------------------------------------------------------------- max length


# ----------------------------------------------------------------------------- checkpoints


# ----------------------------------------------------------------------------- run folder


# ----------------------------------------------------------------------------- callbacks
def callbacks_module() -> Any:
    """Build the callback classes lazily (they subclass transformers' callbacks)."""
    from transformers.trainer_callback import ProgressCallback, TrainerCallback

    class QuietProgressCallback(ProgressCallback):
        """tqdm bar with the running loss and learning rate as postfix; one line per eval."""

        def on_prediction_step(self, *args: Any, **kw: Any) -> None:
            pass  # no second bar for the (short) evaluation passes

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not state.is_world_process_zero or self.training_bar is None or not logs:
                return
            if "loss" in logs:
                post = {"loss": f"{logs['loss']:.4f}"}
                if "learning_rate" in logs:
                    post["lr"] = f"{logs['learning_rate']:.2e}"
                self.training_bar.set_postfix(post, refresh=False)
            elif "eval_loss" in logs:
                shown = " ".join(
                    f"{k[5:]}={v:.4f}"
                    for k, v in logs.items()
                    if k in ("eval_loss", "eval_accuracy", "eval_macro_f1", "eval_weighted_f1")
                )
                self.training_bar.write(
                    f"step {state.global_step} epoch {logs.get('epoch', 0):.2f}: {shown}"
                )

    class RunConfigCallback(TrainerCallback):
        """Write the resolved TrainConfig into every checkpoint (reproducible, resumable)."""

        def __init__(self, run_config: dict[str, Any]) -> None:
            self.run_config = run_config

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not state.is_world_process_zero:
                return
            from intentkit.fsutil import atomic_write_json

            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                atomic_write_json(ckpt / RUN_CONFIG_FILE, self.run_config)

    class StartStepCallback(TrainerCallback):
        """Remember the global step at which this process began stepping (proves a resume)."""

        def __init__(self) -> None:
            self.step: int | None = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.step is None:
                self.step = int(state.global_step)

    class _NS:
        pass

    ns = _NS()
    ns.QuietProgressCallback = QuietProgressCallback
    ns.RunConfigCallback = RunConfigCallback
    ns.StartStepCallback = StartStepCallback
    ns.ProgressCallback = ProgressCallback
    return ns


# ----------------------------------------------------------------------------- optimiser
_LAYER_RE = re.compile(r"\.layers?\.(\d+)\.")


def layerwise_param_groups(
    model: Any, lr: float, decay: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW parameter groups with layer-wise learning-rate decay (``--layerwise-lr-decay``).

    The head and anything above the encoder layers train at ``lr``; layer ``i`` of ``n`` at
    ``lr * decay ** (n - i)``; embeddings at ``lr * decay ** (n + 1)``. Lower layers hold more
    general features, so they move less (ULMFiT / ELECTRA fine-tuning practice). Biases and
    norm weights get no weight decay, as in the Trainer's default grouping.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    layer_of = {n: int(m.group(1)) for n, _ in named if (m := _LAYER_RE.search(n))}
    n_layers = max(layer_of.values(), default=-1) + 1
    groups: dict[tuple[float, float], list[Any]] = {}
    for name, param in named:
        if name in layer_of:
            depth = n_layers - layer_of[name]
        elif "embed" in name:
            depth = n_layers + 1
        else:
            depth = 0
        no_decay = param.ndim < 2 or "norm" in name.lower() or name.endswith(".bias")
        key = (lr * decay**depth, 0.0 if no_decay else weight_decay)
        groups.setdefault(key, []).append(param)
    return [{"params": ps, "lr": g_lr, "weight_decay": wd} for (g_lr, wd), ps in groups.items()]
