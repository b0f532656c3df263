"""Remake the README's screenshots of the review and monitor pages (docs/review.png, monitor.png).

    PYTHONPATH=src python scripts/loop_screenshots.py [--work DIR] [--out docs]

What it does, all offline (a few minutes on a 2-core CPU):

1. trains MiniLM briefly on CLINC150's travel domain (20 rows per intent plus out-of-scope
   rows as the class ``oos``), the bundled data set;
2. serves that model in-process with capture on and replays CLINC150 test texts: travel intents
   mixed with three other domains' intents the model never saw (more of them as the "day" goes
   on, so the monitor has drift to show);
3. spreads the captured lines' ``time`` over 24 hours (the replay itself takes a minute, and a
   page of one-minute charts shows nothing), then runs ``monitor`` and builds the review queue;
4. opens both pages in headless Chromium (Debian's ``/usr/bin/chromium``, as the page tests do)
   and saves the screenshots at README width.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

CLINC = Path(__file__).parents[1] / "src" / "intentkit" / "bundled" / "clinc150"
#: Intents from other domains than travel: the traffic the travel model was not trained for.
UNSEEN = ["play_music", "recipe", "uber", "weather", "calories", "shopping_list"]
WIDTH = 1000  # CSS pixels: the page's layout at about the README's rendered width (x2 for HiDPI)


def _clinc(name: str) -> pd.DataFrame:
    return pd.read_json(CLINC / f"{name}.jsonl", lines=True)


def train_model(work: Path) -> Path:
    """Prepare a small travel set and train MiniLM on it briefly; the model folder."""
    from intentkit.cli import main

    travel = json.loads((CLINC / "domains.json").read_text())["travel"]
    train = _clinc("train")
    rows = pd.concat(
        [
            train[train["label"].isin(travel)].groupby("label").head(20),
            _clinc("oos_train"),
        ]
    )
    source = work / "travel-small.jsonl"
    rows.to_json(source, orient="records", lines=True)
    data, model = work / "data", work / "model"
    main(["data", "prepare", str(source), "--out", str(data), "--force"])
    main(
        ["train", "--data", str(data), "--out", str(model), "--model", "minilm", "--epochs",
         "2", "--batch-size", "16", "--lr", "3e-4", "--oos-label", "oos", "--force"]
    )  # fmt: skip
    return model


def replay(model: Path, capture: Path) -> list[int]:
    """Serve ``model`` in-process with capture on and send a day's mix of texts; the hour of
    the day each text stands for, in the order sent."""
    from fastapi.testclient import TestClient

    from intentkit.config import CaptureConfig, ServeConfig
    from intentkit.serve.app import create_app

    travel = json.loads((CLINC / "domains.json").read_text())["travel"]
    test = _clinc("test")
    known = test[test["label"].isin(travel)].sample(frac=1, random_state=0)["text"].tolist()
    unseen = test[test["label"].isin(UNSEEN)].sample(frac=1, random_state=0)["text"].tolist()
    texts: list[str] = []
    hours: list[int] = []
    for hour in range(24):  # a daily curve (busy afternoons); unseen intents grow to ~40 %
        volume = 8 + round(22 * math.sin(math.pi * max(0, hour - 5) / 19) ** 2)
        n_unseen = round(volume * (0.05 + 0.35 * hour / 23))
        texts += unseen[:n_unseen] + [known[(len(texts) + i) % len(known)]
                                      for i in range(volume - n_unseen)]  # fmt: skip
        unseen = unseen[n_unseen:]
        hours += [hour] * volume
    app = create_app(ServeConfig(capture=CaptureConfig(dir=str(capture))), model_dir=model)
    with TestClient(app) as client:  # leaving it closes the capture file
        while client.get("/health").status_code == 503:  # the model loads in the background
            time.sleep(0.2)
        for text in texts:
            client.post("/invocations", json={"text": text}).raise_for_status()
    return hours


def spread_over_a_day(capture: Path, hours: list[int]) -> None:
    """Rewrite the captured lines' ``time``: line i falls in hour ``hours[i]`` of one day, the
    lines of an hour evenly spread over it (lines are captured in the order they were sent)."""
    files = sorted(capture.glob("capture-*.jsonl"))
    lines = [json.loads(x) for f in files for x in f.read_text().splitlines()]
    assert len(lines) == len(hours), f"captured {len(lines)} of {len(hours)} texts"
    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    for i, line in enumerate(lines):
        first = hours.index(hours[i])
        offset = (i - first) / hours.count(hours[i])
        when = start + timedelta(hours=hours[i] + offset)
        line["time"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for f in files:
        f.unlink()
    (capture / "capture-day.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def shoot(model: Path, capture: Path, work: Path, out: Path) -> None:
    """Write monitor.html, serve the review page, save both screenshots into ``out``."""
    from playwright.sync_api import sync_playwright

    from intentkit.loop.monitor import monitor
    from intentkit.loop.monitor_page import write_monitor
    from intentkit.loop.review import LabelsFile, build_queue
    from intentkit.loop.review_page import make_server

    write_monitor(monitor([capture], model), work / "monitor")
    queue = build_queue([capture], model)
    server = make_server(queue, LabelsFile(work / "labels.jsonl", queue.labels), 0, "model")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    chromium = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-gpu"], headless=True
            )
            page = browser.new_page(
                viewport={"width": WIDTH, "height": 1100}, device_scale_factor=2
            )
            page.goto(f"http://127.0.0.1:{server.server_port}/")
            page.wait_for_selector("body[data-ready='1']")
            page.keyboard.press("j")  # the second row selected: the cursor is visible
            page.screenshot(path=str(out / "review.png"))
            page.goto((work / "monitor" / "monitor.html").resolve().as_uri())
            page.screenshot(path=str(out / "monitor.png"))
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    """Train, replay, spread, shoot (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/intentkit-loop-screenshots"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.work / "model"
    if not (model / "intentkit.json").is_file():
        model = train_model(args.work)
    capture = args.work / "capture"
    if not (capture / "capture-day.jsonl").is_file():
        shutil.rmtree(capture, ignore_errors=True)  # a replay cut short: start it again
        hours = replay(model, capture)
        print(f"replayed {len(hours)} texts")
        spread_over_a_day(capture, hours)
    shoot(model, capture, args.work, args.out)
    print(f"wrote {args.out / 'review.png'} and {args.out / 'monitor.png'}")


if __name__ == "__main__":
    main()
