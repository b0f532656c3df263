"""Predictor: tokenize -> forward -> labels and scores, from a trained artifact folder.

One decision path for everyone: ``intentkit predict``, ``intentkit evaluate`` and the HTTP server
all call :meth:`Predictor.outputs` (logits, and the out-of-scope score when the calibration's
scorer reads features, from the same forward pass) then :func:`intentkit.inference.decision.apply`,
so served answers equal local ones. Batches are sorted by length and padded only to their own
longest text (no pad-to-64).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.artifact import check_artifact_dir, read_meta, served_max_length
from intentkit.errors import ConfigError, ModelError


def resolve_device(device: str = "auto") -> str:
    """Map ``auto`` to cuda/cpu and fail with a one-line error for an unavailable device."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible; use --device cpu (or auto)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: MPS is not available; use --device cpu (or auto)")
    return device


DTYPES = ("auto", "fp32", "bf16", "fp16", "int8")


def resolve_dtype(dtype: str, device: str) -> Any:
    """Map ``auto|fp32|bf16|fp16|int8`` to the torch dtype the weights load in on ``device``.

    Half precision needs a GPU; ``int8`` loads fp32 weights that
    :func:`intentkit.export.quantize.quantize_int8` then converts, and is CPU-only (PyTorch's
    dynamic int8 kernels are CPU kernels).
    """
    import torch

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype}")
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    if dtype == "int8":
        if device != "cpu":
            raise ConfigError("--dtype int8 is CPU-only; use --dtype bf16 (or auto) on a GPU")
        return torch.float32
    if dtype != "fp32" and device == "cpu":
        # Never half precision on CPU: without bf16 matrix units it is far slower than fp32.
        raise ConfigError(f"--dtype {dtype} needs a GPU; use --dtype fp32 (or auto) on CPU")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def resolve_backend(backend: str, device: str, dtype: str) -> str:
    """Pick ``torch`` or ``onnx`` for ``backend`` on ``device`` (already resolved) and ``dtype``.

    ``onnx`` runs on CPU in fp32 or int8 only; ``auto`` picks it there when onnxruntime is
    installed (it is 2-3x faster than PyTorch eager fp32 on CPUs; bench/RESULTS.md).
    """
    from intentkit.config import BACKENDS
    from intentkit.export.onnx_graph import onnx_available, require_onnx

    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend}")
    cpu_ok = device == "cpu" and dtype in ("auto", "fp32", "int8")
    if backend == "onnx":
        if not cpu_ok:
            raise ConfigError(
                f"--backend onnx runs on CPU in fp32 or int8 (got --device {device} --dtype "
                f"{dtype}); use --backend torch there"
            )
        require_onnx()
        return "onnx"
    if backend == "auto" and cpu_ok and onnx_available():
        return "onnx"
    return "torch"


def default_threads(dtype: str = "fp32", backend: str = "torch") -> int:
    """Intra-op threads for serving: every usable core, except all but one for torch int8.

    Measured side by side on a quiet 2-core box at concurrency 32 (bench/RESULTS.md):
    ONNX Runtime ModernBERT-base served 105 req/s with 2 threads vs 63 with 1 (fp32) and 201
    vs 167 (int8); PyTorch fp32 48.9 vs 29.5. PyTorch int8 is the exception: its forwards are
    short, so the event loop, HTTP parsing and tokenization compete with OpenMP's barriers
    (168 req/s with 1 thread vs 119 with 2). On a box shared with other busy processes, pass
    ``--threads`` lower (OpenMP collapses when the CPU is oversubscribed).
    """
    import os

    try:
        cores = len(os.sched_getaffinity(0))  # honours taskset / container CPU sets
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, cores - 1) if (dtype, backend) == ("int8", "torch") else cores


def _onnx_runner(path: Path, dtype: str, threads: int | None, *, strict: bool) -> Any:
    """An OnnxRunner over the (cached) export of ``path``; None with a warning if not strict."""
    import logging

    from intentkit.export.onnx_graph import export_onnx
    from intentkit.export.quantize import Int8Refused
    from intentkit.inference.onnx_runner import OnnxRunner

    try:
        onnx_path = export_onnx(path, int8=dtype == "int8")
    except Exception as exc:
        # A refused int8 graph is no reason to fall back to PyTorch int8, which moves the
        # answers at least as much (bench/RESULTS.md): the user must choose fp32 or accept it.
        if strict or isinstance(exc, Int8Refused):
            raise
        logging.getLogger(__name__).warning(
            "ONNX backend unavailable for %s (%s: %s); using PyTorch", path, type(exc).__name__, exc
        )
        return None
    return OnnxRunner(onnx_path, threads=threads)


