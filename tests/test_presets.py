"""Every shipped preset loads against the current config classes (cf. litgpt test_config_hub)."""

from __future__ import annotations

from pathlib import Path

import pytest

from intentkit.config import DataConfig, ServeConfig, TrainConfig, build, list_presets, load_preset

SECTIONS = {"data": DataConfig, "train": TrainConfig, "serve": ServeConfig}


@pytest.mark.parametrize("name", list_presets())
def test_preset_builds_every_section(name: str) -> None:
    doc = load_preset(name)
    assert doc.get("description"), f"preset {name} needs a description"
    present = [s for s in SECTIONS if s in doc]
    assert present, f"preset {name} has no config section"
    for section in present:
        cfg = build(SECTIONS[section], doc[section])
        for key, value in doc[section].items():
            assert getattr(cfg, key) == value, (name, section, key)
    if "train" in doc:
        from intentkit.training.setup import training_arguments

        cfg = build(TrainConfig, doc["train"])
        kwargs = training_arguments(cfg, Path("/tmp/x"), device="cpu", bf16=False)
        from transformers import TrainingArguments

        TrainingArguments(**kwargs)  # every mapped name is accepted by this transformers


def test_seed_preset_maps_onto_reference_trainer_args() -> None:
    """seed-bitext-travel reproduces the reference recipe's Trainer settings exactly."""
    from intentkit.training.setup import training_arguments

    cfg = build(TrainConfig, load_preset("seed-bitext-travel")["train"])
    assert cfg.model == "modernbert-base" and cfg.max_length == 64 and cfg.dropout == 0.3
    assert (cfg.patience, cfg.early_stopping_threshold) == (5, 0.005)
    args = training_arguments(cfg, Path("/tmp/x"), device="cuda", bf16=True)
    assert args["num_train_epochs"] == 2
    assert args["per_device_train_batch_size"] == 32
    assert args["per_device_eval_batch_size"] == 16
    assert args["learning_rate"] == 5e-5
    assert args["warmup_steps"] == 500 and isinstance(args["warmup_steps"], int)  # steps, not ratio
    assert args["weight_decay"] == 0.2
    assert args["gradient_accumulation_steps"] == 2
    assert args["metric_for_best_model"] == "weighted_f1" and args["load_best_model_at_end"]
    assert args["eval_strategy"] == args["save_strategy"] == "epoch"
    assert args["save_total_limit"] == 2
    assert args["seed"] == 42


def test_cpu_fast_preset_is_fp32_sized_for_cpu() -> None:
    from intentkit.training.setup import training_arguments

    cfg = build(TrainConfig, load_preset("cpu-fast")["train"])
    args = training_arguments(cfg, Path("/tmp/x"), device="cpu", bf16=False)
    assert args["use_cpu"] and not args["bf16"]
    assert not args.get("activation_checkpointing", args.get("gradient_checkpointing"))
    assert args["train_sampling_strategy"] == "group_by_length"
    assert isinstance(args["warmup_steps"], float)  # a ratio
