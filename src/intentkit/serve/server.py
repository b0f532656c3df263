"""Run the HTTP server in the foreground: ``intentkit serve`` and ``intentkit container serve``.

Binds only after the artifact is validated and the port is known to be free, so a bad path or a
taken port is a one-line error instead of a uvicorn traceback.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from intentkit.artifact import check_artifact_dir
from intentkit.config import ServeConfig
from intentkit.errors import ConfigError, IntentkitError, ModelError


def port_in_use(host: str, port: int) -> bool:
    """True when ``host:port`` can't be bound (checked the way uvicorn binds: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it; another process may
    still take it before it is bound, so callers bind promptly)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def url_for(host: str, port: int) -> str:
    """The base URL clients use for a server bound to ``host:port``."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # bound everywhere: loopback reaches it
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_forever(model_dir: str | Path, config: ServeConfig) -> None:
    """Serve ``model_dir`` until SIGTERM/SIGINT (blocking); raise a one-line error on failure."""
    import uvicorn

    from intentkit.serve.app import create_app

    model_dir = check_artifact_dir(model_dir)  # a bad path fails here, before binding
    if port_in_use(config.host, config.port):
        raise ConfigError(
            f"--port {config.port}: {config.host}:{config.port} is already in use; "
            "choose another --port or stop the server using it (`intentkit endpoints`)"
        )
    logging.getLogger("intentkit").setLevel(config.log_level.upper())
    failure: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(exc: BaseException) -> None:
        failure.append(exc)
        if server is not None:
            server.should_exit = True  # no point listening without a model

    app = create_app(config, model_dir=model_dir, on_load_error=on_load_error, freeze_gc=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            access_log=False,  # per-request logging costs ~10% throughput; /metrics counts them
            timeout_graceful_shutdown=config.timeout_graceful_s,
            backlog=4096,  # bursts wait in the kernel, then meet the 429 bound, not ECONNREFUSED
        )
    )
    server.run()
    if failure:
        exc = failure[0]
        if isinstance(exc, IntentkitError):
            raise exc
        raise ModelError(f"MODEL_DIR {model_dir}: failed to load ({type(exc).__name__}: {exc})")
