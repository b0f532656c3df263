"""Where ``intentkit train`` spends its time outside the training steps, and the cuts (issue #12).

:class:`PhaseTimer` splits a run's wall time into phases (``intentkit.json["training"]
["phases"]``, the model card, the CLI's last line); ``bench/train_overhead.py`` reads them.

**Training steps** = wall time from the first ``on_step_begin`` to the last ``on_step_end``
callback of this process, minus the evaluations and checkpoint saves that ran inside that window
(multi-epoch runs). Everything else is overhead: ``startup`` (process start to ``train()``: the
interpreter, the CLI), ``imports`` (torch, transformers), ``data``, ``tokenise``, ``model_load``
(weights + Trainer construction), ``setup`` (the Trainer's own preparation up to the first
step), ``evaluation``, ``checkpoints`` (saves + loading the best), ``calibration``, ``write``
(artifact + card) and ``other`` (the rest of ``Trainer.train``'s tail).

The cuts, each measured on 1 epoch of clinc150-travel with MiniLM (bench/RESULTS.md):

* the validation split is evaluated in length-sorted order with a sequential sampler, in the
  same batches as :meth:`intentkit.inference.predictor.Predictor.logits`, so the logits of the best
  evaluation *are* the calibration logits: one pass over val instead of three (the Trainer's
  evaluation, ``trainer.evaluate()`` of the best checkpoint again, then the Predictor's);
* the best checkpoint's metrics come from its evaluation's log entry (the same weights, the
  same batches: the same numbers) instead of ``trainer.evaluate()``;
* loading the best checkpoint back is skipped when it is the one just saved from the weights
  in memory (a one-epoch run, or a run whose last evaluation was its best);
* the evaluations also keep the validation rows' CLS features (a forward hook, as
  :func:`intentkit.inference.features.forward_with_cls`), so the out-of-scope fit's pass over val
  is the best evaluation's (:class:`KnownOutputs`), and out-of-scope texts go through the model
  once for both their features and logits;
* no cyclic garbage collection while ``train()`` imports and loads (:func:`paused_gc`): each full
  collection walks every object torch and transformers created (~0.25 s at 450k objects, 8 of
  them before the first step), and those objects are then frozen out of the collections during
  training (accelerate's ``gc.collect()`` at the start of ``Trainer.train`` was 0.3 s).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

#: Phase names in the order they happen (the CLI's line and the model card follow it).
PHASES = (
    "startup",
    "imports",
    "data",
    "tokenise",
    "model_load",
    "setup",
    "train_steps",
    "evaluation",
    "checkpoints",
    "calibration",
    "write",
    "other",
)


def process_start_time() -> float:
    """``time.time()`` at which this process started (psutil), for the ``startup`` phase."""
    import psutil

    return float(psutil.Process().create_time())


class PhaseTimer:
    """Seconds per phase of one ``train()`` call, from marks taken as it goes."""

    def __init__(self, started_at: float | None = None) -> None:
        self.entered = time.time()
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.origin = self.entered
        if started_at is not None and started_at <= self.entered:
            self.seconds["startup"] = self.entered - started_at
            self.origin = started_at
        self._last = self.entered

    def mark(self, phase: str) -> None:
        """Charge the time since the previous mark to ``phase``."""
        now = time.time()
        self.seconds[phase] += now - self._last
        self._last = now

    def charge_trainer(self, trainer: Any) -> None:
        """Split the time since the last mark (``Trainer.train``) by the trainer's own clocks.

        ``trainer`` is built by :func:`lean_trainer_class`: it records the step window and the
        intervals spent evaluating and saving/loading checkpoints.
        """
        now = time.time()
        first, last = trainer.step_window
        evals, ckpts = trainer.eval_intervals, trainer.checkpoint_intervals
        self.seconds["evaluation"] += sum(b - a for a, b in evals)
        self.seconds["checkpoints"] += sum(b - a for a, b in ckpts)
        if first is None or last is None:  # no step ran (a resume of a finished run)
            rest = now - self._last - sum(b - a for a, b in evals + ckpts)
            self.seconds["other"] += max(0.0, rest)
        else:
            inside = sum(
                min(b, last) - max(a, first) for a, b in evals + ckpts if a < last and b > first
            )
            self.seconds["setup"] += first - self._last
            self.seconds["train_steps"] += (last - first) - max(0.0, inside)
            after = sum(b - max(a, last) for a, b in evals + ckpts if b > last)
            self.seconds["other"] += max(0.0, now - last - after)
        self._last = now

    def as_dict(self) -> dict[str, float]:
        """Rounded seconds per phase plus ``total_s`` and ``outside_train_steps_share``."""
        total = sum(self.seconds.values())
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        out["total_s"] = round(total, 3)
        out["outside_train_steps_share"] = round(1 - self.seconds["train_steps"] / total, 4)
        return out


def summary_line(phases: dict[str, float]) -> str:
    """One line for the end of ``intentkit train``: the share outside steps, then each phase."""
    parts = [f"{k} {phases[k]:.1f}s" for k in PHASES if phases.get(k, 0.0) >= 0.05]
    share = phases.get("outside_train_steps_share", 0.0)
    return (
        f"time: {phases.get('total_s', 0.0):.1f}s, {share:.0%} outside training steps "
        f"({', '.join(parts)})"
    )


def sort_by_length(dataset: Any) -> tuple[Any, np.ndarray]:
    """``dataset`` rows in ascending token length (stable, as the Predictor batches) + order.

    Row ``i`` of the result is row ``order[i]`` of ``dataset``.
    """
    order = np.argsort(np.asarray(dataset["length"]), kind="stable")
    return dataset.select(order.tolist()), order


def best_step(trainer: Any) -> int | None:
    """Global step of the best checkpoint (``checkpoint-N``), None when there is none."""
    best = trainer.state.best_model_checkpoint
    if not best:
        return None
    try:
        return int(str(best).rstrip("/").rsplit("-", 1)[-1])
    except ValueError:
        return None


def best_scores(trainer: Any, keys: Sequence[str]) -> dict[str, float] | None:
    """The best checkpoint's validation metrics from its evaluation's log entry.

    The Trainer scored exactly those weights on the same batches when it chose them, so this
    equals ``trainer.evaluate()`` after ``load_best_model_at_end`` without a second pass over
    val (measured: 1 of 3 passes). None when the entry is missing (then evaluate()).
    """
    step = best_step(trainer)
    if step is None:
        return None
    for entry in reversed(trainer.state.log_history):
        if entry.get("step") == step and all(f"eval_{k}" in entry for k in keys):
            return {k: float(entry[f"eval_{k}"]) for k in keys}
    return None


def best_val_logits(trainer: Any, order: np.ndarray) -> np.ndarray | None:
    """Validation logits of the best checkpoint in the original row order, else None.

    Kept by :func:`lean_trainer_class`'s evaluation loop; valid only when its batches are the
    Predictor's (``trainer.same_batches_as_predictor``), so the calibration sees the very
    logits ``Predictor.logits`` would compute.
    """
    return _best_in_row_order(trainer, trainer.eval_logits, order)


def best_val_features(trainer: Any, order: np.ndarray) -> np.ndarray | None:
    """Validation CLS features of the best checkpoint in the original row order, else None.

    Kept next to the logits of :func:`best_val_logits` when the trainer was built with
    ``keep_features=True``, under the same condition (the Predictor's batches).
    """
    return _best_in_row_order(trainer, trainer.eval_features, order)


def _best_in_row_order(
    trainer: Any, kept: dict[int, np.ndarray], order: np.ndarray
) -> np.ndarray | None:
    """``kept[best step]`` (rows in length-sorted evaluation order) back in the original row
    order, or None without a best step or when the batches were not the Predictor's."""
    step = best_step(trainer)
    rows = kept.get(step) if step is not None else None
    if rows is None or not trainer.same_batches_as_predictor:
        return None
    result = np.empty_like(rows)
    result[order] = rows
    return result


class KnownOutputs:
    """The Predictor, with ``features``/``logits`` of texts it has already run answered again.

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


@contextmanager
def paused_gc() -> Iterator[Callable[[], None]]:
    """No cyclic garbage collection until the yielded ``settle()``; restored on the way out.

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


def lean_trainer_class(base: type) -> type:
    """``base`` (the weighted-loss Trainer) with the cuts above and the phase clocks."""
    import torch
    from transformers import TrainerCallback

    class StepWindowCallback(TrainerCallback):
        """First ``on_step_begin`` and last ``on_step_end`` of this process (wall clock)."""

        def __init__(self, owner: Any) -> None:
            self.owner = owner

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.owner.step_window[0] is None:
                self.owner.step_window[0] = time.time()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.owner.step_window[1] = time.time()

    class LeanTrainer(base):  # type: ignore[misc, valid-type]
        """One pass over val per evaluation, logits kept for calibration, clocks per phase."""

        def __init__(
            self,
            *args: Any,
            predictor_batches: bool = True,
            world_size: int = 1,
            keep_features: bool = False,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.step_window: list[float | None] = [None, None]
            self.eval_intervals: list[tuple[float, float]] = []
            self.checkpoint_intervals: list[tuple[float, float]] = []
            self.eval_logits: dict[int, np.ndarray] = {}
            self.eval_features: dict[int, np.ndarray] = {}
            self.world_size = world_size
            # Batches equal the Predictor's only on one process and without pad rounding
            # (pad_to_multiple_of=8 on CUDA); otherwise calibration recomputes its logits.
            self.same_batches_as_predictor = predictor_batches and world_size == 1
            # The out-of-scope fit reads val CLS features: keep them from each evaluation.
            self.keep_features = keep_features and self.same_batches_as_predictor
            self.add_callback(StepWindowCallback(self))

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            # The length-grouped sampler shuffles ties and sorts longest first; the dataset is
            # pre-sorted like the Predictor's batches, so read it in order.
            if self.world_size == 1 and eval_dataset is not None:
                return torch.utils.data.SequentialSampler(eval_dataset)
            return super()._get_eval_sampler(eval_dataset)

        def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
            started = time.time()
            cls: list[np.ndarray] = []
            handle = None
            if self.keep_features:
                # last_hidden_state[:, 0] of each batch, as forward_with_cls reads it.
                handle = self.model.base_model.register_forward_hook(
                    lambda _m, _i, out: cls.append(out[0][:, 0].float().cpu().numpy())
                )
            try:
                output = super().evaluation_loop(*args, **kwargs)
            finally:
                if handle is not None:
                    handle.remove()
            step = int(self.state.global_step)
            best = best_step(self)
            # Keep only this evaluation's outputs and the best so far (a few hundred KB).
            self.eval_logits = {k: v for k, v in self.eval_logits.items() if k == best}
            self.eval_features = {k: v for k, v in self.eval_features.items() if k == best}
            if output.predictions is not None:
                preds = output.predictions
                logits = np.asarray(preds[0] if isinstance(preds, tuple) else preds)
                self.eval_logits[step] = logits
                if cls and sum(len(c) for c in cls) == len(logits):
                    self.eval_features[step] = np.concatenate(cls)
            self.eval_intervals.append((started, time.time()))
            return output

        def _save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
            started = time.time()
            super()._save_checkpoint(*args, **kwargs)
            self.checkpoint_intervals.append((started, time.time()))

        def _load_best_model(self) -> None:
            # The best checkpoint was saved from the weights in memory at this very step:
            # reading it back changes nothing (measured ~0.4 s for MiniLM).
            if best_step(self) == int(self.state.global_step):
                return
            started = time.time()
            super()._load_best_model()
            self.checkpoint_intervals.append((started, time.time()))

    return LeanTrainer


def finish(out: Any, meta: dict[str, Any], timer: PhaseTimer, render_card: Any) -> dict[str, Any]:
    """Charge the artifact writing to ``write`` and record the phases in the written artifact.

    ``intentkit.json`` and ``README.md`` are rewritten (atomically, a few ms) because the
    phases include the writing of the artifact that holds them. Returns the phases.
    """
    from pathlib import Path

    from intentkit.artifact import FORMAT_VERSION, META_FILE
    from intentkit.fsutil import atomic_write_json, atomic_write_text

    timer.mark("write")
    phases = timer.as_dict()
    meta["training"]["phases"] = phases
    atomic_write_text(Path(out) / "README.md", render_card(meta))
    atomic_write_json(Path(out) / META_FILE, {"format_version": FORMAT_VERSION, **meta})
    return phases
