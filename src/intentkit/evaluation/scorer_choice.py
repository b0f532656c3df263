"""Which out-of-scope scorer ``--oos-scorer auto`` keeps, and P(out-of-scope | distance).

Both are fitted on the validation split by :func:`intentkit.evaluation.calibration.calibrate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from intentkit.errors import ConfigError

#: Right and wrong validation answers each needed before ``auto`` compares scorers by AUROC.
MIN_AUROC_ROWS = 20


def choose_scorer(
    requested: str,
    scores: dict[str, np.ndarray],
    choices: dict[str, dict[str, Any]],
    correct: np.ndarray,
    is_oos: np.ndarray,
) -> tuple[str, dict[str, Any]]:
    """Pick the out-of-scope scorer (``--oos-scorer auto``) on validation.

    With out-of-scope rows: the scorer with the highest validation out-of-scope recall at the
    in-scope target (each at its own :func:`choose_threshold` threshold). Without: the highest
    AUROC of correct vs incorrect in-scope predictions, when there are at least
    :data:`MIN_AUROC_ROWS` of each (a handful of wrong answers makes that AUROC noise: on the
    bundled travel set's 300 val rows, 2 wrong answers picked a scorer that then rejected more test
    rows). Ties, too few rows, or an undefined AUROC go to ``softmax``. A scorer other than
    ``auto`` is taken as asked.

    Returns:
        ``(name, {"requested", "rule", "by": {name: value}})``.
    """
    from intentkit.evaluation.metrics import auroc

    oos = np.asarray(is_oos, bool)
    if oos.any():
        rule = "highest validation oos recall at the in-scope target"
        by = {name: choices[name]["oos_recall"] for name in scores}
    else:
        rule = "highest validation AUROC of correct vs incorrect in-scope predictions"
        ok = np.asarray(correct, bool)[~oos]
        by = {name: auroc(ok, s[~oos]) for name, s in scores.items()}
        if min(int(ok.sum()), int((~ok).sum())) < MIN_AUROC_ROWS:
            rule += f" (fewer than {MIN_AUROC_ROWS} right or wrong answers: softmax kept)"
            by = {name: None for name in by}
    pick = requested
    if requested == "auto":
        pick = "softmax"
        for name, value in by.items():
            if value is not None and (by[pick] is None or value > by[pick]):
                pick = name
    return pick, {"requested": requested, "rule": rule, "by": by}


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
