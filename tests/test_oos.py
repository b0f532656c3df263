"""Feature-space out-of-scope scoring: the Mahalanobis statistics, the scorer choice, the
out-of-scope-aware confidence, and the same decisions in PyTorch and ONNX (fp32, int8)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from intentkit.errors import ModelError
from intentkit.evaluation import calibration as cal
from intentkit.evaluation.metrics import auroc
from intentkit.evaluation.scorer_choice import NO_OOS_RULE, NO_OOS_SCORER, describe_choice
from intentkit.export.loader import load_predictor
from intentkit.inference import decision, oos
from intentkit.inference.predictor import Predictor
from serve_helpers import SAMPLE_TEXTS

LABELS = ["flight", "hotel", "car"]


def _clusters(seed: int = 0, n: int = 200, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 4.0, (3, dim))
    y = rng.integers(0, 3, n)
    # Anisotropic noise: a Euclidean distance would be fooled, Mahalanobis is not.
    scale = np.linspace(0.2, 3.0, dim)
    return centres[y] + rng.normal(0.0, 1.0, (n, dim)) * scale, y


def test_mahalanobis_separates_a_far_cluster_from_the_training_classes() -> None:
    x, y = _clusters()
    stats = oos.fit(x, y)
    test_in, _ = _clusters(seed=1)
    far = np.random.default_rng(2).normal(0.0, 1.0, (100, x.shape[1])) + 25.0
    d_in, d_far = stats.distance(test_in), stats.distance(far)
    assert d_far.min() > np.quantile(d_in, 0.99)
    score = np.concatenate([stats.score(test_in), stats.score(far)])
    assert auroc(np.r_[np.ones(len(d_in)), np.zeros(len(d_far))].astype(bool), score) > 0.999
    # The model's own oos class is left out of the statistics.
    assert list(oos.fit(x, y, exclude=2).class_ids) == [0, 1]


def test_stats_survive_the_safetensors_round_trip(tmp_path: Path) -> None:
    x, y = _clusters()
    stats = oos.fit(x, y)
    path = oos.save(stats, tmp_path / oos.STATS_FILE)
    back = oos.load(path)
    np.testing.assert_array_equal(back.distance(x), stats.distance(x))
    assert path.read_bytes()[:8] != b"\x80\x04\x95"[:8]  # safetensors, not a pickle
    with pytest.raises(ModelError, match="missing"):
        oos.load(tmp_path / "absent.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ModelError, match="not valid"):
        oos.load(tmp_path / "bad.safetensors")


def test_knn_and_combined_separate_a_far_cluster_and_survive_the_round_trip(
    tmp_path: Path,
) -> None:
    x, y = _clusters()
    test_in, _ = _clusters(seed=1)
    # Far in direction, not only in norm: cosine k-NN ignores the norm.
    far = np.random.default_rng(2).normal(0.0, 1.0, (100, x.shape[1]))
    far[:, 0] = 40.0
    stats = oos.with_norm(oos.fit(x, y), test_in)
    assert stats.scorers == oos.SCORERS
    is_in = np.r_[np.ones(len(test_in)), np.zeros(len(far))].astype(bool)
    both = np.concatenate([test_in, far])
    for name in ("knn", "combined"):
        assert auroc(is_in, stats.score(both, name)) > 0.99, name
    # combined = the standardised sum of the two distances, on the in-scope rows' scale
    d = stats.all_distances(test_in)
    np.testing.assert_allclose(d["combined"].mean(), 0.0, atol=1e-9)
    np.testing.assert_allclose(d["knn"], stats.distances(test_in, "knn"))
    # The bank is capped by a uniform sample, and k-NN's distance to a bank row is ~0.
    small = oos.fit(x, y, max_bank_rows=50)
    assert small.bank.shape == (50, x.shape[1])
    assert np.abs(small.knn_distance(small.bank.astype(np.float64))).max() < 1e-5
    back = oos.load(oos.save(stats, tmp_path / oos.STATS_FILE), "combined")
    np.testing.assert_array_equal(back.score(both, "combined"), stats.score(both, "combined"))
    assert back.knn_k == oos.KNN_K


def test_a_stats_file_from_before_knn_serves_mahalanobis_only(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    x, y = _clusters()
    stats = oos.fit(x, y)
    old = tmp_path / oos.STATS_FILE
    save_file({"means_w": stats.means_w, "whiten": stats.whiten, "class_ids": stats.class_ids}, old)
    back = oos.load(old)
    assert back.scorers == ("mahalanobis",)
    np.testing.assert_array_equal(back.distance(x), stats.distance(x))
    with pytest.raises(ModelError, match="not the calibration's knn scorer; refit"):
        oos.load(old, "knn")
    with pytest.raises(ModelError, match="no k-NN bank"):
        back.knn_distance(x)


def test_auto_compares_every_feature_scorer_and_fits_platt_on_the_winner() -> None:
    c = _val_case(oos_rows=True)
    v = c.pop("val_logits"), c.pop("val_labels")
    rng = np.random.default_rng(5)
    n_in, n_oos = len(v[1]), len(c["extra_oos_logits"])
    # mahalanobis overlaps, knn separates: auto must take knn and fit P(oos | knn distance).
    c["val_distances"] = {"mahalanobis": rng.uniform(0, 5, n_in), "knn": rng.uniform(0, 0.3, n_in)}
    c["extra_oos_distances"] = {
        "mahalanobis": rng.uniform(2, 7, n_oos),
        "knn": rng.uniform(0.5, 0.9, n_oos),
    }
    got = cal.calibrate(*v, LABELS, scorer="auto", **c)
    assert got["oos_scorer"] == "knn"
    assert got["oos_selection"]["by"]["knn"] == 1.0 > got["oos_selection"]["by"]["mahalanobis"]
    assert -got["oos_threshold"] < 0.5 and got["oos_platt"]["a"] > 0  # every oos row out
    asked = cal.calibrate(*v, LABELS, scorer="mahalanobis", **c)
    assert asked["oos_scorer"] == "mahalanobis"
    with pytest.raises(ValueError, match="combined scorer needs"):
        cal.calibrate(*v, LABELS, scorer="combined", **c)


def test_choose_threshold_accepts_real_scores_and_keeps_the_rule() -> None:
    score = np.array([-5.0, -1.0, -2.0, -9.0, -0.5])
    correct = np.array([True, True, True, False, True])
    is_oos = np.array([False, False, False, True, False])
    got = cal.choose_threshold(score, correct, is_oos, 0.75, probabilities=False)
    assert got["threshold"] == -2.0 and got["oos_recall"] == 1.0  # rejects -5 and -9
    never = cal.choose_threshold(score, ~correct, is_oos, 0.9, probabilities=False)
    assert never["threshold"] is None and not never["constraint_met"]
    with pytest.raises(ValueError, match=">= 0"):
        cal.choose_threshold(score, correct, is_oos, 0.75)  # probabilities by default


def _val_case(oos_rows: bool, margin: float = 3.0) -> dict:
    """Logits whose softmax cannot tell oos rows from in-scope ones; distances that can."""
    rng = np.random.default_rng(0)
    n_in, n_oos = 90, 30 if oos_rows else 0
    y = rng.integers(0, 3, n_in)
    logits = rng.normal(0.0, 1.0, (n_in, 3))
    logits[np.arange(n_in), y] += margin
    extra = rng.normal(0.0, 1.0, (n_oos, 3))
    extra[np.arange(n_oos), rng.integers(0, 3, n_oos)] += 3.0
    return {
        "val_logits": logits,
        "val_labels": y,
        "extra_oos_logits": extra if n_oos else None,
        "val_distances": {"mahalanobis": rng.uniform(1.0, 3.0, n_in)},
        "extra_oos_distances": {"mahalanobis": rng.uniform(5.0, 9.0, n_oos)} if n_oos else None,
    }


def test_auto_picks_the_best_oos_recall_with_oos_rows_and_fits_platt() -> None:
    c = _val_case(oos_rows=True)
    v = c.pop("val_logits"), c.pop("val_labels")
    got = cal.calibrate(*v, LABELS, scorer="auto", **c)
    assert got["oos_scorer"] == "mahalanobis"
    by = got["oos_selection"]["by"]
    assert by["mahalanobis"] == 1.0 > by["softmax"]
    assert got["val"]["oos_recall"] == 1.0 and got["oos_threshold"] is not None
    platt = got["oos_platt"]
    assert platt["a"] > 0 and platt["prior"] == cal.DEFAULT_OOS_PRIOR
    json.dumps(got, allow_nan=False)  # JSON-ready
    soft = cal.calibrate(*v, LABELS, scorer="softmax", **c)
    assert soft["oos_scorer"] == "softmax" and "oos_platt" not in soft


def test_auto_without_oos_rows_takes_the_feature_scorer_and_records_why() -> None:
    c = _val_case(oos_rows=False, margin=0.8)
    logits, y = c.pop("val_logits"), c.pop("val_labels")
    correct = logits.argmax(1) == y
    # Distances unrelated to right and wrong answers (softmax separates those better): without
    # out-of-scope rows that is no reason to keep softmax, which cannot see far-away inputs.
    got = cal.calibrate(logits, y, LABELS, scorer="auto", **c)
    assert got["oos_scorer"] == NO_OOS_SCORER == "mahalanobis"
    sel = got["oos_selection"]
    assert sel["rule"] == NO_OOS_RULE and sel["requested"] == "auto"
    # by: each scorer's in-scope validation rejection share at its threshold (the cost).
    assert set(sel["by"]) == {"softmax", *c["val_distances"]}
    assert sel["by"]["mahalanobis"] == got["val"]["in_scope_rejection_rate"]
    # The threshold rule is unchanged: validation accuracy >= accuracy with no rejection - 1 pt.
    assert got["val"]["in_scope_accuracy"] >= correct.mean() - cal.DEFAULT_MAX_ACCURACY_DROP
    assert got["oos_platt"] is None and got["confidence"].startswith("p_top")
    # Asked for by name, a scorer is taken as asked; with no distances at all, softmax.
    assert cal.calibrate(logits, y, LABELS, scorer="softmax", **c)["oos_scorer"] == "softmax"
    assert cal.calibrate(logits, y, LABELS, scorer="auto")["oos_scorer"] == "softmax"


def test_default_training_without_oos_rows_rejects_a_far_cluster(
    kw_model: Path, kw_data: Path
) -> None:
    """The session's keyword model, trained with the defaults on data without out-of-scope
    rows: auto took the feature scorer, texts far from every intent are rejected, and the
    in-scope test accuracy pays at most the rule's budget (a point, here one row of 30)."""
    import pandas as pd

    meta = json.loads((kw_model / "intentkit.json").read_text())
    assert meta["train_config"]["oos_scorer"] == "auto"
    assert meta["calibration"]["oos_scorer"] == NO_OOS_SCORER
    assert meta["calibration"]["oos_selection"]["rule"] == NO_OOS_RULE
    line = describe_choice(meta["calibration"])  # what `intentkit train` prints
    assert line.startswith(f"out-of-scope rejection: {NO_OOS_SCORER} scorer (auto: {NO_OOS_RULE})")
    cost = meta["calibration"]["val"]["in_scope_rejection_rate"]
    assert line.endswith(f"; rejects {cost:.1%} of in-scope validation rows")
    pred = Predictor.from_dir(kw_model, device="cpu")
    far = ["0 0 0 0 0 0 0 0", "% % % % % % %", "zzzz zzzz zzzz zzzz", "1234567890 1234567890"]
    far += ["!!!! ???? !!!! ????", "qwerty asdf qwerty asdf"]
    assert [a["label"] for a in pred.predict(far)] == ["out_of_scope"] * len(far)
    test = pd.read_parquet(kw_data / "test.parquet")
    on = [a["label"] for a in pred.predict(test["text"].tolist())]
    off = [a["label"] for a in pred.predict(test["text"].tolist(), reject=False)]
    acc = lambda answers: np.mean([a == t for a, t in zip(answers, test["label"], strict=True)])  # noqa: E731
    assert acc(off) >= 0.9 and acc(on) >= acc(off) - 1 / 30


