"""Serve ``/opt/ml/model`` on 0.0.0.0:8080: SageMaker's hosting contract (/ping, /invocations).

The same server as ``intentkit serve`` (:func:`intentkit.serve.server.serve_forever`); only the
defaults differ: every interface (SageMaker reaches the container from outside) and port 8080.
"""

from __future__ import annotations

from collections.abc import Mapping

from intentkit.container.paths import OptMl
from intentkit.errors import ConfigError

SAGEMAKER_PORT = 8080
PORT_ENV = "INTENTKIT_PORT"


def port_from_env(environ: Mapping[str, str]) -> int:
    """``$INTENTKIT_PORT`` (as ``intentkit serve`` reads it) or SageMaker's 8080."""
    text = environ.get(PORT_ENV)
    if not text:
        return SAGEMAKER_PORT
    if not text.isdigit():
        raise ConfigError(f"${PORT_ENV} must be a port number, got {text!r}")
    return int(text)


def serve_model(paths: OptMl, *, port: int = SAGEMAKER_PORT) -> None:
    """Serve ``paths.model`` on 0.0.0.0:``port`` until SIGTERM (blocking)."""
    from intentkit.config import ServeConfig
    from intentkit.serve.server import serve_forever

    serve_forever(paths.model, ServeConfig(host="0.0.0.0", port=port))
