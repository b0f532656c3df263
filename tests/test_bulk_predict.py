"""Bulk prediction (`predict --model --file --output`): formats, bad lines, resume, memory."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from intentkit.bulk.scoring import predict_file, progress_path
from intentkit.cli import main
from intentkit.export.loader import load_predictor
from intentkit.inference.predictor import Predictor
from serve_helpers import make_artifact

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [f"where is my {w} number {i} ?" * (1 + i % 4) for i, w in enumerate(["bag", "gate"] * 20)]


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tiny_model_dir, tmp_path_factory.mktemp("bulk-art"))


@pytest.fixture(scope="module")
def predictor(artifact: Path) -> Predictor:
    return load_predictor(artifact, backend="auto")


def _write_input(path: Path, texts: list[str]) -> None:
    """``texts`` in the format of ``path``'s extension, with an extra column to ignore."""
    kind = path.suffix
    if kind == ".txt":
        path.write_text("\n".join(texts) + "\n", "utf-8")
    elif kind in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, delimiter="\t" if kind == ".tsv" else ",")
            w.writerow(["id", "utterance"])  # detected as the text column
            w.writerows([i, t] for i, t in enumerate(texts))
    elif kind == ".jsonl":
        path.write_text(
            "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
        )
    else:
        pq.write_table(pa.table({"id": range(len(texts)), "text": texts}), path, row_group_size=7)


