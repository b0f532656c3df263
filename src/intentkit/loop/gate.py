"""The promote gate: is a new model proven better than the one serving, on the same rows?

Both models answer the same rows of a prepared folder written by ``intentkit data add``: the
frozen ``test`` split (the old labels) and ``reviewed_test`` (what was reviewed, new labels
included). A row is right when the answer is its label, or when its label is out-of-scope
(the model's reject label, or a name :func:`intentkit.inference.decision.oos_names` gives)
and the answer is the reject label. McNemar's test (:func:`intentkit.evaluation.report.compare.
mcnemar`) compares the paired right/wrong outcomes.

The rule: **pass** when the new model is not significantly worse on ``test`` (not: more rows
only the old one gets right *and* p < ``alpha``) and has a strictly higher accuracy on
``reviewed_test``. Without a ``reviewed_test`` split the second condition cannot be shown, so
the gate refuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from intentkit.errors import DataError


def _right(predictor: Any, frame: Any) -> np.ndarray:
    from intentkit.inference.decision import oos_names, reject_label_of

    cal = predictor.calibration or {}
    reject_label = reject_label_of(cal)
    oos = oos_names(cal.get("oos_label")) | {reject_label}
    answers = [a["label"] for a in predictor.predict(frame["text"].tolist())]
    truth = frame["label"].tolist()
    return np.array(
        [a == t or (t in oos and a == reject_label) for a, t in zip(answers, truth, strict=True)]
    )


def _split_result(old: np.ndarray, new: np.ndarray) -> dict[str, Any]:
    from intentkit.evaluation.report.compare import mcnemar

    return {
        "rows": int(len(old)),
        "accuracy_old": float(old.mean()) if len(old) else None,
        "accuracy_new": float(new.mean()) if len(new) else None,
        **mcnemar(int((old & ~new).sum()), int((~old & new).sum())),
    }


def gate(
    old_model: str | Path | Any,
    new_model: str | Path | Any,
    data: str | Path,
    *,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Score both models (folders or loaded Predictors) on ``data``; return the verdict.

    Returns ``{"test": {...}, "reviewed_test": {...} | None, "passed": bool, "reasons": [...]}``;
    each split holds rows, both accuracies, McNemar's b (old right, new wrong), c and p-value.
    """
    import pandas as pd

    from intentkit.data.dataset import load_prepared
    from intentkit.inference.predictor import Predictor

    ds = load_prepared(data)
    if not len(ds.test):
        raise DataError(f"--data {data}: the test split has no rows")
    reviewed_file = Path(data) / "reviewed_test.parquet"
    reviewed = pd.read_parquet(reviewed_file) if reviewed_file.is_file() else None
    old, new = (
        m if isinstance(m, Predictor) else Predictor.from_dir(Path(m), reject=True)
        for m in (old_model, new_model)
    )
    result: dict[str, Any] = {
        "test": _split_result(_right(old, ds.test), _right(new, ds.test)),
        "reviewed_test": None,
    }
    reasons = []
    t = result["test"]
    if t["b"] > t["c"] and t["p_value"] < alpha:
        reasons.append(
            f"significantly worse on the frozen test split: {t['b']} rows only the old model "
            f"gets right vs {t['c']} (McNemar p = {t['p_value']:.3g} < {alpha})"
        )
    if reviewed is None or not len(reviewed):
        reasons.append(
            f"no reviewed_test rows in {data}: make the data with `intentkit data add` so the "
            "new model can show it is better on what was reviewed"
        )
    else:
        r = _split_result(_right(old, reviewed), _right(new, reviewed))
        result["reviewed_test"] = r
        if not r["accuracy_new"] > r["accuracy_old"]:
            reasons.append(
                f"not better on reviewed_test: accuracy {r['accuracy_new']:.3f} (new) vs "
                f"{r['accuracy_old']:.3f} (old)"
            )
    return {**result, "alpha": alpha, "passed": not reasons, "reasons": reasons}
