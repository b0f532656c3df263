"""The loop's pieces fit: served traffic captured -> monitor -> review (--export/--import) ->
data add, with the files each command writes read by the next (no hand-made capture lines)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import pandas as pd

from intentkit.cli import main
from intentkit.config import CaptureConfig, ServeConfig
from intentkit.serve.app import create_app
from serve_helpers import running, wait_ready

KNOWN = ["book a boarding in paris", "what about the room tomorrow", "return the car in paris"]
NEW_INTENT = [f"what is the weather in city {i}" for i in range(8)]


def test_capture_monitor_review_add(kw_model: Path, kw_data: Path, tmp_path: Path) -> None:
    cap = tmp_path / "capture"
    cfg = ServeConfig(capture=CaptureConfig(dir=str(cap)))
    with running(create_app(cfg, model_dir=kw_model)) as srv:
        wait_ready(srv.url)
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            for text in KNOWN * 3 + NEW_INTENT:
                assert c.post("/invocations", json={"text": text}).status_code == 200
    assert sum(1 for f in cap.glob("capture-*.jsonl") for _ in f.open()) == 17

    assert main(["monitor", str(cap), "--model", str(kw_model), "--out", str(tmp_path / "m")]) == 0
    summary = json.loads((tmp_path / "m" / "monitor.json").read_text())
    assert summary["rows"] == 17 and summary["answers_against"] == "training split"

    labels, queue = tmp_path / "labels.jsonl", tmp_path / "queue.csv"
    args = ["review", str(cap), "--model", str(kw_model), "--labels", str(labels)]
    assert main([*args, "--export", str(queue)]) == 0
    rows = list(csv.DictReader(queue.open()))
    assert sorted(r["text"] for r in rows) == sorted(KNOWN + NEW_INTENT)  # repeats merged
    assert {r["count"] for r in rows if r["text"] in KNOWN} == {"3"}
    for r in rows:
        r["label"] = "weather" if r["text"] in NEW_INTENT else ""
    with (tmp_path / "done.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main([*args, "--import", str(tmp_path / "done.csv")]) == 0

    out = tmp_path / "data-v2"
    assert main(["data", "add", str(kw_data), str(labels), "--out", str(out)]) == 0
    train = pd.read_parquet(out / "train.parquet")
    reviewed = pd.read_parquet(out / "reviewed_test.parquet")
    assert set(train["text"]) | set(reviewed["text"]) >= set(NEW_INTENT)
    assert list(reviewed["label"]) == ["weather"] * 2  # a seeded 20 % of 8, held out
