"""intentkit's one Trainer subclass and what it is built from.

:class:`IntentTrainer` is ``transformers.Trainer`` with a weighted, smoothed cross-entropy loss
and evaluations whose outputs (logits, and CLS features for the out-of-scope fit) are kept for
the best checkpoint, so calibration reuses them instead of running val again. Beside it: the
dynamic-padding collator, class weights, the metrics hook, the log history kept in the
artifact and layer-wise learning rates. The callbacks are in ``callbacks.py``; the two private
Trainer methods it overrides in ``trainer_private.py``.

Imports torch and transformers: ``train.py`` imports this module inside its functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import Trainer

from intentkit.evaluation.metrics import classification_metrics
from intentkit.inference.features import forward_with_cls
from intentkit.training.objectives import supcon_loss
from intentkit.training.trainer_private import PrivateOverrides


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


def sort_by_length(dataset: Any) -> tuple[Any, np.ndarray]:
    """``dataset`` rows in ascending token length (stable, as the Predictor batches) + order.

    Row ``i`` of the result is row ``order[i]`` of ``dataset``.
    """
    order = np.argsort(np.asarray(dataset["length"]), kind="stable")
    return dataset.select(order.tolist()), order


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


# ----------------------------------------------------------------------------- the Trainer
class IntentTrainer(PrivateOverrides, Trainer):
    """``Trainer`` with ``F.cross_entropy(weight=..., label_smoothing=...)`` as its loss and the
    outputs of its best evaluation kept.

    Each evaluation's outputs reach :meth:`score_evaluation` (the ``compute_metrics`` hook),
    which keeps them for the current step and the best so far; with ``keep_features`` the
    evaluation's forward also returns each row's CLS feature (:func:`forward_with_cls`). They
    are reused by calibration only when the batches were the Predictor's
    (:attr:`same_batches_as_predictor`).
    """

    # Our loss is a per-batch mean, so the Trainer must still divide by grad-accum steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: Any,
        loss_weights: np.ndarray | None = None,
        label_smoothing: float = 0.0,
        predictor_batches: bool = True,
        keep_features: bool = False,
        supcon_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, compute_metrics=self.score_evaluation, **kwargs)
        # Older transformers 5.x (no loss_is_scaled_for_ga) skip the grad-accum division
        # for models that accept loss kwargs; ours is a plain mean, so it must be divided.
        self.model_accepts_loss_kwargs = False
        self.loss_weights = None if loss_weights is None else torch.tensor(loss_weights)
        self.label_smoothing = float(label_smoothing)
        #: ``--supcon-weight``: weight of the SupCon term on training batches (0 = off).
        self.supcon_weight = float(supcon_weight)
        # Batches equal the Predictor's only on one process and without pad rounding
        # (pad_to_multiple_of=8 on CUDA); otherwise calibration recomputes its logits.
        self.predictor_batches = predictor_batches and self.args.world_size == 1
        # The out-of-scope fit reads val CLS features: keep them from each evaluation.
        self.keep_features = keep_features and self.predictor_batches
        #: {global step: (logits, CLS features or None)} of the best and the latest evaluation.
        self.evaluations: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    @property
    def same_batches_as_predictor(self) -> bool:
        """Whether evaluations ran the Predictor's batches (one process, val read in order)."""
        return self.predictor_batches and self.sequential_eval

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """Weighted, smoothed cross-entropy over the batch (mean), plus ``supcon_weight`` x
        :func:`intentkit.training.objectives.supcon_loss` of the batch's CLS features when
        training with ``--supcon-weight`` (evaluation losses stay cross-entropy, comparable
        across runs).

        ``return_outputs`` is the evaluation's call (``prediction_step``): with
        ``keep_features`` its outputs also hold ``cls``, which the Trainer gathers with the
        logits into the predictions that :meth:`score_evaluation` receives.
        """
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        cls = None
        if not return_outputs and self.supcon_weight > 0:
            logits, cls = forward_with_cls(model, inputs["input_ids"], inputs["attention_mask"])
            outputs: Any = {"logits": logits}
        elif return_outputs and self.keep_features:
            logits, cls = forward_with_cls(model, inputs["input_ids"], inputs["attention_mask"])
            outputs = {"logits": logits, "cls": cls.float()}
        else:
            outputs = model(**inputs)
            logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        weight = None
        if self.loss_weights is not None:
            weight = self.loss_weights.to(device=logits.device, dtype=torch.float32)
        # fp32 loss even under bf16 autocast: log-softmax over many classes loses precision.
        loss = torch.nn.functional.cross_entropy(
            logits.float(), labels, weight=weight, label_smoothing=self.label_smoothing
        )
        if cls is not None and not return_outputs:
            loss = loss + self.supcon_weight * supcon_loss(cls, labels)
        return (loss, outputs) if return_outputs else loss

    def score_evaluation(self, eval_pred: Any) -> dict[str, float]:
        """The ``compute_metrics`` hook: keep this evaluation's outputs, then score them."""
        preds = eval_pred.predictions
        logits, cls = preds if isinstance(preds, tuple) else (preds, None)
        best = self.best_step()
        # Keep only this evaluation's outputs and the best so far (a few hundred KB).
        self.evaluations = {k: v for k, v in self.evaluations.items() if k == best}
        self.evaluations[int(self.state.global_step)] = (np.asarray(logits), cls)
        return compute_metrics(eval_pred)

    def best_step(self) -> int | None:
        """Global step of the best checkpoint (``checkpoint-N``), None when there is none."""
        best = self.state.best_model_checkpoint
        if not best:
            return None
        try:
            return int(str(best).rstrip("/").rsplit("-", 1)[-1])
        except ValueError:
            return None

    def best_metrics(self, keys: Sequence[str]) -> dict[str, float] | None:
        """The best checkpoint's validation metrics from its evaluation's log entry.

        The Trainer scored exactly those weights on the same batches when it chose them, so
        this equals ``evaluate()`` after ``load_best_model_at_end`` without a second pass over
        val (measured: 1 of 3 passes). None when the entry is missing (then evaluate()).
        """
        step = self.best_step()
        if step is None:
            return None
        for entry in reversed(self.state.log_history):
            if entry.get("step") == step and all(f"eval_{k}" in entry for k in keys):
                return {k: float(entry[f"eval_{k}"]) for k in keys}
        return None

    def best_validation(self, order: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(logits, CLS features)`` of the best evaluation, rows back in val's original order.

        ``order`` is :func:`sort_by_length`'s. Either is None when not kept, or when the
        batches were not the Predictor's (then they are not the logits it would compute).
        """
        step = self.best_step()
        kept = self.evaluations.get(step) if step is not None else None
        if kept is None or not self.same_batches_as_predictor:
            return None, None
        logits, cls = kept
        return _unsort(logits, order), None if cls is None else _unsort(cls, order)


def _unsort(rows: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows in :func:`sort_by_length` order back in the dataset's original order."""
    result = np.empty_like(rows)
    result[order] = rows
    return result


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
