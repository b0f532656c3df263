"""Traffic capture off the request path: ``intentkit serve --capture DIR``.

The app's one answer path hands each request's :class:`~intentkit.serve.codecs.Decided` (texts,
logits, out-of-scope scores) to :meth:`Recorder.submit`, which only puts it on a bounded queue
(``put_nowait``: when the writer is behind, the texts are dropped and counted in
``intentkit_capture_dropped{reason="queue_full"}``; a request never waits). One writer thread
turns the outputs into answers with the same :meth:`Predictor.decide` the response used (top 3
kept), updates ``/metrics`` (answers per label, rolling rejection rate) and, with
capture on, writes one JSON line per sampled text::

    {"v": 1, "time": "2026-12-04T19:30:00.123Z", "text": "...", "answer": "book_flight",
     "confidence": 0.93, "rejected": false, "oos_score": -4.1, "top": [{"label", "score"} x3],
     "model": "<fingerprint>", "latency_ms": 7.2}

``--capture-text hash`` writes ``"text_hash"`` instead of ``"text"``: HMAC-SHA256 of the UTF-8
text keyed by a random salt kept in ``DIR/.salt`` (salted, so a hash can't be looked up in a
dictionary of common phrases; the same salt for the folder's life, so equal texts stay equal
across restarts). ``none`` writes neither.

Files: lines go to a hidden ``DIR/.capture-*.part``; when it passes ``--capture-file-mb`` or
``--capture-rotate-s`` it is renamed (one atomic ``os.replace``) to ``capture-<UTC start>-<pid>-
<seq>.jsonl``, so readers, which only open ``capture-*.jsonl``, never see a file being written.
Finished files past ``--capture-max-mb`` in all are deleted oldest first. Any OSError (disk full,
read-only folder) drops those lines, counted as ``reason="write_error"``; the request answered long
before, so it cannot fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import random
import secrets
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.config import CaptureConfig
from intentkit.inference.decision import reject_label_of
from intentkit.serve.metrics import Metrics

log = logging.getLogger("intentkit.serve.capture")

FORMAT_VERSION = 1
#: Answers the rolling ``intentkit_rejection_rate`` is computed over.
WINDOW = 1000
_STOP = object()


def model_fingerprint(path: Path | None) -> str:
    """16 hex digits naming the served model: SHA-256 of ``intentkit.json``, ``config.json`` and
    the weight files' sizes (hashing gigabytes of weights at start-up would delay serving)."""
    digest = hashlib.sha256()
    if path is not None:
        for name in ("intentkit.json", "config.json"):
            if (path / name).is_file():
                digest.update((path / name).read_bytes())
        for f in sorted(path.glob("*.safetensors")):
            digest.update(f"{f.name}:{f.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def iso_time(epoch_s: float) -> str:
    """``2026-12-04T19:30:00.123Z``: UTC, millisecond precision (numpy parses it vectorised)."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _salt(folder: Path) -> bytes:
    path = folder / ".salt"
    try:
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        log.warning("capture: no salt in %s (%s); hashes hold for this process only", folder, exc)
        return secrets.token_bytes(32)


class RotatingFile:
    """Append lines to a hidden part file; finish it into a ``capture-*.jsonl`` by rename."""

    def __init__(self, config: CaptureConfig) -> None:
        self.folder = Path(config.dir)
        self.max_bytes = int(config.max_file_mb * 1024 * 1024)
        self.cap_bytes = int(config.max_total_mb * 1024 * 1024)
        self.rotate_s = config.rotate_s
        self.seq = 0
        self.fh: Any = None
        self.part: Path | None = None
        self.final: Path | None = None
        self.opened = 0.0
        self.retry_at = 0.0

    def write(self, lines: list[str]) -> None:
        """Append ``lines`` (each ending in a newline); OSError propagates to the caller."""
        if self.fh is None:
            self._open()
        self.fh.write("".join(lines))
        self.fh.flush()  # one write() per batch of lines: a crash loses at most the queue
        if self.fh.tell() >= self.max_bytes:
            self.finish()

    def tick(self) -> None:
        """Finish the open file when it is older than ``--capture-rotate-s``."""
        if self.fh is not None and time.monotonic() - self.opened >= self.rotate_s:
            self.finish()

    def _open(self) -> None:
        if time.monotonic() < self.retry_at:  # the disk failed a moment ago: don't hammer it
            raise OSError("capture folder failed less than a second ago")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.seq += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"capture-{stamp}-{os.getpid()}-{self.seq:05d}.jsonl"
        self.final, self.part = self.folder / name, self.folder / f".{name}.part"
        self.fh = open(self.part, "a", encoding="utf-8")  # noqa: SIM115 - kept open across writes
        self.opened = time.monotonic()

    def finish(self) -> None:
        """Close the part file and publish it under its final name, then apply the disk cap."""
        fh, self.fh = self.fh, None
        if fh is None:
            return
        try:
            fh.close()
        finally:
            if self.part is not None and self.part.exists() and self.final is not None:
                os.replace(self.part, self.final)
        self._apply_cap()

    def failed(self) -> None:
        """After an OSError: publish what the part file holds (if the disk lets us; a cut last
        line is skipped by readers), pause writes for a second, reopen on the next batch."""
        now = time.monotonic()
        if now >= self.retry_at:  # not when the pause itself raised: that would never end
            self.retry_at = now + 1.0
        try:
            self.finish()
        except OSError:
            pass

    def _apply_cap(self) -> None:
        files = sorted(self.folder.glob("capture-*.jsonl"))  # names sort oldest first
        sizes = [f.stat().st_size for f in files]
        total = sum(sizes)
        for f, size in zip(files, sizes, strict=True):
            if total <= self.cap_bytes:
                break
            f.unlink(missing_ok=True)
            total -= size


class Recorder:
    """The request path's side of traffic: counts every answer, captures a sample to disk."""

    def __init__(self, config: CaptureConfig | None, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.queue: queue.Queue = queue.Queue(maxsize=config.queue if config else 10000)
        self.file = RotatingFile(config) if config else None
        self.thread: threading.Thread | None = None
        self.recent = np.zeros(WINDOW, dtype=bool)
        self.seen = 0
        self.fingerprints: dict[int, str] = {}
        self.salt = b""

    def submit(self, predictor: Any, decided: Any, started: float) -> None:
        """Queue one request's texts and batch outputs (a :class:`~intentkit.serve.codecs.
        Decided`); never blocks (full queue: drop, count)."""
        if self.thread is None:  # only the event loop thread calls submit: no race
            self.thread = threading.Thread(target=self._run, name="capture", daemon=True)
            self.thread.start()
        result = decided.result
        item = (predictor, decided.texts, result.logits, result.oos_score)
        item += (time.perf_counter() - started, time.time())
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.metrics.capture_dropped.labels(reason="queue_full").inc(len(decided.texts))

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, publish the open file and stop the writer thread."""
        if self.thread is None:
            return
        try:
            self.queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("capture: writer still behind after %.0fs; lines left unwritten", timeout)
        self.thread.join(timeout)

    def _run(self) -> None:
        if self.config is not None and self.config.text == "hash":
            self.salt = _salt(Path(self.config.dir))
        while True:
            try:
                item = self.queue.get(timeout=1.0)
            except queue.Empty:
                self._guard(self.file.tick if self.file else None, 0)
                continue
            if item is _STOP:
                self._guard(self.file.finish if self.file else None, 0)
                return
            try:
                lines = self._answer(*item)
            except Exception:  # a bug here must not kill the thread that counts answers
                log.exception("capture: could not record an answer")
                continue
            if lines and self.file is not None:
                self._guard(lambda lines=lines: self.file.write(lines), len(lines))
                self._guard(self.file.tick, 0)

    def _guard(self, fn: Any, n_lines: int) -> None:
        if fn is None:
            return
        try:
            fn()
            self.metrics.capture_lines.inc(n_lines)
        except OSError as exc:
            self.metrics.capture_dropped.labels(reason="write_error").inc(n_lines)
            log.warning("capture: %s", exc)
            self.file.failed()

    def _answer(
        self,
        predictor: Any,
        texts: list[str],
        logits: np.ndarray,
        oos_score: np.ndarray | None,
        latency_s: float,
        now: float,
    ) -> list[str]:
        # Decided again with the top 3 (the response may have asked for top 1): the same
        # decide(), off the request path.
        answers = predictor.decide(logits, oos_score=oos_score, top_k=3)
        reject_label = reject_label_of(predictor.calibration)
        for ans in answers:
            self.metrics.answers.labels(label=ans["label"]).inc()
            self.recent[self.seen % WINDOW] = ans["label"] == reject_label
            self.seen += 1
        self.metrics.rejection_rate.set(float(self.recent[: min(self.seen, WINDOW)].mean()))
        if self.config is None:
            return []
        key = id(predictor)
        if key not in self.fingerprints:
            self.fingerprints[key] = model_fingerprint(getattr(predictor, "path", None))
        common = {"model": self.fingerprints[key], "latency_ms": round(latency_s * 1000.0, 3)}
        stamp = iso_time(now)
        lines = []
        for text, ans in zip(texts, answers, strict=True):
            if self.config.sample < 1.0 and random.random() >= self.config.sample:
                continue
            line: dict[str, Any] = {"v": FORMAT_VERSION, "time": stamp}
            if self.config.text == "full":
                line["text"] = text
            elif self.config.text == "hash":
                line["text_hash"] = hmac.new(self.salt, text.encode(), "sha256").hexdigest()
            top = ans["scores"]
            line |= {
                "answer": ans["label"],
                "confidence": round(ans["confidence"], 6),
                "rejected": ans["label"] == reject_label,
                "oos_score": ans.get("oos_score"),
                "top": [{"label": t["label"], "score": round(t["score"], 6)} for t in top],
                **common,
            }
            lines.append(json.dumps(line, ensure_ascii=False) + "\n")
        return lines
