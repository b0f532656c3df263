"""``intentkit review``: ranking, clusters, the labels file, CSV round trip, the page."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pandas as pd
import pytest

from intentkit.cli import main
from intentkit.loop.review import LabelsFile, build_queue
from intentkit.loop.review_page import make_server
from serve_helpers import LABELS, make_artifact

CANCEL = [
    f"cancel my gym subscription {w}"
    for w in ("now", "today", "please", "asap", "fast", "soon", "quickly", "first")
]
WEATHER = [
    f"weather forecast rain {w}"
    for w in ("tomorrow", "tonight", "weekend", "monday", "later", "soon")
]


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rev")
    data = root / "data"
    data.mkdir()
    pd.DataFrame({"text": ["where is my bag"], "label": ["lost_luggage"]}).to_parquet(
        data / "train.parquet"
    )
    art = make_artifact(tiny_model_dir, root / "model")
    meta = json.loads((art / "intentkit.json").read_text())
    meta |= {"labels": LABELS, "data": {"path": str(data)}}
    (art / "intentkit.json").write_text(json.dumps(meta))
    return art


def _rec(text: str, answer: str, conf: float, second: float = 0.1) -> str:
    return json.dumps(
        {
            "v": 1,
            "time": "2026-12-04T10:00:00.000Z",
            "text": text,
            "answer": answer,
            "confidence": conf,
            "rejected": answer == "out_of_scope",
            "oos_score": None,
            "top": [{"label": "book_flight", "score": conf}, {"label": "x", "score": second}],
            "model": "m",
        }
    )


@pytest.fixture()
def capture(tmp_path: Path) -> Path:
    folder = tmp_path / "cap"
    folder.mkdir()
    lines = [_rec(t, "out_of_scope", 0.30 + i * 0.01) for i, t in enumerate(CANCEL + WEATHER)]
    lines += [
        _rec("book a flight to rome", "book_flight", 0.90, 0.05),  # sure: ranked last
        _rec("flight or bag issue", "book_flight", 0.48, 0.45),  # unsure: before the sure one
        _rec("where is my bag", "lost_luggage", 0.70, 0.2),  # already in the training data
        _rec("where is my bag", "lost_luggage", 0.70, 0.2),
        "{cut off",
    ]
    (folder / "capture-1.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_queue_ranks_rejected_then_unsure_and_clusters_rejected(model: Path, capture: Path) -> None:
    q = build_queue([capture], model)
    texts = [x["text"] for x in q.items]
    assert set(texts[:14]) == set(CANCEL + WEATHER)  # every rejected text first
    assert texts[0] == CANCEL[0]  # the least confident rejected text leads
    assert texts.index("flight or bag issue") < texts.index("book a flight to rome")
    bag = q.items[texts.index("where is my bag")]
    assert bag["count"] == 2 and bag["in_training"] is True
    assert q.stats.skipped == 1
    assert q.clusters and all(c["size"] >= 3 and len(c["examples"]) == 3 for c in q.clusters)
    words = set(" ".join(CANCEL + WEATHER).split())
    assert all(set(c["name"].split("_")) <= words for c in q.clusters)
    members = [x for x in q.items if x["cluster"] is not None]
    assert len(members) == sum(c["size"] for c in q.clusters)
    for i, c in enumerate(q.clusters):  # the page looks a cluster up by its id
        assert c["id"] == i and sum(x["cluster"] == i for x in members) == c["size"]
        assert set(c["examples"]) <= {x["text"] for x in members if x["cluster"] == i}
    assert all(x["rejected"] for x in members)


def test_export_import_then_data_add(
    model: Path, capture: Path, tmp_path: Path, kw_data: Path
) -> None:
    labels, queue_csv = tmp_path / "labels.jsonl", tmp_path / "queue.csv"
    args = ["review", str(capture), "--model", str(model), "--labels", str(labels)]
    assert main([*args, "--export", str(queue_csv)]) == 0
    rows = list(csv.DictReader(queue_csv.open()))
    assert len(rows) == 17 and rows[0]["rank"] == "1" and rows[0]["text"] == CANCEL[0]
    for r in rows[:14]:
        r["label"] = "cancel_subscription" if r["text"] in CANCEL else "weather"
    with (tmp_path / "done.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main([*args, "--import", str(tmp_path / "done.csv")]) == 0
    lines = [json.loads(x) for x in labels.read_text().splitlines()]
    assert lines[0] == {"intentkit_review": 1, "labels": LABELS}
    assert len(lines) == 15 and {x["label"] for x in lines[1:]} == {
        "cancel_subscription",
        "weather",
    }
    # The labels file feeds data add as it is (its header skipped).
    assert main(["data", "add", str(kw_data), str(labels), "--out", str(tmp_path / "v2")]) == 0
    assert {"cancel_subscription", "weather"} <= set(
        json.loads((tmp_path / "v2" / "labels.json").read_text())
    )


def test_labels_file_from_another_model_is_refused(
    model: Path, capture: Path, tmp_path: Path, capsys
) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        json.dumps({"intentkit_review": 1, "labels": ["book_flight", "refund"]}) + "\n"
    )
    code = main(
        [
            "review",
            str(capture),
            "--model",
            str(model),
            "--labels",
            str(labels),
            "--export",
            str(tmp_path / "q.csv"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "lacks refund" in err and "flight_status, lost_luggage" in err
    assert not (tmp_path / "q.csv").exists()


def test_page_keyboard_labelling_resumes(page, model: Path, capture: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    q = build_queue([capture], model)
    labels = LabelsFile(tmp_path / "labels.jsonl", q.labels)
    server = make_server(q, labels, 0, "test")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    p = page.page
    try:
        p.goto(url)
        p.wait_for_selector("body[data-ready='1']")
        assert p.locator("#queue-table tbody tr").count() == 17
        assert p.locator("tr.cur").get_attribute("data-id") == "0"
        p.keyboard.press("o")  # row 1: out-of-scope
        p.wait_for_selector("#queue-table tbody tr:nth-child(1).done")
        p.keyboard.press("s")  # row 2: skipped
        p.keyboard.press("r")  # row 3: relabel with the type-ahead box
        p.keyboard.type("lost_luggage")
        p.keyboard.press("Enter")
        p.wait_for_selector("#queue-table tbody tr:nth-child(3).done")
        cluster = q.items[3]["cluster"]
        p.keyboard.press("n")  # row 4: a new label for its whole cluster, name suggested
        assert p.locator("#label-input").input_value() == q.clusters[cluster]["name"]
        p.keyboard.press("Control+A")
        p.keyboard.type("new_intent")
        p.keyboard.press("Enter")
        size = q.clusters[cluster]["size"]
        done = {0, 2} | {x["id"] for x in q.items if x["cluster"] == cluster}
        expect(p.locator("tr.done")).to_have_count(len(done))
        decided = [json.loads(x) for x in labels.path.read_text().splitlines()[1:]]
        assert decided[0] == {**decided[0], "text": q.items[0]["text"], "label": "out_of_scope"}
        assert decided[1]["text"] == q.items[2]["text"] and decided[1]["label"] == "lost_luggage"
        assert sum(d["label"] == "new_intent" for d in decided) == size
        # A reload (a closed tab) resumes at the first text without a label (row 2 was skipped).
        p.reload()
        p.wait_for_selector("body[data-ready='1']")
        first_open = min(set(range(len(q.items))) - done)
        assert p.locator("tr.cur").get_attribute("data-id") == str(first_open)
        assert p.locator("tr.done").count() == len(done) == len(labels.decided)
        assert page.console_errors == []
        assert all(u.startswith(url) for u in page.requests)
    finally:
        server.shutdown()
        server.server_close()


def test_page_api_errors_are_typed(model: Path, capture: Path, tmp_path: Path) -> None:
    import httpx

    q = build_queue([capture], model)
    server = make_server(q, LabelsFile(tmp_path / "l.jsonl", q.labels), 0, "t")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        r = httpx.post(f"{base}/api/label", json={"id": 999, "label": "x"})
        assert r.status_code == 400 and r.json()["error_type"] == "validation"
        r = httpx.post(f"{base}/api/label", json={"id": 0, "label": "  "})
        assert r.status_code == 400 and "empty" in r.json()["error"]
        assert httpx.get(f"{base}/nope").json()["error_type"] == "not_found"
    finally:
        server.shutdown()
        server.server_close()


def test_a_broken_decision_line_is_named_not_skipped(tmp_path: Path) -> None:
    """review and data add read labels files with one reader: a line without its label is an
    error naming the line, never a decision silently dropped on resume."""
    from intentkit.data.add import read_labels_file
    from intentkit.errors import DataError

    path = tmp_path / "labels.jsonl"
    path.write_text(
        json.dumps({"intentkit_review": 1, "labels": ["a", "b"]})
        + "\n"
        + json.dumps({"text": "hello", "label": "a"})
        + "\n"
        + json.dumps({"text": "half written"})
        + "\n"
    )
    with pytest.raises(DataError, match=r"--labels .* line 3: missing label"):
        LabelsFile(path, ["a", "b"])
    with pytest.raises(DataError, match=r"LABELS .* line 3: missing label"):
        read_labels_file(path)
