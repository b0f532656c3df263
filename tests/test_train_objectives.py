"""``--objective ce|contrastive|auto`` and ``--supcon-weight`` on the tiny ModernBERT fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from intentkit.data.sample import sample
from intentkit.training.objectives import (
    HEAD_C_GRID,
    PER_CLASS,
    TRAIN_ROWS,
    WITH_NAMES,
    balanced_batches,
    choose_objective,
    label_name_text,
    supcon_loss,
)
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
                 "--objective", "auto", "--pair-epochs", "2", "--batch-size", "16",
                 "--pair-lr", "1e-3", "--seed", "0"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "objective: contrastive (auto: smallest class has 5 train rows (<= 32))" in printed
    for name in ("config.json", "model.safetensors", "tokenizer.json", "intentkit.json",
                 "oos_stats.safetensors", "README.md"):  # fmt: skip
        assert (out / name).is_file(), name
    meta = json.loads((out / "intentkit.json").read_text())
    training = meta["training"]
    assert training["objective"] == "contrastive"
    stage = training["contrastive"]
    # 15 train rows in batches of 16: one step per epoch, two epochs of each step.
    assert stage["align"]["steps"] == 2 and stage["contrast"]["steps"] == 2
    assert stage["align"]["last_epoch_loss"] < stage["align"]["first_loss"]  # CLS moved to mean
    # The head was fitted in closed form (the tiny ModernBERT's classifier is a Linear): no
    # training step ran, and the artifact's validation accuracy is the chosen C's.
    head = training["head"]
    assert head["epochs"] == 0 and training["global_step"] == 0
    assert head["C"] in HEAD_C_GRID and head["rows"] in (TRAIN_ROWS, WITH_NAMES)
    scores = head["val_accuracy_by_rows_and_C"]
    assert set(scores) == {TRAIN_ROWS, WITH_NAMES} and head["label_name_rows"] == 3
    chosen = scores[head["rows"]][f"{head['C']:g}"]
    assert chosen == head["val_accuracy"] == max(max(s.values()) for s in scores.values())
    assert meta["metrics"]["accuracy"] == pytest.approx(chosen, abs=1e-4)
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
                pair_epochs=60, pair_lr=3e-3, **FAST)  # fmt: skip
    report = evaluate(out, kw5, split="test", out=tmp_path / "eval", reject=False)
    assert report["accuracy"] > 0.6, report["accuracy"]  # chance is 1/3


def test_balanced_batches_hold_per_class_rows_of_distinct_labels() -> None:
    y = np.repeat(np.arange(10), 6)
    y[-1] = 10  # label 10 has one row; label 9 five
    batches = balanced_batches(y, 16, 50, np.random.default_rng(0))
    assert len(batches) == 50
    for idx in batches:
        labels, counts = np.unique(y[idx], return_counts=True)
        assert len(labels) == 16 // PER_CLASS  # distinct labels
        assert len(set(idx.tolist())) == len(idx)  # a row at most once per batch
        expected = [min(PER_CLASS, (y == lab).sum()) for lab in labels]
        assert counts.tolist() == expected
    again = balanced_batches(y, 16, 50, np.random.default_rng(0))
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))


def test_contrastive_without_a_linear_classifier_trains_the_head_alone(
    kw5: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """Where the head is not a Linear (RoBERTa's), the fit phase trains it, encoder frozen."""
    import torch
    from safetensors.torch import load_file

    from intentkit.training import objectives
    from intentkit.training.train import train

    monkeypatch.setattr(objectives, "fit_linear_head", lambda *a, **k: None)
    before: dict[str, torch.Tensor] = {}
    real_freeze = objectives.freeze_encoder

    def freeze(model):  # the weights as step 3 starts: after the contrastive steps
        before.update({n: p.detach().clone() for n, p in model.named_parameters()})
        return real_freeze(model)

    monkeypatch.setattr(objectives, "freeze_encoder", freeze)
    out = train(kw5, tmp_path / "m", model=str(tiny_model_dir), objective="contrastive",
                pair_epochs=1, head_epochs=2, head_lr=1e-2,
                **{**FAST, "warmup_ratio": 0.0})  # step 1 (maybe the best) moves  # fmt: skip
    training = json.loads((out / "intentkit.json").read_text())["training"]
    assert training["head"]["epochs"] == 2 and training["global_step"] > 0
    after = load_file(str(out / "model.safetensors"))
    trainable = set(training["head"]["trainable"])
    assert trainable and all(not n.startswith("model.") for n in trainable)
    changed = {n for n, t in after.items() if n in before and not torch.equal(t, before[n])}
    assert changed and changed <= trainable, changed - trainable


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
        ("--pair-epochs", "0", "--pair-epochs must be at least 1"),
        ("--head-lr", "0", "--head-lr must be positive"),
    ],
)
def test_bad_objective_flags_are_one_line_exit_2(
    kw5: Path, tmp_path: Path, capsys, flag: str, value: str, needle: str
) -> None:
    code, err = run_cli(capsys, "train", "--data", str(kw5), "--out", str(tmp_path / "m"),
                        flag, value)  # fmt: skip
    assert_one_line_error(code, err, needle)


def test_label_name_text_reads_names_as_words() -> None:
    assert label_name_text("card_arrival") == "card arrival"
    assert label_name_text("CardArrival") == "card arrival"
    assert label_name_text("pto-request") == "pto request"
    assert label_name_text("17") == ""  # no letters: no row


class _Words(dict):
    """A tokenizer's batch for :func:`_bag_of_keywords`: word counts as ``input_ids``."""

    def to(self, _device: str) -> _Words:
        return self


KEYWORDS = ["car", "flight", "hotel"]


