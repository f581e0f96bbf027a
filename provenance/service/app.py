"""The FastAPI application: error mapping, request size limit, routers, lifespan.

Errors never carry a stack trace: Custody errors become JSON diagnostics (UsageError 400,
NotFoundError 404, LedgerError 503, refusals 422 outside the verify endpoints, which answer 200
with ``verdict: refused``), and one last handler turns anything unexpected into a bare 500 and
logs it on the server.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from custody import __version__
from custody.errors import CustodyError, LedgerError, NotFoundError, RefusedError
from custody.provenance.service.ingest import VersionConflict
from custody.provenance.service.mlflow_hook import SignatureError
from custody.provenance.service.settings import ServiceContext, Settings

log = logging.getLogger("custody.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than {limit} bytes")


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
                    await _plain(send, 400, "invalid Content-Length")
                    return
                if int(value) > self.limit:
                    await _plain(send, 413, f"the request body is larger than {self.limit} "
                                 "bytes")
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


async def _plain(send: Send, status: int, message: str) -> None:
    body = JSONResponse({"error": "RequestError", "message": message}, status_code=status).body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def status_for(exc: CustodyError) -> int:
    if isinstance(exc, VersionConflict):
        return 409
    if isinstance(exc, SignatureError):
        return 401
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, LedgerError):
        return 503
    if isinstance(exc, RefusedError):
        return 422
    return 400


def error_body(exc: CustodyError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": type(exc).__name__, "message": exc.message,
                            "hint": exc.hint, "subject": exc.subject}
    if isinstance(exc, RefusedError):
        body["rule"] = exc.rule
    return body


def _install_errors(app: FastAPI) -> None:
    async def custody_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CustodyError)  # noqa: S101 - registered for CustodyError
        return JSONResponse(error_body(exc), status_code=status_for(exc))

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException
        return JSONResponse({"error": "RequestError", "message": str(exc.detail)},
                            status_code=exc.status_code, headers=exc.headers)

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        details = [{"where": ".".join(str(p) for p in e.get("loc", ())),
                    "problem": str(e.get("msg", ""))} for e in exc.errors()][:20]
        return JSONResponse({"error": "UsageError", "message": "invalid request",
                             "details": details}, status_code=422)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.error("unexpected error %s on %s %s", incident, request.method, request.url.path,
                  exc_info=exc)
        return JSONResponse({"error": "InternalError", "message": "internal error; the server "
                             f"log has the details (incident {incident})"}, status_code=500)

    app.add_exception_handler(CustodyError, custody_error)
    app.add_exception_handler(HTTPException, http_error)
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