def _read_output(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return [json.loads(x) for x in path.read_text("utf-8").splitlines()]


@pytest.mark.parametrize("out_ext", [".jsonl", ".parquet"])
@pytest.mark.parametrize("in_ext", [".txt", ".csv", ".tsv", ".jsonl", ".parquet"])
def test_each_format_in_and_out_matches_predictor(
    predictor: Predictor, tmp_path: Path, in_ext: str, out_ext: str
) -> None:
    src, out = tmp_path / f"in{in_ext}", tmp_path / f"out{out_ext}"
    _write_input(src, TEXTS)
    # Chunks of 6 texts: many commit points, and length-sorting happens inside each chunk.
    result = predict_file(predictor, src, out, chunk_size=6, batch_size=4, progress=False)
    rows = _read_output(out)
    expected = predictor.predict(TEXTS)
    assert result.rows == len(rows) == len(TEXTS) and result.skipped == 0
    assert [r["text"] for r in rows] == TEXTS
    first = {".csv": 2, ".tsv": 2}.get(in_ext, 1)  # CSV line 1 is the header
    assert [r["line"] for r in rows] == list(range(first, first + len(TEXTS)))
    assert [r["predicted_class"] for r in rows] == [e["label"] for e in expected]
    for row, exp in zip(rows, expected, strict=True):
        assert row["confidence"] == pytest.approx(exp["confidence"], abs=1e-5)
        assert row["rejected"] is False
    assert not progress_path(out).exists() and not (tmp_path / "out.errors.jsonl").exists()


def test_cli_txt_keeps_blank_line_behaviour_and_rejection(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    reject_all = {"temperature": 1.0, "threshold": 0.99, "reject_label": "out_of_scope"}
    art = make_artifact(tiny_model_dir, tmp_path / "art", calibration=reject_all)
    src = tmp_path / "q.txt"
    src.write_text("\ufeffhello there\n\n   \nsecond one  \n", "utf-8")  # BOM, blanks skipped
    assert main(["predict", "--model", str(art), "--file", str(src)]) == 0  # stdout as before
    out = capsys.readouterr()
    rows = [json.loads(x) for x in out.out.splitlines()]
    assert [(r["line"], r["text"]) for r in rows] == [(1, "hello there"), (4, "second one")]
    assert all(r["predicted_class"] == "out_of_scope" and r["rejected"] for r in rows)
    assert "2 rows" in out.err


def _bad_inputs(tmp_path: Path) -> tuple[Path, Path]:
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_bytes(
        b'{"text": "fine one"}\n'
        b'{"text": "broken\n'  # line 2: invalid JSON
        b'{"other": "no text"}\n'  # 3: missing
        b'{"text": ""}\n'  # 4: empty
        b'{"text": 7}\n'  # 5: not a string
        b"\n"  # 6: blank, skipped silently
        b'{"text": "fine \xff bytes"}\n'  # 7: not UTF-8
        b'["a list"]\n'  # 8: not an object
        b'{"text": "fine two"}\n'
    )
    tsv = tmp_path / "bad.tsv"
    tsv.write_text('text\tlabel\nfine one\tx\n"two\nlines"\tx\ntoo\tmany\tfields\n\tx\nok\tx\n')
    return jsonl, tsv


def test_bad_lines_are_skipped_with_their_line_numbers(
    artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    jsonl, tsv = _bad_inputs(tmp_path)
    out = tmp_path / "o.jsonl"
    assert (
        main(["predict", "--model", str(artifact), "--file", str(jsonl), "--output", str(out)]) == 0
    )
    assert [(r["line"], r["text"]) for r in _read_output(out)] == [(1, "fine one"), (9, "fine two")]
    errors = [json.loads(x) for x in (tmp_path / "o.errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == [2, 3, 4, 5, 7, 8]
    assert "invalid JSON" in errors[0]["error"] and "not UTF-8" in errors[4]["error"]
    assert "skipped 6 bad lines: 2, 3, 4, 5, 7, 8" in capsys.readouterr().err

    # TSV: a quoted value spanning lines 3-4 is one row; line 5 is ragged, line 6 empty.
    out = tmp_path / "t.parquet"
    assert (
        main(["predict", "--model", str(artifact), "--file", str(tsv), "--output", str(out)]) == 0
    )
    rows = _read_output(out)
    assert [(r["line"], r["text"]) for r in rows] == [(2, "fine one"), (3, "two\nlines"), (7, "ok")]
    errors = [json.loads(x) for x in (tmp_path / "t.errors.jsonl").read_text().splitlines()]
    assert errors == [
        {"line": 5, "error": "3 fields but the header has 2"},
        {"line": 6, "error": "'text' is empty"},
    ]


def test_on_error_fail_names_the_line_and_keeps_rows_before_it(
    artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    jsonl, _ = _bad_inputs(tmp_path)
    out = tmp_path / "o.jsonl"
    args = ["predict", "--model", str(artifact), "--file", str(jsonl), "--output", str(out)]
    assert main([*args, "--on-error", "fail"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2: invalid JSON" in err and "Traceback" not in err
    assert [r["line"] for r in _read_output(out)] == [1]  # consistent: exactly the rows before
    # The committed state lets the same run go on past the bad lines.
    assert main([*args, "--resume", "--on-error", "skip"]) == 0
    assert [r["line"] for r in _read_output(out)] == [1, 9]


def test_resume_after_sigkill_gives_each_row_once_in_order(artifact: Path, tmp_path: Path) -> None:
    n = 12_000
    src = tmp_path / "big.txt"
    src.write_text("".join(f"text {i} about my flight {i % 97}\n" for i in range(n)))
    out = tmp_path / "out.jsonl"
    state = progress_path(out)
    args = ["predict", "--model", str(artifact), "--file", str(src), "--output", str(out)]
    args += ["--chunk-size", "500", "--batch-size", "16"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "intentkit", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if state.is_file() and json.loads(state.read_text() or "{}").get("rows", 0) > 0:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]  # type: ignore
    committed = json.loads(state.read_text())
    assert 0 < committed["rows"] < n
    # Whatever the kill left past the commit point (here a torn half row too) is cut on resume.
    with out.open("ab") as fh:
        fh.write(b'{"line": 999999, "text": "torn')
    assert main([*args, "--resume"]) == 0
    rows = _read_output(out)
    assert [r["line"] for r in rows] == list(range(1, n + 1))
    assert rows[-1]["text"] == f"text {n - 1} about my flight {(n - 1) % 97}"
    assert not state.exists()


class _Crash(Exception):
    pass


class _CrashingPredictor:
    """Wraps a predictor; its ``logits`` raises on call number ``at`` (a crash mid-run)."""

    def __init__(self, inner: Predictor, at: int) -> None:
        self.inner, self.at, self.calls = inner, at, 0
        self.path = inner.path

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def logits(self, texts, batch_size=64):
        self.calls += 1
        if self.calls == self.at:
            raise _Crash
        return self.inner.logits(texts, batch_size=batch_size)


def test_parquet_resume_after_a_crash(predictor: Predictor, tmp_path: Path) -> None:
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    _write_input(src, TEXTS)
    with pytest.raises(_Crash):
        predict_file(_CrashingPredictor(predictor, at=4), src, out, chunk_size=5, progress=False)
    assert json.loads(progress_path(out).read_text())["rows"] == 15 and not out.exists()
    (tmp_path / "out.parquet.parts" / ".part-000003.parquet.123.tmp").write_bytes(b"PAR1 torn")
    result = predict_file(predictor, src, out, chunk_size=5, resume=True, progress=False)
    assert result.rows == len(TEXTS) and result.texts_this_run == len(TEXTS) - 15
    assert [r["line"] for r in _read_output(out)] == list(range(1, len(TEXTS) + 1))
    assert len(pq.ParquetFile(out).metadata.row_group(0).to_dict()["columns"]) == 5
    assert not (tmp_path / "out.parquet.parts").exists() and not progress_path(out).exists()


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from intentkit.bulk.scoring import predict_file
    from intentkit.export.loader import load_predictor

    art, small, big, out, headroom = sys.argv[1:6]
    pred = load_predictor(art, backend="auto")
    # Warm up on the same shape so thread pools and allocator arenas exist before the limit.
    predict_file(pred, small, out, chunk_size=64, force=True, progress=False)
    status = Path("/proc/self/status").read_text()
    vm = int(next(x for x in status.splitlines() if x.startswith("VmSize:")).split()[1]) * 1024
    limit = vm + int(headroom)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    result = predict_file(pred, big, out, chunk_size=64, force=True, progress=False)
    try:  # the control: the same limit does not hold the file read whole
        Path(big).read_bytes()
        whole = True
    except MemoryError:
        whole = False
    print(json.dumps({"rows": result.rows, "whole_file_fits": whole, "limit": limit}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.slow
def test_file_larger_than_the_memory_limit_completes(artifact: Path, tmp_path: Path) -> None:
    # Log-like JSONL: a short text and a big payload per line. The payload makes the file large
    # (64 MiB) without making the test slow; only the text is tokenized.
    headroom = 32 << 20
    blob = "x" * 8192
    lines = [json.dumps({"text": f"query {i} about my bags", "payload": blob}) for i in range(8500)]
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    big.write_text("\n".join(lines) + "\n")
    small.write_text("\n".join(lines[:300]) + "\n")
    assert big.stat().st_size > 2 * headroom
    script = [sys.executable, "-c", MEMORY_SCRIPT, str(artifact), str(small), str(big)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run(
        [*script, str(tmp_path / "out.jsonl"), str(headroom)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.splitlines()[-1])
    assert report == {"rows": 8500, "whole_file_fits": False, "limit": report["limit"]}
    assert len(_read_output(tmp_path / "out.jsonl")) == 8500


def _one_line_error(capsys: pytest.CaptureFixture, *words: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def test_user_errors_are_one_line_exit_2(
    artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src, TEXTS[:5])
    base = ["predict", "--model", str(artifact)]

    assert main([*base, "--file", str(tmp_path / "nope.txt"), "--output", str(out)]) == 2
    _one_line_error(capsys, "--file", "no such file")
    (tmp_path / "in.xlsx").write_text("x")
    assert main([*base, "--file", str(tmp_path / "in.xlsx"), "--output", str(out)]) == 2
    _one_line_error(capsys, "--file", ".xlsx", ".jsonl")
    assert main([*base, "--file", str(src), "--output", str(tmp_path / "o.csv")]) == 2
    _one_line_error(capsys, "--output", ".parquet")
    assert main([*base, "--file", str(src), "--output", str(out), "--text-column", "body"]) == 2
    _one_line_error(capsys, "--text-column body", "columns are id, text")
    assert not out.exists()  # errors come before any output is written

    assert main([*base, "--file", str(src), "--output", str(out)]) == 0
    capsys.readouterr()
    assert main([*base, "--file", str(src), "--output", str(out)]) == 2
    _one_line_error(capsys, "--output", "--force")
    assert main([*base, "--file", str(src), "--output", str(out), "--resume"]) == 2
    _one_line_error(capsys, "--resume", "--force")
    assert main([*base, "--file", str(src), "--output", str(out), "--force"]) == 0
    capsys.readouterr()

    # An interrupted run's state, then --resume with another input file.
    other = tmp_path / "other.jsonl"
    _write_input(other, TEXTS[:6])
    with pytest.raises(_Crash):
        predict_file(_CrashingPredictor(Predictor.from_dir(artifact), 2), src, out, chunk_size=2,
                     force=True, progress=False)  # fmt: skip
    capsys.readouterr()
    assert main([*base, "--file", str(other), "--output", str(out), "--resume"]) == 2
    _one_line_error(capsys, "--resume", "not the input of the interrupted run")
    src.write_text(src.read_text() + json.dumps({"text": "appended"}) + "\n")  # changed input
    assert main([*base, "--file", str(src), "--output", str(out), "--resume"]) == 2
    _one_line_error(capsys, "--resume", "--force")
    assert main([*base, "--file", str(src), "--output", str(out), "--on-error", "maybe"]) == 2
    _one_line_error(capsys, "--on-error")
    assert main(["predict", "--endpoint", "x", "hi", "--resume"]) == 2
    _one_line_error(capsys, "--resume", "--model MODEL_DIR --file")
