"""The playground page at ``GET /``: a real Chromium against a real server on 127.0.0.1.

The page must show what ``intentkit predict --model`` answers (label, confidence, rejection),
so the model is the tiny encoder trained on the keyword fixture (its answers vary with the text)
with a rejection threshold set between the confidences of the test texts: one of them is
rejected, the others are answered.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import httpx
import pytest

from intentkit.cli import main
from intentkit.config import ServeConfig
from intentkit.inference.predictor import Predictor
from intentkit.serve.app import create_app
from serve_helpers import ThreadedServer, running, wait_ready

TEXTS = [
    "book a boarding in paris",
    "add a note to the room",
    "where is my rental please",
    "hello how are you",
]
KEY = "s3cret-key"
#: Confidence on the page is a percentage with one decimal.
PCT = "{:.1f}%"


@pytest.fixture(scope="module")
def artifact(kw_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kw_model with a threshold that rejects exactly the least confident of TEXTS."""
    art = shutil.copytree(kw_model, tmp_path_factory.mktemp("pg") / "model")
    meta_path = art / "intentkit.json"
    meta = json.loads(meta_path.read_text())
    # T = 1, not the fitted temperature: on a fixture this separable, calibration sharpens
    # every confidence to 1.0, and a threshold needs confidences that differ.
    meta["calibration"] = {"temperature": 1.0, "threshold": 0.0, "reject_label": "out_of_scope"}
    meta_path.write_text(json.dumps(meta))
    confs = sorted(a["confidence"] for a in Predictor.from_dir(art, device="cpu").predict(TEXTS))
    assert confs[1] - confs[0] > 2e-3, f"no clear gap to put a threshold in: {confs}"
    meta["calibration"]["threshold"] = (confs[0] + confs[1]) / 2
    meta_path.write_text(json.dumps(meta))
    return art


@pytest.fixture(scope="module")
def expected(artifact: Path) -> dict[str, dict[str, Any]]:
    """``intentkit predict --model`` on TEXTS: text -> {"predicted_class", "confidence"}."""
    out = io.StringIO()
    with redirect_stdout(out):  # capsys is per test; this fixture is per module
        code = main(["predict", "--model", str(artifact), "--backend", "torch", *TEXTS])
    assert code == 0
    answers = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    assert len(answers) == len(TEXTS)
    by_text = dict(zip(TEXTS, answers, strict=True))
    labels = [a["predicted_class"] for a in answers]
    assert labels.count("out_of_scope") == 1, labels
    assert len(set(labels) - {"out_of_scope"}) >= 2, f"answers should vary: {labels}"
    return by_text


def _server(artifact: Path, **cfg: Any) -> Iterator[ThreadedServer]:
    # torch backend on both sides: the same forward as `predict --backend torch`, no export.
    config = ServeConfig(backend="torch", device="cpu", **cfg)
    with running(create_app(config, model_dir=artifact)) as srv:
        headers = {"Authorization": f"Bearer {cfg['api_key']}"} if cfg.get("api_key") else None
        wait_ready(srv.url, headers=headers)
        yield srv


@pytest.fixture(scope="module")
def server(artifact: Path) -> Iterator[ThreadedServer]:
    yield from _server(artifact)


@pytest.fixture(scope="module")
def auth_server(artifact: Path) -> Iterator[ThreadedServer]:
    yield from _server(artifact, api_key=KEY)


def _only_local(page: Any, url: str) -> None:
    # blob: is the CSV built in the page; it never leaves the browser.
    stray = [u for u in page.requests if not u.startswith((url + "/", "blob:" + url))]
    assert not stray, f"requests leaving the server: {stray}"


def _type_and_wait(pg: Any, text: str) -> None:
    """Type like a user (key by key) and wait until the page shows the answer for ``text``."""
    pg.fill("#text", "")
    pg.locator("#text").press_sequentially(text, delay=15)
    pg.wait_for_function(
        "t => document.getElementById('answer').dataset.text === t && "
        "!document.getElementById('answer').hidden",
        arg=text,
        timeout=20_000,
    )


