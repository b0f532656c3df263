"""The ``local`` target: endpoints as detached ``intentkit serve`` processes on this machine.

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
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from intentkit.artifact import check_artifact_dir
from intentkit.config import ServeConfig
from intentkit.endpoints.base import Invoke, Target, check_name
from intentkit.endpoints.registry import Registry
from intentkit.errors import ConfigError, ModelError
from intentkit.serve.server import port_in_use, url_for

log = logging.getLogger(__name__)


def process_alive(pid: int, create_time: float | None = None) -> bool:
    """True when ``pid`` runs and (if given) was started at ``create_time`` (no recycled pid).

    Zombies count as dead; one that is our own child is reaped on the way.
    """
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return False
        if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
            return False
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


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
    host: str = ServeConfig.host,
    port: int = ServeConfig.port,
    serve_args: list[str] | None = None,
    api_key: str | None = None,
    timeout: float = 180.0,
) -> dict[str, Any]:
    """Start ``intentkit serve`` detached, wait for ``/ping`` 200, record it; return the record."""
    check_name(name)
    model_dir = check_artifact_dir(model_dir).resolve()
    registry.prune(LocalTarget.stale)
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
        proc, log_path = spawn_serve(registry, name, model_dir, host, port, serve_args, api_key)
        import psutil

        record = {
            "name": name,
            "target": LocalTarget.kind,
            "pid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "host": host,
            "port": port,
            "url": url_for(host, port),
            "model": str(model_dir),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "log": str(log_path),
            "auth": bool(api_key),
            "serve_args": list(serve_args or []),  # promote starts the successor with these
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


def spawn_serve(
    registry: Registry,
    name: str,
    model_dir: Path,
    host: str,
    port: int,
    serve_args: list[str] | None,
    api_key: str | None,
    *,
    log_name: str | None = None,
) -> tuple[subprocess.Popen, Path]:
    """Start ``intentkit serve`` detached (own session, output to a log); (process, log)."""
    registry.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = registry.log_dir / (log_name or f"{name}.log")
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
    return proc, log_path


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
    from intentkit.endpoints import lookup

    rec = lookup(registry, name)
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


class HttpInvoker:
    """Predict through a running server's ``/invocations``, retrying 429/503 with Retry-After."""

    def __init__(self, url: str, api_key: str | None) -> None:
        """Talk to the server at ``url``; send ``api_key`` as a bearer token when given."""
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=120.0)

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        """The server's answers for ``texts``: ``[{"predicted_class", "confidence"}, ...]``."""
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


@dataclass
class LocalOptions:
    """What ``intentkit deploy --target local`` takes (the serve flags it passes on)."""

    host: str = ServeConfig.host  #: --host bind address
    port: int = ServeConfig.port  #: --port
    serve_args: list[str] = field(default_factory=list)  #: extra ``intentkit serve`` flags
    api_key: str | None = None  #: --api-key (passed in the environment, never in argv)
    timeout: float = 180.0  #: --timeout seconds to wait for /ping


class LocalTarget(Target):
    """Endpoints as detached ``intentkit serve`` processes on this machine."""

    kind = "local"

    @staticmethod
    def stale(record: dict[str, Any]) -> bool:
        """A local record whose process is gone (other targets' records are never stale here)."""
        if record.get("target", "local") != LocalTarget.kind:
            return False
        return not process_alive(int(record["pid"]), record.get("create_time"))

    def deploy(self, name: str, model_dir: Path, options: Any) -> dict[str, Any]:
        """Start a detached server and wait for ``/ping`` 200 (see :func:`start_detached`)."""
        opts: LocalOptions = options or LocalOptions()
        return start_detached(
            self.registry,
            name,
            model_dir,
            host=opts.host,
            port=opts.port,
            serve_args=opts.serve_args,
            api_key=opts.api_key,
            timeout=opts.timeout,
        )

    def status(self, record: dict[str, Any]) -> str:
        """``ready`` / ``loading`` / ``unhealthy (<code>)`` / ``unreachable`` / ``dead``."""
        return endpoint_status(record)

    def invoker(self, record: dict[str, Any], *, api_key: str | None = None) -> Invoke:
        """HTTP to the server's ``/invocations``."""
        return HttpInvoker(record["url"], api_key)

    def delete(self, record: dict[str, Any], *, timeout: float | None = None) -> str:
        """SIGTERM (in-flight requests finish), SIGKILL after ``timeout`` (30 s); drop record."""
        return delete_endpoint(
            self.registry, record["name"], timeout=30.0 if timeout is None else timeout
        )

    def train(self, data: Path, out: Path, options: dict[str, Any]) -> Path | None:
        """Train in this process (or under torchrun): :func:`intentkit.training.train.train`."""
        from intentkit.training.train import train

        return train(data, out, **options)

    def transform(
        self, model: Any, source: str, output: str | None, options: dict[str, Any]
    ) -> Any:
        """Stream ``source`` through ``model`` here: :func:`intentkit.bulk.scoring.predict_file`."""
        from intentkit.bulk.scoring import predict_file

        return predict_file(model, Path(source), output, **options)

    def is_stale(self, record: dict[str, Any]) -> bool:
        """The record's process is gone."""
        return self.stale(record)
