"""deploy -> endpoints -> predict -> delete with real detached server processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from intentkit.cli import main
from intentkit.endpoints.local import process_alive
from intentkit.endpoints.registry import Registry
from serve_helpers import free_port, make_artifact

QUERIES = [
    "what time is my flight ?",
    "where is the gate of my flight ?",
    "where can i store my bags ?",
    # The keyword model's own words (boarding/room/car): answered, with different labels.
    "cancel the boarding now",
    "add a note to the room",
    "return the car in paris",
]


@pytest.fixture(scope="module")
def artifact(kw_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A copy of the keyword model (its ONNX export must not land in the shared fixture): a
    # trained, calibrated artifact whose answers and confidences vary, so served-vs-local and
    # ONNX-vs-PyTorch comparisons can actually disagree.
    out = tmp_path_factory.mktemp("art") / "model"
    shutil.copytree(kw_model, out, ignore=shutil.ignore_patterns("checkpoints", "eval", "onnx"))
    return out


def _json_lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


def test_deploy_endpoints_predict_delete(artifact: Path, tmp_path: Path, capsys, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("INTENTKIT_STATE_DIR", str(state))  # read by the CLI, not at import
    monkeypatch.setenv("INTENTKIT_API_KEY", "tok")
    port = free_port()
    rc = main(["deploy", str(artifact), "--name", "e1", "--port", str(port), "--max-wait-ms", "2"])
    assert rc == 0
    rec = Registry(state).get("e1")
    assert rec and rec["port"] == port and rec["auth"] is True and rec["model"] == str(artifact)
    assert process_alive(rec["pid"], rec["create_time"])
    cmdline = Path(f"/proc/{rec['pid']}/cmdline").read_text().split("\0")
    assert "tok" not in cmdline and "--api-key" not in cmdline  # the key travels in env only
    capsys.readouterr()

    assert main(["endpoints", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["status"]) for r in rows] == [("e1", "ready")]

    # Name taken, then port taken: one-line errors, exit 2.
    assert main(["deploy", str(artifact), "--name", "e1", "--port", str(free_port())]) == 2
    assert "already runs" in capsys.readouterr().err
    assert main(["deploy", str(artifact), "--name", "e2", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert "already in use" in err and err.count("\n") == 1

    # Served answers equal local ones (one decision path).
    assert main(["predict", "--endpoint", "e1", *QUERIES]) == 0
    served = _json_lines(capsys.readouterr().out)
    assert main(["predict", "--model", str(artifact), *QUERIES]) == 0
    local = _json_lines(capsys.readouterr().out)
    assert [r["text"] for r in served] == QUERIES
    assert [r["predicted_class"] for r in served] == [r["predicted_class"] for r in local]
    for s, ll in zip(served, local, strict=True):
        assert s["confidence"] == pytest.approx(ll["confidence"], abs=1e-5)
    # The endpoint ran on the ONNX backend (serve's default on CPU); local ONNX agrees too.
    info = httpx.get(f"{rec['url']}/info", headers={"Authorization": "Bearer tok"}, timeout=10)
    assert info.json()["backend"] == "onnx"
    assert main(["predict", "--model", str(artifact), "--backend", "onnx", *QUERIES]) == 0
    local_onnx = _json_lines(capsys.readouterr().out)
    assert [r["predicted_class"] for r in local_onnx] == [r["predicted_class"] for r in local]
    for o, t in zip(local_onnx, local, strict=True):
        assert o["confidence"] == pytest.approx(t["confidence"], abs=1e-4)
    # Not a vacuous comparison: the artifact answers several different labels.
    assert len({r["predicted_class"] for r in local}) >= 3

    # A file streamed in batches to JSONL, by URL this time.
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join(f"query number {i}" for i in range(100)) + "\n\n")
    out = tmp_path / "out.jsonl"
    args = ["predict", "--endpoint", rec["url"], "--file", str(queries), "--output", str(out)]
    assert main([*args, "--batch-size", "64"]) == 0
    rows = _json_lines(out.read_text())
    assert len(rows) == 100 and rows[99]["text"] == "query number 99"

    # Without the token the endpoint refuses (a one-line error).
    monkeypatch.delenv("INTENTKIT_API_KEY")
    assert main(["predict", "--endpoint", "e1", "hi"]) == 2
    assert "401" in capsys.readouterr().err

    # Delete while a request is in flight: its headers and half its body are in when SIGTERM
    # arrives; uvicorn keeps the connection until the answer is sent, then exits.
    body = json.dumps({"text": "in flight"}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tok\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[:5])
    time.sleep(0.3)
    codes: list[int] = []
    deleter = threading.Thread(target=lambda: codes.append(main(["delete", "e1"])))
    deleter.start()
    time.sleep(1.0)  # SIGTERM delivered; the server is draining
    assert deleter.is_alive(), "the server exited with a request in flight"
    sock.sendall(body[5:])
    chunks = []
    while chunk := sock.recv(65536):  # the draining server closes the connection after answering
        chunks.append(chunk)
    sock.close()
    answer = b"".join(chunks).decode()
    deleter.join(30)
    assert answer.startswith("HTTP/1.1 200"), answer
    assert '"predicted_class"' in answer
    assert codes == [0]
    assert "deleted e1 (stopped)" in capsys.readouterr().out
    assert not process_alive(rec["pid"], rec["create_time"])
    assert Registry(state).get("e1") is None
    assert main(["delete", "e1"]) == 2


def test_stale_entries_are_cleaned(artifact: Path, tmp_path: Path, capsys) -> None:
    state = tmp_path / "state"
    port = free_port()
    args = ["deploy", str(artifact), "--name", "gone", "--port", str(port), "--state-dir"]
    assert main([*args, str(state)]) == 0
    rec = Registry(state).get("gone")
    os.kill(rec["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_alive(rec["pid"], rec["create_time"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    capsys.readouterr()
    assert main(["endpoints", "--state-dir", str(state)]) == 0
    assert "removed stale endpoint gone" in capsys.readouterr().out
    assert Registry(state).all() == {}


def test_deploy_failure_shows_log_tail(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    broken = make_artifact(tiny_model_dir, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    args = ["deploy", str(broken), "--name", "bad", "--port", str(free_port())]
    assert main([*args, "--state-dir", str(tmp_path / "s"), "--timeout", "60"]) == 2
    err = capsys.readouterr().err
    assert "deploy bad: the server exited" in err and "log" in err
    assert Registry(tmp_path / "s").all() == {}


def test_serve_command_errors_are_one_line(artifact: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    missing = subprocess.run(
        [sys.executable, "-m", "intentkit", "serve", str(tmp_path / "nope"), "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: MODEL_DIR")
