"""The one place that maps :class:`~recsys.errors.RecsysError` classes to HTTP status codes.

Every error body is ``{"error": <class name>, "message": <one line>}``; validation errors add
``"fields"``. A file the server cannot write (a full disk, a read-only state folder: an
:class:`OSError` of :data:`MACHINE_ERRNOS`) is a 503, as a store that cannot write is. Anything
else is a bug: logged with its traceback and answered with a JSON 500 that leaks nothing.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys.config import error_message
from recsys.errors import (
    ArtifactError,
    AuthError,
    ConfigError,
    DataError,
    ModelError,
    NotFoundError,
    OverloadedError,
    RecsysError,
    RegistryError,
    StoreError,
)
from serving.responses import OrjsonResponse

log = logging.getLogger(__name__)

#: Most specific class first: the first match wins.
STATUS: tuple[tuple[type[RecsysError], int], ...] = (
    (NotFoundError, 404),
    (DataError, 422),
    (ConfigError, 422),
    (OverloadedError, 503),
    (ModelError, 503),  # no model version loaded, or the model cannot answer
    (StoreError, 503),
    (ArtifactError, 409),  # the version on disk does not match its manifest
    (RegistryError, 409),
)


#: The machine's faults, not the request's: the server cannot write its state folder.
MACHINE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)


#: What FastAPI says of a JSON body it could not decode.
_UNPARSED = "There was an error parsing the body"
#: The message for a body sent without a JSON content type (FastAPI then does not parse it).
NOT_JSON = "not sent as JSON: post it with 'Content-Type: application/json'"


def _body_not_json(request: Request, exc: RequestValidationError) -> bool:
    """A body refused as a whole because it was not sent as JSON: its content type is not JSON
    and the error is the body's own (not one of its fields')."""
    if "json" in request.headers.get("content-type", "").lower():
        return False
    return any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors())


def status_of(exc: RecsysError) -> int:
    """The HTTP status for ``exc``."""
    if isinstance(exc, AuthError):
        return 401 if exc.missing else 403
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def error_body(exc: RecsysError | Exception, message: str | None = None) -> dict[str, Any]:
    """The JSON body of an error."""
    return {"error": type(exc).__name__, "message": message or str(exc)}


def install(app: FastAPI) -> None:
    """Register every exception handler on ``app``."""

    @app.exception_handler(RecsysError)
    async def _recsys(request: Request, exc: RecsysError) -> OrjsonResponse:
        status = status_of(exc)
        headers = {"WWW-Authenticate": "X-API-Key"} if status == 401 else None
        if status == 503:
            headers = {"Retry-After": "1"}
        return OrjsonResponse(error_body(exc), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> OrjsonResponse:
        fields = []
        if _body_not_json(request, exc):
            fields.append({"field": "body", "message": NOT_JSON})
        for err in [] if fields else exc.errors():
            if err.get("type") == "json_invalid":
                # its location is a character position, not a field
                at = next((p for p in err.get("loc", ()) if isinstance(p, int)), None)
                why = (err.get("ctx") or {}).get("error", "JSON decode error")
                where_in = f" at character {at}" if at is not None else ""
                fields.append({"field": "body", "message": f"is not valid JSON ({why}{where_in})"})
                continue
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            fields.append({"field": where, "message": error_message(err)})
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        body = {"error": "ValidationError", "message": message, "fields": fields}
        return OrjsonResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        if exc.status_code == 400 and exc.detail == _UNPARSED:
            # FastAPI's answer to a JSON body it could not decode: not UTF-8, or nested past
            # the parser's depth (a 400 that named no field)
            message = "is not valid JSON (not UTF-8 text, or nested too deeply)"
            fields = [{"field": "body", "message": message}]
            body = {"error": "ValidationError", "message": f"body: {message}", "fields": fields}
            return OrjsonResponse(body, status_code=422)
        body = {"error": "HTTPError", "message": str(exc.detail)}
        return OrjsonResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(OSError)
    async def _machine(request: Request, exc: OSError) -> OrjsonResponse:
        if exc.errno not in MACHINE_ERRNOS:
            raise exc  # a bug: the 500 below
        # an admin change to rules, experiments or promotions on a full disk: nothing was
        # written (the files are replaced atomically), and it can be sent again
        log.error("cannot write on %s %s: %s", request.method, request.url.path, exc)
        where = f" {exc.filename}" if exc.filename else ""
        body = {"error": "StorageError", "message": f"cannot write{where}: {exc.strerror}"}
        return OrjsonResponse(body, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> OrjsonResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = {"error": "InternalError", "message": "internal error; see the server log"}
        return OrjsonResponse(body, status_code=500)
