"""``intentkit monitor``: drift numbers from known traffic, --fail-on-drift, the page offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from intentkit.cli import main
from intentkit.loop.monitor import js_terms
from serve_helpers import LABELS, make_artifact

TRAIN = {"book_flight": 50, "lost_luggage": 30, "flight_status": 20}


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    art = make_artifact(tiny_model_dir, tmp_path_factory.mktemp("mon") / "model")
    meta = json.loads((art / "intentkit.json").read_text())
    meta["data"] = {"label_counts": {"train": TRAIN}}
    (art / "intentkit.json").write_text(json.dumps(meta))
    return art


def _line(hour: int, i: int, answer: str, conf: float, oos: float) -> str:
    oos = float(oos)
    rejected = answer == "out_of_scope"
    top = [{"label": "book_flight", "score": conf}, {"label": "lost_luggage", "score": 0.05}]
    return json.dumps(
        {
            "v": 1,
            "time": f"2026-12-04T{hour:02d}:{i // 60:02d}:{i % 60:02d}.000Z",
            "text": f"t{i}",
            "answer": answer,
            "confidence": conf,
            "rejected": rejected,
            "oos_score": oos,
            "top": top,
            "model": "m",
            "latency_ms": 2.0,
        }
    )


def _capture(folder: Path, drift: bool) -> Path:
    """100 texts at 10:00 answered like training; 300 at 12:00 answered like training too, or
    (drift) 40 % rejected with low confidence and scores, the rest flight_status."""
    folder.mkdir(parents=True)
    like_training = [LABELS[0]] * 50 + [LABELS[1]] * 30 + [LABELS[2]] * 20
    score = np.random.default_rng(0).normal(-1.0, 0.5, 400).round(4)  # spread like real scores
    lines = [_line(10, i, like_training[i], 0.92, score[i]) for i in range(100)]
    for i in range(300):
        if not drift:
            lines.append(_line(12, i, like_training[i % 100], 0.91, score[100 + i]))
        elif i % 5 < 2:
            lines.append(_line(12, i, "out_of_scope", 0.31, -9.0))
        else:
            lines.append(_line(12, i, LABELS[2], 0.55, -5.0))
    (folder / "capture-1.jsonl").write_text("\n".join(lines[:150]) + "\n{broken\n")
    (folder / "capture-2.jsonl").write_text("\n".join(lines[150:]) + "\n" + lines[0][:30])
    return folder


def test_js_terms_sum_to_scipy_jensenshannon() -> None:
    from scipy.spatial.distance import jensenshannon

    p, q = np.array([5.0, 3, 2, 0]), np.array([1.0, 1, 6, 2])
    assert js_terms(p, q).sum() == pytest.approx(jensenshannon(p, q, base=2) ** 2)
    assert js_terms(p, p).sum() == pytest.approx(0.0)


def test_drifted_traffic_fails_and_steady_traffic_passes(model: Path, tmp_path: Path) -> None:
    cap = _capture(tmp_path / "drift", drift=True)
    out = tmp_path / "report"
    code = main(["monitor", str(cap), "--model", str(model), "--out", str(out), "--fail-on-drift"])
    assert code == 1
    summary = json.loads((out / "monitor.json").read_text())
    assert summary["rows"] == 400 and summary["read"]["skipped"] == 2
    # 10:00-12:04 spans 125 minutes: 5-minute windows, only those with traffic listed.
    assert summary["window_minutes"] == 5 and len(summary["windows"]) == 2
    first, last = summary["windows"]
    assert (first["texts"], last["texts"]) == (100, 300)
    assert first["rejection_rate"] == 0.0 and last["rejection_rate"] == pytest.approx(0.4)
    assert first["answer_js"] == pytest.approx(0.0, abs=1e-12)  # answers exactly like training
    drift = summary["drift"]
    assert drift["rejection_increase"]["value"] == pytest.approx(0.4)
    assert all(d["drifted"] for d in drift.values()), drift
    assert summary["labels"][0]["label"] == "flight_status"  # the label that moved most
    assert summary["rejection_rate"] == pytest.approx(120 / 400)

    steady = _capture(tmp_path / "steady", drift=False)
    code = main(
        [
            "monitor",
            str(steady),
            "--model",
            str(model),
            "--out",
            str(tmp_path / "s"),
            "--fail-on-drift",
        ]
    )
    assert code == 0
    assert not json.loads((tmp_path / "s" / "monitor.json").read_text())["drifted"]


def test_monitor_page_offline_in_chromium(page, model: Path, tmp_path: Path) -> None:
    cap = _capture(tmp_path / "drift", drift=True)
    assert main(["monitor", str(cap), "--model", str(model), "--out", str(tmp_path / "o")]) == 0
    path = tmp_path / "o" / "monitor.html"
    page.page.goto(path.as_uri())
    page.page.wait_for_load_state("networkidle")
    page.page.screenshot(path=tmp_path / "monitor.png", full_page=True)
    assert page.console_errors == []
    assert page.requests == [path.as_uri()]  # the file itself, nothing else
    assert "Drifted" in page.page.locator("#verdict").inner_text()
    assert page.page.locator("#answer-table tbody tr").count() == 3
    assert page.page.locator("#traffic svg polyline").count() >= 1
    blob = json.loads(page.page.locator("#monitor-data").text_content())
    assert blob["rows"] == 400


def test_missing_model_is_one_line(tmp_path: Path, capsys) -> None:
    cap = _capture(tmp_path / "c", drift=False)
    assert main(["monitor", str(cap), "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --model") and err.count("\n") == 1
