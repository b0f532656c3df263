"""The one error table of the HTTP API: error type -> status code, and the typed exception.

Every non-2xx answer has the body ``{"error": <message>, "error_type": <type>}``; the status code
comes from :data:`ERROR_TABLE` only, so tests can walk the table and a new error type is added in
exactly one place.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

#: error_type -> (HTTP status, when it happens). Cf. TEI ``router/src/http/server.rs`` ErrorType.
ERROR_TABLE: dict[str, tuple[int, str]] = {
    "empty": (400, "a text is empty or whitespace only, or the request has no texts"),
    "unauthorized": (401, "an API key is set and the bearer token is missing or wrong"),
    "not_found": (404, "no such route"),
    "method_not_allowed": (405, "the route exists but not for this HTTP method"),
    "payload_too_large": (413, "body over --max-body-bytes or more texts than the per-request cap"),
    "unsupported_media_type": (415, "Content-Type other than application/json or jsonlines"),
    "validation": (422, "invalid JSON, a missing field or a field of the wrong type"),
    "overloaded": (429, "the micro-batcher's queue is full; retry after Retry-After seconds"),
    "internal": (500, "an unexpected server error (logged with its traceback)"),
    "not_ready": (503, "the model is still loading, failed to load, or the server is stopping"),
}

#: Seconds clients are told to wait on 429/503 (SageMaker and most HTTP clients honour it).
RETRY_AFTER_S = 1


def status_of(error_type: str) -> int:
    """HTTP status for ``error_type`` (a KeyError for an unknown type is a bug)."""
    return ERROR_TABLE[error_type][0]


def error_body(error_type: str, message: str) -> dict[str, str]:
    """The JSON body every error answer carries."""
    return {"error": message, "error_type": error_type}


class ServeError(HTTPException):
    """A typed HTTP error; its status comes from :data:`ERROR_TABLE`.

    It subclasses Starlette's HTTPException so FastAPI re-raises it unchanged when it is raised
    while the request body is read (the body-size limit), instead of turning it into a 400.
    """

    def __init__(self, error_type: str, message: str, headers: dict[str, str] | None = None):
        status = status_of(error_type)
        if status in (429, 503):
            headers = {"Retry-After": str(RETRY_AFTER_S), **(headers or {})}
        super().__init__(status_code=status, detail=message, headers=headers)
        self.error_type = error_type
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return error_body(self.error_type, self.message)
