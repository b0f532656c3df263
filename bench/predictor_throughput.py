"""Predictor batched throughput vs the reference's one-at-a-time, pad-to-64 inference.

Model: ModernBERT-base *config* (``ModernBertConfig()`` defaults) with random weights and a
15-label head; the MiniLM WordPiece tokenizer (vocab_size set to its 30,522). Speed does not
depend on the weights. Queries: CLINC150 test texts (cycled to ``--n``).

  (a) intentkit ``Predictor.logits``: length-sorted batches of 64 and 256, each padded only to
      its own longest text;
  (b) the reference handler: one text per forward, ``padding='max_length', max_length=64``, in
      **fp32** by default (what the reference deploys; ``--reference-dtype bf16`` to change).

Both sides get the same warm-up before timing: a forward over the same ``--warmup`` texts (the
predictor as one batch, the reference one text per forward, as each runs when timed).

    python bench/predictor_throughput.py --device cpu --n 128 --n-ref 16          # CPU smoke
    python bench/predictor_throughput.py --device cuda --dtype bf16                # GPU
    python bench/predictor_throughput.py --device cuda --reference-dtype bf16      # vs a bf16 ref

Raw results go to ``bench/results/<YYYY-MM-DD>/predictor_throughput[_<device>].json`` (``--json``
to move them); ``python bench/results_md.py`` renders them into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from harness import default_json_path, write_json

ROOT = Path(__file__).resolve().parents[1]
CLINC_TEST = ROOT / "src" / "intentkit" / "bundled" / "clinc150" / "test.jsonl"  # bundled copy


def load_texts(n: int, path: Path) -> list[str]:
    """``n`` CLINC150 test texts (shuffled, cycled); a synthetic fallback if the file is absent."""
    if path.is_file():
        rows = [json.loads(x)["text"] for x in path.read_text("utf-8").splitlines() if x.strip()]
    else:
        words = "what time is my flight where gate bags hotel car rental visa need book".split()
        rng = random.Random(1)
        rows = [" ".join(rng.choices(words, k=rng.randint(3, 14))) for _ in range(4500)]
    random.Random(0).shuffle(rows)
    return [rows[i % len(rows)] for i in range(n)]


def build(device: str, dtype: str, tokenizer_dir: str | None) -> Any:
    """A Predictor around a random-init ModernBERT-base classifier."""
    import torch
    from transformers import AutoTokenizer, ModernBertForSequenceClassification

    from bench_models import modernbert_config
    from intentkit.inference.predictor import Predictor, resolve_device, resolve_dtype

    if tokenizer_dir is None:
        from intentkit.modeling import resolve_model

        tokenizer_dir = resolve_model("minilm")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    cfg = modernbert_config(tok, 15)
    torch.manual_seed(0)
    model = ModernBertForSequenceClassification(cfg).to(device=device, dtype=torch_dtype)
    return Predictor(model, tok, meta={"max_length": 64}, device=device)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _summary(n: int, times: list[float]) -> dict[str, Any]:
    """Texts/s as the median over repeats, with the min-max range."""
    rates = sorted(n / t for t in times)
    return {
        "texts": n,
        "seconds": sorted(times),
        "texts_per_s": statistics.median(rates),
        "texts_per_s_min": rates[0],
        "texts_per_s_max": rates[-1],
    }


def _timed(run: Any, device: str, n: int, reps: int) -> dict[str, Any]:
    """Run ``run`` ``reps`` times, each timed between device syncs; summarise as texts/s."""
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return _summary(n, times)


def bench_predictor(
    pred: Any, texts: list[str], batch_size: int, reps: int, warm: list[str]
) -> dict[str, float]:
    """Texts/s of ``Predictor.logits`` (tokenization included), median of ``reps``.

    Warm-up: one ``logits`` call over ``warm`` (the same texts the reference warms up on).
    """
    pred.logits(warm, batch_size=batch_size)
    _sync(pred.device)
    return _timed(lambda: pred.logits(texts, batch_size=batch_size), pred.device, len(texts), reps)


def bench_reference(pred: Any, texts: list[str], reps: int, warm: list[str]) -> dict[str, float]:
    """Texts/s of the reference handler: one text per forward, padded to 64, softmax.

    Warm-up: the handler itself (tokenizer *and* forward) over ``warm``, the same texts the
    predictor warms up on.
    """
    import torch

    def classify(batch: list[str]) -> None:
        for t in batch:
            enc = pred.tokenizer(
                t, padding="max_length", max_length=64, truncation=True, return_tensors="pt"
            )
            with torch.no_grad():
                out = pred.model(
                    input_ids=enc["input_ids"].to(pred.device),
                    attention_mask=enc["attention_mask"].to(pred.device),
                )
            probs = torch.softmax(out.logits.float(), dim=-1)[0]
            float(probs.max())  # the reference reads the value back: a device sync per text

    classify(warm)
    _sync(pred.device)
    return _timed(lambda: classify(texts), pred.device, len(texts), reps)


def main() -> None:
    """Parse flags, run both measurements, print a table and optionally write JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on CUDA)|fp32|bf16")
    p.add_argument(
        "--reference-dtype",
        "--ref-dtype",
        dest="ref_dtype",
        default="fp32",
        help="dtype of the reference run (default fp32: what the reference deploys; bf16 optional)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=8,
        help="warm-up texts, the same for both sides (one forward over them before timing)",
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--n", type=int, default=None, help="texts for the batched runs")
    p.add_argument("--n-ref", type=int, default=None, help="texts for the reference run")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: minilm)")
    p.add_argument("--texts", default=str(CLINC_TEST), help="JSONL with a 'text' field per line")
    p.add_argument("--threads", type=int, default=None, help="torch threads on CPU")
    p.add_argument(
        "--json",
        default=None,
        help="write results here (default: bench/results/<today>/predictor_throughput[_cuda].json)",
    )
    args = p.parse_args()

    import torch

    import intentkit

    if args.threads:
        torch.set_num_threads(args.threads)
    pred = build(args.device, args.dtype, args.tokenizer)
    ref_pred = build(args.device, args.ref_dtype, args.tokenizer)
    if next(ref_pred.model.parameters()).dtype == next(pred.model.parameters()).dtype:
        ref_pred = pred  # same weights and dtype: one model in memory
    on_gpu = pred.device.startswith("cuda")
    n = args.n or (16384 if on_gpu else 256)
    n_ref = args.n_ref or (1024 if on_gpu else 32)
    texts = load_texts(max(n, n_ref), Path(args.texts))
    warm = texts[: max(1, args.warmup)]  # the same warm-up texts for both sides
    dtype = str(next(pred.model.parameters()).dtype).replace("torch.", "")
    ref_dtype = str(next(ref_pred.model.parameters()).dtype).replace("torch.", "")
    real_tokens = sum(len(x) for x in pred.encode(texts[:n]))

    results: dict[str, Any] = {
        "benchmark": "predictor_throughput",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "args": vars(args),
        "warmup_texts": len(warm),
        "device": torch.cuda.get_device_name(0) if on_gpu else platform.processor() or "cpu",
        "dtype": dtype,
        "reference_dtype": ref_dtype,
        "torch": torch.__version__,
        "intentkit": intentkit.__version__,
        "threads": torch.get_num_threads(),
        "mean_tokens": real_tokens / n,
        "reference": bench_reference(ref_pred, texts[:n_ref], args.reps, warm),
        "predictor": {},
    }
    for bs in args.batch_sizes:
        results["predictor"][str(bs)] = bench_predictor(pred, texts[:n], bs, args.reps, warm)
    ref = results["reference"]["texts_per_s"]
    print(f"device {results['device']}  dtype {dtype}  mean tokens/text {real_tokens / n:.1f}")
    print(f"{'mode':36s} {'texts/s':>10s} {'min-max':>19s} {'speed-up':>9s}")
    r0 = results["reference"]
    span = f"{r0['texts_per_s_min']:.1f}-{r0['texts_per_s_max']:.1f}"
    print(f"{'reference 1-at-a-time pad64 ' + ref_dtype:36s} {ref:10.1f} {span:>19s} {1.0:8.2f}x")
    for bs, r in results["predictor"].items():
        r["speedup_vs_reference"] = r["texts_per_s"] / ref
        span = f"{r['texts_per_s_min']:.1f}-{r['texts_per_s_max']:.1f}"
        label = f"predictor batch {bs} {dtype}"
        print(f"{label:36s} {r['texts_per_s']:10.1f} {span:>19s} {r['texts_per_s'] / ref:8.2f}x")
    name = "predictor_throughput" + ("_cuda" if on_gpu else "")
    print(f"wrote {write_json(args.json or default_json_path(name), results)}")


if __name__ == "__main__":
    main()
