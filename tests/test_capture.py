"""Traffic capture (serve --capture) over a real socket: lines, sampling, hashing, rotation, disk
failures; and the /metrics answer counts that run with capture on or off."""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from intentkit.config import CaptureConfig, ServeConfig
from intentkit.errors import ConfigError
from intentkit.serve.app import create_app
from intentkit.serve.capture import Recorder
from intentkit.serve.metrics import Metrics
from serve_helpers import REJECT_ALL, make_artifact, running, wait_ready


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tiny_model_dir, tmp_path_factory.mktemp("cap-art"), calibration=REJECT_ALL)


def _texts(n: int) -> list[str]:
    return [f"where is my bag number {i} " + "please " * (i % 5) for i in range(n)]


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _serve(artifact: Path, capture: CaptureConfig | None, posts: list[tuple[str, dict]]) -> str:
    """Serve, send ``posts`` (each must answer 200), return /metrics once the writer caught up;
    the server is stopped on return, so the open capture file is published."""
    cfg = ServeConfig(capture=capture, max_texts_per_request=512)
    with running(create_app(cfg, model_dir=artifact)) as srv:
        wait_ready(srv.url)
        n = 0
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            for route, body in posts:
                r = c.post(route, json=body)
                assert r.status_code == 200, r.text
                texts = body.get("inputs", body.get("text"))
                n += 1 if isinstance(texts, str) else len(texts)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                metrics = c.get("/metrics").text
                answered = _metric(metrics, 'intentkit_answers_total{label="out_of_scope"}')
                # the answer count is bumped on the request path, the capture lines by the
                # writer thread: wait for both, or a loaded machine sees the writer behind
                handled = _metric(metrics, "intentkit_capture_lines_total") + sum(
                    float(v)
                    for v in re.findall(
                        r"^intentkit_capture_dropped_total\{[^}]*\} ([0-9.e+-]+)$", metrics, re.M
                    )
                )
                if answered >= n and (capture is None or capture.sample < 1 or handled >= n):
                    return metrics
                time.sleep(0.05)
    raise AssertionError("the writer never counted every answer")


def _lines(folder: Path) -> list[dict]:
    return [json.loads(x) for f in sorted(folder.glob("capture-*.jsonl")) for x in f.open()]


