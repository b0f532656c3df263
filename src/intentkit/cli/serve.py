"""CLI commands: serve, deploy, endpoints, predict, delete, quickstart.

Environment variables are an explicit alternative to flags and are read here, once, when a
command starts (never at import, never as option defaults): ``INTENTKIT_API_KEY``,
``INTENTKIT_STATE_DIR``, and for containers ``INTENTKIT_MODEL_DIR``, ``INTENTKIT_HOST``,
``INTENTKIT_PORT``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from intentkit.cli.app import app
from intentkit.errors import ConfigError

#: SageMaker mounts the model here and runs the image with the single argument ``serve``.
SAGEMAKER_MODEL_DIR = "/opt/ml/model"


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def _registry(state_dir: Path | None) -> Any:
    from intentkit.serve.registry import Registry, default_state_dir

    env = _env("INTENTKIT_STATE_DIR")
    return Registry(state_dir or (Path(env) if env else default_state_dir()))


StateDir = Annotated[
    Path | None,
    typer.Option(help="Registry folder (default: $INTENTKIT_STATE_DIR or the user state dir)."),
]
ApiKey = Annotated[
    str | None,
    typer.Option(help="Bearer token (default: $INTENTKIT_API_KEY); none = no auth."),
]


@app.command()
def serve(
    model_dir: Annotated[
        Path | None,
        typer.Argument(help="Artifact folder (default: $INTENTKIT_MODEL_DIR or /opt/ml/model)."),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Bind address (default: $INTENTKIT_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default: $INTENTKIT_PORT or 8080).")
    ] = None,
    max_batch_tokens: Annotated[int, typer.Option(help="Padded tokens per forward.")] = 16384,
    max_batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 256,
    max_wait_ms: Annotated[float, typer.Option(help="Wait for batch-mates (ms).")] = 5.0,
    split_tokens: Annotated[
        int | None,
        typer.Option(
            help="Close a batch at this many padded tokens before a longer text pads it "
            "(default 128 on CPU, 0 = never on GPU)."
        ),
    ] = None,
    max_queue: Annotated[int, typer.Option(help="Pending texts before 429.")] = 1024,
    max_body_bytes: Annotated[int, typer.Option(help="Body size limit (413).")] = 1_000_000,
    max_texts_per_request: Annotated[int, typer.Option(help="Texts per request (413).")] = 1024,
    api_key: ApiKey = None,
    no_reject: Annotated[
        bool, typer.Option("--no-reject", help="Answer the top class even below the threshold.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="fp32 | int8 (CPU, ~2x faster) | auto/bf16/fp16 (GPU)")
    ] = "fp32",
    backend: Annotated[
        str,
        typer.Option(
            help="auto (ONNX Runtime on CPU when installed, else PyTorch) | torch | onnx; "
            "the ONNX export is made once and cached in MODEL_DIR/onnx."
        ),
    ] = "auto",
    threads: Annotated[
        int | None,
        typer.Option(help="Intra-op threads (default: all cores; torch int8: all but one)."),
    ] = None,
    graceful_timeout: Annotated[
        float, typer.Option(help="Seconds in-flight requests get on SIGTERM.")
    ] = 30.0,
    log_level: Annotated[str, typer.Option(help="debug|info|warning|error")] = "info",
) -> None:
    """Serve a trained model over HTTP (SageMaker /invocations + TEI /predict) until stopped."""
    from intentkit.config import ServeConfig
    from intentkit.serve.process import serve_forever

    env_port = _env("INTENTKIT_PORT")
    if port is None and env_port is not None:
        if not env_port.isdigit():
            raise ConfigError(f"$INTENTKIT_PORT must be a port number, got {env_port!r}")
        port = int(env_port)
    config = ServeConfig(
        host=host or _env("INTENTKIT_HOST") or "127.0.0.1",
        port=port or 8080,
        max_batch_tokens=max_batch_tokens,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        split_tokens=split_tokens,
        max_queue=max_queue,
        max_body_bytes=max_body_bytes,
        max_texts_per_request=max_texts_per_request,
        api_key=api_key or _env("INTENTKIT_API_KEY"),
        device=device,
        dtype=dtype,
        backend=backend,
        reject=not no_reject,
        threads=threads,
        timeout_graceful_s=graceful_timeout,
        log_level=log_level,
    )
    path = model_dir or Path(_env("INTENTKIT_MODEL_DIR") or SAGEMAKER_MODEL_DIR)
    serve_forever(path, config)


@app.command()
def deploy(
    model_dir: Annotated[Path, typer.Argument(help="Artifact folder to serve.")],
    name: Annotated[str, typer.Option(help="Endpoint name (unique).")],
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    api_key: ApiKey = None,
    no_reject: Annotated[bool, typer.Option("--no-reject", help="Turn rejection off.")] = False,
    max_wait_ms: Annotated[float | None, typer.Option(help="Passed to serve.")] = None,
    max_batch_tokens: Annotated[int | None, typer.Option(help="Passed to serve.")] = None,
    threads: Annotated[int | None, typer.Option(help="Passed to serve.")] = None,
    dtype: Annotated[str | None, typer.Option(help="Passed to serve.")] = None,
    backend: Annotated[str | None, typer.Option(help="Passed to serve.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for /ping.")] = 180.0,
    state_dir: StateDir = None,
) -> None:
    """Start a detached local server for MODEL_DIR and wait until it answers /ping."""
    from intentkit.serve.process import start_detached

    reg = _registry(state_dir)
    args = ["--no-reject"] if no_reject else []
    for flag, value in (
        ("--max-wait-ms", max_wait_ms),
        ("--max-batch-tokens", max_batch_tokens),
        ("--threads", threads),
        ("--dtype", dtype),
        ("--backend", backend),
    ):
        if value is not None:
            args += [flag, str(value)]
    rec = start_detached(
        reg,
        name,
        model_dir,
        host=host,
        port=port,
        serve_args=args,
        api_key=api_key or _env("INTENTKIT_API_KEY"),
        timeout=timeout,
    )
    print(f"deployed {name} at {rec['url']} (pid {rec['pid']}, log {rec['log']})")


@app.command()
def endpoints(
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List deployed endpoints with live status (records of dead processes are removed)."""
    from rich.console import Console
    from rich.table import Table

    from intentkit.serve.process import endpoint_status

    reg = _registry(state_dir)
    gone = reg.prune()
    rows = [{**rec, "status": endpoint_status(rec)} for rec in reg.all().values()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    console = Console()
    for name in gone:
        console.print(f"[yellow]removed stale endpoint {name} (process gone)[/yellow]")
    if not rows:
        console.print("no endpoints; start one with `intentkit deploy MODEL_DIR --name NAME`")
        return
    table = Table("name", "status", "url", "pid", "model", "started")
    for r in rows:
        table.add_row(r["name"], r["status"], r["url"], str(r["pid"]), r["model"], r["started"])
    console.print(table)


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    timeout: Annotated[float, typer.Option(help="Seconds before SIGKILL.")] = 30.0,
    state_dir: StateDir = None,
) -> None:
    """Stop an endpoint gracefully (SIGTERM, in-flight requests finish) and remove its record."""
    from intentkit.serve.process import delete_endpoint

    how = delete_endpoint(_registry(state_dir), name, timeout=timeout)
    print(f"deleted {name} ({how})")


