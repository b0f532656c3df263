#!/usr/bin/env bash
# The page tests drive a real Chromium through Playwright. `make test` runs this first so they
# have one on a fresh machine, trying what works where the user is, in this order:
#   1. one already there: $INTENTKIT_CHROMIUM, `chromium` on PATH, or Playwright's own download;
#   2. the OS package, where we may install it (root, or passwordless sudo, with apt-get):
#      Debian's `chromium` (the only way on machines that reach just the package registries);
#   3. Playwright's own browser download (`playwright install chromium`), where its CDN is reachable.
# Otherwise it stops with one line saying exactly what to run. It never lets the page tests pass
# without a browser: tests/browser_helpers.py fails them when none can be launched.
set -u
PY=${PY:-.venv/bin/python}

playwright_browser() {
  # Playwright's managed Chromium, if it has been downloaded (prints its path).
  "$PY" - <<'PYEOF' 2>/dev/null
import os, sys
from playwright.sync_api import sync_playwright
with sync_playwright() as pw:
    path = pw.chromium.executable_path
sys.exit(0 if path and os.path.exists(path) else 1)
PYEOF
}

have_browser() {
  { [ -n "${INTENTKIT_CHROMIUM:-}" ] && [ -x "$INTENTKIT_CHROMIUM" ]; } \
    || command -v chromium >/dev/null 2>&1 || playwright_browser
}

have_browser && exit 0

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
  fi
  if [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; then
    echo "make test: installing Debian's chromium for the page tests (apt-get, once)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq chromium >/dev/null
    have_browser && exit 0
  fi
fi

echo "make test: trying Playwright's own Chromium download (.venv/bin/playwright install chromium)" >&2
timeout 300 "$(dirname "$PY")/playwright" install chromium >/dev/null 2>&1
have_browser && exit 0

echo "make test: no browser for the page tests; run \`sudo apt-get install -y chromium\` (Debian/Ubuntu) or \`.venv/bin/playwright install chromium\`, or set INTENTKIT_CHROMIUM=/path/to/chrome, then rerun \`make test\`" >&2
exit 2
