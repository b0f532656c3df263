"""Training: learns the keyword fixture, artifact contract, pipeline parity, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train_helpers import FAST, write_prepared


def test_learns_keyword_fixture_in_a_few_dozen_steps(kw_model: Path, kw_data: Path) -> None:
    from intentkit.evaluation.evaluate import evaluate

    meta = json.loads((kw_model / "intentkit.json").read_text())
    assert meta["training"]["global_step"] <= 48
    assert meta["metrics"]["accuracy"] >= 0.9
    report = evaluate(kw_model, kw_data, reject=False)
    assert report["accuracy"] >= 0.9


def test_artifact_contract(kw_model: Path, kw_data: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from intentkit.artifact import check_artifact_dir

    check_artifact_dir(kw_model)
    top = {p.name for p in kw_model.iterdir()}
    assert {"config.json", "model.safetensors", "intentkit.json", "README.md"} <= top
    # No pickles at the top level and no temp folder left behind by the atomic write.
    assert not [n for n in top if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert not [n for n in top if n.startswith(".artifact.")]
    cfg = json.loads((kw_model / "config.json").read_text())
    assert cfg["id2label"] == {"0": "car", "1": "flight", "2": "hotel"}  # sorted labels.json
    assert cfg["label2id"] == {"car": 0, "flight": 1, "hotel": 2}
    meta = json.loads((kw_model / "intentkit.json").read_text())
    assert meta["format_version"] == 1
    assert meta["train_config"]["model"] == str(tiny_model_dir)
    assert meta["train_config"]["lr"] == FAST["lr"]
    assert meta["data"]["n_train"] == 120 and meta["data"]["n_val"] == 30
    assert meta["data"]["label_counts"]
    assert set(meta["metrics"]) >= {"accuracy", "macro_f1", "weighted_f1"}
    assert {"torch", "transformers", "python"} <= set(meta["versions"])
    assert meta["training"]["precision"] == "fp32" and meta["training"]["device"] == "cpu"
    cal = meta["calibration"]
    assert cal["temperature"] > 0 and 0 <= cal["threshold"] <= 1
    # Tokenizer truncates at the training length when served.
    tok = AutoTokenizer.from_pretrained(kw_model)
    assert tok.model_max_length == meta["max_length"]
    # The recommended length of this short-text fixture is a multiple of 8 well under 128.
    assert meta["max_length"] % 8 == 0 and 8 <= meta["max_length"] <= 32
    card = (kw_model / "README.md").read_text()
    assert "| macro_f1 |" in card and "| lr | 0.01 |" in card
    # Checkpoints are safetensors, and every one records the resolved config.
    ckpts = sorted((kw_model / "checkpoints").glob("checkpoint-*"))
    assert ckpts and all((c / "model.safetensors").is_file() for c in ckpts)
    assert json.loads((ckpts[-1] / "intentkit_train_config.json").read_text())["seed"] == 0


def test_pipeline_parity(kw_model: Path, kw_data: Path) -> None:
    import pandas as pd
    from transformers import pipeline

    from intentkit.inference.predictor import Predictor

    texts = pd.read_parquet(kw_data / "test.parquet")["text"].tolist()
    clf = pipeline("text-classification", model=str(kw_model), device="cpu")
    piped = [r["label"] for r in clf(texts)]
    ours = [a["label"] for a in Predictor.from_dir(kw_model, reject=False).predict(texts)]
    assert piped == ours
    assert len(set(ours)) == 3  # a real check: the model does not answer one class for all


def test_load_is_quiet(kw_model: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A library call prints nothing: no transformers "Loading weights" bar on stderr."""
    import transformers

    import intentkit

    assert transformers.logging.is_progress_bar_enabled()  # the bar would show by default
    predictor = intentkit.load(kw_model)
    assert predictor.predict(["book a flight to rome"])[0]["label"] == "flight"
    out, err = capfd.readouterr()
    assert "Loading weights" not in err and err.strip() == "", err
    assert transformers.logging.is_progress_bar_enabled()  # and the caller's setting is back