def _read_texts(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield line


def _batches(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Remote:
    """Predict through a running endpoint's /invocations, retrying 429/503 with Retry-After."""

    def __init__(self, url: str, api_key: str | None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url, headers=headers, timeout=120.0)

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        import httpx

        for _attempt in range(30):
            try:
                r = self.client.post("/invocations", json={"text": texts})
            except httpx.TransportError as exc:
                raise ConfigError(
                    f"--endpoint {self.client.base_url}: unreachable ({exc})"
                ) from None
            if r.status_code in (429, 503):
                time.sleep(float(r.headers.get("retry-after", "1")))
                continue
            if r.status_code != 200:
                try:
                    msg = r.json().get("error", r.text)
                except ValueError:
                    msg = r.text
                raise ConfigError(f"--endpoint {self.client.base_url}: {r.status_code} {msg}")
            return r.json()
        raise ConfigError(f"--endpoint {self.client.base_url}: still overloaded after 30 tries")


class _Local:
    """Predict in this process (no server)."""

    def __init__(self, model_dir: Path, no_reject: bool, backend: str) -> None:
        from intentkit.predict import Predictor

        self.predictor = Predictor.from_dir(model_dir, reject=not no_reject, backend=backend)

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        return [
            {"predicted_class": a["label"], "confidence": a["confidence"]}
            for a in self.predictor.predict(texts)
        ]


@app.command()
def predict(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Endpoint name (see `intentkit endpoints`) or URL.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Predict locally with this artifact folder.")
    ] = None,
    file: Annotated[Path | None, typer.Option(help="Text file, one query per line.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write JSONL here (default stdout).")] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per request / forward.")] = 64,
    api_key: ApiKey = None,
    no_reject: Annotated[bool, typer.Option("--no-reject", help="Local only.")] = False,
    backend: Annotated[
        str, typer.Option(help="Local only: torch | onnx | auto (onnx pays off for big files).")
    ] = "torch",
    state_dir: StateDir = None,
) -> None:
    """Classify texts via an endpoint (--endpoint) or locally (--model); one JSON line per text."""
    if (endpoint is None) == (model is None):
        raise ConfigError("pass exactly one of --endpoint NAME|URL or --model MODEL_DIR")
    if not texts and file is None:
        raise ConfigError("give texts as arguments or --file queries.txt")
    if file is not None and not file.is_file():
        raise ConfigError(f"--file {file}: no such file")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if endpoint is not None:
        url = endpoint
        if not endpoint.startswith(("http://", "https://")):
            rec = _registry(state_dir).get(endpoint)
            if rec is None:
                raise ConfigError(
                    f"--endpoint {endpoint}: no such endpoint; see `intentkit endpoints` "
                    "or pass a URL"
                )
            url = rec["url"]
        run = _Remote(url.rstrip("/"), api_key or _env("INTENTKIT_API_KEY"))
    else:
        assert model is not None
        run = _Local(model, no_reject, backend)

    out = open(output, "w", encoding="utf-8") if output else sys.stdout
    try:
        if file is None:
            for batch in _batches(iter(texts or []), batch_size):
                _write(out, batch, run(batch))
            return
        from rich.console import Console
        from rich.progress import Progress

        total = sum(1 for _ in _read_texts(file))  # a cheap pass so the bar has an end
        # The bar goes to stderr so stdout stays pure JSONL.
        with Progress(console=Console(stderr=True)) as bar:
            task = bar.add_task(f"predicting {file.name}", total=total)
            for batch in _batches(_read_texts(file), batch_size):
                _write(out, batch, run(batch))
                bar.advance(task, len(batch))
    finally:
        if output:
            out.close()


def _write(out: Any, texts: list[str], answers: list[dict[str, Any]]) -> None:
    for text, ans in zip(texts, answers, strict=True):
        row = {"text": text, **ans}
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    out.flush()


@app.command()
def quickstart(
    model: Annotated[
        str | None,
        typer.Option(help="Encoder (default: modernbert-base if loadable, else minilm)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("demo-output"),
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 2.0,
    port: Annotated[int, typer.Option(help="Endpoint port (0 = a free one).")] = 0,
    state_dir: StateDir = None,
) -> None:
    """Run the whole job offline: prepare clinc150-travel, train, evaluate, deploy, predict."""
    from rich.console import Console

    from intentkit.serve.quickstart import render_summary, run_quickstart

    console = Console(stderr=True)
    env = _env("INTENTKIT_STATE_DIR")
    summary = run_quickstart(
        out,
        model=model,
        force=force,
        epochs=epochs,
        port=port,
        state_dir=state_dir or (Path(env) if env else None),
        console=console,
    )
    render_summary(summary, Console())
