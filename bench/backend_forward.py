"""One forward pass, PyTorch eager vs ONNX Runtime, fp32 on CPU: why ``--backend auto`` picks ONNX.

Model: the serve benchmark's ModernBERT-base config with random weights (and optionally MiniLM),
saved as an intentkit artifact and exported with ``intentkit.export.onnx_graph.export_onnx``.
Inputs:
``batch`` rows of ``--length`` random token ids. Both backends run side by side in one process
with the same thread count, interleaved per repeat; also the 2048^2 matmul rate of each library
(the CPU's fp32 peak is the larger one).

    python bench/backend_forward.py                       # ModernBERT-base, batches 1 4 12 24 48
    python bench/backend_forward.py --models minilm-clinc150-travel --batches 1 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _seconds(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _torch_call(model: Any, ids: Any, mask: Any) -> Any:
    import torch

    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)

    def run() -> Any:
        with torch.inference_mode():
            return model(input_ids=t_ids, attention_mask=t_mask).logits.numpy()

    return run


def _ort_call(runner: Any, ids: Any, mask: Any) -> Any:
    return lambda: runner(ids, mask)


def main() -> None:
    """Parse flags, time both backends per batch size, print a table, optionally write JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["modernbert-base-random"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 12, 24, 48])
    p.add_argument("--length", type=int, default=11, help="tokens per row (CLINC150 mean: 10.8)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="default: all cores")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "intentkit-bench-serve"))
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    from harness import matmul_peak_gflops
    from intentkit.export.onnx_graph import export_onnx
    from intentkit.inference.onnx_runner import OnnxRunner
    from serve_load import prepare_models

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    peak = matmul_peak_gflops()
    print(
        f"threads {threads}; 2048^2 matmul GFLOP/s: "
        + ", ".join(f"{k} {v:.1f}" for k, v in peak.items())
    )
    results: dict[str, Any] = {"threads": threads, "matmul_peak_gflops": peak, "models": {}}
    models = prepare_models(Path(args.out) / "models", args.models)
    rng = np.random.default_rng(0)
    for name in args.models:
        info = models[name]
        model = AutoModelForSequenceClassification.from_pretrained(info["path"]).eval()
        runner = OnnxRunner(export_onnx(info["path"]), threads=threads)
        flops_per_token = 2 * info["non_emb_params"]
        rows = []
        print(f"\n{name}: ms per forward, median (min-max) of {args.reps}")
        head = ("batch", "torch ms", "onnxruntime ms", "speed-up", "ORT % peak", "max diff")
        print("{:>5s} {:>22s} {:>22s} {:>8s} {:>10s} {:>9s}".format(*head))
        for b in args.batches:
            ids = rng.integers(1000, 2000, (b, args.length)).astype(np.int64)
            mask = np.ones_like(ids)
            run_torch = _torch_call(model, ids, mask)
            run_ort = _ort_call(runner, ids, mask)
            # Also the warm-up of both (allocations, kernel choice) before timing.
            diff = float(np.abs(run_torch() - run_ort()).max())
            tt, to = [], []
            for _ in range(args.reps):  # interleaved: drifting background load hits both alike
                tt.append(_seconds(run_torch))
                to.append(_seconds(run_ort))
            mt, mo = statistics.median(tt), statistics.median(to)
            share = flops_per_token * b * args.length / mo / 1e9 / max(peak.values()) * 100
            row = {
                "batch": b,
                "torch_s": sorted(tt),
                "onnxruntime_s": sorted(to),
                "speedup": mt / mo,
                "onnxruntime_share_of_peak": share,
                "max_abs_logit_diff": diff,
            }
            rows.append(row)
            ts = f"{mt * 1e3:.1f} ({min(tt) * 1e3:.1f}-{max(tt) * 1e3:.1f})"
            os_ = f"{mo * 1e3:.1f} ({min(to) * 1e3:.1f}-{max(to) * 1e3:.1f})"
            print(f"{b:5d} {ts:>22s} {os_:>22s} {mt / mo:7.2f}x {share:9.1f}% {diff:9.1e}")
        results["models"][name] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
