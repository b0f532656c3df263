"""``--objective ce|contrastive|auto`` and ``--supcon-weight`` on the tiny ModernBERT fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from intentkit.data.sample import sample
from intentkit.training.objectives import choose_objective, sentence_pairs, supcon_loss
from train_helpers import FAST, assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def kw5(kw_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The keyword fixture sampled to 5 train (and val) rows per label."""
    out = tmp_path_factory.mktemp("kw5") / "data"
    sample(kw_data, out, per_label=5, seed=0)
    return out


def test_contrastive_runs_through_the_cli_and_writes_a_complete_artifact(
    kw5: Path, tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    from intentkit.cli import main

    out = tmp_path / "model"
    code = main(["train", "--data", str(kw5), "--out", str(out), "--model", str(tiny_model_dir),
                 "--objective", "auto", "--pairs", "32", "--epochs", "2", "--batch-size", "16",
                 "--lr", "1e-2", "--seed", "0"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "objective: contrastive (auto: smallest class has 5 train rows (<= 32))" in printed
    for name in ("config.json", "model.safetensors", "tokenizer.json", "intentkit.json",
                 "oos_stats.safetensors", "README.md"):  # fmt: skip
        assert (out / name).is_file(), name
    meta = json.loads((out / "intentkit.json").read_text())
    training = meta["training"]
    assert training["objective"] == "contrastive"
    assert training["contrastive"]["pairs"] == 32 and training["contrastive"]["steps"] == 2
    assert training["contrastive"]["positive_pairs"] == 16
    assert training["phases"]["pair_training"] > 0
    assert meta["train_config"]["objective"] == "auto"
    assert meta["calibration"]["temperature"] == 1.0  # 15 val rows: the fallback
    assert meta["calibration"]["temperature_rule"].startswith("fixed at 1: 15 val rows")
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(out), device="cpu")
    assert clf("book a flight to paris")[0]["label"] in meta["labels"]


def test_auto_picks_ce_on_the_full_fixture(kw_data: Path) -> None:
    from intentkit.data.dataset import load_prepared

    objective, reason = choose_objective("auto", load_prepared(kw_data).train["label"])
    assert objective == "ce" and "(> 32)" in reason
    assert choose_objective("auto", ["a"] * 32 + ["b"] * 40)[0] == "contrastive"
    assert choose_objective("ce", ["a"] * 3 + ["b"] * 3)[0] == "ce"


def test_auto_records_ce_on_the_full_fixture(kw_model: Path) -> None:
    # kw_model is trained with the default objective; the record says so and why.
    training = json.loads((kw_model / "intentkit.json").read_text())["training"]
    assert training["objective"] == "ce" and "contrastive" not in training


def test_contrastive_beats_chance_on_a_separable_few_shot_set(
    kw5: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from intentkit.evaluation.evaluate import evaluate
    from intentkit.training.train import train

    out = train(kw5, tmp_path / "m", model=str(tiny_model_dir), objective="contrastive",
                pairs=160, pair_lr=1e-3, **{**FAST, "epochs": 40})  # fmt: skip
    report = evaluate(out, kw5, split="test", out=tmp_path / "eval", reject=False)
    assert report["accuracy"] > 0.6, report["accuracy"]  # chance is 1/3


def test_sentence_pairs_are_balanced_and_respect_labels() -> None:
    y = np.array([0, 0, 0, 1, 1, 2])  # label 2 has one row: its positive is itself
    a, b, score = sentence_pairs(y, 1001, np.random.default_rng(0))
    assert len(a) == 1001 and score.sum() == 501
    pos = score == 1
    assert (y[a[pos]] == y[b[pos]]).all() and (y[a[~pos]] != y[b[~pos]]).all()
    assert (a[pos] != b[pos])[y[a[pos]] != 2].all()  # other rows, never the anchor itself
    again = sentence_pairs(y, 1001, np.random.default_rng(0))
    assert all((x == z).all() for x, z in zip((a, b, score), again, strict=True))


def _supcon_reference(z: np.ndarray, y: np.ndarray, t: float) -> float:
    """Khosla et al. 2020 eq. 2, written out loop by loop."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        pos = [p for p in others if y[p] == y[i]]
        if not pos:
            continue
        denom = sum(np.exp(z[i] @ z[a] / t) for a in others)
        losses.append(-np.mean([np.log(np.exp(z[i] @ z[p] / t) / denom) for p in pos]))
    return float(np.mean(losses))


def test_supcon_matches_a_reference_computation() -> None:
    import torch

    rng = np.random.default_rng(1)
    z = rng.normal(size=(7, 5))
    y = np.array([0, 1, 0, 2, 1, 0, 3])  # label 2 and 3: anchors without a positive
    got = supcon_loss(torch.tensor(z), torch.tensor(y), temperature=0.1)
    assert got.item() == pytest.approx(_supcon_reference(z, y, 0.1), rel=1e-5)


def test_supcon_weight_changes_the_training_loss(
    kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import torch

    from intentkit.training.prepare import prepare_data
    from intentkit.training.timing import PhaseTimer
    from intentkit.training.train import build_trainer

    losses = {}
    for w in (0.0, 0.5):
        run = prepare_data(kw_data, tmp_path / f"m{w}", config=None, preset=None,
                           force=False, resume=False, checkpoint_dir=None,
                           overrides={"model": str(tiny_model_dir), "supcon_weight": w,
                                      "seed": 0}, timer=PhaseTimer())  # fmt: skip
        trainer = build_trainer(run, force=False, callbacks=None)
        batch = trainer.data_collator([run.train_set[i] for i in range(16)])
        trainer.model.train()
        torch.manual_seed(0)
        losses[w] = trainer.compute_loss(trainer.model, batch)
        if w:
            from intentkit.inference.features import forward_with_cls

            torch.manual_seed(0)
            logits, cls = forward_with_cls(
                trainer.model, batch["input_ids"], batch["attention_mask"]
            )
            ce = torch.nn.functional.cross_entropy(logits, batch["labels"])
            expected = ce + w * supcon_loss(cls, batch["labels"])
            assert losses[w].item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses[0.5].item() > losses[0.0].item() + 1e-3


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--objective", "triplet", "--objective must be one of ce, contrastive, auto"),
        ("--supcon-weight", "-1", "--supcon-weight must be >= 0"),
        ("--pairs", "1", "--pairs must be at least 2"),
    ],
)
def test_bad_objective_flags_are_one_line_exit_2(
    kw5: Path, tmp_path: Path, capsys, flag: str, value: str, needle: str
) -> None:
    code, err = run_cli(capsys, "train", "--data", str(kw5), "--out", str(tmp_path / "m"),
                        flag, value)  # fmt: skip
    assert_one_line_error(code, err, needle)
