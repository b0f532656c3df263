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

from intentkit.artifact import check_artifact_dir, labels_of, read_meta, served_max_length
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
    :func:`quantize_int8` then converts, and is CPU-only (PyTorch's
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


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantization of every ``nn.Linear`` (weights int8, activations per batch).

    The linear layers hold nearly all of an encoder's FLOPs; fbgemm's int8 GEMM runs them ~2x
    faster than fp32 on AVX2 CPUs. Logits move slightly (measured in bench/RESULTS.md), so the
    calibration fitted in fp32 is kept as is.
    """
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the eager API still works here
        # and torchao is a heavy extra dependency for one call.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


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
        self.labels: list[str] = labels_of(config.id2label)
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
        runner: Any = None,
    ) -> Predictor:
        """Load an artifact folder (validated first: missing files are listed with the fix).

        ``dtype`` is ``fp32`` (default: the precision calibration was fitted in, so answers
        match evaluation), ``auto`` (fp32 on CPU, bf16 on CUDA), ``bf16`` or ``fp16``; half
        precision on CPU is refused (bf16 is ~300x slower on CPUs without bf16 units).
        ``int8`` (CPU only) quantizes the linear layers dynamically for faster serving.

        ``runner`` (an :class:`~intentkit.inference.onnx_runner.OnnxRunner` over this artifact's
        graph) replaces the PyTorch weights. The runtime never exports a graph itself:
        :func:`intentkit.export.loader.load_predictor` picks the backend and exports on demand.
        """
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        path = check_artifact_dir(path)
        device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device)
        tokenizer = AutoTokenizer.from_pretrained(path)
        meta = read_meta(path)
        stats = load_oos_stats(path, meta)
        common = {"meta": meta, "reject": reject, "path": path, "oos_stats": stats}
        if runner is not None:
            config = AutoConfig.from_pretrained(path)
            return cls(None, tokenizer, device="cpu", runner=runner, config=config, **common)
        if threads:
            torch.set_num_threads(threads)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch_dtype)
        model.to(device)
        if dtype == "int8":
            model = quantize_int8(model.eval())
        return cls(model, tokenizer, device=device, **common)

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

    def forward_ids(self, ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(logits, out-of-scope score or None)`` of one batch, for the micro-batcher: the score
        (float32, higher = more in-scope) when the scorer reads features, from the same pass."""
        if self.oos_stats is None:
            return self.forward(ids)[0], None
        logits, cls = self.forward(ids, features=True)
        score = self.oos_stats.score(cls, self.oos_scorer)  # one or two extra matrix products
        return logits, score.astype(np.float32)

    def _batched(
        self, texts: Sequence[str], batch_size: int, fn: Any, shapes: Sequence[tuple | None]
    ) -> list[np.ndarray | None]:
        """``fn(ids)`` over length-sorted batches of ``texts``: one float32 array per entry of
        ``shapes`` (a row's shape; None where ``fn`` gives None), rows back in input order."""
        ids = self.encode(texts) if len(texts) else []
        order = np.argsort([len(x) for x in ids], kind="stable")
        results = [None if s is None else np.empty((len(ids), *s), np.float32) for s in shapes]
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for out, part in zip(results, fn([ids[i] for i in chunk]), strict=True):
                if out is not None:
                    out[chunk] = part
        return results

    def outputs(
        self, texts: Sequence[str], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(logits (n, n_labels), out-of-scope score (n,) or None)`` in input order."""
        shapes = [(len(self.labels),), None if self.oos_stats is None else ()]
        logits, score = self._batched(texts, batch_size, self.forward_ids, shapes)
        assert logits is not None
        return logits, None if score is None else score.astype(np.float64)

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Raw logits (n, n_labels), batching length-sorted texts; rows in input order."""
        return self.outputs(texts, batch_size)[0]

    def features(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, last-layer CLS features (n, hidden))`` of one pass, in input order."""
        shapes = [(len(self.labels),), (int(self.config.hidden_size),)]
        logits, cls = self._batched(
            texts, batch_size, lambda ids: self.forward(ids, features=True), shapes
        )
        assert logits is not None and cls is not None
        return logits, cls

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
