"""Run the HTTP server in the foreground: ``intentkit serve`` and ``intentkit container serve``.

Binds only after the artifact is validated and the port is known to be free, so a bad path or a
taken port is a one-line error instead of a uvicorn traceback.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

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


#: Seconds an idle keep-alive connection stays open (uvicorn's default, named: promote's drain
#: waits for it, see :mod:`intentkit.loop.promote`).
KEEP_ALIVE_S = 5.0


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT, so a successor server of the same user
    can join the port and take it over without a moment where nobody listens (promote)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):  # not on Windows: no takeover there, serving still works
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"--port {port}: cannot share {host}:{port} ({exc.strerror}); the server there was "
            "not started by this intentkit version: redeploy it, then promote"
        ) from None
    return sock


def steer_new_connections_here(sock: socket.socket, index: int = 1) -> None:
    """Send every new connection on the port to this socket, the ``index``-th to join it.

    A classic BPF program ``return index`` attached with SO_ATTACH_REUSEPORT_CBPF picks the
    socket for each new connection (https://man7.org/linux/man-pages/man7/socket.7.html): the
    old server's queue then only drains, so stopping it loses no connection (closing a
    SO_REUSEPORT socket resets whatever waits in its own accept queue). Once the old socket is
    gone the index is out of range and the kernel falls back to its hash: this one, alone.
    """
    import ctypes

    class SockFilter(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        ]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]

    bpf_ret_k = 0x06  # BPF_RET | BPF_K: return the constant k
    program = (SockFilter * 1)(SockFilter(bpf_ret_k, 0, 0, index))
    fprog = SockFprog(1, program)
    so_attach_reuseport_cbpf = 51  # linux/asm-generic/socket.h; not exported by Python
    raw = ctypes.string_at(ctypes.addressof(fprog), ctypes.sizeof(fprog))
    sock.setsockopt(socket.SOL_SOCKET, so_attach_reuseport_cbpf, raw)


def _take_over_when_ready(app: Any, sock: socket.socket) -> None:
    """Steer the port's new connections here once the model answers (a daemon thread)."""
    state = app.state.serve
    while not state.ready:
        if state.load_error is not None:
            return
        time.sleep(0.05)
    steer_new_connections_here(sock)
    logging.getLogger("intentkit.serve").info("model ready: new connections come here now")


def serve_forever(model_dir: str | Path, config: ServeConfig, *, takeover: bool = False) -> None:
    """Serve ``model_dir`` until SIGTERM/SIGINT (blocking); raise a one-line error on failure.

    ``takeover``: join a port another ``intentkit serve`` listens on and, once this model is
    loaded and warm, receive all its new connections (``intentkit promote``).
    """
    import uvicorn

    from intentkit.serve.app import create_app

    model_dir = check_artifact_dir(model_dir)  # a bad path fails here, before binding
    if takeover and not sys.platform.startswith("linux"):
        # steer_new_connections_here needs Linux's SO_ATTACH_REUSEPORT_CBPF.
        raise ConfigError(
            "promote/rollback switch a local endpoint with a Linux-only socket option; on "
            f"{sys.platform}, delete the endpoint and deploy the new model instead"
        )
    if not takeover and port_in_use(config.host, config.port):
        raise ConfigError(
            f"--port {config.port}: {config.host}:{config.port} is already in use; "
            "choose another --port or stop the server using it (`intentkit endpoints`)"
        )
    sock = listen_socket(config.host, config.port)
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
            timeout_keep_alive=KEEP_ALIVE_S,
            backlog=4096,  # bursts wait in the kernel, then meet the 429 bound, not ECONNREFUSED
        )
    )
    if takeover:
        threading.Thread(target=_take_over_when_ready, args=(app, sock), daemon=True).start()
    if hasattr(signal, "SIGUSR1"):  # promote's drain (DrainMiddleware); uvicorn leaves it alone
        state = app.state.serve
        signal.signal(signal.SIGUSR1, lambda *_: setattr(state, "draining", True))
    server.run(sockets=[sock])
    if failure:
        exc = failure[0]
        if isinstance(exc, IntentkitError):
            raise exc
        raise ModelError(f"MODEL_DIR {model_dir}: failed to load ({type(exc).__name__}: {exc})")
