"""The FastAPI application: error mapping, request size limit, routers, lifespan.

Errors never carry a stack trace: Custody errors become JSON diagnostics (UsageError 400,
NotFoundError 404, LedgerError 503, refusals 422 outside the verify endpoints, which answer 200
with ``verdict: refused``), and one last handler turns anything unexpected into a bare 500 and
logs it on the server. Every 4xx body has ``error``, ``message`` and a non-empty ``hint``: the
error's own, else the one of :data:`HINTS` for its status.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from custody import __version__
from custody.errors import (
    CustodyError,
    LedgerError,
    NotFoundError,
    RefusedError,
    RequestError,
    VersionConflict,
    WebhookSignatureError,
)
from custody.provenance.service.settings import ServiceContext, Settings

log = logging.getLogger("custody.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


DOCS = "/docs (OpenAPI: /openapi.json) describes every endpoint, its parameters and body"
_HINTS = {
    400: f"fix the request as the message says; {DOCS}",
    401: "send the bearer token in the header `Authorization: Bearer TOKEN`",
    404: "GET /v1/artifacts lists the recorded versions; GET /v1/checkpoint gives the tree size "
    "(entries and checkpoint sizes go up to it)",
    405: f"use a method this endpoint takes; {DOCS}",
    422: f"fix what the message (and details) name; {DOCS}",
    503: "the ledger database is unreachable or failing: check the server log and the database; "
    "GET /healthz answers 200 once the ledger is back",
}


def _hint_for(status: int, hint: str | None = None) -> str:
    """The hint of an error body: the error's own, else the one for its status."""
    return hint or _HINTS.get(status) or _HINTS.get(status // 100 * 100) or DOCS


def _body_limit_hint(limit: int) -> str:
    return (f"send at most {limit} bytes; the server's limit is `custody serve --max-body BYTES` "
            "(or CUSTODY_SERVICE_MAX_BODY)")


class BodyLimit:
    """Refuse request bodies over the limit: by Content-Length up front, else while reading."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                if not value.isdigit():
                    await _plain(send, 400, "invalid Content-Length",
                                 "send Content-Length as a decimal number of bytes, or leave "
                                 "it out")
                    return
                if int(value) > self.limit:
                    await _plain(send, 413, f"the request body is larger than {self.limit} "
                                 "bytes", _body_limit_hint(self.limit))
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise RequestError(413, f"the request body is larger than {self.limit} bytes",
                                       hint=_body_limit_hint(self.limit))
            return message

        await self.app(scope, limited, send)


async def _plain(send: Send, status: int, message: str, hint: str) -> None:
    body = JSONResponse({"error": "RequestError", "message": message, "hint": hint},
                        status_code=status).body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _status_for(exc: CustodyError) -> int:
    if isinstance(exc, RequestError):
        return exc.status
    if isinstance(exc, VersionConflict):
        return 409
    if isinstance(exc, WebhookSignatureError):
        return 401
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, LedgerError):
        return 503
    if isinstance(exc, RefusedError):
        return 422
    return 400


def _error_body(exc: CustodyError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": type(exc).__name__, "message": exc.message,
                            "hint": _hint_for(_status_for(exc), exc.hint), "subject": exc.subject}
    if isinstance(exc, RefusedError):
        body["rule"] = exc.rule
    return body


def _install_errors(app: FastAPI) -> None:
    async def custody_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CustodyError)  # noqa: S101 - registered for CustodyError
        headers = exc.headers if isinstance(exc, RequestError) else None
        return JSONResponse(_error_body(exc), status_code=_status_for(exc), headers=headers)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's own: no route (404), wrong method (405)
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it
        hint = None
        if exc.status_code == 404:
            hint = f"there is no endpoint {request.url.path[:200]}; {DOCS}"
        return JSONResponse({"error": "RequestError", "message": str(exc.detail),
                             "hint": _hint_for(exc.status_code, hint)},
                            status_code=exc.status_code, headers=exc.headers)

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        details = [{"where": ".".join(str(p) for p in e.get("loc", ())),
                    "problem": str(e.get("msg", ""))} for e in exc.errors()][:20]
        return JSONResponse({"error": "UsageError", "message": "invalid request",
                             "hint": "fix the parameters listed in details (where: the "
                             f"parameter, problem: what is wrong); {DOCS}",
                             "details": details}, status_code=422)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.error("unexpected error %s on %s %s", incident, request.method, request.url.path,
                  exc_info=exc)
        return JSONResponse({"error": "InternalError", "message": "internal error; the server "
                             f"log has the details (incident {incident})"}, status_code=500)

    app.add_exception_handler(CustodyError, custody_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)


def create_app(settings: Settings | None = None, *, ctx: ServiceContext | None = None
               ) -> FastAPI:
    """The service application; the ledger is opened at startup unless ``ctx`` is given."""
    from custody.provenance.service import hooks, routes

    settings = settings or (ctx.settings if ctx else Settings.from_env())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = ctx is None
        app.state.ctx = ctx or ServiceContext.open(settings)
        try:
            yield
        finally:
            if own:
                app.state.ctx.close()

    app = FastAPI(title="Custody", version=__version__, lifespan=lifespan, debug=False,
                  description="Integrity and provenance of ML datasets and models: verify "
                  "records, append signed records, lineage, Merkle proofs, admission hooks.")
    _install_errors(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.include_router(routes.router)
    app.include_router(hooks.router)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and ``custody serve --workers N``: settings from the
    environment ($CUSTODY_LEDGER, CUSTODY_SERVICE_MAX_BODY, ...)."""
    return create_app(Settings.from_env())
