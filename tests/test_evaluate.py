"""`intentkit evaluate`: report contents, out-of-scope scoring, figures, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from figure_helpers import assert_real_png
from train_helpers import write_prepared


def test_report_keys_values_and_figures(kw_model: Path, kw_data: Path, tmp_path: Path) -> None:
    from intentkit.evaluation.evaluate import evaluate

    report = evaluate(kw_model, kw_data, out=tmp_path / "ev", reject=False)
    on_disk = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert on_disk["accuracy"] == report["accuracy"] >= 0.9
    for key in ("macro_f1", "weighted_f1", "in_scope_accuracy", "ece_before", "ece_after"):
        assert 0.0 <= report[key] <= 1.0, key
    assert set(report["per_class"]) == {"car", "flight", "hotel"}
    assert sum(c["support"] for c in report["per_class"].values()) == report["n"] == 30
    assert set(report["per_class"]["car"]) == {"precision", "recall", "f1", "support"}
    assert isinstance(report["top_confusions"], list)
    assert report["oos_recall"] is None  # no out-of-scope rows in this data
    assert report["n_rejected"] == 0  # --no-reject
    for png in ("confusion_matrix.png", "reliability.png"):
        assert_real_png(tmp_path / "ev" / png)


def test_default_out_is_model_eval_and_cli_prints_table(
    kw_model: Path, kw_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from intentkit.cli import main

    code = main(["evaluate", str(kw_model), "--data", str(kw_data), "--split", "val"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Worst" in out and "accuracy=" in out
    report = json.loads((kw_model / "eval" / "report.json").read_text())
    assert f"rejection: {report['in_scope_rejected']} of 30 in-scope rows rejected" in out
    report = json.loads((kw_model / "eval" / "report.json").read_text())
    assert report["split"] == "val" and report["n"] == 30


def test_eval_equals_serving_decisions(kw_model: Path, kw_data: Path, tmp_path: Path) -> None:
    """With rejection on, evaluate scores exactly the Predictor's answers."""
    import pandas as pd

    from intentkit.evaluation.evaluate import evaluate
    from intentkit.inference.predictor import Predictor

    test = pd.read_parquet(kw_data / "test.parquet")
    answers = [a["label"] for a in Predictor.from_dir(kw_model).predict(test["text"].tolist())]
    report = evaluate(kw_model, kw_data, out=tmp_path / "ev")
    expected = np.mean([a == t for a, t in zip(answers, test["label"], strict=True)])
    assert report["accuracy"] == pytest.approx(expected)
    assert report["n_rejected"] == sum(a == "out_of_scope" for a in answers)
    # The in-scope cost of rejection, beside the accuracy: argmax answers of the same model.
    plain = [
        a["label"]
        for a in Predictor.from_dir(kw_model).predict(test["text"].tolist(), reject=False)
    ]
    no_rej = np.mean([a == t for a, t in zip(plain, test["label"], strict=True)])
    assert report["accuracy_no_rejection"] == pytest.approx(no_rej)
    assert report["in_scope_accuracy_no_rejection"] == pytest.approx(no_rej)
    assert report["in_scope_rejected"] == report["n_rejected"]  # every test row is in scope
    assert report["in_scope_rejected_share"] == pytest.approx(report["n_rejected"] / 30)


