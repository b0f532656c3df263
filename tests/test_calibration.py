"""Temperature scaling, ECE, the rejection-threshold rule, calibrate/apply parity, plots."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from figure_helpers import assert_real_png
from intentkit.errors import ConfigError
from intentkit.evaluation import calibration as cal
from intentkit.evaluation import metrics
from intentkit.inference import decision

LABELS = ["flight", "hotel", "car"]


def sample_calibrated(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a decent classifier whose labels are *drawn from its own softmax*.

    By construction softmax(logits) is the true class distribution, so the best temperature is 1.
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), rng.integers(0, k, n)] += 3.0  # one favoured class: ~75% accuracy
    probs = decision.softmax(logits)
    u = rng.random((n, 1))
    labels = (probs.cumsum(axis=1) < u).sum(axis=1).clip(max=k - 1)  # inverse-CDF sampling
    return logits, labels


# ----------------------------------------------------------------------------- softmax / T
def test_softmax_is_stable_and_tempered() -> None:
    p = decision.softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    assert np.allclose(p, [[1.0, 0.0], [0.5, 0.5]])
    hot = decision.softmax(np.array([[2.0, 0.0]]), temperature=2.0)
    assert hot[0, 0] == pytest.approx(1 / (1 + math.exp(-1.0)))
    with pytest.raises(ValueError, match="temperature"):
        decision.softmax(np.zeros((1, 2)), temperature=0.0)


def test_temperature_near_one_on_calibrated_logits() -> None:
    logits, labels = sample_calibrated(20_000, 8, seed=0)
    t = cal.fit_temperature(logits, labels)
    assert abs(t - 1.0) < 0.15, t


def test_temperature_fixes_overconfident_logits() -> None:
    logits, labels = sample_calibrated(20_000, 8, seed=1)
    over = 5.0 * logits  # same argmax, far too confident
    t = cal.fit_temperature(over, labels)
    assert t > 1.0
    assert t == pytest.approx(5.0, rel=0.15)  # it undoes the scaling
    assert cal._nll(over, labels, t) < cal._nll(over, labels, 1.0) - 0.5
    ece_before = metrics.expected_calibration_error(decision.softmax(over), labels)
    ece_after = metrics.expected_calibration_error(decision.softmax(over, t), labels)
    assert ece_after < ece_before / 3
    assert cal.fit_temperature(over, labels) == t  # deterministic


def test_fit_temperature_validates_inputs() -> None:
    with pytest.raises(ValueError, match="shape"):
        cal.fit_temperature(np.zeros((3, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="empty"):
        cal.fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="class ids"):
        cal.fit_temperature(np.zeros((2, 2)), np.array([0, 2]))


# ----------------------------------------------------------------------------- ECE
def test_ece_hand_worked() -> None:
    # n_bins=5 -> bins (0,.2] (.2,.4] (.4,.6] (.6,.8] (.8,1], right-closed.
    probs = np.array(
        [
            [0.35, 0.33, 0.32],  # conf .35 -> (.2,.4], pred 0, label 0: right
            [0.30, 0.40, 0.30],  # conf .40 -> (.2,.4] (right edge), pred 1, label 0: wrong
            [0.10, 0.20, 0.70],  # conf .70 -> (.6,.8], pred 2, label 2: right
            [0.75, 0.15, 0.10],  # conf .75 -> (.6,.8], pred 0, label 1: wrong
            [0.90, 0.05, 0.05],  # conf .90 -> (.8,1],  pred 0, label 0: right
            [0.00, 1.00, 0.00],  # conf 1.0 -> (.8,1],  pred 1, label 1: right
            [0.05, 0.85, 0.10],  # conf .85 -> (.8,1],  pred 1, label 2: wrong
        ]
    )
    labels = np.array([0, 0, 2, 1, 0, 1, 2])
    # (.2,.4]: acc 1/2, conf (.35+.40)/2 = .375  -> 2/7 * |.5 - .375|  = 2/7 * .125 = .25/7
    # (.6,.8]: acc 1/2, conf (.70+.75)/2 = .725  -> 2/7 * |.5 - .725|  = 2/7 * .225 = .45/7
    # (.8,1]:  acc 2/3, conf (.9+1+.85)/3 = 2.75/3 -> 3/7 * |2/3 - 2.75/3| = 3/7 * .25 = .75/7
    # ECE = (.25 + .45 + .75) / 7 = 1.45 / 7
    assert metrics.expected_calibration_error(probs, labels, n_bins=5) == pytest.approx(
        1.45 / 7, abs=1e-9
    )
    # One bin: |acc - mean conf| over everything = |4/7 - 4.95/7|.
    assert metrics.expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(
        0.95 / 7, abs=1e-9
    )


# ----------------------------------------------------------------------------- threshold rule
def brute_force(conf, correct, is_oos, target):
    """O(n^2) reference: maximise oos recall over feasible candidates; ties -> larger t."""
    rows_in = [i for i in range(len(conf)) if not is_oos[i]]
    rows_oos = [i for i in range(len(conf)) if is_oos[i]]

    def scores(t):
        acc = sum(correct[i] and conf[i] >= t for i in rows_in) / len(rows_in)
        rec = sum(conf[i] < t for i in rows_oos) / len(rows_oos) if rows_oos else 0.0
        return acc, rec

    best = None
    for t in sorted({0.0, *(c for c in conf if math.isfinite(c))}):
        acc, rec = scores(t)
        if acc >= target - 1e-12 and (best is None or (rec, t) >= (best[1], best[0])):
            best = (t, rec, acc)
    if best is None:
        acc0, rec0 = scores(0.0)
        return 0.0, rec0, acc0, False
    return (*best, True)


def synthetic_val(rng: np.random.Generator, n: int, oos_share: float = 0.2):
    """In-scope rows are confident and mostly right; oos rows sit lower; some ties and -inf."""
    is_oos = rng.random(n) < oos_share
    conf = np.where(is_oos, rng.beta(3, 3, n), rng.beta(8, 1.5, n))
    correct = ~is_oos & (rng.random(n) < conf)  # confident rows are right more often
    conf[is_oos & (rng.random(n) < 0.1)] = -np.inf  # "predicted the oos class"
    return conf, correct, is_oos


@pytest.mark.parametrize("seed", range(8))
def test_threshold_meets_constraint_and_is_optimal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    conf, correct, is_oos = synthetic_val(rng, 2000)
    target = float(rng.choice([0.6, 0.7, 0.8]))  # raw in-scope accuracy ~0.84
    out = cal.choose_threshold(conf, correct, is_oos, target)
    t = out["threshold"]
    acc = (correct & (conf >= t))[~is_oos].mean()
    rec = (conf < t)[is_oos].mean()
    assert out["constraint_met"] and acc >= target
    assert out["in_scope_accuracy"] == pytest.approx(acc)
    assert out["oos_recall"] == pytest.approx(rec)
    assert out["in_scope_rejection_rate"] == pytest.approx((conf < t)[~is_oos].mean())
    # No threshold anywhere on a fine grid does better on recall while honouring the target.
    for g in np.linspace(0, 1, 401):
        if (correct & (conf >= g))[~is_oos].mean() >= target:
            assert (conf < g)[is_oos].mean() <= rec + 1e-12
    # The next candidate up breaks the constraint: the choice is the largest feasible one.
    above = np.unique(conf[np.isfinite(conf) & (conf > t)])
    if above.size:
        assert (correct & (conf >= above[0]))[~is_oos].mean() < target


def test_threshold_beats_naive_fixed_threshold() -> None:
    rng = np.random.default_rng(42)
    conf, correct, is_oos = synthetic_val(rng, 5000)
    target = 0.8
    ours = cal.choose_threshold(conf, correct, is_oos, target)
    naive = 0.5  # the common "reject below 50%" default
    assert ours["constraint_met"]
    assert ours["oos_recall"] > (conf < naive)[is_oos].mean() + 0.05


def test_threshold_exact_vs_brute_force() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        conf = np.round(rng.random(n), 1)  # 1 decimal: plenty of ties, and exact zeros
        is_oos = rng.random(n) < 0.3
        if is_oos.all():
            is_oos[0] = False
        correct = rng.random(n) < 0.7
        conf[is_oos & (rng.random(n) < 0.2)] = -np.inf
        target = float(rng.choice([0.2, 0.5, 0.8, 0.95, 1.0]))
        out = cal.choose_threshold(conf, correct, is_oos, target)
        t, rec, acc, met = brute_force(list(conf), list(correct), list(is_oos), target)
        assert out["threshold"] == t
        assert out["constraint_met"] == met
        assert out["in_scope_accuracy"] == pytest.approx(acc)
        assert (out["oos_recall"] or 0.0) == pytest.approx(rec)


def test_threshold_without_oos_rows_takes_largest_feasible() -> None:
    conf = np.array([0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995, 1.0])
    correct = np.array([0, 1, 0, 1, 1, 1, 1, 1, 1, 1], dtype=bool)
    out = cal.choose_threshold(conf, correct, np.zeros(10, dtype=bool), 0.8)
    # t=0.4 keeps 8/10 right (0.8), t=0.6 drops the right 0.4 row -> 7/10. Largest feasible: 0.4.
    assert out["threshold"] == 0.4
    assert out["in_scope_accuracy"] == pytest.approx(0.8)
    assert out["oos_recall"] is None
    assert out["constraint_met"] is True
    # A target computed in floating point (0.1 * 7 = 0.7000000000000001) still accepts 7/10,
    # which t = 0.8 keeps (rows 0.8 ... 1.0 are all right).
    assert 0.1 * 7 > 0.7
    assert cal.choose_threshold(conf, correct, np.zeros(10, bool), 0.1 * 7)["threshold"] == 0.8


def test_threshold_unattainable_target() -> None:
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 0, 1, 0], dtype=bool)
    is_oos = np.array([0, 0, 0, 1], dtype=bool)
    out = cal.choose_threshold(conf, correct, is_oos, 0.9)
    assert out["threshold"] == 0.0
    assert out["constraint_met"] is False
    assert out["in_scope_accuracy"] == pytest.approx(2 / 3)
    assert out["oos_recall"] == 0.0


def test_threshold_validates_and_scales() -> None:
    with pytest.raises(ValueError, match="same length"):
        cal.choose_threshold(np.zeros(3), np.zeros(2), np.zeros(3), 0.9)
    with pytest.raises(ValueError, match="in-scope"):
        cal.choose_threshold(np.zeros(2), np.zeros(2), np.ones(2), 0.9)
    with pytest.raises(ConfigError, match="--oos-target"):
        cal.choose_threshold(np.zeros(2), np.zeros(2), np.zeros(2), 1.5)
    # 10^5 rows: an O(n^2) scan would take minutes; sort + searchsorted takes milliseconds.
    rng = np.random.default_rng(0)
    conf, correct, is_oos = synthetic_val(rng, 100_000)
    start = time.perf_counter()
    cal.choose_threshold(conf, correct, is_oos, 0.9)
    assert time.perf_counter() - start < 5.0


# ----------------------------------------------------------------------------- calibrate / apply
def val_with_oos_class(seed: int, n: int = 3000):
    """4 classes, the last being "oos"; 5x over-confident logits so T matters."""
    rng = np.random.default_rng(seed)
    logits, labels = sample_calibrated(n, 4, seed)
    return 5.0 * logits, labels, rng


def answers_report(logits, labels_true, names, calibration, oos_labels):
    answered, _, _ = decision.apply(logits, names, calibration)
    return metrics.oos_report(
        answered,
        labels_true,
        oos_labels=oos_labels,
        reject_label=calibration["reject_label"],
    )


def test_calibrate_with_oos_class_matches_apply() -> None:
    names = [*LABELS, "oos"]
    logits, labels, _ = val_with_oos_class(0)
    out = cal.calibrate(logits, labels, names, oos_label="oos", target_in_scope_accuracy=0.8)
    assert out["temperature"] == pytest.approx(5.0, rel=0.15)
    assert out["oos_label"] == "oos" and out["reject_label"] == "out_of_scope"
    val = out["val"]
    assert val["n"] == len(labels) and val["n_oos"] == int((labels == 3).sum())
    assert val["nll_after"] < val["nll_before"] and val["ece_after"] < val["ece_before"]
    assert out["constraint_met"] and val["in_scope_accuracy"] >= 0.8
    assert 0 < val["oos_recall"] <= 1
    # Parity: the served decision path reproduces the validation numbers exactly.
    rep = answers_report(logits, [names[i] for i in labels], names, out, {"oos"})
    assert rep["in_scope_accuracy"] == pytest.approx(val["in_scope_accuracy"])
    assert rep["oos_recall"] == pytest.approx(val["oos_recall"])
    assert json.loads(json.dumps(out)) == out


def test_calibrate_with_extra_oos_logits() -> None:
    logits, labels = sample_calibrated(2000, 3, seed=3)
    rng = np.random.default_rng(3)
    extra = rng.normal(0.0, 1.0, (400, 3))  # oos texts: no favoured class, low confidence
    out = cal.calibrate(
        logits, labels, LABELS, extra_oos_logits=extra, target_in_scope_accuracy=0.7
    )
    val = out["val"]
    assert out["oos_label"] is None
    assert (val["n"], val["n_oos"], val["n_temperature"]) == (2400, 400, 2000)
    assert val["oos_recall"] > 0.5  # lower confidence than in-scope rows, so mostly rejected
    truth = [LABELS[i] for i in labels] + ["oos"] * len(extra)
    rep = answers_report(np.concatenate([logits, extra]), truth, LABELS, out, {"oos"})
    assert rep["in_scope_accuracy"] == pytest.approx(val["in_scope_accuracy"])
    assert rep["oos_recall"] == pytest.approx(val["oos_recall"])
    assert json.loads(json.dumps(out)) == out


def test_calibrate_rejects_bad_options() -> None:
    logits, labels = sample_calibrated(50, 3, seed=0)
    with pytest.raises(ConfigError, match="--oos-label"):
        cal.calibrate(logits, labels, LABELS, oos_label="nope")
    with pytest.raises(ConfigError, match="--reject-label"):
        cal.calibrate(logits, labels, LABELS, reject_label="car")
    with pytest.raises(ConfigError, match="--val-size"):
        cal.calibrate(np.zeros((0, 3)), np.zeros(0, dtype=int), LABELS)
    with pytest.raises(ValueError, match="columns"):
        cal.calibrate(logits, labels, LABELS[:2])
    with pytest.raises(ValueError, match="columns"):
        cal.calibrate(logits, labels, LABELS, extra_oos_logits=np.zeros((2, 4)))


def two_class_logit(p: float, temperature: float) -> list[float]:
    """Logits [a, 0] whose tempered softmax gives the first class probability p."""
    return [temperature * math.log(p / (1 - p)), 0.0]


def test_apply_threshold_boundary_and_switches() -> None:
    names = ["yes", "oos"]
    c = {"temperature": 2.0, "threshold": 0.7, "reject_label": "out_of_scope", "oos_label": None}
    logits = np.array([two_class_logit(0.7 + 1e-6, 2.0), two_class_logit(0.7 - 1e-6, 2.0)])
    answered, conf, probs = decision.apply(logits, names, c)
    assert answered == ["yes", "out_of_scope"]
    assert conf[0] > 0.7 > conf[1]
    assert np.allclose(probs.sum(axis=1), 1.0)
    # A confidence exactly on the threshold is answered (reject only when conf < threshold).
    c_on = {**c, "threshold": float(conf[0])}
    assert decision.apply(logits[:1], names, c_on)[0] == ["yes"]
    # The model's own oos class maps to the reject label even when confident.
    c_oos = {**c, "oos_label": "oos", "threshold": 0.0}
    assert decision.apply(np.array([[0.0, 9.0]]), names, c_oos)[0] == ["out_of_scope"]
    # reject=False and calibration=None both answer the raw top class.
    assert decision.apply(logits, names, c, reject=False)[0] == ["yes", "yes"]
    answered, conf, probs = decision.apply(logits, names, None)
    assert answered == ["yes", "yes"]
    assert np.allclose(probs, decision.softmax(logits))  # T = 1
    # An empty batch is fine (the predictor sends one for an empty request).
    empty = decision.apply(np.zeros((0, 2), dtype=np.float32), names, c)
    assert empty[0] == [] and empty[1].shape == (0,) and empty[2].shape == (0, 2)
    with pytest.raises(ValueError, match="columns"):
        decision.apply(np.zeros((1, 3)), names, c)


# ----------------------------------------------------------------------------- report / plot
def test_oos_report_hand_example() -> None:
    pred = ["a", "b", "out_of_scope", "oos", "a", "out_of_scope", "oos"]
    true = ["a", "a", "b", "oos", "oos", "oos", "c"]
    rep = metrics.oos_report(pred, true, oos_labels={"oos"}, reject_label="out_of_scope")
    # in-scope rows 0,1,2,6: only row 0 answered right -> 1/4
    # oos rows 3,4,5: rows 3 and 5 flagged -> recall 2/3
    # flagged rows 2,3,5,6: rows 3 and 5 truly oos -> precision 2/4
    assert rep == {
        "in_scope_accuracy": 0.25,
        "oos_recall": pytest.approx(2 / 3),
        "oos_precision": 0.5,
        "n_in_scope": 4,
        "n_oos": 3,
    }
    none = metrics.oos_report(["a"], ["a"], oos_labels={"oos"}, reject_label="out_of_scope")
    assert none["oos_recall"] is None and none["oos_precision"] is None
    with pytest.raises(ValueError, match="rows"):
        metrics.oos_report(["a"], [], oos_labels=set(), reject_label="x")


def test_reliability_diagram_writes_png(tmp_path) -> None:
    logits, labels = sample_calibrated(3000, 5, seed=5)
    over = 5.0 * logits
    t = cal.fit_temperature(over, labels)
    from intentkit.evaluation.figures import reliability_diagram

    out = reliability_diagram(
        decision.softmax(over), labels, tmp_path / "plots" / "reliability.png",
        probs_after=decision.softmax(over, t), title="val",
    )  # fmt: skip
    assert out == tmp_path / "plots" / "reliability.png"
    assert_real_png(out)
    assert [p.name for p in out.parent.iterdir()] == ["reliability.png"]  # no temp leftovers


def test_calibrate_default_target_gives_up_at_most_one_point() -> None:
    # No --oos-target: the target is the unrejected accuracy minus DEFAULT_MAX_ACCURACY_DROP,
    # so a model without oos data never silently rejects many good queries.
    logits, labels = sample_calibrated(3000, 3, seed=5)
    unrejected = float((logits.argmax(1) == labels).mean())
    out = cal.calibrate(logits, labels, LABELS)
    target = unrejected - cal.DEFAULT_MAX_ACCURACY_DROP
    assert out["target_in_scope_accuracy"] == pytest.approx(target)
    assert out["val"]["in_scope_accuracy"] >= target - 1e-12
    assert out["val"]["in_scope_accuracy"] < unrejected  # it does reject the least sure rows
    assert out["val"]["in_scope_rejection_rate"] <= 0.05
    assert out["threshold"] > 0
