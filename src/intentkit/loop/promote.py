"""``intentkit promote`` / ``rollback``: move a local endpoint to another model, blue/green.

The switch never leaves the port without a listener and never resets a connection:

1. the successor (green) starts as ``intentkit serve --takeover`` on the same port: every
   ``intentkit serve`` binds with SO_REUSEPORT (:func:`intentkit.serve.server.listen_socket`),
   so green joins while the current server (blue) keeps answering;
2. once green's model is loaded and warm it steers every *new* connection to itself
   (:func:`intentkit.serve.server.steer_new_connections_here`); this command sees the switch
   when fresh connections' ``GET /info`` name the new model three times in a row;
3. blue is drained: SIGUSR1 makes it answer every request with ``Connection: close``, so busy
   keep-alive clients reconnect (to green) between requests, and idle ones are closed by its
   keep-alive timeout as usual; once it holds no connection (or that timeout has passed) it gets
   SIGTERM, with an empty accept queue (nothing new is sent to it). Closing idle keep-alive
   connections at SIGTERM instead would race a client sending at that instant: a reset.

The registry record then names green, with ``previous`` (blue's model and flags) for
``rollback``. If green fails to start or to take over in time, it is stopped and blue keeps
serving; the error names green's log. SageMaker endpoints move through UpdateEndpoint instead
(:mod:`intentkit.sagemaker.endpoint_update`), after the same gate.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from intentkit.errors import ConfigError, IntentkitError, ModelError


def _drain(pid: int) -> None:
    """Ask blue to close its connections between requests (SIGUSR1) and wait until it holds
    none, at most its keep-alive timeout and a second (see the module docstring, step 3)."""
    import os
    import signal

    import psutil

    from intentkit.serve.server import KEEP_ALIVE_S

    try:
        os.kill(pid, signal.SIGUSR1)
        proc = psutil.Process(pid)
        deadline = time.monotonic() + KEEP_ALIVE_S + 1.0
        while time.monotonic() < deadline:
            open_ = [c for c in proc.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED]
            if not open_:
                return
            time.sleep(0.05)
    except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
        return  # gone already, or not ours to inspect: SIGTERM's own graceful stop follows


class GateRefused(IntentkitError):
    """The new model did not prove better (``intentkit promote`` exits 1)."""

    exit_code = 1


def _served_model(url: str, headers: dict[str, str]) -> str | None:
    import httpx

    try:  # a new connection per call: the kernel picks the server for each new connection
        r = httpx.get(f"{url}/info", headers=headers, timeout=2.0)
        return r.json().get("model_path") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def switch_local(
    registry: Any,
    name: str,
    model_dir: str | Path,
    *,
    api_key: str | None = None,
    timeout: float = 180.0,
    drain_s: float = 30.0,
) -> dict[str, Any]:
    """Move local endpoint ``name`` to ``model_dir`` with no failed request; the new record."""
    import psutil

    from intentkit.artifact import check_artifact_dir
    from intentkit.endpoints import lookup
    from intentkit.endpoints.local import log_tail, process_alive, spawn_serve, stop_process

    rec = lookup(registry, name)
    if not process_alive(int(rec["pid"]), rec.get("create_time")):
        raise ConfigError(f"--endpoint {name}: its server is not running; deploy it again")
    model_dir = check_artifact_dir(model_dir).resolve()
    if str(model_dir) == rec["model"]:
        raise ConfigError(f"{model_dir} is what {name} serves already")
    if rec.get("auth") and not api_key:
        raise ConfigError(f"--api-key: {name} requires a token; pass it or set INTENTKIT_API_KEY")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    args = list(rec.get("serve_args") or [])
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    proc, log = spawn_serve(
        registry, name, model_dir, rec["host"], rec["port"], [*args, "--takeover"], api_key,
        log_name=f"{name}.{stamp}.log",
    )  # fmt: skip
    green = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()}
    try:
        _wait_for_takeover(proc, rec["url"], headers, str(model_dir), timeout)
    except BaseException as exc:  # Ctrl-C included: never leave green running unrecorded
        stop_process(green["pid"], green["create_time"], timeout=drain_s)
        if isinstance(exc, ModelError):
            raise ModelError(f"{exc}; {name} still serves {rec['model']}; log {log}:\n"
                             f"{log_tail(log)}".rstrip()) from None  # fmt: skip
        raise
    new = {
        **rec,
        **green,
        "model": str(model_dir),
        "log": str(log),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "previous": {"model": rec["model"], "serve_args": args},
    }
    with registry.edit() as records:
        records[name] = new
    time.sleep(0.2)  # connections that reached blue just before the switch: let it accept them
    _drain(int(rec["pid"]))
    stop_process(int(rec["pid"]), rec.get("create_time"), timeout=drain_s)  # graceful drain
    return new


def _wait_for_takeover(
    proc: Any, url: str, headers: dict[str, str], model: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < 3:
        if proc.poll() is not None:
            raise ModelError(f"the new server exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise ModelError(f"the new server did not take over within {timeout:g}s")
        seen = seen + 1 if _served_model(url, headers) == model else 0
        time.sleep(0.05)


def promote(
    registry: Any,
    name: str,
    model_dir: str | Path,
    data: str | Path,
    *,
    alpha: float = 0.05,
    api_key: str | None = None,
    timeout: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Gate ``model_dir`` against what ``name`` serves on ``data``, then switch: (verdict,
    record). Raises :class:`GateRefused` (with the verdict as ``.verdict``) when it fails."""
    from intentkit.endpoints import lookup
    from intentkit.loop.gate import gate

    rec = lookup(registry, name)
    verdict = gate(rec["model"], model_dir, data, alpha=alpha)
    if not verdict["passed"]:
        err = GateRefused(f"promote refused: {'; '.join(verdict['reasons'])}")
        err.verdict = verdict  # type: ignore[attr-defined]
        raise err
    return verdict, _switch(registry, rec, model_dir, api_key=api_key, timeout=timeout)


def _switch(
    registry: Any,
    rec: dict[str, Any],
    model_dir: str | Path | None,
    *,
    api_key: str | None,
    timeout: float | None,
) -> dict[str, Any]:
    """Move the endpoint to ``model_dir`` (None: back to its previous model) the target's way;
    ``timeout`` None: the target's own (a local server 180 s, a SageMaker update 1800 s)."""
    if rec.get("target", "local") == "sagemaker":
        from intentkit.sagemaker.endpoint_update import UPDATE_TIMEOUT_S, switch

        wait = UPDATE_TIMEOUT_S if timeout is None else timeout
        return switch(registry, rec, model_dir or "", rollback=model_dir is None, timeout=wait)
    if model_dir is None:
        previous = rec.get("previous")
        if not previous:
            raise ConfigError(f"{rec['name']} has no previous model: it was never promoted")
        model_dir = previous["model"]
    wait = 180.0 if timeout is None else timeout
    return switch_local(registry, rec["name"], model_dir, api_key=api_key, timeout=wait)


def rollback(
    registry: Any, name: str, *, api_key: str | None = None, timeout: float | None = None
) -> dict[str, Any]:
    """Switch ``name`` back to the model it served before the last promote (no gate)."""
    from intentkit.endpoints import lookup

    return _switch(registry, lookup(registry, name), None, api_key=api_key, timeout=timeout)
