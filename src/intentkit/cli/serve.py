"""``intentkit serve``: the HTTP server in the foreground (SageMaker + TEI routes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from intentkit.cli.app import app
from intentkit.cli.common import ApiKey, env
from intentkit.config import CaptureConfig, ServeConfig

#: SageMaker mounts the model here and runs the image with the single argument ``serve``.
SAGEMAKER_MODEL_DIR = "/opt/ml/model"


@app.command()
def serve(
    model_dir: Annotated[
        Path | None,
        typer.Argument(help="Artifact folder (default: $INTENTKIT_MODEL_DIR or /opt/ml/model)."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help=f"Bind address (default: $INTENTKIT_HOST or {ServeConfig.host})."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help=f"Port (default: $INTENTKIT_PORT or {ServeConfig.port}).")
    ] = None,
    max_batch_tokens: Annotated[
        int, typer.Option(help="Padded tokens per forward.")
    ] = ServeConfig.max_batch_tokens,
    max_batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = (
        ServeConfig.max_batch_size
    ),
    max_wait_ms: Annotated[float, typer.Option(help="Wait for batch-mates (ms).")] = (
        ServeConfig.max_wait_ms
    ),
    split_tokens: Annotated[
        int | None,
        typer.Option(
            help="Close a batch at this many padded tokens before a longer text pads it "
            "(default 128 on CPU, 0 = never on GPU)."
        ),
    ] = None,
    max_queue: Annotated[
        int, typer.Option(help="Pending texts before 429.")
    ] = ServeConfig.max_queue,
    max_body_bytes: Annotated[int, typer.Option(help="Body size limit (413).")] = (
        ServeConfig.max_body_bytes
    ),
    max_texts_per_request: Annotated[int, typer.Option(help="Texts per request (413).")] = (
        ServeConfig.max_texts_per_request
    ),
    api_key: ApiKey = None,
    no_reject: Annotated[
        bool, typer.Option("--no-reject", help="Answer the top class even below the threshold.")
    ] = not ServeConfig.reject,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda")] = ServeConfig.device,
    dtype: Annotated[
        str, typer.Option(help="fp32 | int8 (CPU, ~2x faster) | auto/bf16/fp16 (GPU)")
    ] = ServeConfig.dtype,
    backend: Annotated[
        str,
        typer.Option(
            help="auto (ONNX Runtime on CPU when installed, else PyTorch) | torch | onnx; "
            "the ONNX export is made once and cached in MODEL_DIR/onnx."
        ),
    ] = ServeConfig.backend,
    threads: Annotated[
        int | None,
        typer.Option(help="Intra-op threads (default: all cores; torch int8: all but one)."),
    ] = None,
    graceful_timeout: Annotated[
        float, typer.Option(help="Seconds in-flight requests get on SIGTERM.")
    ] = ServeConfig.timeout_graceful_s,
    log_level: Annotated[str, typer.Option(help="debug|info|warning|error")] = (
        ServeConfig.log_level
    ),
    no_playground: Annotated[
        bool, typer.Option("--no-playground", help="No test page at GET / (the API only).")
    ] = not ServeConfig.playground,
    buckets: Annotated[
        bool | None,
        typer.Option(
            "--buckets/--no-buckets",
            help="Pad batches to a few fixed (batch, width) shapes, each warmed at load "
            "(default: on CUDA only).",
        ),
    ] = None,
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model per shape (CUDA only).")
    ] = ServeConfig.compile,
    compile_mode: Annotated[
        str,
        typer.Option(help="default | reduce-overhead (CUDA graphs) | max-autotune-no-cudagraphs"),
    ] = ServeConfig.compile_mode,
    capture: Annotated[
        Path | None,
        typer.Option(help="Write each answered text as a JSON line into this folder (off: unset)."),
    ] = None,
    capture_sample: Annotated[
        float, typer.Option(help="Fraction of texts captured.")
    ] = CaptureConfig.sample,
    capture_text: Annotated[
        str, typer.Option(help="full | hash (salted HMAC-SHA256) | none: what of the text is kept.")
    ] = CaptureConfig.text,
    capture_file_mb: Annotated[float, typer.Option(help="Rotate a capture file past this.")] = (
        CaptureConfig.max_file_mb
    ),
    capture_max_mb: Annotated[
        float, typer.Option(help="Capture disk cap; the oldest files are deleted past it.")
    ] = CaptureConfig.max_total_mb,
    capture_rotate_s: Annotated[
        float, typer.Option(help="Also rotate a capture file after this many seconds.")
    ] = CaptureConfig.rotate_s,
    takeover: Annotated[
        bool,
        typer.Option("--takeover", hidden=True, help="Join the port and take it once warm."),
    ] = False,
) -> None:
    """Serve a trained model over HTTP (SageMaker /invocations + TEI /predict) until stopped.

    Open http://HOST:PORT/ in a browser for the playground page (live predictions, batch mode).
    """
    from intentkit.config import port_from_env
    from intentkit.serve.server import serve_forever

    if port is None:
        port = port_from_env(os.environ)
    config = ServeConfig(
        host=host or env("INTENTKIT_HOST") or ServeConfig.host,
        port=port or ServeConfig.port,
        max_batch_tokens=max_batch_tokens,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        split_tokens=split_tokens,
        max_queue=max_queue,
        max_body_bytes=max_body_bytes,
        max_texts_per_request=max_texts_per_request,
        api_key=api_key or env("INTENTKIT_API_KEY"),
        device=device,
        dtype=dtype,
        backend=backend,
        reject=not no_reject,
        threads=threads,
        timeout_graceful_s=graceful_timeout,
        log_level=log_level,
        playground=not no_playground,
        buckets=buckets,
        compile=compile,
        compile_mode=compile_mode,
        capture=None
        if capture is None
        else CaptureConfig(
            dir=str(capture),
            sample=capture_sample,
            text=capture_text,
            max_file_mb=capture_file_mb,
            max_total_mb=capture_max_mb,
            rotate_s=capture_rotate_s,
        ),
    )
    path = model_dir or Path(env("INTENTKIT_MODEL_DIR") or SAGEMAKER_MODEL_DIR)
    serve_forever(path, config, takeover=takeover)  # --takeover: `intentkit promote` only
