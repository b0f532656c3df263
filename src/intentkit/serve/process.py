"""Server processes: run one in the foreground, start/stop detached ones (deploy/delete).

``deploy`` mirrors the reference's SageMaker ``deploy`` locally: a detached
``python -m intentkit serve`` in its own session (so closing the terminal doesn't kill it), its
output in a log file, recorded in the registry once ``/ping`` answers 200. ``delete`` sends
SIGTERM (uvicorn stops accepting, finishes in-flight requests, drains the batcher) and SIGKILL
only after a timeout.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from intentkit.artifact import check_artifact_dir
from intentkit.config import ServeConfig
from intentkit.errors import ConfigError, IntentkitError, ModelError
from intentkit.serve.registry import Registry, process_alive

log = logging.getLogger(__name__)


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


def ping(url: str, timeout: float = 2.0) -> int | None:
    """Status code of ``GET url/ping``, or None when nothing answers."""
    import httpx

    try:
        return httpx.get(f"{url}/ping", timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def start_detached(
    registry: Registry,
    name: str,
    model_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    serve_args: list[str] | None = None,
    api_key: str | None = None,
    timeout: float = 180.0,
) -> dict[str, Any]:
    """Start ``intentkit serve`` detached, wait for ``/ping`` 200, record it; return the record."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '-', '_' or '.'")
    model_dir = check_artifact_dir(model_dir).resolve()
    registry.prune()
    with registry.edit() as records:
        if name in records:
            rec = records[name]
            raise ConfigError(
                f"--name {name}: an endpoint with that name already runs on {rec['url']}; "
                f"choose another --name or `intentkit delete {name}` first"
            )
        if port_in_use(host, port):
            raise ConfigError(
                f"--port {port}: {host}:{port} is already in use; choose another --port"
            )
        registry.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = registry.log_dir / f"{name}.log"
        cmd = [sys.executable, "-m", "intentkit", "serve", str(model_dir)]
        cmd += ["--host", host, "--port", str(port), *(serve_args or [])]
        env = dict(os.environ)
        env.pop("INTENTKIT_API_KEY", None)
        if api_key:
            env["INTENTKIT_API_KEY"] = api_key  # env, not argv: argv is visible to `ps`
        with open(log_path, "ab") as logf:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # survives the terminal; SIGINT there doesn't reach it
            )
        import psutil

        record = {
            "name": name,
            "pid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "host": host,
            "port": port,
            "url": url_for(host, port),
            "model": str(model_dir),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "log": str(log_path),
            "auth": bool(api_key),
            "status": "starting",
        }
        records[name] = record  # reserved now, so a concurrent deploy can't take the name

    deadline = time.monotonic() + timeout
    problem = None
    while True:
        code = proc.poll()
        if code is not None:
            problem = f"the server exited with code {code}"
            break
        if ping(record["url"], timeout=1.0) == 200:
            break
        if time.monotonic() > deadline:
            problem = f"/ping did not answer 200 within {timeout:g}s"
            stop_process(proc.pid, record["create_time"], timeout=5)
            break
        time.sleep(0.1)
    with registry.edit() as records:
        if problem:
            records.pop(name, None)
        else:
            record["status"] = "running"
            records[name] = record
    if problem:
        raise ModelError(
            f"deploy {name}: {problem}; log {log_path}:\n{log_tail(log_path)}".rstrip()
        )
    return record


def stop_process(pid: int, create_time: float | None = None, *, timeout: float = 30.0) -> str:
    """SIGTERM, wait up to ``timeout`` s for a graceful exit, then SIGKILL.

    Returns ``"stopped"``, ``"killed"`` or ``"gone"`` (it was not running).
    """
    if not process_alive(pid, create_time):
        return "gone"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "gone"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid, create_time):
            return "stopped"
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    for _ in range(100):  # SIGKILL is immediate, but reaping the entry takes a moment
        if not process_alive(pid, create_time):
            break
        time.sleep(0.02)
    return "killed"


def delete_endpoint(registry: Registry, name: str, *, timeout: float = 30.0) -> str:
    """Stop the endpoint ``name`` gracefully and remove its record; returns how it ended."""
    rec = registry.get(name)
    if rec is None:
        known = ", ".join(sorted(registry.all())) or "none"
        raise ConfigError(f"no endpoint named {name!r} (known: {known}); see `intentkit endpoints`")
    how = stop_process(int(rec["pid"]), rec.get("create_time"), timeout=timeout)
    with registry.edit() as records:
        records.pop(name, None)
    return how


def endpoint_status(rec: dict[str, Any]) -> str:
    """``ready`` / ``loading`` / ``unhealthy (<code>)`` / ``unreachable`` / ``dead``."""
    if not process_alive(int(rec["pid"]), rec.get("create_time")):
        return "dead"
    code = ping(rec["url"], timeout=1.0)
    if code == 200:
        return "ready"
    if code == 503:
        return "loading"
    return "unreachable" if code is None else f"unhealthy ({code})"
