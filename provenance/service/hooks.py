"""Integrations: Kubernetes admission, the MLflow registry webhook, the lineage page."""

from __future__ import annotations

import json
import logging
import os
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from custody.errors import (
    CustodyError,
    LedgerError,
    RefusedError,
    RequestError,
    UsageError,
    VerificationError,
)
from custody.provenance.integrations import kubernetes as admission
from custody.provenance.integrations import mlflow as mlflow_hook
from custody.provenance.integrations.binding import Admission
from custody.provenance.integrations.mlflow_rest import MlflowRest
from custody.provenance.service.deps import context, require
from custody.provenance.service.page import NodeStatus, csp, render
from custody.provenance.service.routes import MAX_DEPTH, lineage_graph
from custody.provenance.service.settings import ADMISSION_MODES, ServiceContext
from custody.provenance.service.tokens import TokenInfo
from custody.provenance.verification.digest import check_version

router = APIRouter()
Reader = Annotated[TokenInfo, Depends(require("reader"))]
PageReader = Annotated[TokenInfo, Depends(require("reader", cookie=True))]
log = logging.getLogger("custody.service")


def _check_ref(ctx: ServiceContext, ref: str) -> str:
    """Run the policy on one ledger reference; the verified ``NAME@VERSION`` or a raise."""
    version = ctx.ledger.resolve(ref)
    return check_version(ctx.ledger, ctx.policy, ctx.ledger_verifier, version).node.ref


def _admission(request: Request) -> Admission:
    """The service's admission binder (its caches live as long as the app)."""
    state = request.app.state
    binder: Admission | None = getattr(state, "admission", None)
    if binder is None:
        ctx = context(request)
        try:  # how long a listing of a model URI is reused (0: list on every review)
            reuse = float(os.environ.get("CUSTODY_ADMISSION_LISTING_SECONDS", "2"))
        except ValueError:
            raise UsageError("CUSTODY_ADMISSION_LISTING_SECONDS must be a number of seconds",
                             hint="e.g. 2, or 0 to list the model URI on every review") from None
        binder = Admission(ctx.ledger, ctx.policy, ctx.ledger_verifier, listing_seconds=reuse)
        state.admission = binder
    return binder


@router.post("/v1/admission/kubernetes", tags=["integrations"])
async def kubernetes_admission(request: Request, _auth: Reader,
                               mode: str | None = None) -> JSONResponse:
    """AdmissionReview v1 in, AdmissionReview v1 out: the bytes at the object's model URI
    bound to a recorded version and verified (``?mode=warn`` allows with warnings)."""
    return await _admit(request, mode)


@router.post("/v1/admission/kubernetes/{mode}", tags=["integrations"])
async def kubernetes_admission_mode(request: Request, _auth: Reader, mode: str
                                    ) -> JSONResponse:
    """The same with the mode in the path (``/warn``, ``/enforce``): a webhook's service path
    cannot carry a query string."""
    return await _admit(request, mode)


async def _admit(request: Request, mode: str | None) -> JSONResponse:
    ctx = context(request)
    mode = mode or ctx.settings.admission_mode
    if mode not in ADMISSION_MODES:
        raise UsageError("mode is enforce or warn")
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError("the AdmissionReview is not JSON") from None
    review = admission.parse_review(body)
    binder = _admission(request)
    decision = await run_in_threadpool(admission.decide, review, binder.check, mode=mode)
    log.info("admission %s uid=%s ref=%s allowed=%s rule=%s", mode, review["uid"],
             decision.ref, decision.allowed, decision.rule)
    return JSONResponse(admission.review_response(review["uid"], decision))


