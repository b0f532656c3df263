"""Where ``intentkit train`` spends its wall time, phase by phase (issue #12); timing only.

:class:`PhaseTimer` splits a run's wall time into phases (``intentkit.json["training"]
["phases"]``, the model card, the CLI's last line); ``bench/train_overhead.py`` reads them.

**Training steps** = wall time from the first ``on_step_begin`` to the last ``on_step_end``
callback of this process, minus the evaluations and checkpoint saves that ran inside that window
(multi-epoch runs), plus ``pair_training`` (the contrastive objective's encoder stage, which
steps an optimiser too). Everything else is overhead: ``startup`` (process start to ``train()``: the
interpreter, the CLI), ``imports`` (torch, transformers), ``data``, ``tokenise``, ``model_load``
(weights + Trainer construction), ``setup`` (the Trainer's own preparation up to the first
step), ``evaluation``, ``checkpoints`` (saves + loading the best), ``calibration``, ``write``
(the artifact) and ``other`` (the rest of ``Trainer.train``'s tail).

:class:`TrainerClock` reads the Trainer's events (``intentkit.training.callbacks.ClockCallback``
feeds it); the cuts these figures measured are described where they are made
(``intentkit.training.trainer``, ``intentkit.training.setup.paused_gc``).
"""

from __future__ import annotations

import time
from typing import Any

#: Phase names in the order they happen (the CLI's line and the model card follow it).
PHASES = (
    "startup",
    "imports",
    "data",
    "tokenise",
    "model_load",
    "pair_training",
    "setup",
    "train_steps",
    "evaluation",
    "checkpoints",
    "calibration",
    "write",
    "other",
)

#: The phases that are training work, not overhead: the share outside them is what #12 cuts.
TRAINING_WORK = ("pair_training", "train_steps")


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

    def charge_trainer(self, clock: TrainerClock) -> None:
        """Split the time since the last mark (``Trainer.train``) by the trainer's own clock."""
        now = time.time()
        first, last = clock.first_step, clock.last_step
        evals, ckpts = clock.evaluations, clock.checkpoints
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
        work = sum(self.seconds[k] for k in TRAINING_WORK)
        out["outside_train_steps_share"] = round(1 - work / total, 4)
        return out


def summary_line(phases: dict[str, float]) -> str:
    """One line for the end of ``intentkit train``: the share outside steps, then each phase."""
    parts = [f"{k} {phases[k]:.1f}s" for k in PHASES if phases.get(k, 0.0) >= 0.05]
    share = phases.get("outside_train_steps_share", 0.0)
    return (
        f"time: {phases.get('total_s', 0.0):.1f}s, {share:.0%} outside training steps "
        f"({', '.join(parts)})"
    )


class TrainerClock:
    """Wall-clock times of one ``Trainer.train`` call, from the Trainer's callback events.

    The methods are ``TrainerCallback`` events (``ClockCallback`` mixes this class into one).
    An evaluation runs from the step (or its training log) before it to ``on_evaluate``; a
    checkpoint save from ``on_evaluate`` (or the step) to ``on_save``; the best checkpoint's
    reload from the final training log to ``on_train_end``. Evaluation logs move no boundary.
    """

    def __init__(self) -> None:
        self.first_step: float | None = None
        self.last_step: float | None = None
        self.evaluations: list[tuple[float, float]] = []
        self.checkpoints: list[tuple[float, float]] = []
        self._boundary = time.time()

    def _interval(self) -> tuple[float, float]:
        now = time.time()
        begun, self._boundary = self._boundary, now
        return begun, now

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """The first step of this process begins."""
        if self.first_step is None:
            self.first_step = time.time()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """A step ended: the training steps run until here."""
        self.last_step = self._boundary = time.time()

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        """A training log (not an evaluation's) is where an evaluation or a save begins."""
        if not any(str(k).startswith("eval_") for k in logs or {}):
            self._boundary = time.time()

    def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """An evaluation ended."""
        self.evaluations.append(self._interval())

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """A checkpoint save ended."""
        self.checkpoints.append(self._interval())

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """Training ended: the time since the final log went to reloading the best checkpoint."""
        self.checkpoints.append(self._interval())
