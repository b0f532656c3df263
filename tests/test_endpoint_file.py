"""One reader for every ``--file`` (#20 item 4): ``predict --endpoint URL --file`` reads CSV and
JSON Lines, with ``--text-column`` and bad-line handling, exactly as ``predict --model --file``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intentkit.cli import main
from intentkit.config import ServeConfig
from intentkit.serve.app import create_app
from serve_helpers import running, wait_ready

#: The keyword model's words (boarding/room/car) and others: answers with several labels.
TEXTS = [
    "cancel the boarding now",
    "add a note to the room",
    "return the car in paris",
    "what time is my flight ?",
    "boarding pass, please",
    "a room with a view",
]


def _write(path: Path) -> None:
    """``TEXTS`` in ``path``'s format, text in a column named ``utterance``, one bad line."""
    if path.suffix == ".csv":
        rows = ["id,utterance"] + [f'{i},"{t}"' for i, t in enumerate(TEXTS)]
        rows.insert(3, "7,too,many")  # wrong number of fields: line 4
    else:
        rows = [json.dumps({"id": i, "utterance": t}) for i, t in enumerate(TEXTS)]
        rows.insert(3, '{"utterance": ')  # invalid JSON: line 4
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text("utf-8").splitlines()]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_endpoint_file_reads_like_model_file(
    suffix: str, kw_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / f"in{suffix}"
    _write(src)
    common = ["--file", str(src), "--text-column", "utterance", "--batch-size", "4"]
    cfg = ServeConfig(backend="torch", device="cpu", max_wait_ms=1)
    with running(create_app(cfg, model_dir=kw_model)) as srv:
        wait_ready(srv.url)
        served_out = tmp_path / "served.jsonl"
        assert main(["predict", "--endpoint", srv.url, *common, "--output", str(served_out)]) == 0
    local_out = tmp_path / "local.jsonl"
    args = ["predict", "--model", str(kw_model), "--backend", "torch", *common]
    assert main([*args, "--output", str(local_out)]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped 1 bad lines: 4") == 2, err  # both runs name the bad line

    served, local = _rows(served_out), _rows(local_out)
    assert [r["text"] for r in served] == TEXTS
    assert [(r["line"], r["text"]) for r in served] == [(r["line"], r["text"]) for r in local]
    assert [r["predicted_class"] for r in served] == [r["predicted_class"] for r in local]
    for s, m in zip(served, local, strict=True):
        assert s["confidence"] == pytest.approx(m["confidence"], abs=1e-5)
        assert s["rejected"] is None  # the endpoint's contract does not say
    assert len({r["predicted_class"] for r in local}) >= 2  # not a constant answer
    # The bad line is listed the same way for both.
    errors = [tmp_path / "served.errors.jsonl", tmp_path / "local.errors.jsonl"]
    assert _rows(errors[0]) == _rows(errors[1]) and _rows(errors[0])[0]["line"] == 4


def test_endpoint_file_refuses_a_missing_text_column(
    kw_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.csv"
    _write(src)
    # Refused while reading the header: no request is sent (nothing listens on this URL).
    args = ["predict", "--endpoint", "http://127.0.0.1:9", "--file", str(src)]
    assert main([*args, "--text-column", "body"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--text-column body" in err and "Traceback" not in err
