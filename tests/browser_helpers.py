"""A real Chromium (Debian's package) driven by Playwright, for the page tests.

Playwright's own browser download cannot work here, so the launch points at the system
Chromium (``/usr/bin/chromium``, or ``$INTENTKIT_CHROMIUM``). A missing browser is never a
silent pass: the ``browser`` fixture **fails** the test with the install command, unless
``INTENTKIT_ALLOW_NO_BROWSER=1`` is set, in which case it skips with a loud reason that ``-ra``
prints in the summary. ``make test`` provisions one first (``scripts/ensure-browser.sh``).

The flags keep Chromium off the network it cannot reach (no background services, no QUIC),
so a page test sees only the requests the page itself makes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """The system Chromium: ``$INTENTKIT_CHROMIUM``, else ``chromium`` on PATH.

    None means "Playwright's own download, if there is one" (``playwright install chromium``).
    """
    return os.environ.get("INTENTKIT_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (Playwright's sync API).

    Module, not session, scope: while Playwright's sync API is running it holds an asyncio
    loop as the thread's running loop, so a later module's ``asyncio.run`` (the socket tests'
    load generators) would fail with "cannot be called from a running event loop".
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
            )
        except PlaywrightError as exc:
            message = (
                "NO BROWSER: no Chromium could be launched, so the page tests cannot run; "
                "`make test` installs one (scripts/ensure-browser.sh), or run "
                f"`apt-get install -y chromium` ({str(exc).splitlines()[0]})"
            )
            if os.environ.get("INTENTKIT_ALLOW_NO_BROWSER") == "1":
                pytest.skip(message)
            pytest.fail(message)
        try:
            yield chromium
        finally:
            chromium.close()


#: Where a page may send requests: the machine itself (pages work offline; the CSP says so too).
LOCAL_PREFIXES = ("file://", "data:", "blob:", "about:", "http://127.", "http://localhost")


class PageWatch:
    """A page with its console errors and every network request it made, for assertions.

    The ``page`` fixture holds every page test to two rules after the test body, so that no test
    can pass while its page misbehaves unnoticed: console errors are either read by the test
    (``console_errors``, which marks them as looked at) or fail it, and a request that leaves the
    machine always fails it.
    """

    def __init__(self, page: Any) -> None:
        """Record console errors, uncaught page errors and requests of ``page``."""
        self.page = page
        self._console_errors: list[str] = []
        self.errors_looked_at = False
        self.requests: list[str] = []
        page.on(
            "console",
            lambda m: self._console_errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self._console_errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))

    @property
    def console_errors(self) -> list[str]:
        """Console errors and uncaught exceptions so far (reading them marks them as checked)."""
        self.errors_looked_at = True
        return self._console_errors

    def problems(self) -> list[str]:
        """What the fixture fails a test for: unread console errors, requests off the machine."""
        found = []
        if self._console_errors and not self.errors_looked_at:
            found.append(f"console errors the test never checked: {self._console_errors}")
        remote = [u for u in self.requests if not u.startswith(LOCAL_PREFIXES)]
        if remote:
            found.append(f"requests that left the machine: {remote}")
        return found


@pytest.fixture
def page(browser: Any) -> Iterator[PageWatch]:
    """A fresh browser context + page per test, watched (see :class:`PageWatch`)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        watch = PageWatch(context.new_page())
        yield watch
        problems = watch.problems()
        if problems:
            pytest.fail("; ".join(problems))
    finally:
        context.close()
