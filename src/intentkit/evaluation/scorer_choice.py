"""Which out-of-scope scorer ``--oos-scorer auto`` keeps, and P(out-of-scope | distance).

Both are fitted on the validation split by :func:`intentkit.evaluation.calibration.calibrate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from intentkit.errors import ConfigError

#: ``auto``'s scorer when validation has no out-of-scope rows (issue #21 item 0). Chosen on
#: evidence, ``python bench/oos_without_oos.py`` (bench/results/2026-12-04/oos_without_oos.json):
#: models trained without out-of-scope rows, CLINC150's other-domain and out-of-scope test rows.
#: On the demo's travel model it rejects 87 % / 91 % of them where softmax rejects 47 % / 56 %,
#: for 0.9 points of travel test accuracy (0.969 -> 0.960; 0.989 with no rejection). k-NN and
#: combined: within a point on travel, 4-19 points fewer rejections on CLINC150's banking and
#: small-talk domains.
NO_OOS_SCORER = "mahalanobis"
NO_OOS_RULE = (
    f"no out-of-scope validation rows: {NO_OOS_SCORER}, the feature-space distance, rejects "
    "what lies far from every intent, which softmax confidence cannot see "
    "(bench/oos_without_oos.py); same threshold rule on in-scope validation rows"
)


def choose_scorer(
    requested: str,
    scores: dict[str, np.ndarray],
    choices: dict[str, dict[str, Any]],
    is_oos: np.ndarray,
) -> tuple[str, dict[str, Any]]:
    """Pick the out-of-scope scorer (``--oos-scorer auto``) on validation.

    With out-of-scope rows: the scorer with the highest validation out-of-scope recall at the
    in-scope target (each at its own :func:`choose_threshold` threshold); ties go to
    ``softmax``. Without: :data:`NO_OOS_SCORER` whenever its distances are given. Separating
    right from wrong in-scope answers (the rule before) is not what the scorer is for: by that
    measure softmax won on the demo's travel model, which then answered "tell me a joke about
    cats" with ``translate`` at 0.966 (issue #21). ``by`` still records each scorer's validation
    in-scope rejection share at the threshold, the in-scope cost. A scorer other than ``auto``
    is taken as asked.

    Returns:
        ``(name, {"requested", "rule", "by": {name: value}})``.
    """
    oos = np.asarray(is_oos, bool)
    if oos.any():
        rule = "highest validation oos recall at the in-scope target"
        by = {name: choices[name]["oos_recall"] for name in scores}
        pick = "softmax"
        for name, value in by.items():
            if value is not None and (by[pick] is None or value > by[pick]):
                pick = name
    else:
        rule = NO_OOS_RULE if NO_OOS_SCORER in scores else "no feature scorer fitted: softmax"
        by = {name: choices[name]["in_scope_rejection_rate"] for name in scores}
        pick = NO_OOS_SCORER if NO_OOS_SCORER in scores else "softmax"
    if requested != "auto":
        pick = requested
    return pick, {"requested": requested, "rule": rule, "by": by}


def describe_choice(calibration: dict[str, Any] | None) -> str | None:
    """One line on the rejection a trained model serves: the scorer, why, and its in-scope cost
    on validation (what ``intentkit train`` prints); None without a calibration."""
    if not calibration:
        return None
    scorer = calibration.get("oos_scorer") or "softmax"
    sel = calibration.get("oos_selection") or {}
    why = f" ({sel['requested']}: {sel['rule']})" if sel.get("requested") == "auto" else ""
    val = calibration.get("val") or {}
    cost = val.get("in_scope_rejection_rate")
    line = f"out-of-scope rejection: {scorer} scorer{why}"
    if cost is not None:
        line += f"; rejects {cost:.1%} of in-scope validation rows"
    if val.get("oos_recall") is not None:
        line += f" and {val['oos_recall']:.1%} of out-of-scope ones"
    return line


def fit_platt(in_scope: np.ndarray, out_of_scope: np.ndarray, prior: float) -> dict[str, Any]:
    """Class-balanced Platt fit of P(out-of-scope | distance), stored with the design ``prior``.

    Balanced class weights make the fit a likelihood ratio with no prior of its own, so the
    validation split's out-of-scope share (3 % on CLINC150, 18 % on its test split) does not
    leak into it; :func:`intentkit.inference.decision.oos_probability` adds ``logit(prior)``.
    """
    from sklearn.linear_model import LogisticRegression

    if not 0 < prior < 1:
        raise ConfigError(f"--oos-prior must be in (0, 1), got {prior}")
    x = np.concatenate([in_scope, out_of_scope]).astype(np.float64)[:, None]
    y = np.concatenate([np.zeros(len(in_scope)), np.ones(len(out_of_scope))])
    # C large: two parameters and hundreds of rows need no regularisation.
    model = LogisticRegression(C=1e4, class_weight="balanced", max_iter=1000).fit(x, y)
    return {
        "a": float(model.coef_[0, 0]),
        "b": float(model.intercept_[0]),
        "prior": float(prior),
        "input": "distance",
        "n_in_scope": int(len(in_scope)),
        "n_oos": int(len(out_of_scope)),
    }
