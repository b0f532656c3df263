"""The two private Trainer methods intentkit overrides (training/trainer_private.py) still exist,
with the signatures written down, and the installed transformers still calls them.

When one of these fails after a transformers upgrade, the message names the method: adapt
``intentkit/training/trainer_private.py`` (or drop the override if a public hook now exists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def test_installed_trainer_has_the_private_methods_as_written() -> None:
    from transformers import Trainer

    from intentkit.training.trainer_private import EXPECTED, check

    check(Trainer)  # raises RuntimeError naming the method when a release changed it
    assert set(EXPECTED) == {"_get_eval_sampler", "_load_best_model"}


def test_check_names_a_changed_or_missing_method() -> None:
    from intentkit.training.trainer_private import check

    class Renamed:
        def _get_eval_sampler(self, dataset: Any, extra: int = 0) -> None: ...

    with pytest.raises(RuntimeError) as err:
        check(Renamed)
    assert "transformers.Trainer._get_eval_sampler('self', 'dataset', 'extra')" in str(err.value)
    assert "transformers.Trainer._load_best_model is gone" in str(err.value)


def _trainer(tiny_model_dir: Path, out: Path, **args: Any) -> Any:
    """An IntentTrainer on the tiny model: 12 rows of 12 distinct lengths, length-grouped."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    from intentkit.training.trainer import IntentTrainer, PadCollator

    ids = [[101, *range(1000, 1000 + n), 102] for n in range(12)]
    data = Dataset.from_dict(
        {"input_ids": ids, "labels": [i % 2 for i in range(12)], "length": [len(x) for x in ids]}
    )
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    defaults = {
        "output_dir": str(out),
        "per_device_eval_batch_size": 4,
        "per_device_train_batch_size": 4,
        "train_sampling_strategy": "group_by_length",
        "remove_unused_columns": False,
        "use_cpu": True,
        "report_to": [],
        "disable_tqdm": True,
    }
    return IntentTrainer(
        model=model,
        args=TrainingArguments(**{**defaults, **args}),
        data_collator=PadCollator(0),
        train_dataset=data,
        eval_dataset=data,
    )


def test_eval_sampler_override_reads_val_in_order(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path)
    assert not trainer.same_batches_as_predictor  # nothing built yet
    rows = [row for batch in trainer.get_eval_dataloader() for row in batch["input_ids"].tolist()]
    assert trainer.sequential_eval, "transformers no longer calls Trainer._get_eval_sampler"
    lengths = [sum(1 for t in row if t) for row in rows]
    # In order: the length-grouped sampler would shuffle and put the longest batch first.
    assert lengths == list(range(2, 14)), "Trainer._get_eval_sampler's result is not used"
    assert trainer.same_batches_as_predictor


def test_best_model_reload_is_skipped_only_when_the_best_is_in_memory(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import Trainer

    calls: list[int] = []
    real = Trainer._load_best_model

    def spy(self: Any) -> None:
        calls.append(int(self.state.global_step))
        real(self)

    monkeypatch.setattr(Trainer, "_load_best_model", spy)
    trainer = _trainer(
        tiny_model_dir, tmp_path, max_steps=3, eval_strategy="steps", eval_steps=1,
        save_strategy="steps", save_steps=1, load_best_model_at_end=True,
        metric_for_best_model="accuracy", greater_is_better=True,
    )  # fmt: skip
    trainer.compute_metrics = lambda _p: {"accuracy": 1.0 if trainer.state.global_step == 3 else 0}
    trainer.train()
    assert trainer.best_step() == 3
    assert calls == [], "the best checkpoint (the last step) was read back"

    # A best checkpoint older than the weights in memory is read back by the Trainer's method.
    trainer = _trainer(
        tiny_model_dir, tmp_path / "again", max_steps=3, eval_strategy="steps", eval_steps=1,
        save_strategy="steps", save_steps=1, load_best_model_at_end=True,
        metric_for_best_model="accuracy", greater_is_better=True,
    )  # fmt: skip
    trainer.compute_metrics = lambda _p: {"accuracy": 1.0 if trainer.state.global_step == 1 else 0}
    trainer.train()
    assert trainer.best_step() == 1
    assert calls == [3], "transformers no longer calls Trainer._load_best_model at the end"
