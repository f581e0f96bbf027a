"""Request plumbing shared by the routers: the service context and bearer-token roles."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, Request

from custody.provenance.service.settings import ServiceContext
from custody.provenance.service.tokens import TokenInfo, allows, authenticate

COOKIE = "custody_token"


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def _presented(request: Request, *, cookie: bool) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    if cookie:
        return request.cookies.get(COOKIE)
    return None


def require(role: str, *, cookie: bool = False) -> Callable[[Request], TokenInfo]:
    """A dependency that admits a live token of ``role`` or stronger (401 none, 403 weaker)."""

    def check(request: Request) -> TokenInfo:
        token = _presented(request, cookie=cookie)
        if not token:
            raise HTTPException(401, "a bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        info = authenticate(context(request).ledger.engine, token)
        if info is None:
            raise HTTPException(401, "the bearer token is unknown or revoked",
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if not allows(info.role, role):
            raise HTTPException(403, f"this needs the {role} role; the token has {info.role}")
        return info

    return check
