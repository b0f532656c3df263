"""Helpers shared by the serve tests: classifier artifacts from the tiny encoder, real servers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from intentkit.serve.server import free_port

LABELS = ["book_flight", "lost_luggage", "flight_status"]
#: Short and long intent-like texts for backend parity checks (the last is over max_length 32).
SAMPLE_TEXTS = [
    "what time is my flight ?",
    "my bag never arrived",
    "book me a flight to paris next friday please",
    "is flight ua 90 on time",
    "hi",
    "i need to rebook the connection that i missed because my first flight was late",
]
#: Threshold above any 3-class probability of a random model: every text is rejected.
REJECT_ALL = {"temperature": 1.0, "threshold": 0.99, "reject_label": "out_of_scope"}


def make_artifact(
    tiny_model_dir: Path,
    out: Path,
    *,
    labels: list[str] = LABELS,
    calibration: dict[str, Any] | None = None,
    max_length: int = 32,
    seed: int = 0,
) -> Path:
    """Save a classifier artifact (random head on the tiny encoder) that Predictor can load."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={x: i for i, x in enumerate(labels)},
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    meta: dict[str, Any] = {"format_version": 1, "max_length": max_length}
    if calibration is not None:
        meta["calibration"] = calibration
    (out / "intentkit.json").write_text(json.dumps(meta))
    return out


class ThreadedServer:
    """uvicorn in a background thread on 127.0.0.1 (signal handlers stay with the main thread)."""

    def __init__(self, app: Any, *, graceful_s: float = 10.0) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=graceful_s,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 30.0) -> ThreadedServer:
        """Start and wait until the socket listens."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """What SIGTERM does: stop accepting, let in-flight requests finish, run shutdown."""
        self.server.should_exit = True
        self.thread.join(timeout)


@contextmanager
def running(app: Any, **kwargs: Any) -> Iterator[ThreadedServer]:
    """A started ThreadedServer, always stopped on exit."""
    srv = ThreadedServer(app, **kwargs).start()
    try:
        yield srv
    finally:
        srv.stop()


def wait_ready(url: str, timeout: float = 60.0, headers: dict[str, str] | None = None) -> None:
    """Poll /health until 200 (bounded)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5, headers=headers).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s")


class ControlledPredictor:
    """Wraps a real Predictor: forward passes can be slowed, blocked, failed and counted."""

    def __init__(self, inner: Any, *, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.fail = threading.Event()
        self.entered = threading.Event()  # set when a forward pass starts
        self.batches: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def forward_ids(self, ids: Any) -> Any:
        """The inner forward, after the test's delay/failure."""
        self.entered.set()
        self.batches.append(len(ids))
        if self.fail.is_set():
            raise RuntimeError("injected failure")
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.inner.forward_ids(ids)


class Traffic:
    """Clients that keep sending on keep-alive connections and record every failure."""

    def __init__(self, url: str, clients: int = 4, texts: list[str] | None = None) -> None:
        self.url, self.stop = url, threading.Event()
        self.texts = texts or ["book a boarding in paris", "hi"]
        self.ok, self.failures = 0, []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self.stop.is_set():
                try:
                    r = c.post("/invocations", json={"text": self.texts})
                    bad = None if r.status_code == 200 else f"{r.status_code} {r.text[:80]}"
                except httpx.HTTPError as exc:
                    bad = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    if bad:
                        self.failures.append(bad)
                    else:
                        self.ok += 1

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
