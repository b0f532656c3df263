"""The ``TrainerCallback``s ``train()`` adds: progress, the config in every checkpoint, the step
a process started at, and the phase clock.

Imports transformers: ``train.py`` imports this module inside its functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers.trainer_callback import ProgressCallback, TrainerCallback

from intentkit.training.checkpoints import RUN_CONFIG_FILE
from intentkit.training.timing import TrainerClock


class QuietProgressCallback(ProgressCallback):
    """tqdm bar with the running loss and learning rate as postfix; one line per eval, and one
    saying where a resumed run picks up."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """Open the bar; on ``--resume`` (the checkpoint's state is loaded), say from where."""
        super().on_train_begin(args, state, control, **kw)
        if state.is_world_process_zero and state.global_step > 0:
            self.training_bar.write(
                f"resumed from step {state.global_step} of {state.max_steps} "
                f"(epoch {state.epoch or 0:.2f})"
            )

    def on_prediction_step(self, *args: Any, **kw: Any) -> None:
        """No second bar for the (short) evaluation passes."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        """Loss and learning rate on the bar; an evaluation's metrics on a line of their own."""
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
        """Write the config into the checkpoint just saved (rank 0)."""
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
        """Record the global step of this process's first step."""
        if self.step is None:
            self.step = int(state.global_step)


class ClockCallback(TrainerClock, TrainerCallback):
    """:class:`intentkit.training.timing.TrainerClock`, fed by the Trainer's events."""