def test_apply_with_the_feature_scorer_rejects_on_the_score_and_calibrates_confidence() -> None:
    logits = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    platt = {"a": 2.0, "b": -8.0, "prior": 0.1}
    c = {"temperature": 1.0, "threshold": 0.99, "oos_scorer": "mahalanobis"}
    c.update(oos_threshold=-3.0, oos_platt=platt, reject_label="out_of_scope")
    score = np.array([-1.0, -3.0, -6.0])
    answered, conf, _ = decision.apply(logits, LABELS, c, oos_score=score)
    assert answered == ["flight", "hotel", "out_of_scope"]  # softmax threshold 0.99 not used
    q = decision.oos_probability(-score, platt)
    p_top = decision.softmax(logits).max(1)
    np.testing.assert_allclose(conf, [(1 - q[0]) * p_top[0], (1 - q[1]) * p_top[1], q[2]])
    _, conf_no_reject, _ = decision.apply(logits, LABELS, c, oos_score=score, reject=False)
    np.testing.assert_allclose(conf_no_reject, (1 - q) * p_top)
    with pytest.raises(ValueError, match="needs oos_score"):
        decision.apply(logits, LABELS, c)
    # Softmax scorer: the oos score is ignored, answers as before.
    soft = {"temperature": 1.0, "threshold": 0.99}
    assert decision.apply(logits, LABELS, soft, oos_score=score)[0] == ["out_of_scope"] * 3


