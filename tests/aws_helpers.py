"""moto's server mode standing in for AWS: a real process on 127.0.0.1, boto3 pointed at it.

Two guards keep every test off the real AWS: the fixture refuses an ``AWS_ENDPOINT_URL`` that is
not loopback, and :func:`loopback_only` makes botocore itself refuse to send a request to any
other host (an in-process check on every request, whatever the code under test configured).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from intentkit.serve.server import free_port
from standin import StandIn

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Without credentials boto3 would ask the instance metadata service (169.254.169.254).
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: moto's default account id (what STS answers).
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/intentkit-test"


def is_loopback(url: str) -> bool:
    """True when ``url``'s host is a loopback address."""
    host = urlparse(url).hostname or ""
    return host in LOOPBACK or host.startswith("127.")


def default_sigint() -> None:
    """``preexec_fn`` for a child the test will SIGINT: Python leaves SIGINT ignored in a
    process that inherits it ignored (a pytest started in the background by a non-interactive
    shell does), so the child would never see the Ctrl-C the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    """Start ``moto_server`` on a free loopback port; return the process and its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start within 60 s")


def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make botocore refuse (raise) any request whose URL is not on loopback."""
    from botocore.httpsession import URLLib3Session

    original = URLLib3Session.send

    def guarded(self, request):  # noqa: ANN001, ANN202 - botocore's own signature
        if not is_loopback(request.url):
            raise RuntimeError(f"test guard: refusing a request to {request.url} (not loopback)")
        return original(self, request)

    monkeypatch.setattr(URLLib3Session, "send", guarded)


def reset_moto(url: str) -> None:
    """Forget every resource moto holds (between tests)."""
    import httpx

    httpx.post(f"{url}/moto-api/reset", timeout=30).raise_for_status()


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto server for the session."""
    proc, url = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def standin_server(moto_url: str) -> Iterator[StandIn]:
    """The proxy in front of moto (one per session; rules are reset per test)."""
    proxy = StandIn(moto_url)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def standin(aws: str, standin_server: StandIn) -> StandIn:
    """The stand-in the ``aws`` fixture points boto3 at; register rules on it."""
    return standin_server


@pytest.fixture
def aws(
    moto_url: str, standin_server: StandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """Fake credentials + ``AWS_ENDPOINT_URL`` on the stand-in over moto (both reset), guarded.

    Yields moto's own URL (for ``/moto-api`` calls); boto3 goes through the stand-in.
    """
    assert is_loopback(moto_url), f"refusing a non-loopback AWS endpoint: {moto_url}"
    assert is_loopback(standin_server.url)
    for key in list(os.environ):
        if key.startswith(("AWS_", "INTENTKIT_SAGEMAKER_")):  # before the settings below
            monkeypatch.delenv(key)
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", standin_server.url)
    # The stand-in's state changes take a few polls; poll every 20 ms, not every 15 s.
    monkeypatch.setenv("INTENTKIT_SAGEMAKER_POLL_SECONDS", "0.02")
    # No ~/.aws config or credentials file may change what the tests see.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    # Job and endpoint records go to the test's folder, never the user's state folder.
    monkeypatch.setenv("INTENTKIT_STATE_DIR", str(tmp_path / "state"))
    loopback_only(monkeypatch)
    reset_moto(moto_url)
    standin_server.reset()
    yield moto_url
