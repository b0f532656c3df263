"""Serve ``/opt/ml/model`` on 0.0.0.0:8080: SageMaker's hosting contract (/ping, /invocations).

The same server as ``intentkit serve`` (:func:`intentkit.serve.server.serve_forever`); only the
defaults differ: every interface (SageMaker reaches the container from outside) and port 8080.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from intentkit.errors import ConfigError
from intentkit.sagemaker.image.paths import OptMl

log = logging.getLogger(__name__)
SAGEMAKER_PORT = 8080
#: Set by SageMaker when several containers share a host (inference pipelines).
BIND_TO_PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
#: The worker-process count of SageMaker's own model servers (MMS, TorchServe) and the Hugging
#: Face inference image; a user may carry it over in the model's environment.
WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
#: Set by SageMaker batch transform in the container: the largest request body it will send.
PAYLOAD_ENV = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
#: SageMaker caps a real-time request at 6 MB; batch transform at MaxPayloadInMB (<= 100).
REALTIME_PAYLOAD_MB = 6
#: The shortest JSON Lines record (`{"text":"a"}` + newline) is 13 bytes; a body of N bytes
#: holds at most N // 13 texts, and the server must admit all of them in one request.
MIN_LINE_BYTES = 13


def port_from_env(environ: Mapping[str, str]) -> int:
    """``$SAGEMAKER_BIND_TO_PORT``, else ``$INTENTKIT_PORT`` (read by
    :func:`intentkit.config.port_from_env`, as ``intentkit serve`` reads it), else SageMaker's 8080.

    SageMaker sets ``SAGEMAKER_BIND_TO_PORT`` for images labelled
    ``com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true`` (the Dockerfile is), when
    the container is one of several on a host, as in an inference pipeline; it must win, or
    SageMaker's pings go to a port nobody listens on:
    https://docs.aws.amazon.com/sagemaker/latest/dg/inference-pipeline-real-time.html
    """
    from intentkit.config import port_from_env as read_port

    bind = read_port(environ, BIND_TO_PORT_ENV)
    if bind is not None:
        return bind
    port = read_port(environ)
    return SAGEMAKER_PORT if port is None else port


def container_serve_config(environ: Mapping[str, str], *, port: int = SAGEMAKER_PORT) -> Any:
    """The :class:`~intentkit.config.ServeConfig` for SageMaker: 0.0.0.0, and request limits
    sized to what SageMaker sends (6 MB real-time, ``MaxPayloadInMB`` in batch transform).

    ``intentkit serve``'s defaults (1 MB, 1024 texts per request) protect a public endpoint,
    but SageMaker itself splits batch-transform input into MultiRecord requests of up to
    ``MaxPayloadInMB`` MiB, and a request refused with 413 fails the whole job.
    """
    from intentkit.config import ServeConfig

    text = environ.get(PAYLOAD_ENV) or str(REALTIME_PAYLOAD_MB)
    try:
        payload_mb = max(REALTIME_PAYLOAD_MB, int(text))
    except ValueError:
        raise ConfigError(f"${PAYLOAD_ENV} must be a whole number of MB, got {text!r}") from None
    body = payload_mb * 2**20
    texts = body // MIN_LINE_BYTES
    return ServeConfig(
        host="0.0.0.0",
        port=port,
        max_body_bytes=body + 4096,  # headroom for the JSON wrapper around a full payload
        max_texts_per_request=texts,
        max_queue=texts,  # one full request must fit the queue, or it would 429 for ever
    )


def workers_note(environ: Mapping[str, str]) -> str | None:
    """Why ``$SAGEMAKER_MODEL_SERVER_WORKERS`` is not used, when it is set; else None.

    Not honoured on purpose: the server is one process holding one copy of the model, whose
    micro-batcher gathers concurrent requests into one forward pass that already runs on every
    core. N worker processes would hold N copies (N times the memory) and split the same cores
    into smaller, less efficient batches.
    """
    text = environ.get(WORKERS_ENV)
    if not text:
        return None
    return (
        f"${WORKERS_ENV}={text} is not used: this server is one process with one copy of the "
        "model that batches concurrent requests into forward passes on every core; more "
        "processes would only add model copies"
    )


def serve_model(paths: OptMl, *, port: int = SAGEMAKER_PORT, environ: Mapping[str, str]) -> None:
    """Serve ``paths.model`` on 0.0.0.0:``port`` until SIGTERM (blocking)."""
    from intentkit.serve.server import serve_forever

    note = workers_note(environ)
    if note:
        log.warning(note)
    serve_forever(paths.model, container_serve_config(environ, port=port))