class Predictor:
    """A loaded intent classifier; :meth:`logits` may be called from several threads."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        meta: dict[str, Any] | None = None,
        device: str = "cpu",
        reject: bool = True,
        path: Path | None = None,
        runner: Any = None,
        config: Any = None,
        oos_stats: Any = None,
    ) -> None:
        """Wrap a loaded classifier.

        ``model`` is a PyTorch ``...ForSequenceClassification``; or None with ``runner`` (a
        callable ``(input_ids, attention_mask) -> logits`` such as an
        :class:`~intentkit.inference.onnx_runner.OnnxRunner`) and the model's ``config``.
        ``oos_stats`` (:class:`~intentkit.inference.oos.OosStats`) is required when the
        calibration's ``oos_scorer`` reads features (``mahalanobis``, ``knn``, ``combined``).
        """
        if model is None and (runner is None or config is None):
            raise ValueError("Predictor needs a model, or a runner and its config")
        self.model = model.eval() if model is not None else None
        self.runner = runner
        self.backend = "torch" if runner is None else "onnx"
        self.tokenizer = tokenizer
        self.meta = meta or {}
        self.device = device
        self.reject = reject
        self.path = path
        config = config if config is not None else model.config
        self.config = config
        id2label = config.id2label
        self.labels: list[str] = [str(id2label[i]) for i in range(len(id2label))]
        self.max_length: int = served_max_length(config, self.meta)
        self.calibration: dict[str, Any] | None = self.meta.get("calibration")
        self.oos_scorer: str = str((self.calibration or {}).get("oos_scorer") or "softmax")
        if self.oos_scorer != "softmax" and oos_stats is None:
            raise ValueError(f"the {self.oos_scorer} scorer needs oos_stats")
        self.oos_stats = oos_stats if self.oos_scorer != "softmax" else None
        self.buckets: Any = None  # a buckets.BucketPolicy pads to fixed shapes (CUDA serving)

    @classmethod
    def from_dir(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        reject: bool = True,
        threads: int | None = None,
        dtype: str = "fp32",
        backend: str = "torch",
        serving: bool = False,
    ) -> Predictor:
        """Load an artifact folder (validated first: missing files are listed with the fix).

        ``dtype`` is ``fp32`` (default: the precision calibration was fitted in, so answers
        match evaluation), ``auto`` (fp32 on CPU, bf16 on CUDA), ``bf16`` or ``fp16``; half
        precision on CPU is refused (bf16 is ~300x slower on CPUs without bf16 units).
        ``int8`` (CPU only) quantizes the linear layers dynamically for faster serving.

        ``backend`` is ``torch``, ``onnx`` (ONNX Runtime on CPU, fp32 or int8; the export is
        made once and cached next to the weights, see :mod:`intentkit.export.onnx_graph`) or
        ``auto`` (``onnx`` on CPU when onnxruntime is installed and the export verifies,
        else ``torch`` with a warning saying why).

        ``serving`` with no ``threads`` picks :func:`default_threads` for the backend chosen here
        (the server's policy), so the backend is resolved once per load.
        """
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from intentkit.modeling import quiet_transformers

        path = check_artifact_dir(path)
        device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device)
        chosen = resolve_backend(backend, device, dtype)
        if threads is None and serving:
            threads = default_threads(dtype, chosen)
        tokenizer = AutoTokenizer.from_pretrained(path)
        meta = read_meta(path)
        stats = load_oos_stats(path, meta)
        if chosen == "onnx":
            runner = _onnx_runner(path, dtype, threads, strict=backend == "onnx")
            if runner is not None:
                from transformers import AutoConfig

                config = AutoConfig.from_pretrained(path)
                return cls(
                    None,
                    tokenizer,
                    meta=meta,
                    device="cpu",
                    reject=reject,
                    path=path,
                    runner=runner,
                    config=config,
                    oos_stats=stats,
                )
        if threads:
            torch.set_num_threads(threads)
        # A library call is quiet: no "Loading weights" bar on the caller's stderr.
        with quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch_dtype)
        model.to(device)
        if dtype == "int8":
            from intentkit.export.quantize import quantize_int8

            model = quantize_int8(model.eval())
        return cls(
            model, tokenizer, meta=meta, device=device, reject=reject, path=path, oos_stats=stats
        )

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_length``, unpadded."""
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, padding=False
        )
        return enc["input_ids"]

    def forward(
        self, ids: Sequence[Sequence[int]], *, features: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(logits, CLS features or None)`` of one batch, padded to its own longest row (or to
        its :attr:`buckets` shape, filler rows dropped from the result)."""
        from intentkit.inference.padding import pad_rows

        pad_id = self.tokenizer.pad_token_id or 0
        if self.buckets is None:
            return self._forward(*pad_rows(ids, pad_id), features)
        logits, cls = self._forward(*self.buckets.pad(ids, pad_id), features)
        return logits[: len(ids)], None if cls is None else cls[: len(ids)]

    def _forward(
        self, input_ids: np.ndarray, mask: np.ndarray, features: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if self.runner is not None:
            if not features:
                return self.runner(input_ids, mask), None
            logits, cls = self.runner.outputs(input_ids, mask)
            if cls is None:
                raise ModelError(
                    f"the ONNX graph {self.runner.path} has no `cls` output; re-export it with "
                    "`intentkit export MODEL_DIR --force`"
                )
            return logits, cls
        import torch

        from intentkit.inference.features import forward_with_cls

        with torch.inference_mode():
            t_ids = torch.from_numpy(input_ids).to(self.device)
            t_mask = torch.from_numpy(mask).to(self.device)
            if not features:
                out = self.model(input_ids=t_ids, attention_mask=t_mask)
                return out.logits.float().cpu().numpy(), None
            logits, cls = forward_with_cls(self.model, t_ids, t_mask)
        return logits.float().cpu().numpy(), cls.float().cpu().numpy()

    def forward_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """One row per text for the micro-batcher: the logits, then one column with the
        out-of-scope score when the scorer reads features (:meth:`split` separates them)."""
        if self.oos_stats is None:
            return self.forward(ids)[0]
        logits, cls = self.forward(ids, features=True)
        score = self.oos_stats.score(cls, self.oos_scorer)  # one or two extra matrix products
        return np.concatenate([logits, score[:, None].astype(np.float32)], axis=1)

    def split(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(logits, oos score or None)`` from :meth:`forward_ids` rows."""
        if self.oos_stats is None:
            return rows, None
        return rows[:, :-1], rows[:, -1].astype(np.float64)

    def _batched(self, texts: Sequence[str], batch_size: int, fn: Any, width: int) -> np.ndarray:
        """``fn(ids)`` over length-sorted batches of ``texts``; rows back in input order."""
        ids = self.encode(texts) if len(texts) else []
        order = np.argsort([len(x) for x in ids], kind="stable")
        result = np.empty((len(ids), width), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            result[chunk] = fn([ids[i] for i in chunk])
        return result

    def outputs(
        self, texts: Sequence[str], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(logits (n, n_labels), out-of-scope score (n,) or None)`` in input order."""
        width = len(self.labels) + (self.oos_stats is not None)
        return self.split(self._batched(texts, batch_size, self.forward_ids, width))

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Raw logits (n, n_labels), batching length-sorted texts; rows in input order."""
        return self.outputs(texts, batch_size)[0]

    def features(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, last-layer CLS features (n, hidden))`` of one pass, in input order."""
        k = len(self.labels)

        def both(ids: Sequence[Sequence[int]]) -> np.ndarray:
            logits, cls = self.forward(ids, features=True)
            return np.concatenate([logits, cls], axis=1)

        rows = self._batched(texts, batch_size, both, k + int(self.config.hidden_size))
        return rows[:, :k], rows[:, k:]

    def decide(
        self,
        logits: np.ndarray,
        *,
        oos_score: np.ndarray | None = None,
        top_k: int | None = 1,
        reject: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Turn logits into answers: ``{"label", "confidence", "scores": [{"label","score"}...]}``.

        ``label`` is the reject label when out-of-scope rejection applies; ``scores`` holds the
        ``top_k`` calibrated class probabilities (all when ``top_k`` is None), highest first.
        With a feature scorer, ``oos_score`` (from :meth:`outputs`) is required and each answer
        also carries it as ``"oos_score"`` (higher = more in-scope).
        """
        from intentkit.inference.decision import apply

        use_reject = self.reject if reject is None else reject
        answered, conf, probs = apply(
            logits, self.labels, self.calibration, reject=use_reject, oos_score=oos_score
        )
        k = len(self.labels) if top_k is None else max(1, min(top_k, len(self.labels)))
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            {
                "label": answered[i],
                "confidence": float(conf[i]),
                "scores": [{"label": self.labels[j], "score": float(probs[i, j])} for j in top[i]],
                **({} if oos_score is None else {"oos_score": float(oos_score[i])}),
            }
            for i in range(len(answered))
        ]

    def predict(
        self,
        texts: str | Sequence[str],
        *,
        top_k: int | None = 1,
        reject: bool | None = None,
        batch_size: int = 64,
    ) -> list[dict[str, Any]]:
        """Predict one text or a list; always returns a list of answers (see :meth:`decide`)."""
        if isinstance(texts, str):
            texts = [texts]
        logits, score = self.outputs(texts, batch_size=batch_size)
        return self.decide(logits, oos_score=score, top_k=top_k, reject=reject)


def load_oos_stats(path: Path, meta: dict[str, Any]) -> Any:
    """The artifact's out-of-scope statistics when its calibration's scorer reads features."""
    scorer = (meta.get("calibration") or {}).get("oos_scorer") or "softmax"
    if scorer == "softmax":
        return None
    from intentkit.inference import oos

    return oos.load(path / oos.STATS_FILE, scorer)


def load(path: str | Path, **kwargs: Any) -> Predictor:
    """Load a trained artifact folder: ``intentkit.load("model").predict(["hi"])``."""
    return Predictor.from_dir(path, **kwargs)
