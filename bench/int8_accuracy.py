"""What the serving variants cost in accuracy: PyTorch/ONNX Runtime x fp32/int8 on an artifact.

    python bench/int8_accuracy.py MODEL_DIR --data PREPARED_DIR [--split test]

Prints test accuracy (argmax, no rejection) for each variant, its share of answers identical to
PyTorch fp32, the largest logit difference from it, and texts/s at batch 64 on this CPU (all
cores). ONNX variants use the artifact's cached export (made on first use).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from intentkit.dataset import load_prepared
    from intentkit.predict import Predictor

    frame = load_prepared(args.data).split(args.split)
    texts, truth = frame["text"].tolist(), frame["label"].tolist()
    out: dict = {"model": args.model_dir, "split": args.split, "n": len(texts)}
    base = None
    for backend in ("torch", "onnx"):
        for dtype in ("fp32", "int8"):
            pred = Predictor.from_dir(args.model_dir, device="cpu", dtype=dtype, backend=backend)
            pred.logits(texts[:64])  # warm-up
            start = time.perf_counter()
            logits = pred.logits(texts, batch_size=64)
            seconds = time.perf_counter() - start
            base = logits if base is None else base  # PyTorch fp32 comes first
            answers = [pred.labels[i] for i in logits.argmax(1)]
            acc = float(np.mean([a == t for a, t in zip(answers, truth, strict=True)]))
            row = {
                "accuracy": acc,
                "texts_per_s": len(texts) / seconds,
                "agreement_with_torch_fp32": float((logits.argmax(1) == base.argmax(1)).mean()),
                "max_abs_logit_diff": float(np.abs(logits - base).max()),
            }
            out[f"{backend}-{dtype}"] = row
            print(
                f"{backend:5s} {dtype}: accuracy {acc:.4f}  {row['texts_per_s']:6.0f} texts/s  "
                f"identical {row['agreement_with_torch_fp32']:.4f}  "
                f"max |logit diff| {row['max_abs_logit_diff']:.3g}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
