"""The JSON API (``/v1``): verify, records, artifacts, lineage, checkpoint, proofs, tokens."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from custody.errors import LedgerError, NotFoundError, RefusedError, UsageError
from custody.provenance.integrations import exports
from custody.provenance.ledger.models import ArtifactVersionPublic, CheckpointRow
from custody.provenance.ledger.store import Ledger
from custody.provenance.log.merkle import leaf_hash
from custody.provenance.recording.ingest import append_signed
from custody.provenance.service.deps import context, require
from custody.provenance.service.tokens import TokenInfo, create_token, list_tokens, revoke_token
from custody.provenance.verification.digest import verify_digest
from custody.provenance.verification.lineage import LineageGraph, lineage

router = APIRouter()
Reader = Annotated[TokenInfo, Depends(require("reader"))]
Publisher = Annotated[TokenInfo, Depends(require("publisher"))]
Admin = Annotated[TokenInfo, Depends(require("admin"))]
MAX_DEPTH = 64


def version_json(v: ArtifactVersionPublic) -> dict[str, Any]:
    return {
        "ref": v.ref, "name": v.name, "version": v.version, "kind": v.kind,
        "digest": f"{v.digest_algorithm}:{v.digest}", "size": v.size, "files": v.file_count,
        "signer": v.signer, "signer_issuer": v.signer_issuer, "scan_verdict": v.scan_verdict,
        "scan_max_severity": v.scan_max_severity,
        "recorded_at": v.recorded_at.isoformat(timespec="seconds"), "ledger_index": v.entry_idx,
    }


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError("the request body is not JSON",
                         hint="send a JSON object with Content-Type: application/json") from None
    if not isinstance(data, dict):
        raise UsageError("the request body must be a JSON object",
                         hint="send a JSON object ({...}), not a list or a scalar")
    return data


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in items]


def signed_checkpoint(ledger: Ledger, size: int) -> CheckpointRow:
    """The signed checkpoint of ``size``; NotFoundError (404) if the ledger has none of that size:
    beyond its head, or a size inside one append (a version and its lineage edges are appended
    together under one checkpoint)."""
    head = ledger.head()
    if size == head.size:
        return head
    newest = (f"GET /v1/checkpoint (no size) gives the newest, of size {head.size}; a "
              "checkpoint you saved earlier names a size the ledger has")
    if size > head.size:
        raise NotFoundError(f"the ledger has no checkpoint of size {size} yet",
                            hint=newest, subject=f"checkpoint {size}")
    try:
        return ledger.checkpoint(size)
    except NotFoundError:
        raise
    except LedgerError:
        ledger.head()  # still answers: the row is missing (an outage raises here, a 503)
        raise NotFoundError(
            f"the ledger has no checkpoint of size {size}: entries appended together (a "
            "version and its lineage edges) share one checkpoint", hint=newest,
            subject=f"checkpoint {size}") from None


@router.get("/healthz", tags=["service"])
def healthz(request: Request) -> dict[str, Any]:
    """Liveness and ledger reachability (no token needed)."""
    head = context(request).ledger.head()
    return {"ok": True, "tree_size": head.size}


@router.post("/v1/verify", tags=["verify"])
async def verify_endpoint(request: Request, _auth: Reader) -> JSONResponse:
    """Verify the record of a digest (``{"digest": "sha256:…"}``) or of a manifest
    (``{"manifest": {…}}`` or the manifest itself), optionally ``"name"``; the chain is walked."""
    body = await json_body(request)
    manifest: Any
    if "resources" in body:  # the manifest itself
        manifest, digest, name = body, None, None
    else:
        manifest, digest, name = body.get("manifest"), body.get("digest"), body.get("name")
    if manifest is not None and not isinstance(manifest, dict):
        raise UsageError("manifest must be a JSON object")
    if digest is not None and not isinstance(digest, str):
        raise UsageError("digest must be a string")
    if name is not None and not isinstance(name, str):
        raise UsageError("name must be a string")
    ctx = context(request)

    def run() -> dict[str, Any]:
        try:
            return verify_digest(ctx.ledger, ctx.policy, ctx.ledger_verifier, digest=digest,
                                 manifest=manifest, name=name).to_json()
        except RefusedError as exc:
            return {"verdict": "refused", "rule": exc.rule, "message": exc.message,
                    "hint": exc.hint, "subject": exc.subject}

    from starlette.concurrency import run_in_threadpool

    return JSONResponse(await run_in_threadpool(run))


@router.post("/v1/records", status_code=201, tags=["records"])
async def append_record(request: Request, _auth: Publisher) -> dict[str, Any]:
    """Append a record signed by the client: ``{"bundle": …, "oms_bundle"?: …,
    "allow_flagged"?: false, "scan_report"?: {…}}``."""
    from starlette.concurrency import run_in_threadpool

    body = await json_body(request)
    ctx = context(request)
    version = await run_in_threadpool(append_signed, ctx.ledger, ctx.policy, body)
    return version_json(version)


@router.get("/v1/artifacts", tags=["artifacts"])
def list_artifacts(request: Request, _auth: Reader, name: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
                   offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    """Recorded versions (of one name), oldest first."""
    versions = context(request).ledger.list_versions(name)
    return {"total": len(versions),
            "versions": [version_json(v) for v in versions[offset:offset + limit]]}


@router.get("/v1/artifacts/{ref:path}", tags=["artifacts"])
def get_artifact(request: Request, ref: str, _auth: Reader) -> dict[str, Any]:
    """One version (``NAME@VERSION``, ``NAME`` for the latest, ``sha256:HEX``) with its signed
    statement, bundle, scan report and inputs."""
    ledger = context(request).ledger
    version = ledger.resolve(ref)
    stored = ledger.stored_record(version)
    inputs = [{"ref": v.ref, "activity": e.activity}
              for e, v in ledger.edges([version.id], upstream=True)]
    return {**version_json(version), "inputs": inputs,
            "statement": json.loads(stored.statement), "bundle": json.loads(stored.bundle),
            "scan_report": ledger.scan_report(version)}


def lineage_graph(request: Request, ref: str, direction: str, depth: int,
                  as_of: int | None) -> LineageGraph:
    if direction not in ("upstream", "downstream"):
        raise UsageError("direction is upstream or downstream",
                         hint="use ?direction=upstream (the default) or ?direction=downstream")
    return lineage(context(request).ledger, ref, upstream=direction == "upstream",
                   depth=depth, as_of=as_of)


@router.get("/v1/lineage/{ref:path}", tags=["lineage"])
def get_lineage(request: Request, ref: str, _auth: Reader, direction: str = "upstream",
                depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = 10,
                as_of: Annotated[int | None, Query(ge=0)] = None,
                format: str = "json") -> Response:
    """The lineage graph; ``format`` json, openlineage, cyclonedx, prov or dot."""
    graph = lineage_graph(request, ref, direction, depth, as_of)
    if format == "json":
        return JSONResponse(graph.to_json())
    if format == "dot":
        return PlainTextResponse(graph.to_dot(), media_type="text/vnd.graphviz")
    if format == "openlineage":
        return JSONResponse(exports.to_openlineage(graph))
    if format == "cyclonedx":
        return JSONResponse(exports.to_cyclonedx(graph),
                            media_type="application/vnd.cyclonedx+json")
    if format == "prov":
        return JSONResponse(exports.to_prov(graph), media_type="application/ld+json")
    raise UsageError(f"unknown format {format[:40]!r}",
                     hint="use json, openlineage, cyclonedx, prov or dot")


@router.get("/v1/checkpoint", tags=["log"])
def checkpoint(request: Request, _auth: Reader,
               size: Annotated[int | None, Query(ge=0)] = None, format: str = "json",
               witnessed: bool = False) -> Response:
    """The newest signed checkpoint (or the one of ``size``; ``witnessed=true``: the newest one
    with witness cosignatures), its note followed by the cosignatures collected for it (verify
    them with the witness keys you trust); ``format=note`` for the note alone."""
    from custody.provenance.service import cosignatures

    ledger = context(request).ledger
    if witnessed and size is None:
        size = cosignatures.newest_cosigned_size(ledger.engine)
        if size is None:
            raise NotFoundError("no checkpoint of this ledger has been cosigned yet",
                                subject="checkpoint", hint="witnesses post their cosigned "
                                "checkpoints to POST /v1/checkpoint/cosignatures (`custody audit "
                                "witness --out FILE` writes one)")
    row = ledger.head() if size is None else signed_checkpoint(ledger, size)
    note, kept = cosignatures.cosigned_note(ledger.engine, row)
    if format == "note":
        return PlainTextResponse(note)
    from custody.provenance.log.checkpoint import parse_checkpoint_unverified

    return JSONResponse({"size": row.size, "root": row.root, "note": note,
                         # the log's name as its signed note says it (never ledger_meta's)
                         "origin": parse_checkpoint_unverified(row.note).origin,
                         "cosignatures": [_cosignature_json(c) for c in kept]})


def _cosignature_json(row: Any) -> dict[str, Any]:
    from custody.provenance.log.witness import Cosignature

    cosig = Cosignature(row.name, row.key_id, row.timestamp, b"")
    return {"witness": cosig.label, "timestamp": cosig.timestamp, "time": cosig.iso}


@router.post("/v1/checkpoint/cosignatures", tags=["log"])
async def post_cosignatures(request: Request, _auth: Publisher) -> dict[str, Any]:
    """A witness's cosigned checkpoint, ``{"note": "<checkpoint and cosignature lines>",
    "witness"?: "<vkey>"}``: the checkpoint must be the ledger's (another root of that size is
    refused as ``witness.fork``) and each cosignature line of a witness the service knows (its
    policy's ``[witness]`` table, else the vkey sent) must verify; those are kept and served
    with ``GET /v1/checkpoint``."""
    from starlette.concurrency import run_in_threadpool

    from custody.provenance.log.checkpoint import parse_checkpoint_unverified
    from custody.provenance.log.witness import WitnessVerifier
    from custody.provenance.service import cosignatures

    body = await json_body(request)
    note, vkey = body.get("note"), body.get("witness")
    if not isinstance(note, str) or (vkey is not None and not isinstance(vkey, str)):
        raise UsageError("note (and witness, if sent) must be strings",
                         hint='send {"note": "<what custody audit witness --out wrote>", '
                         '"witness": "<the witness\'s vkey>"}')
    ctx = context(request)
    if ctx.ledger_verifier is None:
        raise UsageError("the service has no pinned ledger key to check checkpoints with",
                         hint="pin it: ledger_vkey in the workspace's .custody/config.toml")
    policy = ctx.policy.witness
    witnesses = list(policy.witnesses) if policy is not None else (
        [WitnessVerifier.from_vkey(vkey)] if vkey else [])
    row = signed_checkpoint(ctx.ledger, parse_checkpoint_unverified(note).size)
    stored = await run_in_threadpool(cosignatures.add, ctx.ledger.engine, row, note,
                                     ledger_key=ctx.ledger_verifier, witnesses=witnesses)
    return {"size": stored.size, "root": stored.root, "cosignatures": stored.total,
            "added": [{"witness": c.label, "timestamp": c.timestamp, "time": c.iso}
                      for c in stored.added]}


@router.get("/v1/proofs/inclusion/{index}", tags=["log"])
def inclusion(request: Request, index: int, _auth: Reader,
              size: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
    """The entry at ``index``, its leaf hash and its inclusion proof under a signed checkpoint
    (the newest unless ``size``)."""
    ledger = context(request).ledger
    head = ledger.head() if size is None else signed_checkpoint(ledger, size)
    if not 0 <= index < head.size:
        raise NotFoundError(f"entry {index} is not covered by the checkpoint of size "
                            f"{head.size}", subject=f"entry {index}",
                            hint=f"ask for an entry below {head.size}, or for a larger ?size= "
                            "(GET /v1/checkpoint gives the newest size)")
    entry = ledger.entry(index)
    proof = ledger.prove_inclusion(index, head.size)
    return {"index": index, "tree_size": head.size, "root": head.root,
            "leaf_hash": leaf_hash(entry.payload.encode("utf-8")).hex(),
            "entry": json.loads(entry.payload), "proof": _b64(proof), "checkpoint": head.note}


@router.get("/v1/proofs/consistency", tags=["log"])
def consistency(request: Request, _auth: Reader,
                first: Annotated[int, Query(alias="from", ge=0)],
                second: Annotated[int, Query(alias="to", ge=0)]) -> dict[str, Any]:
    """The consistency proof from the checkpoint of size ``from`` to that of size ``to``."""
    if first > second:
        raise UsageError("from must not exceed to",
                         hint="put the older (smaller) size in from and the newer in to")
    ledger = context(request).ledger
    new = signed_checkpoint(ledger, second)
    old = signed_checkpoint(ledger, first)
    proof = ledger.prove_consistency(first, second)
    return {"from": first, "to": second, "proof": _b64(proof),
            "from_checkpoint": old.note, "to_checkpoint": new.note}


@router.get("/v1/tokens", tags=["tokens"])
def tokens(request: Request, _auth: Admin) -> dict[str, Any]:
    return {"tokens": [t.to_json() for t in list_tokens(context(request).ledger.engine)]}


@router.post("/v1/tokens", status_code=201, tags=["tokens"])
async def new_token(request: Request, _auth: Admin) -> dict[str, Any]:
    """``{"role": "reader|auditor|publisher|admin", "label": "…"}``; the token is shown once."""
    body = await json_body(request)
    role, label = body.get("role"), body.get("label", "")
    if not isinstance(role, str) or not isinstance(label, str):
        raise UsageError("role and label are strings",
                         hint='send {"role": "reader|auditor|publisher|admin", "label": "..."}')
    token, info = create_token(context(request).ledger.engine, role, label)
    return {"token": token, **info.to_json()}


@router.delete("/v1/tokens/{token_id}", tags=["tokens"])
def delete_token(request: Request, token_id: int, _auth: Admin) -> dict[str, Any]:
    revoke_token(context(request).ledger.engine, token_id)
    return {"revoked": token_id}
