"""Confidence calibration and out-of-scope rejection.

Two post-hoc steps fitted on the validation split after training, stored verbatim as
``intentkit.json["calibration"]`` and applied by :func:`intentkit.inference.decision.apply`, the
one decision function that ``intentkit predict``, ``intentkit evaluate`` and the server share:

1. **Temperature scaling** (Guo et al. 2017, https://arxiv.org/abs/1706.04599): one scalar T > 0
   that minimises validation NLL of ``softmax(logits / T)``. It never changes the argmax, only
   how much the confidences can be trusted.
2. **Rejection threshold**: answer ``reject_label`` when the calibrated top-class confidence is
   below a threshold (or the model predicts its own out-of-scope class). The threshold is the
   *largest* one that keeps validation in-scope accuracy at or above a target; see
   :func:`choose_threshold` for the exact rule and why it maximises out-of-scope recall.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from intentkit.config import DEFAULT_REJECT_LABEL, OOS_SCORERS
from intentkit.errors import ConfigError
from intentkit.evaluation.metrics import expected_calibration_error
from intentkit.evaluation.scorer_choice import choose_scorer, fit_platt
from intentkit.inference.decision import check_labels, check_logits, softmax, top

T_BOUNDS = (0.05, 20.0)  # outside this range the model (or the validation split) is broken
THRESHOLD_RULE = (
    "threshold = largest t in {0} U {validation confidences} such that in-scope accuracy "
    "(correct and conf >= t, over in-scope rows) >= target; this maximises out-of-scope recall. "
    "Reject when calibrated confidence < threshold or the prediction is oos_label; "
    "if no t meets the target, threshold = 0 and constraint_met = false."
)
# Default --oos-target: the accuracy with no rejection minus this (one point).
DEFAULT_MAX_ACCURACY_DROP = 0.01
#: The out-of-scope share the served P(oos | x) assumes (issue #11: test ECE held from 1 % to 50 %).
DEFAULT_OOS_PRIOR = 0.10
# Floating slack when comparing an accuracy k/n with the target (19/20 vs 0.95 must pass).
_ACC_EPS = 1e-12


# ----------------------------------------------------------------------------- validation helpers


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    # logsumexp keeps this finite for very confident rows where softmax underflows to 0.
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(labels)), labels]))


# ----------------------------------------------------------------------------- public API


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fit the temperature T that minimises the NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    The search runs over log T in ``[log 0.05, log 20]`` with bounded Brent
    (``scipy.optimize.minimize_scalar``). NLL is convex in 1/T, hence unimodal in log T, so the
    1-D search finds the global optimum; it is deterministic (no random start).

    Args:
        logits: validation logits (n, n_classes).
        labels: integer class ids (n,).

    Returns:
        The fitted temperature as a Python float (clipped to the bounds).
    """
    z = check_logits(logits)
    y = check_labels(labels, z.shape[0], z.shape[1])
    lo, hi = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])
    res = minimize_scalar(
        lambda log_t: _nll(z, y, float(np.exp(log_t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.clip(np.exp(res.x), *T_BOUNDS))


def choose_threshold(
    confidence: np.ndarray,
    correct: np.ndarray,
    is_oos: np.ndarray,
    target_in_scope_accuracy: float,
    *,
    probabilities: bool = True,
) -> dict[str, Any]:
    """Choose the rejection threshold on validation data.

    Rule: a row is *rejected* when ``confidence < threshold``. Candidates are 0 and every
    distinct finite confidence value. For a candidate t:

    * in-scope accuracy = #(in-scope rows with ``correct`` and ``confidence >= t``) / #in-scope
      (a rejected in-scope row counts as wrong);
    * out-of-scope recall = #(oos rows with ``confidence < t``) / #oos.

    The chosen threshold is the **largest candidate whose in-scope accuracy >= target**.
    Accuracy can only fall and recall only rise as t grows, so this candidate maximises
    out-of-scope recall subject to the constraint (ties in recall go to the larger t, which also
    rejects the most low-confidence inputs); with no oos rows the same rule applies. If even t = 0
    misses the target, the threshold is 0.0 and ``constraint_met`` is False. Any threshold, not
    only a candidate, behaves like the smallest candidate at or above it, so this is optimal over
    all real thresholds. O(n log n): sorts plus ``searchsorted``.

    Callers fold "the model predicted its own oos class" into the inputs: such rows get
    ``confidence = -inf`` (always rejected) and, when in-scope, ``correct = False``.

    ``probabilities=False`` accepts any real-valued score where higher means more in-scope
    (``-distance`` of :mod:`intentkit.inference.oos`): the lowest candidate is then -inf instead
    of 0, and choosing it (reject nothing) is reported as ``threshold = None``.

    Args:
        confidence: calibrated top-class confidence per row (n,); -inf allowed, NaN not.
        correct: whether the prediction is right (n,); ignored for oos rows.
        is_oos: whether the row is out-of-scope (n,).
        target_in_scope_accuracy: the accuracy to keep, in (0, 1].

    Returns:
        ``{"threshold", "in_scope_accuracy", "oos_recall" (None without oos rows),
        "in_scope_rejection_rate", "constraint_met", "rule"}``.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    oos = np.asarray(is_oos, dtype=bool)
    if conf.ndim != 1 or ok.shape != conf.shape or oos.shape != conf.shape:
        raise ValueError(
            "confidence, correct and is_oos must be 1-D with the same length, got shapes "
            f"{conf.shape}, {ok.shape}, {oos.shape}"
        )
    finite = conf[np.isfinite(conf)]
    if np.isnan(conf).any() or np.isposinf(conf).any():
        raise ValueError("confidence must be finite or -inf; got NaN or +inf")
    if probabilities and finite.min(initial=0) < 0:
        raise ValueError("confidence must be probabilities (>= 0) or -inf; got < 0")
    if not 0 < target_in_scope_accuracy <= 1:
        raise ConfigError(f"--oos-target must be in (0, 1], got {target_in_scope_accuracy}")
    n_in = int((~oos).sum())
    n_oos = int(oos.sum())
    if n_in == 0:
        raise ValueError("choose_threshold needs at least one in-scope row")

    floor = 0.0 if probabilities else -np.inf
    cand = np.unique(np.concatenate([[floor], finite]))  # sorted ascending, cand[0] == floor
    right_conf = np.sort(conf[~oos & ok])  # in-scope rows that count while answered
    in_conf = np.sort(conf[~oos])
    oos_conf = np.sort(conf[oos])
    # #(x >= t) = len - #(x < t); #(x < t) = searchsorted(x, t, "left"): one pass per array.
    n_right = len(right_conf) - np.searchsorted(right_conf, cand, side="left")
    n_rejected_in = np.searchsorted(in_conf, cand, side="left")
    n_caught = np.searchsorted(oos_conf, cand, side="left")
    acc = n_right / n_in
    feasible = np.nonzero(acc >= target_in_scope_accuracy - _ACC_EPS)[0]
    # acc is non-increasing in t, so the feasible set is a prefix and its last index is the answer.
    met = feasible.size > 0
    i = int(feasible[-1]) if met else 0  # unattainable target: fall back to t = 0, reject nothing
    return {
        "threshold": float(cand[i]) if np.isfinite(cand[i]) else None,
        "in_scope_accuracy": float(acc[i]),
        "oos_recall": float(n_caught[i] / n_oos) if n_oos else None,
        "in_scope_rejection_rate": float(n_rejected_in[i] / n_in),
        "constraint_met": bool(met),
        "rule": THRESHOLD_RULE,
    }


def calibrate(
    val_logits: np.ndarray,
    val_labels: np.ndarray,
    label_names: list[str],
    *,
    oos_label: str | None = None,
    reject_label: str = DEFAULT_REJECT_LABEL,
    target_in_scope_accuracy: float | None = None,
    extra_oos_logits: np.ndarray | None = None,
    scorer: str = "softmax",
    val_distances: dict[str, np.ndarray] | None = None,
    extra_oos_distances: dict[str, np.ndarray] | None = None,
    train_oos_distances: dict[str, np.ndarray] | None = None,
    prior: float = DEFAULT_OOS_PRIOR,
    fixed_temperature: float | None = None,
) -> dict[str, Any]:
    """Fit temperature and threshold on validation; return ``intentkit.json["calibration"]``.

    T is fitted on the rows that have a model class (in-scope and, when the model has one, its
    oos class); ``extra_oos_logits`` are out-of-scope texts without a model class and only join
    the threshold choice. Then, on calibrated probabilities: an oos row is *caught* when the
    model predicts ``oos_label`` or its confidence is below the threshold; an in-scope row is
    *correct* when predicted right, not as ``oos_label``, and with confidence >= threshold. The
    threshold follows :func:`choose_threshold`.

    Args:
        val_logits: validation logits (n, len(label_names)).
        val_labels: integer ids into ``label_names`` (n,).
        label_names: the model's classes, in logit order.
        oos_label: the model class that means out-of-scope (``--oos-label``), if any.
        reject_label: the label answered for rejected inputs (``--reject-label``).
        target_in_scope_accuracy: keep validation in-scope accuracy >= this (``--oos-target``).
            None (the default) means "give up at most :data:`DEFAULT_MAX_ACCURACY_DROP` of the
            accuracy the model has with no rejection": an absolute default such as 0.95 would
            make a 99 %-accurate model reject 4 % of good queries on a dataset with no oos rows.
        extra_oos_logits: logits (m, len(label_names)) of out-of-scope texts with no model class.
        scorer: one of :data:`intentkit.config.OOS_SCORERS` (``--oos-scorer``; see
            :func:`choose_scorer`).
            The feature scorers need ``val_distances`` (and ``extra_oos_distances`` with
            ``extra_oos_logits``): ``{scorer: (n,) distance of each row}``
            (:meth:`intentkit.inference.oos.OosStats.all_distances`); ``auto`` compares
            softmax with every scorer given there.
        train_oos_distances: the same for training rows labelled out-of-scope; they join the
            out-of-scope side of the Platt fit only.
        prior: the design share of out-of-scope traffic the served probability assumes.
        fixed_temperature: use this temperature instead of fitting one (a validation set too
            small to fit it, :func:`intentkit.training.setup.calibrate_on_val`).

    Returns:
        JSON-ready ``{"temperature", "threshold", "reject_label", "oos_label",
        "target_in_scope_accuracy", "constraint_met", "rule", "val": {"n", "n_oos",
        "n_temperature", "in_scope_accuracy", "oos_recall", "in_scope_rejection_rate",
        "nll_before", "nll_after", "ece_before", "ece_after"}}``.
    """
    labels = [str(x) for x in label_names]
    if np.asarray(val_logits).size == 0:
        raise ConfigError(
            "calibration needs validation rows; pass --val-size > 0 or turn calibration off"
        )
    z = check_logits(val_logits, "val_logits")
    if z.shape[1] != len(labels):
        raise ValueError(f"val_logits has {z.shape[1]} columns but there are {len(labels)} labels")
    y = check_labels(val_labels, z.shape[0], z.shape[1], "val_labels")
    if oos_label is not None and oos_label not in labels:
        raise ConfigError(f"--oos-label {oos_label!r} is not one of the model's labels")
    if reject_label in labels and reject_label != oos_label:
        # Otherwise a rejected answer would be indistinguishable from a real in-scope class.
        raise ConfigError(
            f"--reject-label {reject_label!r} is also an in-scope label; pass "
            f"--oos-label {reject_label} if it means out-of-scope, or choose another --reject-label"
        )
    if target_in_scope_accuracy is not None and not 0 < target_in_scope_accuracy <= 1:
        raise ConfigError(f"--oos-target must be in (0, 1], got {target_in_scope_accuracy}")
    extra = np.zeros((0, z.shape[1]))
    if extra_oos_logits is not None:
        extra = check_logits(extra_oos_logits, "extra_oos_logits", allow_empty=True)
        if extra.shape[1] != z.shape[1]:
            raise ValueError(
                f"extra_oos_logits has {extra.shape[1]} columns, val_logits has {z.shape[1]}"
            )

    temperature = fit_temperature(z, y) if fixed_temperature is None else fixed_temperature
    oos_id = labels.index(oos_label) if oos_label is not None else -1
    all_logits = np.concatenate([z, extra])
    _, pred, conf = top(all_logits, temperature)
    is_oos = np.concatenate([y == oos_id, np.ones(len(extra), dtype=bool)])
    truth = np.concatenate([y, np.full(len(extra), -1)])
    pred_oos = pred == oos_id
    # An in-scope row predicted as oos_label is never pred == truth, so it counts as wrong.
    correct = pred == truth
    if target_in_scope_accuracy is None:
        in_scope = ~is_oos
        unrejected = float((correct & ~pred_oos)[in_scope].mean()) if in_scope.any() else 1.0
        target_in_scope_accuracy = max(unrejected - DEFAULT_MAX_ACCURACY_DROP, 1e-9)
    # Predicting the oos class is a rejection at every threshold: -inf is below all of them.
    choice = choose_threshold(
        np.where(pred_oos, -np.inf, conf), correct, is_oos, target_in_scope_accuracy
    )

    result = {
        "temperature": temperature,
        # Python floats survive JSON exactly (repr round-trips), so the served threshold is
        # bit-identical to the one chosen here.
        "threshold": choice["threshold"],
        "reject_label": reject_label,
        "oos_label": oos_label,
        "target_in_scope_accuracy": float(target_in_scope_accuracy),
        "constraint_met": choice["constraint_met"],
        "rule": choice["rule"],
        "val": {
            "n": int(len(all_logits)),
            "n_oos": int(is_oos.sum()),
            "n_temperature": int(len(z)),
            "in_scope_accuracy": choice["in_scope_accuracy"],
            "oos_recall": choice["oos_recall"],
            "in_scope_rejection_rate": choice["in_scope_rejection_rate"],
            "nll_before": _nll(z, y, 1.0),
            "nll_after": _nll(z, y, temperature),
            "ece_before": expected_calibration_error(softmax(z), y),
            "ece_after": expected_calibration_error(softmax(z, temperature), y),
        },
        "oos_scorer": "softmax",
    }
    if scorer not in OOS_SCORERS:
        raise ConfigError(f"--oos-scorer must be one of {', '.join(OOS_SCORERS)}, got {scorer}")
    if not val_distances:
        if scorer not in ("softmax", "auto"):
            raise ValueError(f"the {scorer} scorer needs val_distances")
        return result
    if scorer not in ("softmax", "auto") and scorer not in val_distances:
        raise ValueError(f"the {scorer} scorer needs val_distances[{scorer!r}]")
    dists: dict[str, np.ndarray] = {}
    for name, d in val_distances.items():
        parts = [np.asarray(d, np.float64)]
        if len(extra):
            parts.append(np.asarray((extra_oos_distances or {})[name], np.float64))
        dists[name] = np.concatenate(parts)
        if dists[name].shape != is_oos.shape:
            raise ValueError(f"{name}: {len(dists[name])} distances for {len(is_oos)} rows")
    scores = {"softmax": np.where(pred_oos, -np.inf, conf)}
    choices = {"softmax": choice}
    for name, dist in dists.items():
        scores[name] = np.where(pred_oos, -np.inf, -dist)
        choices[name] = choose_threshold(
            scores[name], correct, is_oos, target_in_scope_accuracy, probabilities=False
        )
    pick, selection = choose_scorer(scorer, scores, choices, is_oos)
    result["oos_selection"] = selection
    if pick == "softmax":
        return result
    feat, dist = choices[pick], dists[pick]
    platt = None
    if is_oos.any():
        more = np.asarray((train_oos_distances or {}).get(pick, np.zeros(0)), np.float64)
        platt = fit_platt(dist[~is_oos], np.concatenate([dist[is_oos], more]), prior)
    result["val"].update(
        {k: feat[k] for k in ("in_scope_accuracy", "oos_recall", "in_scope_rejection_rate")}
    )
    result.update(
        {
            "oos_scorer": pick,
            "oos_threshold": feat["threshold"],
            "constraint_met": feat["constraint_met"],
            "rule": THRESHOLD_RULE.replace("calibrated confidence", "-distance"),
            "oos_platt": platt,
            "confidence": "(1 - q) * p_top answered, q rejected; q = P(oos | distance)"
            if platt
            else "p_top: no out-of-scope validation rows to fit P(oos | distance)",
        }
    )
    return result
