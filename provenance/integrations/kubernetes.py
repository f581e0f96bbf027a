"""Kubernetes admission (AdmissionReview v1): are the bytes this object would serve verified?

An object is bound to a ledger version by **what its model URI holds**, never by its name (the
rule, also in docs/service.md):

1. the model URI: KServe ``spec.predictor.model.storageUri``, the older
   ``spec.predictor.<framework>.storageUri``, or a Pod's ``custody.dev/model-uri`` annotation;
2. the service lists the objects at that URI (sizes and identities: version id, ETag,
   generation; a listing is reused for ``listing_seconds``, 2 s by default, since the storage
   initializer lists and hashes again when the pod starts). Where a signed record says it was
   recorded **at that location** and every
   object still has the identity it had then (a version id, ETag or generation, not a size or
   a time alone), the URI is bound to that record without reading the bytes;
3. else the service hashes the bytes at the URI (cached by location + each object's identity
   and size, re-listed after hashing) and binds the URI to the record of that digest;
4. the annotation ``custody.dev/artifact`` (``NAME@VERSION``, ``NAME`` or ``sha256:HEX``) only
   narrows the versions bound by 2 or 3: when it names another one, the object is denied
   (``admission.annotation_mismatch``); on its own, without a URI, it binds nothing;
5. the bound version and its whole upstream chain are verified by the service's
   verify-by-digest (:func:`custody.provenance.verification.digest.check_version`): signature
   under the policy, inclusion under the pinned ledger key, revocation, recorded scan, policy.

Anything that does not bind is denied with the rule that says why (``admission.unresolved``,
``admission.unreadable``, ``admission.unbound``, ``admission.annotation_mismatch``). The
trailing ``NAME/VERSION`` of a URI means nothing here; :func:`ref_from_uri` remains for the
MLflow hook's source URIs.

Binding (2-4) and the index of recorded locations: ``binding.py``. The index is computed from
the signed log entries (never from a table a
database administrator could edit), kept in memory and extended by the entries a newer
checkpoint adds; a location claim is used only after the record carrying it has verified.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from custody.errors import (
    ArtifactError,
    CustodyError,
    NotFoundError,
    RefusedError,
    UsageError,
)

ANNOTATION_REF = "custody.dev/artifact"
_ANNOTATION_URI = "custody.dev/model-uri"
_VERSIONED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,199})@(?P<v>[0-9]{1,9})$")
_NUMBER = re.compile(r"^[0-9]{1,9}$")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str
    ref: str | None = None
    rule: str | None = None
    warnings: tuple[str, ...] = ()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def ref_from_uri(uri: str) -> str | None:
    """``NAME@VERSION`` named by a URI's trailing ``NAME/VERSION`` or ``NAME@VERSION``, or None.

    Not used by admission (a name proves nothing about bytes): the MLflow hook reads it."""
    path = uri.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:
        path = path.split("://", 1)[1]
    elif ":" in path:
        path = path.split(":", 1)[1]
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    last = parts[-1]
    if _VERSIONED.match(last):
        return last
    if len(parts) >= 2 and _NUMBER.match(last) and _VERSIONED.match(f"{parts[-2]}@{last}"):
        return f"{parts[-2]}@{int(last)}"
    return None


def _model_uri(obj: dict[str, Any]) -> str | None:
    """The model URI of a KServe InferenceService (new or old form) or of an annotated Pod."""
    annotations = _dict(_dict(obj.get("metadata")).get("annotations"))
    if obj.get("kind") == "InferenceService":
        predictor = _dict(_dict(obj.get("spec")).get("predictor"))
        uri = _dict(predictor.get("model")).get("storageUri")
        if isinstance(uri, str):
            return uri
        for key, value in sorted(predictor.items()):
            if key != "model" and isinstance(value, dict) and isinstance(
                    value.get("storageUri"), str):
                return str(value["storageUri"])
    uri = annotations.get(_ANNOTATION_URI)
    return uri if isinstance(uri, str) else None


def _pinned_ref(obj: dict[str, Any]) -> str | None:
    annotations = _dict(_dict(obj.get("metadata")).get("annotations"))
    pinned = annotations.get(ANNOTATION_REF)
    return pinned.strip() if isinstance(pinned, str) and pinned.strip() else None


def parse_review(body: Any) -> dict[str, Any]:
    """The ``request`` of an AdmissionReview v1; UsageError if it is not one."""
    if not isinstance(body, dict) or body.get("kind") != "AdmissionReview" or \
            body.get("apiVersion") != "admission.k8s.io/v1":
        raise UsageError("not an AdmissionReview admission.k8s.io/v1")
    request = body.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str) or \
            not request["uid"]:
        raise UsageError("the AdmissionReview has no request.uid")
    return request


Check = Callable[[str, str | None], str]  # (model URI, annotation) → the verified NAME@VERSION


def decide(request: dict[str, Any], check: Check, *, mode: str) -> Decision:
    """Bind the object's model URI to a recorded version and verify it (``check``)."""
    if request.get("operation") == "DELETE":
        return Decision(True, "deletions are not checked")
    obj = request.get("object")
    if not isinstance(obj, dict):
        return _outcome(False, "the request carries no object", None, "admission.malformed",
                        mode)
    if obj.get("kind") not in ("InferenceService", "Pod"):
        return _outcome(False, f"custody checks InferenceServices and Pods, not "
                        f"{str(obj.get('kind'))[:60]}", None, "admission.unsupported_kind", mode)
    uri, pinned = _model_uri(obj), _pinned_ref(obj)
    if uri is None:
        said = (f"; the annotation {ANNOTATION_REF}: {pinned[:200]} only narrows what the "
                "bytes at a URI bind to") if pinned else ""
        return _outcome(False, f"the object names no model URI (storageUri, or the Pod "
                        f"annotation {_ANNOTATION_URI}){said}", pinned, "admission.unresolved",
                        mode)
    shown = uri[:300]
    try:
        verified = check(uri, pinned)
    except NotFoundError as exc:
        return _outcome(False, f"{shown}: {exc.message}", pinned, "admission.unbound", mode)
    except RefusedError as exc:
        if exc.rule.startswith("admission."):  # the URI bound to nothing: the message says why
            return _outcome(False, exc.message, pinned, exc.rule, mode)
        return _outcome(False, f"{exc.subject or shown} is refused [{exc.rule}]: {exc.message}",
                        exc.subject, exc.rule, mode)
    except UsageError as exc:
        return _outcome(False, f"{shown}: {exc.message}", pinned, "admission.unresolved", mode)
    except ArtifactError as exc:
        return _outcome(False, f"custody cannot read the model at {exc.message}", pinned,
                        "admission.unreadable", mode)
    except CustodyError as exc:
        return _outcome(False, f"{shown} could not be checked: {exc.message}", pinned,
                        "admission.error", mode)
    return Decision(True, f"{verified}: the bytes at {shown} are verified by custody", verified)


def _outcome(allowed: bool, message: str, ref: str | None, rule: str, mode: str) -> Decision:
    if mode == "warn":
        return Decision(True, message, ref, rule, warnings=(f"custody [{rule}]: {message}",))
    return Decision(allowed, message, ref, rule)


def review_response(uid: str, decision: Decision) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": decision.allowed}
    message = (f"custody [{decision.rule}]: " if decision.rule else "custody: ") + \
        decision.message
    if not decision.allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": message[:1000]}
    else:
        response["status"] = {"code": 200, "message": message[:1000]}
    if decision.warnings:
        response["warnings"] = [w[:250] for w in decision.warnings]
    if decision.ref:
        response["auditAnnotations"] = {"artifact": decision.ref[:250]}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": response}