def test_lines_written_for_both_routes_and_metrics_count_answers(
    artifact: Path, tmp_path: Path
) -> None:
    texts = _texts(5)
    posts = [("/predict", {"inputs": texts}), ("/invocations", {"text": "is my flight on time"})]
    metrics = _serve(artifact, CaptureConfig(dir=str(tmp_path)), posts)
    assert _metric(metrics, "intentkit_rejection_rate") == 1.0  # REJECT_ALL rejects every text
    assert _metric(metrics, "intentkit_capture_lines_total") == 6
    lines = _lines(tmp_path)
    assert [x["text"] for x in lines] == [*texts, "is my flight on time"]
    first = lines[0]
    assert first["answer"] == "out_of_scope" and first["rejected"] is True
    assert len(first["top"]) == 3 and first["top"][0]["score"] >= first["top"][1]["score"]
    assert re.fullmatch(r"[0-9a-f]{16}", first["model"]) and first["latency_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert not list(tmp_path.glob(".*.part"))  # shutdown published the open file


def test_capture_off_writes_nothing_but_counts(artifact: Path, tmp_path: Path) -> None:
    metrics = _serve(artifact, None, [("/predict", {"inputs": _texts(3)})])
    assert _metric(metrics, 'intentkit_answers_total{label="out_of_scope"}') == 3
    assert _metric(metrics, "intentkit_capture_lines_total") == 0


def test_sampling_keeps_about_the_fraction(artifact: Path, tmp_path: Path) -> None:
    posts = [("/predict", {"inputs": _texts(400)})]
    _serve(artifact, CaptureConfig(dir=str(tmp_path), sample=0.25), posts)
    assert 50 <= len(_lines(tmp_path)) <= 150  # binomial(400, 0.25): mean 100, sd 8.7


def test_hash_mode_keeps_no_text_and_equal_texts_hash_equal(artifact: Path, tmp_path: Path) -> None:
    posts = [("/predict", {"inputs": ["secret one", "secret two", "secret one"]})]
    _serve(artifact, CaptureConfig(dir=str(tmp_path), text="hash"), posts)
    lines = _lines(tmp_path)
    assert all("text" not in x for x in lines)
    assert "secret" not in "".join(p.read_text() for p in tmp_path.glob("capture-*"))
    salt = bytes.fromhex((tmp_path / ".salt").read_text())
    assert [x["text_hash"] for x in lines] == [
        hmac.new(salt, t.encode(), "sha256").hexdigest()
        for t in ["secret one", "secret two", "secret one"]
    ]


def test_rotation_and_disk_cap_delete_oldest(artifact: Path, tmp_path: Path) -> None:
    cap = CaptureConfig(dir=str(tmp_path), max_file_mb=2 / 1024, max_total_mb=8 / 1024)
    posts = [("/predict", {"inputs": [f"text number {i}"]}) for i in range(60)]
    _serve(artifact, cap, posts)
    files = sorted(tmp_path.glob("capture-*.jsonl"))
    assert len(files) >= 3  # rotated by size
    assert sum(f.stat().st_size for f in files) <= 8 * 1024
    texts = [x["text"] for x in _lines(tmp_path)]
    assert texts[-1] == "text number 59" and "text number 0" not in texts  # oldest deleted
    assert texts == sorted(texts, key=lambda t: int(t.split()[-1]))  # file names sort in time


def test_unwritable_folder_never_fails_a_request(artifact: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # Tests run as root here, where chmod can't make a folder read-only: a folder under a file
    # fails every mkdir/open with an OSError, the same path a read-only or full disk takes.
    metrics = _serve(
        artifact,
        CaptureConfig(dir=str(blocker / "capture")),
        [("/predict", {"inputs": _texts(3)}), ("/invocations", {"text": "hello"})],
    )
    assert _metric(metrics, 'intentkit_capture_dropped_total{reason="write_error"}') == 4
    assert _metric(metrics, 'intentkit_answers_total{label="out_of_scope"}') == 4
    assert blocker.read_text() == "not a folder"


def test_full_queue_drops_and_counts_without_blocking() -> None:
    from intentkit.serve.batcher import BatchResult
    from intentkit.serve.codecs import Decided

    metrics = Metrics()
    rec = Recorder(CaptureConfig(dir="unused", queue=2), metrics)
    rec.thread = threading.Thread(target=lambda: None)  # a writer that never drains the queue
    result = BatchResult(np.zeros((3, 3), dtype=np.float32), None, 0.0, 0.0, 0.0)
    decided = Decided(["a", "b", "c"], result, [], ["x", "y", "z"], "softmax")
    started = time.perf_counter()
    for _ in range(4):
        rec.submit(None, decided, time.perf_counter())
    assert time.perf_counter() - started < 1.0
    dropped = metrics.registry.get_sample_value(
        "intentkit_capture_dropped_total", {"reason": "queue_full"}
    )
    assert dropped == 6  # two requests queued, the other two (3 texts each) dropped


def test_capture_config_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--capture-sample"):
        CaptureConfig(dir="x", sample=0)
    with pytest.raises(ConfigError, match="--capture-text"):
        CaptureConfig(dir="x", text="sometimes")


def test_serve_cli_bad_capture_flag_is_one_line(capsys, artifact: Path, tmp_path: Path) -> None:
    from intentkit.cli import main

    code = main(["serve", str(artifact), "--capture", str(tmp_path), "--capture-text", "half"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --capture-text") and err.count("\n") == 1


def test_deploy_local_passes_capture_to_the_server(
    artifact: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from intentkit.cli import main
    from intentkit.serve.server import free_port

    monkeypatch.setenv("INTENTKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)  # a relative --capture is resolved here, not in the server's cwd
    port = str(free_port())
    assert main(["deploy", str(artifact), "--name", "cap", "--port", port, "--capture", "c"]) == 0
    try:
        r = httpx.post(
            f"http://127.0.0.1:{port}/invocations", json={"text": ["a", "b"]}, timeout=60
        )
        assert r.status_code == 200
    finally:
        assert main(["delete", "cap"]) == 0  # SIGTERM: the server publishes its open file
    assert [x["text"] for x in _lines(tmp_path / "c")] == ["a", "b"]
    assert (
        main(["deploy", str(artifact), "--name", "x", "--target", "sagemaker", "--capture", "c"])
        == 2
    )
    assert "--capture c: expected s3://BUCKET/PREFIX with --target sagemaker" in (
        capsys.readouterr().err
    )
    # and the other way round: an S3 prefix is SageMaker's data capture, not a local folder
    assert main(["deploy", str(artifact), "--name", "y", "--capture", "s3://b/p"]) == 2
    assert "expected a local folder with --target local" in capsys.readouterr().err


def test_deploy_capture_rotate_s_is_checked_before_the_server_starts(
    artifact: Path, tmp_path: Path, capsys
) -> None:
    from intentkit.cli import main

    deploy = ["deploy", str(artifact), "--name", "r", "--state-dir", str(tmp_path / "state")]
    assert main([*deploy, "--capture-rotate-s", "5"]) == 2
    assert capsys.readouterr().err == (
        "error: --capture-rotate-s needs --capture DIR; add it or drop the flag\n"
    )
    assert main([*deploy, "--capture", str(tmp_path / "c"), "--capture-rotate-s", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --capture-rotate-s must be > 0") and err.count("\n") == 1
    assert not (tmp_path / "state" / "logs").exists()  # no server was started
