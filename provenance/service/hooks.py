"""Integrations: Kubernetes admission, the MLflow registry webhook, the lineage page."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from custody.errors import CustodyError, NotFoundError, RefusedError, RequestError, UsageError
from custody.provenance.integrations import kubernetes as admission
from custody.provenance.integrations import mlflow as mlflow_hook
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


def _admission(request: Request) -> admission.Admission:
    """The service's admission binder (its caches live as long as the app)."""
    state = request.app.state
    binder: admission.Admission | None = getattr(state, "admission", None)
    if binder is None:
        ctx = context(request)
        binder = admission.Admission(ctx.ledger, ctx.policy, ctx.ledger_verifier)
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
    """MLflow registry webhook (authenticated by its HMAC signature, not a bearer token)."""
    ctx = context(request)
    secret = ctx.settings.mlflow_secret
    if not secret:
        raise RequestError(
            404, "the MLflow webhook is not configured",
            hint="set CUSTODY_MLFLOW_WEBHOOK_SECRET to the webhook's secret in the environment "
            "of `custody serve` and restart it")
    body = await request.body()
    mlflow_hook.check_signature(
        secret, body=body, delivery_id=request.headers.get("x-mlflow-delivery-id"),
        timestamp=request.headers.get("x-mlflow-timestamp"),
        signature=request.headers.get("x-mlflow-signature"),
        max_age=ctx.settings.webhook_max_age)
    event = mlflow_hook.parse_event(body)
    if event is None:
        return JSONResponse({"handled": False, "reason": "not a model_version.created event"})
    result = await run_in_threadpool(_mlflow_verdict, ctx, event)
    return JSONResponse(result)


def _mlflow_verdict(ctx: ServiceContext, event: mlflow_hook.ModelVersionEvent) -> dict[str, Any]:
    ref = event.ref()
    out: dict[str, Any] = {"handled": True, "model": event.name, "version": event.version,
                           "ref": ref}
    if ref is None:
        out.update(verdict="unknown", rule="mlflow.unresolved",
                   message=f"tag {mlflow_hook.TAG_REF} missing and the source URI does not "
                   "name NAME/VERSION")
    else:
        try:
            out.update(verdict="verified", ref=_check_ref(ctx, ref))
        except NotFoundError as exc:
            out.update(verdict="unknown", rule="record.not_found", message=exc.message)
        except RefusedError as exc:
            out.update(verdict="refused", rule=exc.rule, message=exc.message)
        except UsageError as exc:
            out.update(verdict="unknown", rule="mlflow.unresolved", message=exc.message)
    uri = ctx.settings.mlflow_tracking_uri
    out["tagged"] = False
    if uri:
        client = mlflow_hook.MlflowRest(uri, ctx.settings.mlflow_token)
        client.set_tag(event.name, event.version, "custody.verdict", str(out["verdict"]))
        if out.get("ref"):
            client.set_tag(event.name, event.version, "custody.ref", str(out["ref"]))
        if out["verdict"] == "verified":
            client.set_alias(event.name, ctx.settings.mlflow_alias, event.version)
        out["tagged"] = True
    log.info("mlflow %s v%s ref=%s verdict=%s", event.name, event.version, out.get("ref"),
             out["verdict"])
    return out


def _statuses(ctx: ServiceContext, graph: Any) -> dict[str, NodeStatus]:
    statuses = {}
    for node in graph.nodes:
        v = node.version
        findings: list[dict[str, Any]] = []
        try:
            report = json.loads(ctx.ledger.stored_record(v).scan_report)
            raw = report.get("findings") if isinstance(report, dict) else None
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
