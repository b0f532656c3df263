"""The one decision function: logits (and calibration) to answers.

``intentkit predict``, ``intentkit evaluate``, the HTTP server and the ONNX backends all answer
through :func:`apply`, with the calibration that training fitted on the validation split
(:mod:`intentkit.evaluation.calibration`) and stored as ``intentkit.json["calibration"]``:
softmax(logits / temperature); the answer is ``reject_label`` when the top-class probability is
below the threshold or the top class is the model's own out-of-scope label.

With ``calibration["oos_scorer"] == "mahalanobis"`` the rejection reads the feature-space score
instead (:mod:`intentkit.inference.oos`; ``oos_score`` = -distance, higher = more in-scope):
rejected when ``oos_score < oos_threshold``. When a Platt fit of P(out-of-scope | distance)
exists (``oos_platt``, fitted class-balanced on validation, then shifted to a design prior),
the served confidence is the probability that the served answer is right:
``q = sigmoid(a * distance + b + logit(prior))``; answered rows get ``(1 - q) * p_top``,
rejected rows ``q``. Without it (no out-of-scope validation rows) confidence stays ``p_top``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from intentkit.config import DEFAULT_REJECT_LABEL

#: Label names that mean out-of-scope in data even without a calibration or ``--oos-label``
#: (CLINC150's ``--include-oos`` rows).
OOS_NAMES = ("oos",)


def reject_label_of(calibration: dict[str, Any] | None) -> str:
    """The label an artifact answers for rejected inputs: ``calibration["reject_label"]``, else
    :data:`DEFAULT_REJECT_LABEL`. ``report.json`` carries the same key, so a report works too."""
    return str((calibration or {}).get("reject_label") or DEFAULT_REJECT_LABEL)


def oos_names(oos_label: str | None = None) -> set[str]:
    """Label names that count as out-of-scope: ``oos_label`` (``--oos-label``, or a
    calibration's model class) and :data:`OOS_NAMES`. Evaluation, training's validation split
    and the report's charts all ask here."""
    return {name for name in (oos_label, *OOS_NAMES) if name}


def check_logits(logits: Any, name: str = "logits", *, allow_empty: bool = False) -> np.ndarray:
    """``logits`` as a finite float64 (n, k) array, or a ValueError naming ``name``."""
    # float64 everywhere: calibrate() and apply() must compute bit-identical confidences, so a
    # validation row whose confidence *is* the threshold is answered, not rejected, when served.
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array (n_rows, n_classes), got shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: need at least one row")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_labels(labels: Any, n_rows: int, n_classes: int, name: str = "labels") -> np.ndarray:
    """``labels`` as int64 class ids in [0, n_classes), one per row, or a ValueError."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise ValueError(f"{name} must have shape ({n_rows},) to match the rows, got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer class ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(
            f"{name} must be class ids in [0, {n_classes}), got {arr.min()}..{arr.max()}"
        )
    return arr


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax of ``logits / temperature`` along the last axis (float64).

    Args:
        logits: array of shape (..., n_classes).
        temperature: T > 0; T > 1 softens, T < 1 sharpens.

    Returns:
        Probabilities with the same shape as ``logits``; each row sums to 1.
    """
    if not temperature > 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    if z.ndim == 0:
        raise ValueError("logits must have at least one axis (the classes)")
    # Subtracting the row max is exact for softmax and prevents exp overflow.
    z = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def top(logits: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probs, argmax, top confidence): the one code path of calibration and :func:`apply`."""
    probs = softmax(logits, temperature)
    pred = probs.argmax(axis=1)
    return probs, pred, probs[np.arange(len(pred)), pred]


def apply(
    logits: np.ndarray,
    label_names: list[str],
    calibration: dict[str, Any] | None,
    *,
    reject: bool = True,
    oos_score: np.ndarray | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Turn logits into answers: the one decision function of predictor, evaluate and server.

    Args:
        logits: raw logits (n, len(label_names)); n may be 0.
        label_names: the model's classes, in logit order.
        calibration: ``intentkit.json["calibration"]`` or None (T = 1, no rejection).
        reject: False answers the top class even below the threshold (``--no-reject``).
        oos_score: (n,) feature-space score (higher = more in-scope); required when the
            calibration's ``oos_scorer`` is not ``softmax``, ignored otherwise.

    Returns:
        ``(answered labels, confidence (n,), probabilities (n, k))``. With ``reject`` and a
        calibration, rows below the scorer's threshold or with a top class equal to
        ``oos_label`` are answered ``reject_label``. Confidence is the top-class probability
        after temperature, or the out-of-scope-aware one described in the module docstring.
    """
    z = check_logits(logits, allow_empty=True)
    if z.shape[1] != len(label_names):
        raise ValueError(
            f"logits have {z.shape[1]} columns but there are {len(label_names)} labels"
        )
    cal = calibration or {}
    probs, pred, conf = top(z, float(cal.get("temperature") or 1.0))
    answered = [str(label_names[i]) for i in pred]
    scorer = str(cal.get("oos_scorer") or "softmax")
    score = None
    if scorer != "softmax":
        if oos_score is None:
            raise ValueError(f"the calibration's {scorer} scorer needs oos_score (one per row)")
        score = np.asarray(oos_score, dtype=np.float64).reshape(-1)
        if score.shape[0] != z.shape[0]:
            raise ValueError(f"oos_score has {score.shape[0]} rows, logits {z.shape[0]}")
    rejected = np.zeros(len(pred), dtype=bool)
    if reject and calibration:
        # Same comparison as calibrate(): score >= threshold is answered, so a validation row
        # sitting exactly on the threshold is answered here too.
        if score is None:
            rejected = conf < float(cal.get("threshold") or 0.0)
        elif cal.get("oos_threshold") is not None:  # None: no threshold met the target
            rejected = score < float(cal["oos_threshold"])
        oos_label = cal.get("oos_label")
        if oos_label is not None and oos_label in label_names:
            rejected |= pred == list(label_names).index(oos_label)
        reject_label = reject_label_of(cal)
        for i in np.nonzero(rejected)[0]:
            answered[i] = reject_label
    platt = cal.get("oos_platt")
    if score is not None and platt:
        q = oos_probability(-score, platt)
        conf = np.where(rejected, q, (1.0 - q) * conf)
    return answered, conf, probs


def oos_probability(distance: np.ndarray, platt: dict[str, Any]) -> np.ndarray:
    """P(out-of-scope | distance) at the design prior: ``sigmoid(a*d + b + logit(prior))``."""
    from scipy.special import expit, logit

    prior = float(platt["prior"])
    return expit(
        float(platt["a"]) * np.asarray(distance, np.float64) + float(platt["b"]) + logit(prior)
    )
