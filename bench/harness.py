"""Helpers every benchmark shares: one implementation each (the matmul peak, where results go).
A free port comes from the product (``intentkit.serve.server.free_port``). Imports nothing heavy at
module level."""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def matmul_peak_gflops(
    device: str = "cpu", dtype: Any = None, size: int | None = None, reps: int = 5
) -> dict[str, float]:
    """Best-of-``reps`` GFLOP/s of one square matmul, per library (``torch``, ``onnxruntime``).

    CPU (fp32, 2048², all torch threads): PyTorch ``torch.mm`` *and* ONNX Runtime ``MatMul``,
    because they differ by ~2x on this AMD CPU (MKL's sgemm is not tuned for it, MLAS is); the
    CPU's measured peak is the larger of the two (:func:`peak`). CUDA: PyTorch only, 8192², in
    ``dtype`` (default bf16).
    """
    import torch

    on_cuda = device.startswith("cuda")
    size = size or (8192 if on_cuda else 2048)
    dtype = dtype or (torch.bfloat16 if on_cuda else torch.float32)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def best(run: Any) -> float:
        run()  # untimed first call: allocation, kernel choice
        fastest = float("inf")
        for _ in range(reps):
            if on_cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            run()
            if on_cuda:
                torch.cuda.synchronize()
            fastest = min(fastest, time.perf_counter() - t0)
        return 2 * size**3 / fastest / 1e9

    rates = {"torch": best(lambda: torch.mm(a, b))}
    if not on_cuda and dtype == torch.float32:
        rates["onnxruntime"] = _onnxruntime_matmul(a, b, best)
    return rates


def _onnxruntime_matmul(a: Any, b: Any, best: Any) -> float:
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    size = a.shape[0]
    spec = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [size, size]) for x in "abc"]
    node = helper.make_node("MatMul", ["a", "b"], ["c"])
    graph = helper.make_graph([node], "mm", spec[:2], spec[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what opset 17 needs; newer onnx writes IRs older onnxruntime refuse
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {"a": a.numpy(), "b": np.ascontiguousarray(b.numpy())}
    return best(lambda: sess.run(None, feeds))


def peak(rates: dict[str, float] | list[dict[str, float]]) -> float:
    """The measured peak: the fastest library (over several measurements if given a list)."""
    runs = rates if isinstance(rates, list) else [rates]
    return max(v for r in runs for v in r.values())


def default_json_path(name: str, date: str | None = None) -> Path:
    """``bench/results/<YYYY-MM-DD>/<name>.json`` (today, UTC), where ``results_md`` reads it."""
    day = date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    return RESULTS / day / f"{name}.json"


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (parents created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path
