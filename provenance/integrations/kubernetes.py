"""Kubernetes admission (AdmissionReview v1): is the model this object would serve verified?

Which ledger version an object means (the rule, also in docs/service.md):

1. the annotation ``custody.dev/artifact`` (``NAME@VERSION`` or ``sha256:HEX``) wins;
2. else the model URI: KServe ``spec.predictor.model.storageUri``, the older
   ``spec.predictor.<framework>.storageUri``, or a Pod's ``custody.dev/model-uri`` annotation.
   Its path must end in ``.../NAME/VERSION`` (VERSION all digits) or ``.../NAME@VERSION``;
   ``models:/NAME/VERSION`` (MLflow) follows the same rule.

Anything else is unresolved and denied (fail closed), as is a version the ledger does not hold.
A bare name never means "latest": admission pins a version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from custody.errors import CustodyError, NotFoundError, RefusedError, UsageError

_ANNOTATION_REF = "custody.dev/artifact"
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
    """``NAME@VERSION`` named by a storage URI, by the documented rule, or None."""
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


def _resolve_ref(obj: dict[str, Any]) -> tuple[str | None, str]:
    """(ledger reference or None, what it came from)."""
    annotations = _dict(_dict(obj.get("metadata")).get("annotations"))
    pinned = annotations.get(_ANNOTATION_REF)
    if isinstance(pinned, str) and pinned.strip():
        return pinned.strip(), f"annotation {_ANNOTATION_REF}"
    uri = _model_uri(obj)
    if uri is None:
        return None, "no model URI"
    return ref_from_uri(uri), f"model URI {uri[:300]}"


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


def decide(request: dict[str, Any], check: Callable[[str], str], *, mode: str) -> Decision:
    """Resolve the object's model and run ``check(ref)`` (returns the verified ref or raises)."""
    if request.get("operation") == "DELETE":
        return Decision(True, "deletions are not checked")
    obj = request.get("object")
    if not isinstance(obj, dict):
        return _outcome(False, "the request carries no object", None, "admission.malformed",
                        mode)
    if obj.get("kind") not in ("InferenceService", "Pod"):
        return _outcome(False, f"custody checks InferenceServices and Pods, not "
                        f"{str(obj.get('kind'))[:60]}", None, "admission.unsupported_kind", mode)
    ref, origin = _resolve_ref(obj)
    if ref is None:
        return _outcome(False, f"cannot tell which recorded model this is ({origin}): pin it "
                        f"with the annotation {_ANNOTATION_REF}: NAME@VERSION or a storage URI "
                        "ending in NAME/VERSION", None, "admission.unresolved", mode)
    try:
        verified = check(ref)
    except NotFoundError as exc:
        return _outcome(False, f"{ref} (from {origin}) is not in the ledger: {exc.message}", ref,
                        "record.not_found", mode)
    except RefusedError as exc:
        return _outcome(False, f"{ref} is refused [{exc.rule}]: {exc.message}", ref, exc.rule,
                        mode)
    except UsageError as exc:
        return _outcome(False, f"{ref} (from {origin}) is not a valid reference: {exc.message}",
                        ref, "admission.unresolved", mode)
    except CustodyError as exc:
        return _outcome(False, f"{ref} could not be checked: {exc.message}", ref,
                        "admission.error", mode)
    return Decision(True, f"{verified} verified by custody", verified)


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