def test_same_seed_twice_gives_identical_metrics(
    kw_model: Path, kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from intentkit.training.train import train

    again = train(kw_data, tmp_path / "again", model=str(tiny_model_dir), **FAST)
    a = json.loads((kw_model / "intentkit.json").read_text())
    b = json.loads((again / "intentkit.json").read_text())
    assert a["metrics"] == b["metrics"]
    assert a["training"]["train_loss"] == b["training"]["train_loss"]
    assert a["calibration"]["temperature"] == b["calibration"]["temperature"]


def test_val_carved_from_train_and_inspect_max_length(
    keywords_jsonl: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """No val.parquet: 10 % stratified from train; max_length from inspect.json."""
    import pandas as pd

    from intentkit.training.train import train

    df = pd.read_json(keywords_jsonl, lines=True)
    data = write_prepared(
        tmp_path / "d", df.iloc[:150], df.iloc[150:], inspect={"recommended_max_length": 24}
    )
    out = train(
        data, tmp_path / "m", model=str(tiny_model_dir), epochs=1, batch_size=32, calibrate=False
    )
    meta = json.loads((out / "intentkit.json").read_text())
    assert meta["max_length"] == 24
    assert meta["data"]["n_val"] == 15 and meta["data"]["n_train"] == 135
    assert "stratified" in meta["data"]["val_source"]
    assert meta["calibration"] is None


def test_collator_pads_to_the_batch_not_max_length() -> None:
    from intentkit.training.trainer import PadCollator

    batch = PadCollator(pad_token_id=0)(
        [
            {"input_ids": [101, 7, 102], "labels": 1, "length": 3},
            {"input_ids": [101, 102], "labels": 0, "length": 2},
        ]
    )
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [1, 0]
    assert "length" not in batch
    assert (
        PadCollator(0, pad_to_multiple_of=8)([{"input_ids": [1, 2, 3]}])["input_ids"].shape[1] == 8
    )


def test_class_weights_modes() -> None:
    from intentkit.training.trainer import class_weights

    ids = [0] * 8 + [1] * 2  # 8:2 imbalance, class 2 absent
    assert class_weights(ids, 3, "none") is None
    bal = class_weights(ids, 3, "balanced")
    assert bal[1] / bal[0] == pytest.approx(4.0)
    assert bal[:2].mean() == pytest.approx(1.0) and bal[2] == 1.0
    sq = class_weights(ids, 3, "sqrt")
    assert sq[1] / sq[0] == pytest.approx(2.0)


def test_weighted_loss_matches_torch_cross_entropy() -> None:
    import torch

    from intentkit.training.trainer import IntentTrainer

    cls = IntentTrainer
    trainer = cls.__new__(cls)  # compute_loss only needs the loss attributes
    trainer.supcon_weight = 0.0  # cross-entropy alone (the SupCon term has its own tests)
    trainer.loss_weights = torch.tensor([1.0, 3.0])
    trainer.label_smoothing = 0.1
    trainer.keep_features = False
    logits = torch.tensor([[2.0, 0.5], [0.1, 0.3], [1.0, -1.0]])
    labels = torch.tensor([0, 1, 1])

    def model(**kw: object) -> dict:
        assert "labels" not in kw
        return {"logits": logits}

    got = cls.compute_loss(trainer, model, {"input_ids": None, "labels": labels})
    want = torch.nn.functional.cross_entropy(
        logits, labels, weight=torch.tensor([1.0, 3.0]), label_smoothing=0.1
    )
    assert float(got) == pytest.approx(float(want))
    unweighted = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    assert float(got) != pytest.approx(float(unweighted))


def test_class_weights_and_layerwise_decay_train(
    kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from intentkit.training.train import train

    out = train(
        kw_data,
        tmp_path / "m",
        model=str(tiny_model_dir),
        class_weights="balanced",
        label_smoothing=0.1,
        layerwise_lr_decay=0.8,
        dropout=0.0,
        **FAST,
    )
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["classifier_dropout"] == 0.0 and cfg["attention_dropout"] == 0.0
    meta = json.loads((out / "intentkit.json").read_text())
    assert meta["metrics"]["accuracy"] >= 0.9


def test_layerwise_groups_decay_with_depth(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from intentkit.training.trainer import layerwise_param_groups

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3)
    groups = layerwise_param_groups(model, 1.0, 0.5, 0.01)
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len([p for p in model.parameters() if p.requires_grad])
    lrs = sorted({g["lr"] for g in groups})
    # 2 layers: head 1.0, layer 1 0.5, layer 0 0.25, embeddings 0.125.
    assert lrs == pytest.approx([0.125, 0.25, 0.5, 1.0])
    assert any(g["weight_decay"] == 0.0 for g in groups)


def test_best_metric_and_progress_are_quiet(kw_model: Path) -> None:
    """Metrics in the artifact are the best checkpoint's, by --metric (macro_f1)."""
    state = json.loads(
        sorted((kw_model / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name[11:]))[-1]
        .joinpath("trainer_state.json")
        .read_text()
    )
    meta = json.loads((kw_model / "intentkit.json").read_text())
    assert state["best_metric"] == pytest.approx(meta["metrics"]["macro_f1"])
    evals = [h["eval_macro_f1"] for h in state["log_history"] if "eval_macro_f1" in h]
    assert meta["metrics"]["macro_f1"] == pytest.approx(max(evals))
    assert np.isfinite(meta["training"]["train_loss"])


def test_oos_rows_reach_calibration(
    keywords_jsonl: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """An "oos" class becomes the calibration's oos_label; oos-only val rows join the threshold."""
    import pandas as pd

    from intentkit.training.train import train

    df = pd.read_json(keywords_jsonl, lines=True).sample(frac=1.0, random_state=0)
    oos = pd.DataFrame({"text": [f"tell me joke number {i}" for i in range(30)], "label": "oos"})
    # 1) "oos" is a trained class.
    with_class = write_prepared(
        tmp_path / "a", pd.concat([df.iloc[:120], oos.iloc[:20]]), df.iloc[150:],
        pd.concat([df.iloc[120:150], oos.iloc[20:]]),
    )  # fmt: skip
    meta = json.loads((train(with_class, tmp_path / "ma", model=str(tiny_model_dir), **FAST)
                       / "intentkit.json").read_text())  # fmt: skip
    assert meta["calibration"]["oos_label"] == "oos" and meta["calibration"]["val"]["n_oos"] == 10
    # The report's in-scope ECE leaves the oos-class rows out; recompute it by hand.
    import numpy as np

    from intentkit.evaluation.evaluate import evaluate
    from intentkit.evaluation.metrics import expected_calibration_error
    from intentkit.inference.decision import softmax
    from intentkit.inference.predictor import Predictor

    rep = evaluate(tmp_path / "ma", with_class, split="val", out=tmp_path / "ea")
    pred = Predictor.from_dir(tmp_path / "ma")
    val = pd.read_parquet(with_class / "val.parquet")
    val = val[val["label"] != "oos"]
    probs = softmax(pred.logits(val["text"].tolist()), meta["calibration"]["temperature"])
    y = np.array([pred.labels.index(t) for t in val["label"]])
    assert rep["ece_in_scope_after"] == pytest.approx(expected_calibration_error(probs, y))
    # 2) no "oos" class, but out-of-scope rows in val: used only for the threshold.
    without = write_prepared(
        tmp_path / "b", df.iloc[:120], df.iloc[150:], pd.concat([df.iloc[120:150], oos.iloc[20:]]),
        labels=["car", "flight", "hotel"],
    )  # fmt: skip
    meta = json.loads((train(without, tmp_path / "mb", model=str(tiny_model_dir), **FAST)
                       / "intentkit.json").read_text())  # fmt: skip
    cal = meta["calibration"]
    assert cal["oos_label"] is None
    assert cal["val"]["n_oos"] == 10 and cal["val"]["n_temperature"] == 30
    assert meta["data"]["n_val"] == 30


def test_report_to_tensorboard_writes_events(
    kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from intentkit.training.train import train

    out = train(
        kw_data, tmp_path / "m", model=str(tiny_model_dir), epochs=1, batch_size=32,
        report_to="tensorboard", calibrate=False,
    )  # fmt: skip
    assert list((out / "checkpoints").glob("runs/*/events.out.tfevents.*"))
