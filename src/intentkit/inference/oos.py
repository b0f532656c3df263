"""Feature-space out-of-scope scores: Mahalanobis distance, k-NN cosine distance, and both.

Podolskiy et al. 2021 (https://arxiv.org/abs/2101.03778): a text far from every in-scope class
in the encoder's feature space is out-of-scope, whatever its softmax says. The feature is the
last layer's CLS hidden state (``last_hidden_state[:, 0]``, before any pooler). Three distances
(higher = further from the in-scope training data); the score the decision rule thresholds is
``-distance`` (higher = more in-scope, like a confidence):

- ``mahalanobis``: to the nearest in-scope class mean, with one shared within-class covariance
  shrunk by Ledoit-Wolf (a 384-d covariance from ~100 rows per class is singular without it).
  ``sqrt(min_c (x - mu_c)^T P (x - mu_c))`` with ``P = W W^T`` (Cholesky of the precision),
  computed as ``|xW|^2 - 2 xW.(mu_c W) + |mu_c W|^2``: one (H x H) and one (H x classes) product.
- ``knn`` (Sun et al. 2022, https://arxiv.org/abs/2204.06507): ``1 - cos`` to the k-th nearest
  in-scope training row (k = :data:`KNN_K`), over at most :data:`MAX_BANK_ROWS` rows (a uniform
  seed-0 sample beyond that): one (H x rows) product.
- ``combined``: the sum of both, each standardised by its mean and standard deviation over the
  in-scope validation rows (``combined_norm``); it can be negative.

On MiniLM CLINC150 (issue #11, bench/results/2026-12-02/oos_scratch_study.json) Mahalanobis
scored AUROC .978 / FPR95 .096, k-NN (k = 1) .977 / .116, against softmax's .934 / .306.

Stored in the artifact as ``oos_stats.safetensors`` (``safetensors.numpy``, never pickle), see
:data:`STATS_FIELDS`; files written before k-NN existed hold the Mahalanobis fields only and
serve that scorer. Numpy only at serving time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.errors import ModelError

STATS_FILE = "oos_stats.safetensors"
#: What intentkit.json["oos_stats"] says about the file (its fields and the feature).
STATS_FIELDS = {
    "means_w": "in-scope class means of the training rows' features, times whiten (classes, H)",
    "whiten": "W with W W^T = Ledoit-Wolf precision of the within-class covariance (H, H)",
    "class_ids": "model label id of each row of means_w (classes,)",
    "bank": "L2-normalised features of the in-scope training rows, k-NN's neighbours (rows, H)",
    "knn_k": "k of the k-NN distance (1,)",
    "combined_norm": "mean, sd of the mahalanobis and knn distances on in-scope val rows (4,)",
}
#: The feature scorers, in the order ``auto`` breaks ties (after ``softmax``).
SCORERS = ("mahalanobis", "knn", "combined")
#: k of the k-NN distance: k = 1 separated CLINC150's out-of-scope rows best (k = 1/5/10/20:
#: AUROC .977/.974/.972/.970 on MiniLM test, /tmp/oos_lab).
KNN_K = 1
#: Training rows kept as k-NN neighbours (20,000 x 768 fp32 = 61 MB for a base-size encoder).
MAX_BANK_ROWS = 20_000
FEATURE = "last-layer CLS hidden state (last_hidden_state[:, 0], before any pooler), fp32"


@dataclass(frozen=True)
class OosStats:
    """Class means and whitening matrix of the Mahalanobis score (see the module docstring)."""

    means_w: np.ndarray
    whiten: np.ndarray
    class_ids: np.ndarray
    bank: np.ndarray | None = None
    knn_k: int = KNN_K
    combined_norm: np.ndarray | None = None

    @property
    def scorers(self) -> tuple[str, ...]:
        """The feature scorers these statistics can serve."""
        if self.bank is None:
            return SCORERS[:1]
        return SCORERS if self.combined_norm is not None else SCORERS[:2]

    @property
    def hidden_size(self) -> int:
        """Feature dimension H."""
        return int(self.whiten.shape[0])

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance (n,) of each feature row to its nearest in-scope class mean."""
        x = self._check(features)
        z = x @ self.whiten
        m = self.means_w
        d2 = (z**2).sum(1)[:, None] - 2.0 * z @ m.T + (m**2).sum(1)[None, :]
        # The expansion can dip a hair below 0 for a row on a mean; a distance is never negative.
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0)) if len(x) else np.zeros(0)

    def knn_distance(self, features: np.ndarray) -> np.ndarray:
        """``1 - cos`` of each feature row to its k-th nearest in-scope training row (n,)."""
        if self.bank is None:
            raise ModelError("these out-of-scope statistics have no k-NN bank; refit them")
        x = _unit(self._check(features)).astype(np.float32)
        out = np.empty(len(x))
        k = min(self.knn_k, len(self.bank))
        for start in range(0, len(x), 1024):  # bounds the (rows x bank) similarity matrix
            sim = x[start : start + 1024] @ self.bank.T
            out[start : start + 1024] = 1.0 - -np.partition(-sim, k - 1, axis=1)[:, k - 1]
        return out

    def distances(self, features: np.ndarray, scorer: str = "mahalanobis") -> np.ndarray:
        """The ``scorer``'s distance (n,) of each feature row; higher = further out of scope."""
        if scorer == "mahalanobis":
            return self.distance(features)
        if scorer == "knn":
            return self.knn_distance(features)
        if scorer == "combined" and self.combined_norm is not None:
            return self._combine(self.distance(features), self.knn_distance(features))
        raise ModelError(
            f"these out-of-scope statistics serve {', '.join(self.scorers)}, not {scorer}; refit"
        )

    def all_distances(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Every scorer's distance (see :meth:`distances`), each computed once."""
        out = {"mahalanobis": self.distance(features)}
        if self.bank is not None:
            out["knn"] = self.knn_distance(features)
        if self.combined_norm is not None:
            out["combined"] = self._combine(out["mahalanobis"], out["knn"])
        return out

    def _combine(self, mahalanobis: np.ndarray, knn: np.ndarray) -> np.ndarray:
        """The combined distance: both distances standardised by ``combined_norm``, summed."""
        m_mu, m_sd, k_mu, k_sd = (float(v) for v in self.combined_norm)
        return (mahalanobis - m_mu) / m_sd + (knn - k_mu) / k_sd

    def score(self, features: np.ndarray, scorer: str = "mahalanobis") -> np.ndarray:
        """The decision score, higher = more in-scope: ``-distance``."""
        return -self.distances(features, scorer)

    def _check(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.hidden_size:
            raise ValueError(f"features must have shape (n, {self.hidden_size}), got {x.shape}")
        return x


def fit(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    exclude: int | None = None,
    max_bank_rows: int = MAX_BANK_ROWS,
) -> OosStats:
    """Fit class means + a shared Ledoit-Wolf-shrunk covariance, and the k-NN bank.

    Args:
        features: (n, H) CLS features of the training rows.
        labels: (n,) model label ids.
        exclude: the model's own out-of-scope class id, left out (it is no in-scope cluster).
        max_bank_rows: the k-NN bank keeps a uniform seed-0 sample of this many rows at most.

    Returns:
        The statistics without ``combined_norm`` (:func:`with_norm` adds it); ModelError when
        fewer than two in-scope rows remain.
    """
    from sklearn.covariance import LedoitWolf

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    keep = y != exclude if exclude is not None else np.ones(len(y), dtype=bool)
    x, y = x[keep], y[keep]
    if len(x) < 2 or x.ndim != 2:
        raise ModelError("out-of-scope statistics need at least two in-scope training rows")
    ids = np.unique(y)
    means = np.stack([x[y == c].mean(axis=0) for c in ids])
    centred = x - means[np.searchsorted(ids, y)]
    cov = LedoitWolf(assume_centered=True).fit(centred).covariance_
    # inv + Cholesky rather than solving per request: serving is then two matrix products.
    whiten = np.linalg.cholesky(np.linalg.inv(cov))
    bank = x
    if len(bank) > max_bank_rows:
        pick = np.random.default_rng(0).choice(len(bank), max_bank_rows, replace=False)
        bank = bank[np.sort(pick)]
    return OosStats(
        means_w=means @ whiten,
        whiten=whiten,
        class_ids=ids,
        bank=_unit(bank).astype(np.float32),
        knn_k=KNN_K,
    )


def with_norm(stats: OosStats, in_scope_features: np.ndarray) -> OosStats:
    """``stats`` plus ``combined_norm``: mean and sd of the Mahalanobis and k-NN distances of
    ``in_scope_features`` (the in-scope validation rows), which puts both on one scale."""
    import dataclasses

    if stats.bank is None or len(in_scope_features) < 2:
        return stats
    norm = []
    for d in (stats.distance(in_scope_features), stats.knn_distance(in_scope_features)):
        sd = float(d.std())
        norm += [float(d.mean()), sd if sd > 0 else 1.0]
    return dataclasses.replace(stats, combined_norm=np.array(norm, dtype=np.float64))


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (an all-zero row stays zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def to_bytes(stats: OosStats) -> bytes:
    """``stats`` as the bytes of a safetensors file (what :func:`save` writes)."""
    from safetensors.numpy import save as st_save

    tensors = {
        "means_w": np.ascontiguousarray(stats.means_w, dtype=np.float64),
        "whiten": np.ascontiguousarray(stats.whiten, dtype=np.float64),
        "class_ids": np.ascontiguousarray(stats.class_ids, dtype=np.int64),
    }
    if stats.bank is not None:
        tensors["bank"] = np.ascontiguousarray(stats.bank, dtype=np.float32)
        tensors["knn_k"] = np.array([stats.knn_k], dtype=np.int64)
    if stats.combined_norm is not None:
        tensors["combined_norm"] = np.ascontiguousarray(stats.combined_norm, dtype=np.float64)
    return st_save(tensors, metadata={"feature": FEATURE})


def save(stats: OosStats, path: str | Path) -> Path:
    """Write ``stats`` to ``path`` (safetensors, atomically)."""
    from intentkit.fsutil import atomic_open

    with atomic_open(path) as fh:
        fh.write(to_bytes(stats))
    return Path(path)


def load(path: str | Path, scorer: str = "mahalanobis") -> OosStats:
    """Read statistics written by :func:`save`; ModelError (one line) when absent, damaged, or
    without what ``scorer`` needs (a file from before k-NN serves ``mahalanobis`` only)."""
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"{path} is missing: the artifact's calibration uses the {scorer} scorer; "
            "refit it with `intentkit.training.oos_fit.fit_artifact(MODEL_DIR, DATA)` or retrain"
        )
    try:
        t = load_file(str(path))
        k = int(t["knn_k"][0]) if "knn_k" in t else KNN_K
        stats = OosStats(
            t["means_w"], t["whiten"], t["class_ids"], t.get("bank"), k, t.get("combined_norm")
        )
    except Exception as exc:  # a truncated or foreign file: say which and how to fix it
        raise ModelError(f"{path} is not valid out-of-scope statistics ({exc}); refit it") from exc
    if scorer in SCORERS and scorer not in stats.scorers:
        raise ModelError(
            f"{path} serves {', '.join(stats.scorers)}, not the calibration's {scorer} scorer; "
            "refit it with `intentkit.training.oos_fit.fit_artifact(MODEL_DIR, DATA)`"
        )
    return stats


def describe(stats: OosStats, n_rows: int) -> dict[str, Any]:
    """The ``intentkit.json["oos_stats"]`` entry for ``stats``."""
    return {
        "file": STATS_FILE,
        "feature": FEATURE,
        "fields": {k: v for k, v in STATS_FIELDS.items() if k in _present(stats)},
        "hidden_size": stats.hidden_size,
        "n_classes": int(len(stats.class_ids)),
        "n_train_rows": int(n_rows),
        "covariance": "shared within-class, Ledoit-Wolf shrinkage (sklearn.covariance)",
        "scorers": list(stats.scorers),
        "knn_k": int(stats.knn_k),
        "knn_bank_rows": int(len(stats.bank)) if stats.bank is not None else 0,
    }


def _present(stats: OosStats) -> set[str]:
    """The safetensors keys :func:`to_bytes` writes for ``stats``."""
    keys = {"means_w", "whiten", "class_ids"}
    if stats.bank is not None:
        keys |= {"bank", "knn_k"}
    if stats.combined_norm is not None:
        keys.add("combined_norm")
    return keys