def _bag_of_keywords(n_labels: int):
    """``(tokenizer, model)``: features are the counts of :data:`KEYWORDS`, a ``Linear`` on top
    (a stand-in encoder whose features a logistic regression can read exactly)."""
    import torch

    def tokenizer(texts, **_kw):
        counts = [[t.split().count(w) for w in KEYWORDS] for t in texts]
        ids = torch.tensor(counts, dtype=torch.float32)
        return _Words(input_ids=ids, attention_mask=torch.ones(len(texts), 1))

    class _BagOfKeywords(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = torch.nn.Linear(len(KEYWORDS), n_labels)

        def forward(self, input_ids, attention_mask):
            return self.classifier(input_ids)

    return tokenizer, _BagOfKeywords()


def test_label_names_teach_the_head_a_label_without_train_rows() -> None:
    """One row per label name (the oos class excepted) is offered to the head; validation keeps
    it when it helps: here ``hotel`` has val rows but no train row, so only its name teaches it."""
    import pandas as pd
    import torch

    from intentkit.training.objectives import fit_linear_head

    labels = ["car", "flight", "hotel", "oos"]
    train = pd.DataFrame({"text": ["rent a car", "car now", "my flight", "flight to rome",
                                   "the weather", "a joke"],
                          "label": ["car", "car", "flight", "flight", "oos", "oos"]})  # fmt: skip
    val = pd.DataFrame({"text": ["a car", "the flight", "hotel in rome", "hotel room", "hi"],
                        "label": ["car", "flight", "hotel", "hotel", "oos"]})  # fmt: skip
    tokenizer, model = _bag_of_keywords(len(labels))
    head = fit_linear_head(model, tokenizer, train, val, labels, 16, "cpu", oos_label="oos")
    assert head is not None and head["label_name_rows"] == 3  # car, flight, hotel; not oos
    assert head["rows"] == WITH_NAMES and head["val_accuracy"] == 1.0
    assert max(head["val_accuracy_by_rows_and_C"][TRAIN_ROWS].values()) <= 0.6
    with torch.no_grad():
        answers = model(tokenizer(["hotel", "car", "nothing"])["input_ids"], None).argmax(1)
    assert [labels[i] for i in answers] == ["hotel", "car", "oos"]


def test_the_head_fit_reaches_a_dense_then_out_proj_head(kw_data: Path) -> None:
    """RoBERTa-style heads (dense -> tanh -> ``out_proj``; MPNet, ELECTRA too) get the same
    closed-form head as BERT's: the regression is fitted on ``out_proj``'s input and written
    there, so the model answers what that regression answers, row for row."""
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoTokenizer, MPNetConfig, MPNetForSequenceClassification

    from intentkit.modeling import resolve_model
    from intentkit.training.objectives import fit_linear_head, logits_layer

    tok = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    train, val = (pd.read_parquet(kw_data / f"{s}.parquet") for s in ("train", "val"))
    labels = sorted(set(train["label"]))
    torch.manual_seed(0)
    cfg = MPNetConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, num_labels=len(labels),
                      pad_token_id=tok.pad_token_id)  # fmt: skip
    model = MPNetForSequenceClassification(cfg).eval()
    name, out_proj = logits_layer(model)
    assert name == "classifier.out_proj"
    dense_before = model.classifier.dense.weight.clone()
    head = fit_linear_head(model, tok, train, val, labels, 32, "cpu")
    assert head is not None and head["layer"] == "classifier.out_proj"
    assert torch.equal(model.classifier.dense.weight, dense_before)  # only out_proj is written

    seen: list = []
    out_proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))

    def answer(texts: list[str]) -> np.ndarray:
        seen.clear()
        with torch.no_grad():
            logits = model(**tok(texts, padding=True, truncation=True, max_length=32,
                                 return_tensors="pt")).logits  # fmt: skip
        return logits.argmax(1).numpy()

    names = labels if head["rows"] == WITH_NAMES else []
    answer(train["text"].tolist() + names)
    x = seen[0].numpy()
    y = [labels.index(v) for v in train["label"].tolist() + names]
    expected = LogisticRegression(C=head["C"], max_iter=2000).fit(x, y)
    got = answer(val["text"].tolist())
    np.testing.assert_array_equal(got, expected.predict(seen[0].numpy()))
    y_val = np.asarray([labels.index(v) for v in val["label"]])
    assert float((got == y_val).mean()) == pytest.approx(head["val_accuracy"], abs=1e-4)


def test_a_validation_tie_keeps_the_label_names() -> None:
    """Every fit answers all val rows right here, so validation ties: the head keeps the fit
    with the name rows (held-out rows favoured it, bench/head_rule.py), at the smallest C."""
    import pandas as pd

    from intentkit.training.objectives import HEAD_C_GRID, fit_linear_head

    texts = ["car now", "a car", "my flight", "flight out", "hotel room", "the hotel"]
    train = pd.DataFrame({"text": texts, "label": [t for t in KEYWORDS for _ in range(2)]})
    val = pd.DataFrame({"text": KEYWORDS, "label": KEYWORDS})
    tokenizer, model = _bag_of_keywords(len(KEYWORDS))
    head = fit_linear_head(model, tokenizer, train, val, KEYWORDS, 16, "cpu")
    assert head is not None
    scores = head["val_accuracy_by_rows_and_C"]
    assert max(scores[TRAIN_ROWS].values()) == max(scores[WITH_NAMES].values()) == 1.0
    assert head["rows"] == WITH_NAMES
    assert head["C"] == min(c for c in HEAD_C_GRID if scores[WITH_NAMES][f"{c:g}"] == 1.0)
