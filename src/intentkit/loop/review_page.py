"""The review page and its local server, plus ``--export`` / ``--import`` without a browser.

The server is the standard library's ``ThreadingHTTPServer`` bound to 127.0.0.1: one page and
three JSON routes for one person on their own machine need no web framework (and ``review`` then
works without the ``serve`` extra). Routes: ``GET /`` (the page: the report's stylesheet, a
keyboard-driven script), ``GET /api/queue``, ``POST /api/label`` ``{"id", "label", "action"}``
and ``POST /api/cluster`` ``{"cluster", "label"}`` (a new label for every text of a cluster).
Bad requests get a typed JSON error ``{"error", "error_type"}`` with status 400 or 404.
"""

from __future__ import annotations

import csv
import io
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from intentkit.errors import ConfigError, DataError
from intentkit.evaluation.report.page import render, template
from intentkit.evaluation.report.svg import esc
from intentkit.loop.review import LabelsFile, Queue

EXPORT_COLUMNS = (
    "rank", "text", "answer", "confidence", "rejected", "count", "in_training", "cluster",
    "cluster_name", "label",
)  # fmt: skip


def render_review(queue: Queue, title: str) -> str:
    """The page's HTML (the data comes from ``/api/queue``)."""
    n_rej = sum(x["rejected"] for x in queue.items)
    return render(
        "review.html",
        title=esc(title),
        subtitle=esc(
            f"{len(queue.items):,} distinct texts · {n_rej:,} rejected · "
            f"{len(queue.clusters)} clusters · {queue.stats.skipped} capture lines skipped"
        ),
        css=template("base.css"),
        footer=esc(title),
        js=template("review.js"),
    )


def queue_json(queue: Queue, labels: LabelsFile) -> dict[str, Any]:
    """What the page reads: the items with their current decision, clusters, the label names."""
    known = sorted(set(queue.labels) | set(labels.decided.values()) | {queue.reject_label})
    return {
        "items": [{**x, "decided": labels.decided.get(x["text"])} for x in queue.items],
        "clusters": queue.clusters,
        "labels": known,
        "reject_label": queue.reject_label,
        "no_text": queue.no_text,
    }


class _Handler(BaseHTTPRequestHandler):
    queue: Queue
    labels: LabelsFile
    page: bytes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        """Quiet: one line per request would bury the command's own output."""

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, status: int, kind: str, message: str) -> None:
        self._json(status, {"error": message, "error_type": kind})

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        """The page, or the queue as JSON."""
        if self.path == "/":
            self._send(200, self.page, "text/html; charset=utf-8")
        elif self.path == "/api/queue":
            self._json(200, queue_json(self.queue, self.labels))
        else:
            self._error(404, "not_found", f"no route {self.path}")

    def do_POST(self) -> None:  # noqa: N802 - stdlib's name
        """Record one decision, or a new label for a whole cluster."""
        try:
            size = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(min(size, 1_000_000)) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            label = body.get("label")
            if not isinstance(label, str):
                raise ValueError("`label` must be a string")
            if self.path == "/api/label":
                item = self.queue.items[int(body["id"])]
                action = str(body.get("action") or "relabel")
                self.labels.add(item["text"], label, action, item["answer"])
                self._json(200, {"ids": [item["id"]]})
            elif self.path == "/api/cluster":
                cid = int(body["cluster"])
                members = [x for x in self.queue.items if x["cluster"] == cid]
                if not members:
                    raise ValueError(f"no cluster {cid}")
                for item in members:
                    self.labels.add(item["text"], label, "new", item["answer"])
                self._json(200, {"ids": [x["id"] for x in members]})
            else:
                self._error(404, "not_found", f"no route {self.path}")
        except (ValueError, KeyError, IndexError, TypeError, DataError) as exc:
            self._error(400, "validation", str(exc) or type(exc).__name__)


def make_server(queue: Queue, labels: LabelsFile, port: int, title: str) -> ThreadingHTTPServer:
    """A review server on 127.0.0.1:``port`` (0 = any free port), not yet serving."""
    handler = type(
        "ReviewHandler",
        (_Handler,),
        {"queue": queue, "labels": labels, "page": render_review(queue, title).encode()},
    )
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise ConfigError(
            f"--port {port}: cannot listen on 127.0.0.1 ({exc.strerror}); choose another --port"
        ) from None


def export_csv(queue: Queue, labels: LabelsFile, path: str | Path) -> int:
    """Write the ranked queue as CSV (the ``label`` column filled where already decided)."""
    from intentkit.fsutil import atomic_write_text

    names = {c["id"]: c["name"] for c in queue.clusters}
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(EXPORT_COLUMNS)
    for rank, x in enumerate(queue.items, start=1):
        cluster = x["cluster"]
        writer.writerow(
            [rank, x["text"], x["answer"], f"{x['confidence']:.4f}", x["rejected"], x["count"],
             x["in_training"], "" if cluster is None else cluster, names.get(cluster, ""),
             labels.decided.get(x["text"], "")]
        )  # fmt: skip
    atomic_write_text(path, buf.getvalue())
    return len(queue.items)


def import_csv(path: str | Path, labels: LabelsFile) -> int:
    """Append the rows of a labelled CSV (columns ``text`` and ``label``; empty labels skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--import {path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"text", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(
                f"--import {path}: no {' or '.join(sorted(missing))} column; export one with "
                "--export and fill its label column"
            )
        rows = [(r["text"], r["label"].strip()) for r in reader if (r["label"] or "").strip()]
    for text, label in rows:
        labels.add(text, label, "import")
    return len(rows)
