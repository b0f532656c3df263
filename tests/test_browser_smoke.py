"""The page-test harness: a real Chromium loads a page, and the ``page`` fixture's two rules
(no unread console errors, no request off the machine) would fail a misbehaving page test."""

from __future__ import annotations

from pathlib import Path

from browser_helpers import PageWatch


def _load(page: PageWatch, tmp_path: Path, script: str) -> None:
    html = tmp_path / "p.html"
    html.write_text(f"<!doctype html><h1 id=t>intentkit</h1><script>{script}</script>")
    page.page.goto(html.as_uri())
    page.page.wait_for_load_state("networkidle")


def test_a_page_error_is_recorded_and_fails_the_test_unless_read(page, tmp_path: Path) -> None:
    _load(page, tmp_path, "document.getElementById('t').dataset.ok = '1'; console.error('boom');")
    assert page.page.get_attribute("#t", "data-ok") == "1"  # the script really ran
    assert page.problems() == ["console errors the test never checked: ['boom']"]
    assert page.console_errors == ["boom"]  # read: now the test owns them
    assert page.problems() == []


def test_a_request_off_the_machine_always_fails_the_test(page, tmp_path: Path) -> None:
    _load(page, tmp_path, "fetch('http://127.0.0.1:9/x').catch(() => {});")
    assert any(u.startswith("http://127.0.0.1:9/") for u in page.requests)
    assert page.console_errors == ["Failed to load resource: net::ERR_UNSAFE_PORT"]
    assert page.problems() == []  # loopback is the machine itself
    # No test sends a request off the machine, so the harness is shown one as Playwright's
    # request event would record it (192.0.2.0/24 is TEST-NET-1, RFC 5737).
    page.requests.append("http://192.0.2.1/tracker.js")
    assert page.problems() == ["requests that left the machine: ['http://192.0.2.1/tracker.js']"]
    page.requests.pop()  # leave the fixture's own check passing
