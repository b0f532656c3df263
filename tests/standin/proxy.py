"""A proxy on 127.0.0.1 in front of moto's server: AWS as it really behaves, where moto does not.

moto accepts almost anything (an endpoint is InService at once, anything can be deleted at any
time, nothing times out). The code under test talks to this proxy instead (``AWS_ENDPOINT_URL``);
every request is forwarded to moto unchanged unless a *rule* registered for its action answers it
or rewrites moto's answer. Rules are plain functions, kept in the modules beside this one, one per
behaviour, each citing the documentation of the real behaviour it reproduces.

An action is named the way the AWS JSON protocols name it in ``X-Amz-Target``
(``SageMaker.DescribeEndpoint``, ``Logs_20140328.GetLogEvents``,
``AnyScaleFrontendService.RegisterScalableTarget``); REST calls (S3, ``sagemaker-runtime``) are
named ``"METHOD /path"`` and matched by a rule whose name is a prefix of that string.

Hand-written because no library stands between botocore and moto with per-action hooks; the
proxy is a few dozen lines over the standard library's threaded HTTP server.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

#: Headers not passed through either way (the proxy sets its own framing).
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Reply:
    """An HTTP answer, from moto (forwarded) or made by a rule."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body or b"{}")

    @classmethod
    def of_json(cls, data: Any, status: int = 200) -> Reply:
        """A JSON answer as the AWS JSON 1.1 protocol sends it."""
        body = json.dumps(data).encode()
        return cls(status, body, {"Content-Type": "application/x-amz-json-1.1"})

    @classmethod
    def error(cls, code: str, message: str, status: int = 400) -> Reply:
        """An AWS JSON-protocol error; botocore raises ``ClientError`` with this code."""
        return cls.of_json({"__type": code, "message": message}, status)


@dataclass
class Call:
    """One request as the proxy received it."""

    action: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The request body parsed as JSON ({} when empty)."""
        return json.loads(self.body or b"{}")


#: A rule gets the call and a function that forwards it to moto (call it at most once); it returns
#: the reply to send: its own, moto's, or moto's rewritten.
Rule = Callable[[Call, Callable[[], Reply]], Reply]


class StandIn:
    """The proxy: forwards to ``moto_url`` and applies the rules registered with :meth:`on`."""

    def __init__(self, moto_url: str) -> None:
        self.moto = urlparse(moto_url)
        self.rules: dict[str, list[Rule]] = {}
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {}  # shared by rules (e.g. endpoint status by name)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the proxy."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def on(self, action: str, rule: Rule) -> None:
        """Register ``rule`` for ``action`` (later rules wrap earlier ones for the same action)."""
        with self.lock:
            self.rules.setdefault(action, []).append(rule)

    def reset(self) -> None:
        """Forget every rule, recorded call and rule state (between tests)."""
        with self.lock:
            self.rules.clear()
            self.calls.clear()
            self.state.clear()

    def actions(self) -> list[str]:
        """The actions received so far, in order."""
        with self.lock:
            return [c.action for c in self.calls]

    def close(self) -> None:
        """Stop the proxy."""
        self._server.shutdown()
        self._server.server_close()

    # -- the request path -------------------------------------------------------------------

    def forward(self, call: Call) -> Reply:
        """Send ``call`` to moto unchanged and return its answer."""
        conn = http.client.HTTPConnection(self.moto.hostname, self.moto.port, timeout=120)
        try:
            headers = {k: v for k, v in call.headers.items() if k.lower() not in _HOP}
            headers["Host"] = f"{self.moto.hostname}:{self.moto.port}"
            conn.request(call.method, call.path, body=call.body or None, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP}
            return Reply(resp.status, body, out)
        finally:
            conn.close()

    def _rules_for(self, action: str) -> list[Rule]:
        with self.lock:
            exact = list(self.rules.get(action, []))
            if exact:
                return exact
            return [
                r for name, rules in self.rules.items() if action.startswith(name) for r in rules
            ]

    def handle(self, call: Call) -> Reply:
        """Apply the rules for ``call`` (innermost registered first), else forward it."""
        with self.lock:
            self.calls.append(call)
        answer: Callable[[], Reply] = lambda: self.forward(call)  # noqa: E731
        for rule in self._rules_for(call.action):
            answer = (lambda r, inner: lambda: r(call, inner))(rule, answer)
        return answer()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = self.headers.get("X-Amz-Target")
                action = target or f"{self.command} {self.path}"
                call = Call(action, self.command, self.path, dict(self.headers.items()), body)
                try:
                    reply = standin.handle(call)
                except Exception as exc:  # a broken rule must show up in the test, not hang it
                    reply = Reply.error("StandInError", f"{type(exc).__name__}: {exc}", 500)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