@router.post("/v1/hooks/mlflow", tags=["integrations"])
async def mlflow_webhook(request: Request) -> JSONResponse:
    """MLflow registry webhook (authenticated by its HMAC signature, not a bearer token): the
    version's bytes are downloaded, hashed and verified; each delivery is accepted once."""
    ctx = context(request)
    secret = ctx.settings.mlflow_secret
    if not secret:
        raise RequestError(
            404, "the MLflow webhook is not configured",
            hint="set CUSTODY_MLFLOW_WEBHOOK_SECRET to the webhook's secret in the environment "
            "of `custody serve` and restart it")
    body = await request.body()
    delivery = request.headers.get("x-mlflow-delivery-id") or ""
    sent = mlflow_hook.check_signature(
        secret, body=body, delivery_id=delivery,
        timestamp=request.headers.get("x-mlflow-timestamp"),
        signature=request.headers.get("x-mlflow-signature"),
        max_age=ctx.settings.webhook_max_age)
    try:
        await run_in_threadpool(mlflow_hook.remember_delivery, ctx.ledger.engine, delivery, sent,
                                window=ctx.settings.webhook_max_age)
    except VerificationError as exc:
        log.warning("mlflow delivery %s refused: %s", delivery, exc.rule)
        return JSONResponse({"error": type(exc).__name__, "message": exc.message,
                             "hint": exc.hint, "subject": exc.subject, "rule": exc.rule},
                            status_code=409)
    event = mlflow_hook.parse_event(body)
    alias = ctx.settings.mlflow_alias
    if event.is_test():
        return JSONResponse({
            "handled": False, "test": True, "event": event.key,
            "message": "MLflow's test delivery arrived and its signature checks out: the "
            "webhook's secret is CUSTODY_MLFLOW_WEBHOOK_SECRET. Nothing was verified or written "
            f"(the payload names MLflow's example model). Custody gates {GATED}",
            "tracking_uri_set": bool(ctx.settings.mlflow_tracking_uri)})
    target = event.version_event(alias)
    if target is None:
        return JSONResponse({"handled": False, "event": event.key,
                             "reason": f"{event.key} changes nothing Custody gates; it gates "
                             f"{GATED}"})
    try:
        result = await run_in_threadpool(_mlflow_verdict, ctx, target)
    except LedgerError:
        # MLflow, its artifact store or the ledger was unavailable: MLflow retries the same
        # delivery (same id) on a 5xx, which must not then be refused as a replay
        await run_in_threadpool(mlflow_hook.forget_delivery, ctx.ledger.engine, delivery)
        raise
    return JSONResponse(result)


GATED = (f"{mlflow_hook.GATED_EVENTS[0]}, {mlflow_hook.GATED_EVENTS[1]} (of its alias) and "
         f"{mlflow_hook.GATED_EVENTS[2]} (of custody.* tags)")


def _mlflow_verdict(ctx: ServiceContext, target: mlflow_hook.VersionEvent) -> dict[str, Any]:
    uri = ctx.settings.mlflow_tracking_uri
    if not uri:
        raise LedgerError(
            "CUSTODY_MLFLOW_TRACKING_URI is not set: the gate cannot download the version's "
            "artifacts, so it cannot verify them",
            hint="set CUSTODY_MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_TOKEN if the server "
            "needs one) in the environment of `custody serve` and restart it")
    client = MlflowRest(uri, ctx.settings.mlflow_token)
    outcome = mlflow_hook.gate(client, ctx.ledger, ctx.policy, ctx.ledger_verifier, target,
                               alias=ctx.settings.mlflow_alias)
    v = outcome.verdict
    log.info("mlflow %s %s v%s digest=%s ref=%s verdict=%s rule=%s alias_set=%s "
             "alias_removed=%s", outcome.event, target.name, target.version, v.digest, v.ref,
             v.verdict, v.rule, outcome.alias_set, outcome.alias_removed)
    return outcome.to_json(ctx.settings.mlflow_alias)


def _statuses(ctx: ServiceContext, graph: Any) -> dict[str, NodeStatus]:
    statuses = {}
    for node in graph.nodes:
        v = node.version
        findings: list[dict[str, Any]] = []
        try:
            raw = ctx.ledger.scan_report(v).get("findings")  # from the log entry
            findings = [f for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []
            check_version(ctx.ledger, ctx.policy, ctx.ledger_verifier, v)
            statuses[v.ref] = NodeStatus("verified", findings=findings)
        except RefusedError as exc:
            statuses[v.ref] = NodeStatus("refused", exc.rule, exc.message, findings)
        except (CustodyError, ValueError) as exc:
            statuses[v.ref] = NodeStatus("refused", "ledger.error", str(exc), findings)
    return statuses


@router.get("/ui/lineage/{ref:path}", response_class=HTMLResponse, tags=["ui"])
def lineage_page(request: Request, ref: str, _auth: PageReader, direction: str = "upstream",
                 depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = 5) -> HTMLResponse:
    """Read-only lineage page: each version with its signer, verdict and findings."""
    graph = lineage_graph(request, ref, direction, depth, None)
    page, nonce = render(graph, _statuses(context(request), graph))
    return HTMLResponse(page, headers={"Content-Security-Policy": csp(nonce),
                                       "X-Content-Type-Options": "nosniff",
                                       "Referrer-Policy": "no-referrer",
                                       "Cache-Control": "no-store"})