def _check_answer(pg: Any, text: str, want: dict[str, Any]) -> None:
    label = pg.get_attribute("#answer-label", "data-label")
    conf = float(pg.get_attribute("#answer-confidence", "data-confidence"))
    assert label == want["predicted_class"], text
    assert conf == pytest.approx(want["confidence"], abs=1e-5), text
    shown = pg.text_content("#answer-confidence")
    c = want["confidence"] * 100
    assert shown in {PCT.format(c - 1e-3), PCT.format(c + 1e-3)}, (text, shown)
    assert pg.text_content("#answer-label") == label
    rejected = label == "out_of_scope"
    assert pg.is_visible("#answer-badge") is rejected
    bars = pg.locator("#bars li")
    assert bars.count() == 3  # top 5 of 3 labels: every class, without the reject element
    if rejected:
        assert "below the rejection threshold" in pg.text_content("#answer-reason")
        assert pg.get_attribute("#bars li.top", "data-label") != "out_of_scope"
    else:
        assert pg.get_attribute("#bars li.top", "data-label") == label


# --------------------------------------------------------------------------------- the page
def test_page_loads_clean_and_stays_on_the_server(server, page, tmp_path: Path) -> None:
    resp = page.page.goto(server.url + "/")
    assert resp.status == 200
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    page.page.wait_for_selector("#text:enabled")
    page.page.wait_for_load_state("networkidle")
    page.page.screenshot(path=tmp_path / "playground-empty.png")
    assert page.console_errors == []
    _only_local(page, server.url)
    assert page.page.text_content("#model-info").count("threshold") == 1


def test_typing_shows_what_predict_cli_answers(server, expected, page, tmp_path: Path) -> None:
    pg = page.page
    pg.goto(server.url + "/")
    pg.wait_for_selector("#text:enabled")
    for i, text in enumerate(TEXTS):
        before = sum(u.endswith("/predict") for u in page.requests)
        _type_and_wait(pg, text)
        _check_answer(pg, text, expected[text])
        # debounced: typing a whole sentence key by key costs one request, not one per key
        # (two allowed, for a CPU so busy that Chromium stalls between keys)
        assert sum(u.endswith("/predict") for u in page.requests) - before <= 2
        assert "round trip" in pg.text_content("#latency")
        assert "server" in pg.text_content("#latency")  # x-total-time was read
        pg.screenshot(path=tmp_path / f"live-{i}.png")
    assert page.console_errors == []
    _only_local(page, server.url)


def test_batch_mode_one_row_per_line_and_csv(server, expected, page, tmp_path: Path) -> None:
    pg = page.page
    pg.goto(server.url + "/")
    pg.wait_for_selector("#text:enabled")
    pg.click("#tab-batch")
    # a blank line is no message: one row per non-empty line
    pg.fill("#batch-text", "\n".join([TEXTS[0], "", *TEXTS[1:]]))
    pg.click("#batch-run")
    pg.wait_for_selector("#batch-table tbody tr")
    rows = pg.locator("#batch-table tbody tr")
    assert rows.count() == len(TEXTS)
    for i, text in enumerate(TEXTS):
        cells = rows.nth(i).locator("td").all_text_contents()
        assert cells[1] == text
        # a rejected row reads "out_of_scope (car)": the answer, then the class it would be
        assert cells[2].split(" (")[0] == expected[text]["predicted_class"]
    assert "1 rejected" in pg.text_content("#batch-summary")
    pg.screenshot(path=tmp_path / "batch.png")

    with pg.expect_download() as info:
        pg.click("#batch-csv")
    path = tmp_path / "predictions.csv"
    info.value.save_as(path)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        got = list(csv.DictReader(fh))
    assert [r["text"] for r in got] == TEXTS
    for r in got:
        want = expected[r["text"]]
        assert r["label"] == want["predicted_class"]
        assert float(r["confidence"]) == pytest.approx(want["confidence"], abs=1e-5)
        rejected = want["predicted_class"] == "out_of_scope"
        assert r["rejected"] == str(rejected).lower()
        assert (r["top_class"] != r["label"]) is rejected
    assert page.console_errors == []
    _only_local(page, server.url)


