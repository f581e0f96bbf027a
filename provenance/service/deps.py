"""Request plumbing shared by the routers: the service context and bearer-token roles."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from custody.domain import ROLES
from custody.errors import RequestError
from custody.provenance.service.settings import ServiceContext
from custody.provenance.service.tokens import TokenInfo, allows, authenticate

_COOKIE = "custody_token"


def _how_to_send(cookie: bool) -> str:
    where = "the header `Authorization: Bearer TOKEN`"
    return where + (f" (or, for this page, the cookie `{_COOKIE}=TOKEN`)" if cookie else "")


def _how_to_get(role: str) -> str:
    return (f"an admin of the ledger creates one with `custody token create --role {role}` "
            "(or POST /v1/tokens)")


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def _presented(request: Request, *, cookie: bool) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    if cookie:
        return request.cookies.get(_COOKIE)
    return None


def require(role: str, *, cookie: bool = False) -> Callable[[Request], TokenInfo]:
    """A dependency that admits a live token of ``role`` or stronger (401 none, 403 weaker)."""

    def check(request: Request) -> TokenInfo:
        token = _presented(request, cookie=cookie)
        if not token:
            raise RequestError(
                401, "a bearer token is required",
                hint=f"send a token of role {role} or stronger in {_how_to_send(cookie)}; "
                f"{_how_to_get(role)}", headers={"WWW-Authenticate": "Bearer"})
        info = authenticate(context(request).ledger.engine, token)
        if info is None:
            raise RequestError(
                401, "the bearer token is unknown or revoked",
                hint=f"send a live token in {_how_to_send(cookie)}: `custody token list` shows "
                f"which are revoked; {_how_to_get(role)}",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if not allows(info.role, role):
            enough = [r for r in ROLES if allows(r, role)]
            raise RequestError(
                403, f"this needs the {role} role; the token has {info.role}",
                hint=f"use a token of role {' or '.join(enough)}; {_how_to_get(role)}")
        return info

    return check
