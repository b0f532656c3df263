"""The page-test harness itself: a real Chromium loads a local page, and what it records."""

from __future__ import annotations

from pathlib import Path


def test_chromium_loads_a_file_page_and_records_errors_and_requests(page, tmp_path: Path) -> None:
    html = tmp_path / "p.html"
    html.write_text(
        "<!doctype html><h1 id=t>intentkit</h1>"
        "<script>document.getElementById('t').dataset.ok = '1';"
        "console.error('boom'); fetch('http://127.0.0.1:9/x').catch(() => {});</script>"
    )
    page.page.goto(html.as_uri())
    page.page.wait_for_load_state("networkidle")
    assert page.page.get_attribute("#t", "data-ok") == "1"
    assert "boom" in page.console_errors
    assert any(u.startswith("http://127.0.0.1:9/") for u in page.requests)
