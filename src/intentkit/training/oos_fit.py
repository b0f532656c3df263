"""Fit the feature-space out-of-scope statistics after training, or post hoc on an artifact.

After ``intentkit train`` (when ``--oos-scorer`` is not ``softmax``): one inference pass of the
trained model over the training rows (length-sorted batches, eval mode) gives the CLS features
that :func:`intentkit.inference.oos.fit` turns into class means + a Ledoit-Wolf precision and
the k-NN bank; a pass over validation gives the combined score's scale and every scorer's
distances, which the calibration's scorer choice, threshold and Platt fit read
(:func:`intentkit.evaluation.calibration.calibrate`).

:func:`fit_artifact` does the same for an artifact trained before the scorer existed, without
retraining: it refits the calibration on the artifact's validation split and adds
``oos_stats.safetensors``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.inference import oos

log = logging.getLogger(__name__)


@dataclass
class OosFeatures:
    """Fitted statistics and the distances calibration needs."""

    stats: oos.OosStats
    n_train_rows: int
    #: {scorer: (n,)} distances (:meth:`intentkit.inference.oos.OosStats.all_distances`).
    val_distances: dict[str, np.ndarray]
    extra_oos_distances: dict[str, np.ndarray] | None
    train_oos_distances: dict[str, np.ndarray] | None
    val_logits: np.ndarray

    def describe(self) -> dict[str, Any]:
        """``intentkit.json["oos_stats"]``."""
        return oos.describe(self.stats, self.n_train_rows)


def fit_features(
    predictor: Any,
    train_df: Any,
    val_df: Any,
    oos_val: list[str],
    labels: list[str],
    oos_label: str | None,
    batch_size: int = 64,
) -> OosFeatures:
    """Statistics from the training rows' features and the distances of the validation rows.

    ``train_df``/``val_df`` have ``text`` and ``label`` columns with model labels; rows of the
    model's ``oos_label`` class are no in-scope cluster: they are left out of the statistics and
    their distances join the out-of-scope side of the Platt fit (``train_oos_distance``).
    """
    label2id = {name: i for i, name in enumerate(labels)}
    oos_id = label2id.get(oos_label) if oos_label is not None else None
    _, train_x = predictor.features(train_df["text"].tolist(), batch_size=batch_size)
    train_y = np.array([label2id[x] for x in train_df["label"]], dtype=np.int64)
    stats = oos.fit(train_x, train_y, exclude=oos_id)
    n_in = int((train_y != oos_id).sum()) if oos_id is not None else len(train_y)
    val_logits, val_x = predictor.features(val_df["text"].tolist(), batch_size=batch_size)
    val_y = np.array([label2id[x] for x in val_df["label"]], dtype=np.int64)
    in_val = val_x[val_y != oos_id] if oos_id is not None else val_x
    # The combined score's scale comes from in-scope rows the statistics have not seen.
    stats = oos.with_norm(stats, in_val if len(in_val) >= 2 else train_x[train_y != oos_id])
    train_oos = train_x[train_y == oos_id] if oos_id is not None else train_x[:0]
    extra = None
    if oos_val:
        extra = stats.all_distances(predictor.features(oos_val, batch_size=batch_size)[1])
    log.info("out-of-scope statistics: %d classes from %d rows", len(stats.class_ids), n_in)
    return OosFeatures(
        stats=stats,
        n_train_rows=n_in,
        val_distances=stats.all_distances(val_x),
        extra_oos_distances=extra,
        train_oos_distances=stats.all_distances(train_oos) if len(train_oos) else None,
        val_logits=val_logits,
    )


def fit_artifact(
    model_dir: str | Path,
    data: str | Path,
    *,
    scorer: str = "auto",
    prior: float | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Add ``oos_stats.safetensors`` to a trained artifact and refit its calibration; no training.

    The splits are the ones training used (``val.parquet``, else ``--val-size`` of train with
    the recorded seed) and the recorded ``--oos-label``, ``--reject-label`` and
    ``--oos-target``. Temperature and the softmax threshold are refitted on PyTorch fp32 logits
    of the validation rows (what the trainer's evaluation gave, up to float noise).

    Returns:
        The new ``intentkit.json["calibration"]`` (also written, atomically, with the file).
    """
    from intentkit.artifact import META_FILE, check_artifact_dir, read_meta
    from intentkit.config import TrainConfig, build
    from intentkit.data.dataset import load_prepared
    from intentkit.fsutil import atomic_write_json
    from intentkit.inference.predictor import Predictor
    from intentkit.training.setup import calibrate_on_val, model_oos_label, validation_split

    model_dir = check_artifact_dir(model_dir)
    meta = read_meta(model_dir)
    stored = {k: v for k, v in (meta.get("train_config") or {}).items() if k != "model_resolved"}
    cfg = build(TrainConfig, stored, oos_scorer=scorer, oos_prior=prior)
    predictor = Predictor.from_dir(model_dir, device="cpu", reject=False)
    predictor.calibration, predictor.oos_stats = None, None  # raw logits and features only
    labels = predictor.labels
    ds = load_prepared(data)
    train_df, val_df, oos_val, _ = validation_split(ds, cfg, labels)
    train_df = train_df[train_df["label"].isin(labels)].reset_index(drop=True)
    feats = fit_features(
        predictor, train_df, val_df, oos_val, labels, model_oos_label(cfg, labels), batch_size
    )
    calibration = calibrate_on_val(
        cfg, predictor, feats.val_logits, val_df, oos_val, labels, feats=feats
    )
    oos.save(feats.stats, model_dir / oos.STATS_FILE)
    atomic_write_json(
        model_dir / META_FILE, {**meta, "calibration": calibration, "oos_stats": feats.describe()}
    )
    return calibration
