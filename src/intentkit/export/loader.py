"""Load a Predictor on the backend chosen, exporting its ONNX graph on demand.

This sits above both the runtime (:mod:`intentkit.inference`) and the exporter
(:mod:`intentkit.export.onnx_graph`): the runtime runs a graph it is given and never exports
one, and the exporter checks its graphs with the runtime, so neither imports the other.
``intentkit.load`` is :func:`load_predictor`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from intentkit.artifact import check_artifact_dir
from intentkit.errors import ConfigError
from intentkit.export import onnx_graph
from intentkit.inference.predictor import Predictor, default_threads, resolve_device, resolve_dtype

log = logging.getLogger(__name__)


def resolve_backend(backend: str, device: str, dtype: str) -> str:
    """Pick ``torch`` or ``onnx`` for ``backend`` on ``device`` (already resolved) and ``dtype``.

    ``onnx`` runs on CPU in fp32 or int8 only; ``auto`` picks it there when onnxruntime is
    installed (it is 2-3x faster than PyTorch eager fp32 on CPUs; bench/RESULTS.md).
    """
    from intentkit.config import BACKENDS

    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend}")
    cpu_ok = device == "cpu" and dtype in ("auto", "fp32", "int8")
    if backend == "onnx":
        if not cpu_ok:
            raise ConfigError(
                f"--backend onnx runs on CPU in fp32 or int8 (got --device {device} --dtype "
                f"{dtype}); use --backend torch there"
            )
        onnx_graph.require_onnx()
        return "onnx"
    if backend == "auto" and cpu_ok and onnx_graph.onnx_available():
        return "onnx"
    return "torch"


def _onnx_runner(path: Path, dtype: str, threads: int | None, *, strict: bool) -> Any:
    """An OnnxRunner over the (cached) export of ``path``; None with a warning if not strict."""
    from intentkit.export.quantize import Int8Refused
    from intentkit.inference.onnx_runner import OnnxRunner

    try:
        onnx_path = onnx_graph.export_onnx(path, int8=dtype == "int8")
    except Exception as exc:
        # A refused int8 graph is no reason to fall back to PyTorch int8, which moves the
        # answers at least as much (bench/RESULTS.md): the user must choose fp32 or accept it.
        if strict or isinstance(exc, Int8Refused):
            raise
        log.warning(
            "ONNX backend unavailable for %s (%s: %s); using PyTorch", path, type(exc).__name__, exc
        )
        return None
    return OnnxRunner(onnx_path, threads=threads)


def load_predictor(
    path: str | Path,
    *,
    device: str = "auto",
    reject: bool = True,
    threads: int | None = None,
    dtype: str = "fp32",
    backend: str = "torch",
    serving: bool = False,
) -> Predictor:
    """Load an artifact folder on ``backend``: ``intentkit.load("model").predict(["hi"])``.

    ``backend`` is ``torch``, ``onnx`` (ONNX Runtime on CPU, fp32 or int8; the export is made
    once and cached next to the weights, see :mod:`intentkit.export.onnx_graph`) or ``auto``
    (``onnx`` on CPU when onnxruntime is installed and the export verifies, else ``torch`` with
    a warning saying why). ``device``, ``reject``, ``threads`` and ``dtype`` are
    :meth:`Predictor.from_dir`'s. ``serving`` with no ``threads`` picks
    :func:`~intentkit.inference.predictor.default_threads` for the backend chosen here (the
    server's policy), so the backend is resolved once per load.
    """
    path = check_artifact_dir(path)
    device = resolve_device(device)
    resolve_dtype(dtype, device)  # a bad --dtype is refused before any export
    chosen = resolve_backend(backend, device, dtype)
    if threads is None and serving:
        threads = default_threads(dtype, chosen)
    runner = None
    if chosen == "onnx":
        runner = _onnx_runner(path, dtype, threads, strict=backend == "onnx")
    return Predictor.from_dir(
        path, device=device, reject=reject, threads=threads, dtype=dtype, runner=runner
    )
