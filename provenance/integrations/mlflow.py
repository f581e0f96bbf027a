"""MLflow model-registry webhooks: check the signature, verify the new version, tag the verdict.

MLflow signs each delivery with HMAC-SHA256 over ``{delivery_id}.{timestamp}.{body}`` and sends
``X-MLflow-Signature: v1,<base64>`` with ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp``.
The body is ``{"entity", "action", "timestamp", "data"}``; for ``model_version.created`` the data
holds ``name``, ``version``, ``source``, ``run_id`` and ``tags``.

The version's ledger record is found like admission finds it: the model-version tag
``custody.artifact`` (``NAME@VERSION``), else the ``source`` URI by the admission rule. The
verdict goes back to MLflow through its REST API (no mlflow package needed): tags
``custody.verdict`` and ``custody.ref`` on the model version and, when verified, the alias
(``custody-verified`` by default) that deployments are gated on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from custody.errors import LedgerError, UsageError, WebhookSignatureError
from custody.provenance.integrations.kubernetes import ref_from_uri

TAG_REF = "custody.artifact"


_DELIVERY_HINT = ("deliver through an MLflow registry webhook created with this secret: it sends "
                 "X-MLflow-Signature, X-MLflow-Delivery-Id and X-MLflow-Timestamp")


def check_signature(secret: str, *, body: bytes, delivery_id: str | None,
                    timestamp: str | None, signature: str | None, max_age: int,
                    now: float | None = None) -> None:
    if not (delivery_id and timestamp and signature):
        raise WebhookSignatureError("missing X-MLflow-Signature, X-MLflow-Delivery-Id or "
                             "X-MLflow-Timestamp",
                             hint=_DELIVERY_HINT)
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookSignatureError("X-MLflow-Timestamp is not a Unix time",
                             hint=_DELIVERY_HINT) from None
    if abs((now if now is not None else time.time()) - sent) > max_age:
        raise WebhookSignatureError("the delivery's timestamp is too old or in the future",
                             hint="check the clocks; replayed deliveries are refused")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookSignatureError("the delivery is not UTF-8",
                             hint=_DELIVERY_HINT) from None
    mac = hmac.new(secret.encode("utf-8"), f"{delivery_id}.{timestamp}.{text}".encode(),
                   hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode("ascii")
    offered = [s.strip() for s in signature.split(" ") if s.strip()]
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in offered):
        raise WebhookSignatureError("the delivery's HMAC signature does not match",
                             hint="the webhook secret differs from CUSTODY_MLFLOW_WEBHOOK_SECRET")


@dataclass(frozen=True)
class ModelVersionEvent:
    name: str
    version: str
    source: str
    tags: dict[str, str]

    def ref(self) -> str | None:
        pinned = self.tags.get(TAG_REF)
        if pinned:
            return pinned.strip()
        return ref_from_uri(self.source) if self.source else None


def parse_event(body: bytes) -> ModelVersionEvent | None:
    """The created model version, or None for any other event."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError("the delivery is not JSON") from None
    if not isinstance(data, dict):
        raise UsageError("the delivery is not a JSON object")
    if (data.get("entity"), data.get("action")) != ("model_version", "created"):
        return None
    payload = data.get("data")
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str) or \
            payload.get("version") is None:
        raise UsageError("model_version.created without data.name and data.version")
    tags = payload.get("tags") if isinstance(payload.get("tags"), dict) else {}
    return ModelVersionEvent(
        name=payload["name"], version=str(payload["version"]),
        source=str(payload.get("source") or ""),
        tags={str(k): str(v) for k, v in (tags or {}).items()})


class MlflowRest:
    """The two MLflow REST calls the hook makes (API 2.0), with the standard library."""

    def __init__(self, tracking_uri: str, token: str | None = None, timeout: float = 10.0):
        parsed = urllib.parse.urlsplit(tracking_uri)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UsageError(f"MLflow tracking URI {tracking_uri!r} is not http(s)")
        self.base = tracking_uri.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _post(self, path: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s)
            f"{self.base}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {self.token}"} if self.token else {})},
            method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                reply.read()
        except urllib.error.HTTPError as exc:
            raise LedgerError(f"MLflow refused {path}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise LedgerError(f"MLflow is unreachable for {path}: {exc}") from None

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._post("model-versions/set-tag",
                   {"name": name, "version": version, "key": key, "value": value})

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._post("registered-models/alias", {"name": name, "alias": alias, "version": version})
