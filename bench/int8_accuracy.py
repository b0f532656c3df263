"""What ``serve --dtype int8`` costs in accuracy: fp32 vs dynamic-int8 on a trained artifact.

    python bench/int8_accuracy.py MODEL_DIR --data PREPARED_DIR [--split test]

Prints test accuracy (argmax, no rejection) for both precisions, the share of identical answers,
the largest logit difference, and texts/s of each at batch 64 on this CPU.
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
    logits = {}
    for dtype in ("fp32", "int8"):
        pred = Predictor.from_dir(args.model_dir, device="cpu", dtype=dtype)
        pred.logits(texts[:64])  # warm-up
        start = time.perf_counter()
        logits[dtype] = pred.logits(texts, batch_size=64)
        seconds = time.perf_counter() - start
        answers = [pred.labels[i] for i in logits[dtype].argmax(1)]
        acc = float(np.mean([a == t for a, t in zip(answers, truth, strict=True)]))
        out[dtype] = {"accuracy": acc, "texts_per_s": len(texts) / seconds}
        print(f"{dtype}: accuracy {acc:.4f}  {len(texts) / seconds:.0f} texts/s", flush=True)
    same = float((logits["fp32"].argmax(1) == logits["int8"].argmax(1)).mean())
    out["agreement"] = same
    out["max_abs_logit_diff"] = float(np.abs(logits["fp32"] - logits["int8"]).max())
    print(f"identical answers {same:.4f}; max |logit diff| {out['max_abs_logit_diff']:.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
