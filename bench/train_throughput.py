"""Training throughput: intentkit's settings vs the reference recipe's, side by side.

Not a unit test. Both run in one process on the same data, model architecture and batch size:

* reference: every row padded to 64 tokens, gradient checkpointing on, eager attention
  (the reference notebook's ``train.py``; it asked for flash-attention only when importable);
* intentkit: dynamic padding of length-grouped batches (the Trainer's ``group_by_length``
  sampler: mega-batches of 50 batches sorted by length), SDPA (flash-attention 2 on CUDA when
  importable), no gradient checkpointing.

Model: ``ModernBertConfig()`` defaults (= ModernBERT-base architecture) with RANDOM weights
(no hub here); the tokenizer is the bundled MiniLM WordPiece one, so ``vocab_size`` is set to
its 30,522 entries instead of ModernBERT's 50,368 (the embedding table is excluded from the FLOP
count anyway). Precision: fp32 on CPU (bf16 is ~300x slower on CPUs without bf16 units), bf16
autocast on CUDA for both settings. Texts: CLINC150's training set.

Each repeat times ``--steps`` optimiser steps (forward, backward, AdamW) per setting after a
warm-up, alternating settings (interleaved) so machine-load drifts hit both. Reported: median
and min-max of samples/s and real (non-pad) tokens/s, the intentkit/reference ratio, the
matmul peak of the device and the share of it each setting's useful FLOPs reach:
``6 x non-embedding params x real tokens + 12 x layers x hidden x sum(len^2)`` (attention).

    python bench/train_throughput.py                       # CPU: 1 step x 3 repeats, ~4 min
    python bench/train_throughput.py --device cuda --json results.json
    python bench/train_throughput.py --device cuda --compile   # + a torch.compile setting
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench_models import modernbert_config
from harness import default_json_path, matmul_peak_gflops, write_json

ROOT = Path(__file__).resolve().parents[1]
CLINC_CANDIDATES = (
    ROOT.parent / "shared" / "data" / "clinc150" / "train.jsonl",
    ROOT / "src" / "intentkit" / "bundled" / "clinc150" / "train.jsonl",
)
REF_MAX_LENGTH = 64
#: The --compile setting: intentkit's, torch.compile'd with widths in multiples of 16.
COMPILED = "intentkit-compiled"
N_LABELS = 150
#: ``--ablate``: the reference with ONE of intentkit's three changes, so the table separates what
#: dynamic padding, SDPA attention and turning gradient checkpointing off each give.
#: name -> (dynamic padding, fast attention, gradient checkpointing)
ABLATIONS = {
    "reference+dynamic-padding": (True, False, True),
    "reference+sdpa": (False, True, True),
    "reference+no-checkpointing": (False, False, False),
}
SPECS = {"reference": (False, False, True), "intentkit": (True, True, False), **ABLATIONS}


def load_texts(path: str | None) -> list[str]:
    candidates = [Path(path)] if path else [p for p in CLINC_CANDIDATES if p.is_file()]
    if not candidates or not candidates[0].is_file():
        raise SystemExit(f"CLINC150 train.jsonl not found; pass --data (tried {CLINC_CANDIDATES})")
    with candidates[0].open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def reference_batches(ids: list[list[int]], batch: int, pad: int, seed: int) -> list[dict]:
    """Random batches, every row padded to 64 (``padding='max_length'``)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    out = []
    for s in range(0, len(order) - batch + 1, batch):
        rows = [ids[i] for i in order[s : s + batch]]
        out.append(padded_batch(rows, pad, width=REF_MAX_LENGTH))
    return out


def grouped_batches(
    ids: list[list[int]], batch: int, pad: int, seed: int, multiple: int = 1
) -> list[dict]:
    """The Trainer's LengthGroupedSampler order, dynamically padded per batch.

    ``multiple`` rounds the width up as intentkit's collator does on CUDA (8: fewer distinct
    shapes to compile kernels for, tensor-core friendly).
    """
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    torch.manual_seed(seed)
    lengths = [len(x) for x in ids]
    order = list(LengthGroupedSampler(batch, lengths=lengths))
    out = []
    for s in range(0, len(order) - batch + 1, batch):
        rows = [ids[i] for i in order[s : s + batch]]
        out.append(padded_batch(rows, pad, multiple=multiple))
    return out


def padded_batch(
    rows: list[list[int]], pad: int, *, width: int | None = None, multiple: int = 1
) -> dict:
    """``intentkit.inference.padding.pad_rows`` (the product's rule: to the longest row rounded
    up to ``multiple``, or to a fixed ``width`` cutting longer rows) as torch tensors, plus the
    real-token and squared-length sums the FLOP count needs."""
    import torch

    from intentkit.inference.padding import pad_rows

    ids, mask = pad_rows(rows, pad, width=width, multiple=multiple)
    lens = [int(n) for n in mask.sum(axis=1)]
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "real": sum(lens),
        "sq": sum(n * n for n in lens),
    }


