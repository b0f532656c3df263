"""The playground page at ``GET /``: a static page that calls the API like any other client.

The page (``static/index.html``, ``app.js``, ``style.css``) ships inside the package and is
read once when the app is built, so serving it costs no disk access and no template rendering.
It is plain HTML + vanilla JS: one text box, bars and a table need no framework, and no build
step means what ships is what a reviewer reads (and nothing is fetched from a CDN, so it works
on an endpoint with no internet access).

The page is open without the bearer token (it holds no data; its API calls carry the token the
user types), so :data:`PAGE_PATHS` are let through :class:`~intentkit.serve.middleware.
AuthMiddleware` while every API route keeps requiring the token. Because the page shares its
origin with the API, it is served with a strict Content-Security-Policy: scripts, styles,
images and ``fetch`` from this origin only, no inline script, no framing.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

#: URL path -> (file in ``intentkit/serve/static``, media type).
PAGE_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/playground/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/playground/style.css": ("style.css", "text/css; charset=utf-8"),
    "/playground/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
#: Public flag the page reads first: whether to ask for a token before calling ``/info``
#: (asking ``/info`` itself would log a 401 in the browser console on every visit).
CONFIG_PATH = "/playground/config.json"
#: Everything the page needs before the user has typed a token; open through the auth middleware.
PAGE_PATHS = frozenset({*PAGE_FILES, CONFIG_PATH})

#: Sent with every page file. 'self' only: the page and the API share an origin, so a script
#: injected into the page could call the API with the user's token; forbidding inline and
#: third-party script closes that door. ``frame-ancestors 'none'`` stops click-jacking.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Revalidate on each visit so a server upgrade never meets a stale app.js.
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return (resources.files("intentkit.serve") / "static" / name).read_bytes()


def add_playground(app: FastAPI, *, auth: bool) -> None:
    """Register the playground routes on ``app`` (``GET /`` and its assets).

    Args:
        app: the API app; the page calls its ``/info`` and ``/predict``.
        auth: whether a bearer token is required; the page asks for one up front when it is.
    """
    files = {path: (_read(name), media) for path, (name, media) in PAGE_FILES.items()}

    def page_route(path: str) -> None:
        body, media = files[path]

        async def serve_file() -> Response:
            return Response(body, media_type=media, headers=SECURITY_HEADERS)

        # Out of the OpenAPI schema: /docs documents the API, and the page is not part of it.
        app.add_api_route(
            path, serve_file, methods=["GET"], include_in_schema=False, name=f"page:{path}"
        )

    for path in files:
        page_route(path)

    async def page_config() -> JSONResponse:
        return JSONResponse({"auth": auth}, headers=SECURITY_HEADERS)

    app.add_api_route(
        CONFIG_PATH, page_config, methods=["GET"], include_in_schema=False, name="page:config"
    )