def test_unseen_test_labels_listed_but_oos_allowed(
    kw_model: Path, kw_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    from intentkit.cli import main
    from intentkit.evaluation.evaluate import evaluate

    train = pd.read_parquet(kw_data / "train.parquet")
    test = pd.read_parquet(kw_data / "test.parquet")
    extra = pd.DataFrame(
        {
            "text": ["sail the boat", "a train ticket", "tell me a joke"],
            "label": ["boat", "rail", "oos"],
        }
    )
    bad = write_prepared(tmp_path / "bad", train, pd.concat([test, extra]))
    code = main(["evaluate", str(kw_model), "--data", str(bad)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "boat, rail" in err and "oos" not in err.split("trained on:")[1]

    # Only "oos" rows: allowed, and scored as out-of-scope.
    ok = write_prepared(tmp_path / "ok", train, pd.concat([test, extra.iloc[2:]]))
    report = evaluate(kw_model, ok, out=tmp_path / "ev")
    assert report["n_oos"] == 1 and report["oos_labels"] == ["oos"]
    # The one oos row counts as caught exactly when the served decision rejects it.
    from intentkit.inference.predictor import Predictor

    predictor = Predictor.from_dir(kw_model)
    answer = predictor.predict(["tell me a joke"])[0]["label"]
    caught = answer == predictor.calibration["reject_label"]
    assert report["n"] == 31 and report["oos_recall"] == (1.0 if caught else 0.0)


def test_rejection_cost_counts_in_scope_rejections_only() -> None:
    from intentkit.evaluation.evaluate import rejection_cost, rejection_line

    true = ["a", "a", "b", "b", "oos", "oos"]
    pred = ["a", "out_of_scope", "out_of_scope", "b", "out_of_scope", "b"]
    plain = ["a", "a", "a", "b", "oos", "b"]  # argmax; the model's own oos class caught one
    r = rejection_cost(true, pred, plain, oos={"oos"}, reject_label="out_of_scope")
    # Two in-scope rows rejected of four (the rejected oos row is no cost); without rejection
    # 3 of 4 in-scope rows and 4 of 6 rows overall are right.
    assert r["in_scope_rejected"] == 2 and r["in_scope_rejected_share"] == pytest.approx(0.5)
    assert r["in_scope_accuracy_no_rejection"] == pytest.approx(3 / 4)
    assert r["accuracy_no_rejection"] == pytest.approx(4 / 6)
    line = rejection_line({**r, "n_in_scope": 4, "n_oos": 2})
    assert line.startswith("rejection: 2 of 4 in-scope rows rejected (50.0%)")
    assert "accuracy without rejection 0.6667, in-scope 0.7500" in line


def test_oos_scoring_rules() -> None:
    from intentkit.evaluation.evaluate import score

    true = ["a", "a", "b", "oos", "oos"]
    pred = ["a", "out_of_scope", "b", "out_of_scope", "b"]
    r = score(true, pred, oos={"oos"}, reject_label="out_of_scope")
    # Rejected oos row is correct; rejected in-scope row is wrong; oos answered "b" is wrong.
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["per_class"]["out_of_scope"]["support"] == 2
    assert r["per_class"]["out_of_scope"]["recall"] == pytest.approx(0.5)
    assert r["per_class"]["a"]["recall"] == pytest.approx(0.5)
    assert r["top_confusions"][0]["count"] == 1
    assert {"true": "out_of_scope", "pred": "b"} in [
        {"true": c["true"], "pred": c["pred"]} for c in r["top_confusions"]
    ]


def test_missing_model_files(
    kw_model: Path, kw_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from intentkit.cli import main

    broken = tmp_path / "broken"
    shutil.copytree(kw_model, broken, ignore=shutil.ignore_patterns("checkpoints", "eval"))
    (broken / "model.safetensors").unlink()
    (broken / "intentkit.json").unlink()
    code = main(["evaluate", str(broken), "--data", str(kw_data)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "model.safetensors" in err and "intentkit.json" in err
    assert not (broken / "eval").exists()


def test_confusion_matrix_shows_most_confused_of_150(tmp_path: Path) -> None:
    from intentkit.evaluation.figures import confusion_matrix_png, most_confused

    labels = [f"intent_{i:03d}" for i in range(150)]
    rng = np.random.default_rng(0)
    true = [labels[i] for i in rng.integers(0, 150, 3000)]
    pred = list(true)
    # Confuse exactly classes 10..14 with each other; everything else is perfect.
    for i, t in enumerate(true):
        k = labels.index(t)
        if 10 <= k < 15 and i % 2:
            pred[i] = labels[10 + (k - 9) % 5]
    cm = np.zeros((150, 150))
    for t, p in zip(true, pred, strict=True):
        cm[labels.index(t), labels.index(p)] += 1
    assert set(most_confused(cm, 5).tolist()) == {10, 11, 12, 13, 14}
    path = confusion_matrix_png(true, pred, labels, tmp_path / "cm.png", max_labels=30)
    from matplotlib.image import imread

    h, w = imread(path).shape[:2]
    assert 600 <= w <= 2000 and 600 <= h <= 2000  # 30 labels, not a 150-label grey square


def test_report_files_are_world_readable(kw_model: Path, kw_data: Path, tmp_path: Path) -> None:
    from intentkit.evaluation.evaluate import evaluate

    evaluate(kw_model, kw_data, out=tmp_path / "ev")
    for name in ("report.json", "confusion_matrix.png", "reliability.png"):
        assert (tmp_path / "ev" / name).stat().st_mode & 0o044 == 0o044, name
    for name in ("model.safetensors", "config.json", "intentkit.json", "README.md"):
        assert (kw_model / name).stat().st_mode & 0o044 == 0o044, name


def test_int8_predictor_agrees_with_fp32(kw_model: Path, kw_data: Path) -> None:
    import pandas as pd
    import torch

    from intentkit.errors import ConfigError
    from intentkit.inference.predictor import Predictor, resolve_dtype

    texts = pd.read_parquet(kw_data / "test.parquet")["text"].tolist()
    fp32 = Predictor.from_dir(kw_model, device="cpu")
    int8 = Predictor.from_dir(kw_model, device="cpu", dtype="int8")
    kinds = {type(m).__module__ for m in int8.model.modules()}
    assert any("quantized" in k for k in kinds)  # the linear layers really are int8 now
    assert not any("quantized" in type(m).__module__ for m in fp32.model.modules())
    a, b = fp32.logits(texts), int8.logits(texts)
    agree = (a.argmax(1) == b.argmax(1)).mean()
    assert agree >= 0.9, agree
    assert not np.array_equal(a, b)  # quantization changed the arithmetic
    with pytest.raises(ConfigError, match="CPU-only"):
        resolve_dtype("int8", "cuda")
    assert resolve_dtype("int8", "cpu") is torch.float32