# --------------------------------------------------------------------------------- auth
def test_page_is_open_but_the_api_is_not(auth_server) -> None:
    url = auth_server.url
    for path in ("/", "/playground/app.js", "/playground/style.css", "/playground/config.json"):
        assert httpx.get(url + path).status_code == 200, path
    assert httpx.get(url + "/playground/config.json").json() == {"auth": True}
    for path in ("/info", "/metrics", "/docs"):
        r = httpx.get(url + path)
        assert r.status_code == 401 and r.json()["error_type"] == "unauthorized", path
    r = httpx.post(url + "/predict", json={"inputs": "hi"})
    assert r.status_code == 401


def test_wrong_token_shows_the_401_message_right_one_works(
    auth_server, expected, page, tmp_path: Path
) -> None:
    pg = page.page
    pg.goto(auth_server.url + "/")
    pg.wait_for_selector("#auth:visible")
    assert pg.is_disabled("#text")
    assert page.console_errors == []  # the public flag, not a 401, told the page to ask

    pg.fill("#token", "not-the-key")
    pg.click("#token-apply")
    pg.wait_for_function(
        "() => document.getElementById('auth-message').textContent.includes('401')"
    )
    message = pg.text_content("#auth-message")
    assert "unauthorized" in message and "wrong bearer token" in message
    assert pg.is_disabled("#text")
    pg.screenshot(path=tmp_path / "auth-wrong.png")

    pg.fill("#token", KEY)
    pg.press("#token", "Enter")
    pg.wait_for_selector("#text:enabled")
    assert pg.text_content("#auth-message") == "Token accepted."
    _type_and_wait(pg, TEXTS[0])
    _check_answer(pg, TEXTS[0], expected[TEXTS[0]])
    pg.screenshot(path=tmp_path / "auth-right.png")
    # the token travels in a header only, and stays in this tab's sessionStorage
    assert not any(KEY in u for u in page.requests)
    assert pg.evaluate("() => sessionStorage.getItem('intentkit.playground.token')") == KEY
    _only_local(page, auth_server.url)


# --------------------------------------------------------------------------------- off
def test_no_playground_is_a_404_in_the_error_format(artifact: Path, page, tmp_path: Path) -> None:
    def loader() -> Predictor:
        return Predictor.from_dir(artifact, device="cpu")

    off = ServeConfig(playground=False, backend="torch")
    with running(create_app(off, loader=loader)) as srv:
        wait_ready(srv.url)
        for path in ("/", "/playground/app.js", "/playground/config.json"):
            r = httpx.get(srv.url + path)
            assert r.status_code == 404, path
            assert r.json()["error_type"] == "not_found"
        resp = page.page.goto(srv.url + "/")
        assert resp.status == 404
        page.page.screenshot(path=tmp_path / "no-playground.png")
        # The browser logs the 404s (the page and its favicon) and nothing else.
        assert page.console_errors and all("404" in e for e in page.console_errors)
    with running(create_app(ServeConfig(playground=False, api_key=KEY), loader=loader)) as srv:
        # with auth on and no page, / is an API path like any other: the token comes first
        assert httpx.get(srv.url + "/").status_code == 401


def test_no_playground_flag_reaches_serve_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ServeConfig] = []
    monkeypatch.setattr(
        "intentkit.serve.server.serve_forever", lambda path, config, **_: seen.append(config)
    )
    assert main(["serve", "/nowhere", "--no-playground"]) == 0
    assert main(["serve", "/nowhere"]) == 0
    assert [c.playground for c in seen] == [False, True]


def test_deploy_passes_no_playground_to_serve(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[list[str]] = []

    class Target:
        def deploy(self, name: str, model_dir: Path, opts: Any) -> dict[str, Any]:
            seen.append(opts.serve_args)
            return {"url": "http://127.0.0.1:1", "pid": 1, "log": "-"}

    monkeypatch.setattr("intentkit.endpoints.get_target", lambda target, reg: Target())
    args = ["deploy", str(tmp_path), "--name", "e", "--state-dir", str(tmp_path / "state")]
    assert main([*args, "--no-playground"]) == 0
    assert main(args) == 0
    assert seen == [["--no-playground"], []]
