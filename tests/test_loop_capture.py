"""Capture readers: intentkit's lines and SageMaker data capture, corrupt lines skipped, counted."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from intentkit.errors import DataError
from intentkit.loop.capture import ReadStats, capture_files, iter_records, read_columns


def _ik(i: int, answer: str = "book_flight", rejected: bool = False) -> str:
    return json.dumps(
        {
            "v": 1,
            "time": f"2026-12-04T10:{i // 60:02d}:{i % 60:02d}.250Z",
            "text": f"text {i}",
            "answer": answer,
            "confidence": 0.9,
            "rejected": rejected,
            "oos_score": -2.5,
            "top": [{"label": "book_flight", "score": 0.9}, {"label": "x", "score": 0.06}],
            "model": "abc",
            "latency_ms": 3.0,
        }
    )


def _sm(inp: str, out: str, enc: str, ctype: str = "application/json") -> str:
    def part(data: str, mode: str) -> dict:
        value = base64.b64encode(data.encode()).decode() if enc == "BASE64" else data
        return {"observedContentType": ctype, "mode": mode, "data": value, "encoding": enc}

    return json.dumps(
        {
            "captureData": {
                "endpointInput": part(inp, "INPUT"),
                "endpointOutput": part(out, "OUTPUT"),
            },
            "eventMetadata": {"eventId": "e", "inferenceTime": "2026-12-04T11:00:00Z"},
            "eventVersion": "0",
        }
    )


def test_intentkit_lines_with_corrupt_and_cut_off_lines(tmp_path: Path) -> None:
    f = tmp_path / "capture-1.jsonl"
    lines = [_ik(0), "{not json", _ik(1, "out_of_scope", True), json.dumps({"text": "no answer"})]
    f.write_text("\n".join(lines) + "\n" + _ik(2)[:40])  # the last line was cut off
    (tmp_path / ".capture-2.jsonl.part").write_text(_ik(9) + "\n")  # being written: ignored
    stats = ReadStats()
    rows = list(iter_records([tmp_path], stats))
    assert [r["text"] for r in rows] == ["text 0", "text 1"]
    assert rows[1]["rejected"] is True and rows[0]["oos_score"] == -2.5
    assert (stats.files, stats.lines, stats.rows, stats.skipped) == (1, 5, 2, 3)
    assert any("cut off" in e and ":5" in e for e in stats.examples)
    assert any("capture-1.jsonl:2" in e for e in stats.examples)


def test_sagemaker_json_base64_and_jsonlines(tmp_path: Path) -> None:
    f = tmp_path / "2026" / "12" / "04" / "11" / "x.jsonl"
    f.parent.mkdir(parents=True)
    single = _sm('{"text": "hi there"}', '{"predicted_class": "greet", "confidence": 0.8}', "JSON")
    batch = _sm(
        '{"text": ["a", "b"]}',
        '[{"predicted_class": "x", "confidence": 0.5}, '
        '{"predicted_class": "out_of_scope", "confidence": 0.3}]',
        "BASE64",
    )
    lines = _sm(
        '{"text": "c"}\n{"text": "d"}\n',
        '{"predicted_class": "y", "confidence": 0.7}\n'
        '{"predicted_class": "z", "confidence": 0.6}\n',
        "BASE64",
        "application/jsonlines",
    )
    mismatched = _sm('{"text": ["a", "b"]}', '{"predicted_class": "x", "confidence": 1}', "JSON")
    f.write_text("\n".join([single, batch, lines, mismatched]) + "\n")
    stats = ReadStats()
    rows = list(iter_records([tmp_path], stats))
    assert [(r["text"], r["answer"]) for r in rows] == [
        ("hi there", "greet"),
        ("a", "x"),
        ("b", "out_of_scope"),
        ("c", "y"),
        ("d", "z"),
    ]
    assert [r["rejected"] for r in rows] == [False, False, True, False, False]
    assert stats.skipped == 1 and "2 texts but 1 answers" in stats.examples[0]


def test_read_columns_batches_and_parses_times(tmp_path: Path) -> None:
    (tmp_path / "capture-a.jsonl").write_text("".join(_ik(i) + "\n" for i in range(10)))
    stats = ReadStats()
    batches = list(read_columns([tmp_path], stats, batch_rows=4))
    assert [len(b["answer"]) for b in batches] == [4, 4, 2]
    first = batches[0]
    assert first["time"][1] == np.datetime64("2026-12-04T10:00:01.250")
    assert np.allclose(first["margin"], 0.84) and np.allclose(first["oos_score"], -2.5)


def test_missing_capture_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        capture_files([tmp_path / "nope"])
    with pytest.raises(DataError, match="no \\*.jsonl"):
        capture_files([tmp_path])
