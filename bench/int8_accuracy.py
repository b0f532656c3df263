"""int8 vs fp32 in ONNX Runtime on a trained artifact: accuracy, answers kept, texts/s.

    python bench/int8_accuracy.py --model MODEL_DIR --data PREPARED_DIR [--split test]
        [--repeats 3] [--batch-size 64] [--threads N] [--json OUT.json]

Side by side, in one process, on the same texts:

* ``fp32``: the artifact's verified ONNX export (the reference);
* ``int8-dynamic-old``: what ``--dtype int8`` served before issue #12, ONNX Runtime's
  ``quantize_dynamic`` with its defaults (per-tensor weight scales, embedding tables included);
* ``int8-per-channel-v1``: the recipe of session 3 (per-channel weight scales, no SmoothQuant);
* ``int8``: the export's current recipe (:mod:`intentkit.export.quantize`), measured here even
  where
  the export gate refuses it (the gate's recorded verdict is not changed).

For each: test accuracy (top-1, no rejection), the share of answers identical to fp32's (answers
as served: ``decision.apply``, rejection included; and plain top-1), the largest logit
difference, and texts/s at ``--batch-size`` (median and min-max of ``--repeats`` timed passes
over the split, variants interleaved within each repeat so load changes hit all of them).
Agreement is deterministic; texts/s needs a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _old_dynamic(fp32: Path, dst: Path) -> Path:
    """The int8 graph as exported before issue #12 (``quantize_dynamic`` defaults)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its pre-processing hint
    quantize_dynamic(str(fp32), str(dst), weight_type=QuantType.QInt8)
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", help="(or --model)")
    parser.add_argument("--model", dest="model_opt", default=None)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    model_dir = Path(args.model_opt or args.model_dir or parser.error("pass --model MODEL_DIR"))

    from transformers import AutoConfig, AutoTokenizer

    from intentkit.artifact import read_meta
    from intentkit.data.dataset import load_prepared
    from intentkit.export.onnx_graph import FILES, MANIFEST, export_dir, export_onnx
    from intentkit.export.quantize import Int8Refused, _quantize_dynamic
    from intentkit.inference.decision import apply
    from intentkit.inference.onnx_runner import OnnxRunner
    from intentkit.inference.predictor import Predictor, load_oos_stats

    frame = load_prepared(args.data).split(args.split)
    texts, truth = frame["text"].tolist(), np.array(frame["label"].tolist())
    fp32 = export_onnx(model_dir)
    try:  # made and measured even where the gate refuses it; the gate's verdict is left as is
        new = export_onnx(model_dir, int8=True)
    except Int8Refused:
        new = export_dir(model_dir) / FILES["int8"]
    gate = json.loads((new.parent / MANIFEST).read_text("utf-8"))["files"]["int8"]
    tmp = Path(tempfile.mkdtemp(prefix="int8-bench-"))
    _quantize_dynamic(fp32, tmp / "per_channel.onnx")  # the recipe without SmoothQuant
    graphs = {
        "fp32": fp32,
        "int8-dynamic-old": _old_dynamic(fp32, tmp / "old.onnx"),
        "int8-per-channel-v1": tmp / "per_channel.onnx",
        "int8": new,
    }

    meta, tok = read_meta(model_dir), AutoTokenizer.from_pretrained(model_dir)
    cfg = AutoConfig.from_pretrained(model_dir)
    stats = load_oos_stats(model_dir, meta)
    preds = {
        name: Predictor(
            None,
            tok,
            meta=meta,
            runner=OnnxRunner(path, threads=args.threads),
            config=cfg,
            oos_stats=stats,
        )
        for name, path in graphs.items()
    }
    labels, calibration = preds["fp32"].labels, meta.get("calibration")
    outs = {name: p.outputs(texts, batch_size=args.batch_size) for name, p in preds.items()}
    logits = {name: lg for name, (lg, _) in outs.items()}
    answers = {
        name: apply(lg, labels, calibration, oos_score=score)[0]
        for name, (lg, score) in outs.items()
    }

    seconds: dict[str, list[float]] = {name: [] for name in preds}
    for _ in range(args.repeats):
        for name, p in preds.items():
            start = time.perf_counter()
            p.logits(texts, batch_size=args.batch_size)
            seconds[name].append(time.perf_counter() - start)

    out: dict = {
        "model": str(model_dir),
        "data": args.data,
        "split": args.split,
        "n": len(texts),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "repeats": args.repeats,
        "int8_recipe": gate["quantization"],
        "int8_export_gate": gate["agreement"],
        "variants": {},
    }
    base_lg, base_ans = logits["fp32"], answers["fp32"]
    print(f"{args.split}: {len(texts)} texts, batch {args.batch_size}, {args.repeats} repeats")
    for name in preds:
        lg = logits[name]
        same = [a == b for a, b in zip(answers[name], base_ans, strict=True)]
        rates = sorted(len(texts) / s for s in seconds[name])
        row = {
            "accuracy": float(np.mean(np.array(labels)[lg.argmax(1)] == truth)),
            "agreement_answers": float(np.mean(same)),
            "agreement_top1": float(np.mean(lg.argmax(1) == base_lg.argmax(1))),
            "max_abs_logit_diff": float(np.abs(lg - base_lg).max()),
            "texts_per_s": {
                "median": statistics.median(rates),
                "min": rates[0],
                "max": rates[-1],
            },
            "size_mib": graphs[name].stat().st_size / 2**20,
        }
        row["speedup_vs_fp32"] = row["texts_per_s"]["median"] / (
            len(texts) / statistics.median(seconds["fp32"])
        )
        out["variants"][name] = row
        tps = row["texts_per_s"]
        print(
            f"{name:17s} accuracy {row['accuracy']:.4f}  same answer {row['agreement_answers']:.2%}"
            f" (top-1 {row['agreement_top1']:.2%})  max |dlogit| {row['max_abs_logit_diff']:.3g}"
            f"  {tps['median']:6.0f} texts/s ({tps['min']:.0f}-{tps['max']:.0f}, "
            f"{row['speedup_vs_fp32']:.2f}x fp32)",
            flush=True,
        )
    a = gate["agreement"]
    verdict = "accepted" if a["accepted"] else "refused"
    print(
        f"export gate (int8): {a['value']:.2%} of {a['n']} {a['split']} texts, "
        f"min {a['min']:.2%}: {verdict}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