def pick(batches: list[dict], k: int) -> list[dict]:
    """``k`` batches at evenly spaced quantiles of padded width: the epoch's length mix."""
    widths = np.array([b["input_ids"].shape[1] for b in batches])
    order = np.argsort(widths, kind="stable")
    return [batches[order[int((i + 0.5) * len(order) / k)]] for i in range(k)]


def build_model(
    setting: str, device: str, vocab: int, tok: Any, seed: int, tiny: bool = False
) -> Any:
    import torch
    from transformers import ModernBertForSequenceClassification

    cfg = modernbert_config(
        tok,
        N_LABELS,
        **(
            {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 2}
            if tiny
            else {}
        ),
    )  # fmt: skip
    _, fast_attention, checkpointing = SPECS.get(setting, SPECS["intentkit"])
    if not fast_attention:
        attn = "eager"
    elif device == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        attn = "flash_attention_2"
    else:
        attn = "sdpa"
    torch.manual_seed(seed)
    model = ModernBertForSequenceClassification._from_config(cfg, attn_implementation=attn)
    model.to(device)
    model.train()
    if checkpointing:
        # transformers >= 5.2x renamed it; older 5.x only has the gradient_ name.
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()
    return model, attn


def non_embedding_params(model: Any) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


def run_steps(model: Any, opt: Any, batches: list[dict], device: str, rng: Any) -> float:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for b in batches:
        labels = torch.as_tensor(rng.integers(0, N_LABELS, b["input_ids"].shape[0]), device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            out = model(
                input_ids=b["input_ids"].to(device, non_blocking=True),
                attention_mask=b["attention_mask"].to(device, non_blocking=True),
            )
        loss = torch.nn.functional.cross_entropy(out.logits.float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per setting")
    parser.add_argument("--data", default=None, help="CLINC150 train.jsonl")
    parser.add_argument(
        "--json", default=None, help="default: bench/results/<today>/train_throughput_<device>.json"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="2-layer model: smoke-test only")
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer folder (default: the bundled minilm one)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time a third setting: intentkit's, torch.compile'd (dynamic=False) with widths "
        "rounded up to multiples of 16 (CUDA: 4 shapes at max length 64, each compiled in warm-up)",
    )
    parser.add_argument(
        "--ablate",
        action="store_true",
        help="also time the reference with one of intentkit's changes at a time (dynamic padding, "
        "SDPA, no gradient checkpointing), to split the ratio into its parts",
    )
    args = parser.parse_args()
    on_cuda = args.device == "cuda"
    steps = args.steps or (10 if on_cuda else 1)
    repeats = args.repeats or (5 if on_cuda else 3)
    warmup = args.warmup if args.warmup is not None else (20 if on_cuda else 1)

    import torch
    from transformers import AutoTokenizer

    if on_cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    if args.tokenizer is None:
        from intentkit.modeling import resolve_model

        args.tokenizer = resolve_model("minilm")
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    texts = load_texts(args.data)
    ids = tok(texts, truncation=True, max_length=REF_MAX_LENGTH)["input_ids"]
    epoch = {
        "reference": reference_batches(ids, args.batch_size, tok.pad_token_id, args.seed),
        "intentkit": grouped_batches(
            ids, args.batch_size, tok.pad_token_id, args.seed, 8 if on_cuda else 1
        ),
    }
    if args.compile:
        epoch[COMPILED] = grouped_batches(ids, args.batch_size, tok.pad_token_id, args.seed, 16)
    if args.ablate:
        for name, (dynamic, _, _) in ABLATIONS.items():
            epoch[name] = epoch["intentkit" if dynamic else "reference"]
    settings = list(epoch)
    n_timed = steps * repeats
    # Repeat r times picks[r::repeats]: every repeat gets the same short-to-long mix.
    timed = {k: pick(v, n_timed) for k, v in epoch.items()}
    timed = {k: [b for r in range(repeats) for b in v[r::repeats]] for k, v in timed.items()}
    # Warm-up batches span the widths too: on CUDA each new shape costs a first-call overhead.
    warm = {k: pick(v, warmup) if warmup else [] for k, v in epoch.items()}
    if args.compile:  # every width once, or a timed step would pay a compile
        firsts = {b["input_ids"].shape[1]: b for b in reversed(epoch[COMPILED])}
        warm[COMPILED] = [*firsts.values(), *warm[COMPILED]]
    models, opts, attn, params = {}, {}, {}, {}
    for name in settings:
        models[name], attn[name] = build_model(
            name, args.device, len(tok), tok, args.seed, args.tiny
        )
        if name == COMPILED:
            import torch._dynamo.config as dynamo_config

            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 32)
            models[name].compile(dynamic=False)
        opts[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-5, fused=True)
        params[name] = non_embedding_params(models[name])
    rng = np.random.default_rng(args.seed)
    for name in models:  # warm-up: allocator, kernels, lazy init
        run_steps(models[name], opts[name], warm[name], args.device, rng)

    rows: dict[str, list[dict]] = {name: [] for name in settings}
    for r in range(repeats):
        # Alternate which setting goes first so a load change does not favour one side.
        for name in settings if r % 2 == 0 else settings[::-1]:
            chunk = timed[name][r * steps : (r + 1) * steps]
            dt = run_steps(models[name], opts[name], chunk, args.device, rng)
            real = sum(b["real"] for b in chunk)
            padded = sum(b["input_ids"].numel() for b in chunk)
            d_model = models[name].config.hidden_size
            layers = models[name].config.num_hidden_layers
            flops = 6 * params[name] * real + 12 * layers * d_model * sum(b["sq"] for b in chunk)
            rows[name].append(
                {
                    "seconds": dt,
                    "samples_per_s": len(chunk) * args.batch_size / dt,
                    "real_tokens_per_s": real / dt,
                    "padded_tokens_per_s": padded / dt,
                    "useful_gflops_per_s": flops / dt / 1e9,
                }
            )
            print(
                f"repeat {r} {name:9s} {dt:7.2f}s  {rows[name][-1]['samples_per_s']:8.1f} samples/s"
                f"  {rows[name][-1]['real_tokens_per_s']:9.0f} real tok/s",
                flush=True,
            )

    rates = matmul_peak_gflops(args.device, torch.bfloat16 if on_cuda else torch.float32)
    peak = max(rates.values())  # CPU: the faster of PyTorch and ONNX Runtime (RESULTS §2)
    summary: dict[str, Any] = {}
    for name, rs in rows.items():
        sps = [x["samples_per_s"] for x in rs]
        tps = [x["real_tokens_per_s"] for x in rs]
        gf = statistics.median(x["useful_gflops_per_s"] for x in rs)
        widths = [b["input_ids"].shape[1] for b in epoch[name]]
        summary[name] = {
            "attention": attn[name],
            "gradient_checkpointing": SPECS.get(name, SPECS["intentkit"])[2],
            "dynamic_padding": SPECS.get(name, SPECS["intentkit"])[0],
            "torch_compile": name == COMPILED,
            "samples_per_s": {"median": statistics.median(sps), "min": min(sps), "max": max(sps)},
            "real_tokens_per_s": {
                "median": statistics.median(tps),
                "min": min(tps),
                "max": max(tps),
            },
            "useful_gflops_per_s": gf,
            "peak_share": gf / peak,
            "epoch_mean_padded_width": float(np.mean(widths)),
            "timed_mean_padded_width": float(
                np.mean([b["input_ids"].shape[1] for b in timed[name]])
            ),
            "repeats": rs,
        }
    ref_sps = summary["reference"]["samples_per_s"]["median"]
    ratio = summary["intentkit"]["samples_per_s"]["median"] / ref_sps
    ratio_compiled = None
    if args.compile:
        ratio_compiled = summary[COMPILED]["samples_per_s"]["median"] / ref_sps
    result = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if on_cuda
        else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "precision": "bf16 autocast" if on_cuda else "fp32",
        "model": "ModernBertConfig() defaults (base), random weights, vocab 30522 (MiniLM)"
        + (" [--tiny smoke test]" if args.tiny else ""),
        "non_embedding_params": params["intentkit"],
        "batch_size": args.batch_size,
        "steps_per_repeat": steps,
        "repeats": repeats,
        "warmup_steps": warmup,
        "matmul_peak_gflops": peak,
        "matmul_peak_gflops_by_library": rates,
        "ratio_samples_per_s": ratio,
        "ratio_compiled_samples_per_s": ratio_compiled,
        "settings": summary,
        "versions": {"torch": torch.__version__},
    }
    print(f"\nmatmul peak: {peak:.1f} GFLOP/s ({result['precision']})")
    for name, s in summary.items():
        sp, tk = s["samples_per_s"], s["real_tokens_per_s"]
        print(
            f"{name:9s} samples/s median {sp['median']:.2f} (min {sp['min']:.2f} - max "
            f"{sp['max']:.2f}); real tokens/s median {tk['median']:.0f} (min {tk['min']:.0f} - "
            f"max {tk['max']:.0f}); {s['useful_gflops_per_s']:.1f} useful GFLOP/s = "
            f"{100 * s['peak_share']:.1f}% of peak; padded width epoch mean "
            f"{s['epoch_mean_padded_width']:.1f}"
        )
    print(f"ratio intentkit / reference (samples/s, medians): {ratio:.2f}x")
    if ratio_compiled is not None:
        print(f"ratio {COMPILED} / reference (samples/s, medians): {ratio_compiled:.2f}x")
    default = None if args.tiny else default_json_path(f"train_throughput_{args.device}")
    if args.json or default:
        print(f"wrote {write_json(args.json or default, result)}")


if __name__ == "__main__":
    main()
