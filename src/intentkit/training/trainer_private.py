"""The two private ``transformers.Trainer`` methods intentkit overrides, and their tripwire.

Everything else :class:`intentkit.training.trainer.IntentTrainer` changes goes through public
hooks (``compute_loss``, ``compute_metrics``, callbacks, ``TrainingArguments``). These two have
none:

* ``_get_eval_sampler``: ``train_sampling_strategy="group_by_length"`` length-groups (and
  shuffles) the evaluation rows too; ours are pre-sorted like the Predictor's batches and must
  be read in order, so an evaluation's logits and CLS features are the ones the calibration
  would compute (one pass over val instead of three, bench/RESULTS.md "train overhead").
* ``_load_best_model``: with ``load_best_model_at_end`` the Trainer reads the best checkpoint
  back even when it was saved from the weights in memory at the last step (a one-epoch run);
  skipping that read saves ~0.4 s for MiniLM and changes no weight.

:data:`EXPECTED` writes down the signatures relied on and :func:`check` compares them with the
installed transformers; ``tests/test_trainer_private.py`` runs it and exercises both overrides,
so a release that renames or changes either fails there with the method's name. At run time a
changed ``_get_eval_sampler`` cannot silently corrupt calibration: the evaluation outputs are
reused only when this override ran (:attr:`PrivateOverrides.sequential_eval`).
"""

from __future__ import annotations

import inspect
from typing import Any

#: Private Trainer methods overridden here -> the parameter names they had when written.
EXPECTED: dict[str, tuple[str, ...]] = {
    "_get_eval_sampler": ("self", "eval_dataset"),
    "_load_best_model": ("self",),
}


def check(trainer_cls: type) -> None:
    """Raise RuntimeError naming each method of :data:`EXPECTED` that ``trainer_cls`` (the
    installed ``transformers.Trainer``) no longer defines with those parameters."""
    problems = []
    for name, params in EXPECTED.items():
        method = getattr(trainer_cls, name, None)
        if method is None:
            problems.append(f"transformers.Trainer.{name} is gone")
            continue
        found = tuple(inspect.signature(method).parameters)
        if found != params:
            problems.append(f"transformers.Trainer.{name}{found} != {name}{params}")
    if problems:
        raise RuntimeError(
            "intentkit.training.trainer_private overrides private Trainer methods that changed: "
            + "; ".join(problems)
            + ". Adapt the override (or drop it if a public hook now exists)."
        )


class PrivateOverrides:
    """Mixin placed before ``transformers.Trainer`` in the Trainer subclass's bases.

    The subclass provides ``best_step()`` (the best checkpoint's global step, or None).
    """

    #: True once an evaluation dataloader was built with the sequential sampler below.
    sequential_eval = False

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        # One process: read val in its (length-sorted) order, as the Predictor batches it.
        if self.args.world_size == 1 and eval_dataset is not None:  # type: ignore[attr-defined]
            import torch

            self.sequential_eval = True
            return torch.utils.data.SequentialSampler(eval_dataset)
        return super()._get_eval_sampler(eval_dataset)  # type: ignore[misc]

    def _load_best_model(self) -> None:
        # The best checkpoint was saved from the weights in memory at this very step.
        if self.best_step() == int(self.state.global_step):  # type: ignore[attr-defined]
            return
        super()._load_best_model()  # type: ignore[misc]