@pytest.fixture(scope="module")
def maha_model(kw_model: Path, kw_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's keyword model with statistics fitted post hoc (mahalanobis)."""
    from intentkit.training.oos_fit import fit_artifact

    out = tmp_path_factory.mktemp("maha") / "model"
    shutil.copytree(kw_model, out, ignore=shutil.ignore_patterns("onnx", "eval", "checkpoints"))
    got = fit_artifact(out, kw_data, scorer="mahalanobis")
    assert got["oos_scorer"] == "mahalanobis"
    return out


@pytest.fixture(scope="module")
def combined_model(
    maha_model: Path, kw_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The same model refitted for the combined scorer (Mahalanobis + k-NN)."""
    from intentkit.training.oos_fit import fit_artifact

    out = tmp_path_factory.mktemp("combined") / "model"
    shutil.copytree(maha_model, out)
    assert fit_artifact(out, kw_data, scorer="combined")["oos_scorer"] == "combined"
    return out


def test_post_hoc_fit_writes_stats_described_in_the_artifact(maha_model: Path) -> None:
    meta = json.loads((maha_model / "intentkit.json").read_text())
    assert meta["oos_stats"]["file"] == oos.STATS_FILE
    assert set(meta["oos_stats"]["fields"]) == set(oos.STATS_FIELDS)
    assert meta["oos_stats"]["scorers"] == list(oos.SCORERS)
    stats = oos.load(maha_model / oos.STATS_FILE)
    assert stats.hidden_size == meta["oos_stats"]["hidden_size"]
    pred = Predictor.from_dir(maha_model, device="cpu")
    answers = pred.predict(SAMPLE_TEXTS)
    assert all("oos_score" in a and a["oos_score"] <= 0 for a in answers)
    # One forward: the predictor's score equals the stats applied to its features.
    _, feats = pred.features(SAMPLE_TEXTS)
    np.testing.assert_allclose(
        [a["oos_score"] for a in answers], stats.score(feats), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("fixture", ["maha_model", "combined_model"])
def test_torch_and_onnx_fp32_and_int8_give_the_same_decisions(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    from intentkit.export.onnx_graph import GRAPH_VERSION, export_onnx

    maha_model = request.getfixturevalue(fixture)

    export_onnx(maha_model)
    export_onnx(maha_model, int8=True, min_agreement=0.0)
    manifest = json.loads((maha_model / "onnx" / "export.json").read_text())
    assert manifest["graph_version"] == GRAPH_VERSION
    texts = [*SAMPLE_TEXTS, "book a car", "my hotel room", "flight to rome"]
    ref = load_predictor(maha_model, device="cpu", backend="torch").predict(texts)
    for dtype in ("fp32", "int8"):
        got = load_predictor(maha_model, device="cpu", backend="onnx", dtype=dtype)
        assert got.runner.has_cls
        answers = got.predict(texts)
        assert [a["label"] for a in answers] == [a["label"] for a in ref], dtype
        tol = 1e-3 if dtype == "fp32" else 0.1
        np.testing.assert_allclose(
            [a["oos_score"] for a in answers], [a["oos_score"] for a in ref], rtol=tol, atol=tol
        )


@pytest.mark.parametrize("fixture", ["maha_model", "combined_model"])
def test_hf_handler_applies_the_feature_scorer_without_intentkit(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys
    import tarfile

    from intentkit.cli import main
    from test_packaging import HF_RUNNER

    maha_model = request.getfixturevalue(fixture)
    # A threshold in the middle of the texts' scores, so both branches of the rule run.
    meta = json.loads((maha_model / "intentkit.json").read_text())
    model = tmp_path / "model"
    shutil.copytree(maha_model, model, ignore=shutil.ignore_patterns("onnx"))
    scores = [a["oos_score"] for a in Predictor.from_dir(model).predict(SAMPLE_TEXTS)]
    meta["calibration"]["oos_threshold"] = float(np.median(scores))
    meta["calibration"]["oos_platt"] = {"a": 0.5, "b": -3.0, "prior": 0.1}
    (model / "intentkit.json").write_text(json.dumps(meta))
    archive = tmp_path / "hf.tar.gz"
    assert main(["export", str(model), "--format", "sagemaker-hf", "--output", str(archive)]) == 0
    served = tmp_path / "served"
    with tarfile.open(archive) as tar:
        assert oos.STATS_FILE in tar.getnames()
        tar.extractall(served, filter="data")
    request = [(json.dumps({"text": SAMPLE_TEXTS}), "application/json", "application/json")]
    proc = subprocess.run(
        [sys.executable, "-c", HF_RUNNER, str(served), json.dumps(request)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(json.loads(proc.stdout.splitlines()[-1])[0])
    want = Predictor.from_dir(model).predict(SAMPLE_TEXTS, batch_size=64)
    assert [g["predicted_class"] for g in got] == [w["label"] for w in want]
    assert "out_of_scope" in {w["label"] for w in want}
    np.testing.assert_allclose(
        [g["confidence"] for g in got], [w["confidence"] for w in want], rtol=1e-4
    )


def test_server_says_which_scorer_and_keeps_the_invocations_shape(maha_model: Path) -> None:
    from fastapi.testclient import TestClient

    from intentkit.config import ServeConfig
    from intentkit.serve.app import create_app
    from test_serve_app import _ready

    with TestClient(create_app(ServeConfig(), model_dir=maha_model)) as raw:
        client = _ready(raw)
        info = client.get("/info").json()["calibration"]
        assert info["oos_scorer"] == "mahalanobis"
        inv = client.post("/invocations", json={"text": SAMPLE_TEXTS[:2]}).json()
        assert [set(a) for a in inv] == [{"predicted_class", "confidence"}] * 2
        local = Predictor.from_dir(maha_model).predict(SAMPLE_TEXTS[:2])
        assert [a["predicted_class"] for a in inv] == [a["label"] for a in local]
        res = client.post("/predict", json={"inputs": SAMPLE_TEXTS[:2], "raw_scores": True})
        assert res.headers["x-oos-scorer"] == "mahalanobis"
        scores = [float(v) for v in res.headers["x-oos-score"].split(",")]
        np.testing.assert_allclose(scores, [a["oos_score"] for a in local], rtol=1e-4)


def test_evaluate_reports_every_scorer_side_by_side(combined_model: Path) -> None:
    from intentkit.evaluation.evaluate import oos_separation, scored_outputs

    pred = Predictor.from_dir(combined_model, device="cpu")
    texts = [*SAMPLE_TEXTS, "book a car", "my hotel room", "flight to rome"]
    logits, served, scores = scored_outputs(pred, texts)
    assert set(scores) == set(oos.SCORERS)
    np.testing.assert_allclose(served, pred.outputs(texts)[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(served, scores["combined"])
    true = ["oos" if i % 3 == 0 else "flight" for i in range(len(texts))]
    got = oos_separation(logits, scores, true, {"oos"}, pred.calibration)
    assert got["oos_scorer"] == "combined"
    assert set(got["oos_separation"]) == {"softmax", *oos.SCORERS}
    assert all(0.0 <= v["auroc"] <= 1.0 for v in got["oos_separation"].values())
    # An artifact whose calibration kept softmax still reports the stored feature scores.
    pred.calibration = {**pred.calibration, "oos_scorer": "softmax"}
    pred.oos_scorer, pred.oos_stats = "softmax", None
    _, served, scores = scored_outputs(pred, texts)
    assert served is None and set(scores) == set(oos.SCORERS)


def test_batch_result_carries_logits_and_the_oos_score_apart(maha_model: Path) -> None:
    import asyncio

    from intentkit.serve.batcher import MicroBatcher

    pred = Predictor.from_dir(maha_model, device="cpu")
    texts = SAMPLE_TEXTS[:3]

    async def submit() -> object:
        batcher = MicroBatcher(pred.encode, pred.forward_ids)
        batcher.start()
        try:
            return await batcher.submit(texts)
        finally:
            await batcher.stop()

    result = asyncio.run(submit())
    logits, score = pred.outputs(texts)
    assert result.logits.shape == (len(texts), len(pred.labels))  # no extra score column
    np.testing.assert_allclose(result.logits, logits, atol=1e-5)
    assert result.oos_score is not None and result.oos_score.shape == (len(texts),)
    np.testing.assert_allclose(result.oos_score, score, rtol=1e-5)
