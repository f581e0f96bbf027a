"""MLflow model-registry webhooks: the gate decides by the bytes of the registered version.

MLflow signs each delivery with HMAC-SHA256 over ``{delivery_id}.{timestamp}.{body}`` and sends
``X-MLflow-Signature: v1,<base64>`` with ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp``.
The body is ``{"entity", "action", "timestamp", "data"}``. A delivery is accepted once: its id
is kept (table ``webhook_deliveries``) for the signature window, and a replay inside the window
is refused (``mlflow.replayed``); outside it the timestamp alone refuses it.

For the events that decide what a deployment loads (``model_version.created``; the alias being
set on a version, ``model_version_alias.created``; a ``custody.*`` tag being set by hand,
``model_version_tag.set``) the gate:

1. asks MLflow for the version's download URI (``model-versions/get-download-uri``: the
   artifacts the version points at, without the ``registered_model_meta`` file that a
   ``models:/`` download adds) and downloads them into a private temporary directory:
   ``mlflow-artifacts:`` URIs through the tracking server's artifact API with the standard
   library, any other remote URI (``s3://``, ``gs://``, ...) through the MLflow client
   (``mlflow-skinny``, the ``custody[mlflow]`` extra). A path on the MLflow host's own disk
   is not read;
2. hashes them with :func:`custody.provenance.hashing.files.hash_path`: the directory MLflow
   stores (an MLmodel directory: ``MLmodel``, the weights, ``requirements.txt``, ...) gives a
   ``sha256-manifest-v1`` root digest, a version whose source is one file gives its sha256;
3. finds the ledger record of that digest and verifies it and its upstream chain with the
   service's verify-by-digest (:func:`custody.provenance.verification.digest.verify_digest`).
   The model-version tag ``custody.artifact`` (``NAME@VERSION``, ``NAME`` or ``sha256:HEX``)
   may only narrow the match: a ref whose digest is not the bytes' is refused
   (``mlflow.tag_mismatch``), never believed.

The verdict goes back through MLflow's REST API: tags ``custody.verdict`` (``verified``,
``refused`` or ``unknown``), ``custody.digest``, ``custody.ref``, and ``custody.rule`` /
``custody.reason`` saying why not; only a tag whose value changes is written, so the gate's own
writes do not make it loop. A verified new version gets the alias (``custody-verified`` by
default); a version that does not verify never keeps it (the alias is removed from it, so a
deployment loading ``models:/NAME@custody-verified`` fails closed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from custody.errors import (
    ArtifactError,
    LedgerError,
    NotFoundError,
    RefusedError,
    UsageError,
    VerificationError,
    WebhookSignatureError,
)
from custody.provenance.hashing.files import hash_path
from custody.provenance.hashing.manifest import Manifest
from custody.provenance.integrations.mlflow_rest import (
    MlflowRest,
    download_version,
)
from custody.provenance.ledger.delivery_table import WebhookDelivery
from custody.provenance.ledger.models import table_of
from custody.provenance.ledger.store import Ledger
from custody.provenance.log.checkpoint import NoteVerifier
from custody.provenance.policy.core import Policy
from custody.provenance.verification.digest import RecordCheck, check_version, verify_digest

_TAG_REF = "custody.artifact"  # set by the user: the ledger ref expected (narrows only)
_TAG_VERDICT = "custody.verdict"
_TAG_DIGEST = "custody.digest"
_TAG_VERIFIED_REF = "custody.ref"
_TAG_RULE = "custody.rule"
_TAG_REASON = "custody.reason"
_VERDICTS = ("verified", "refused", "unknown")
SOURCE = "mlflow"
_MAX_DELIVERY_ID = 200
_REASON_LIMIT = 500

_DELIVERY_HINT = ("deliver through an MLflow registry webhook created with this secret: it sends "
                  "X-MLflow-Signature, X-MLflow-Delivery-Id and X-MLflow-Timestamp")


def check_signature(secret: str, *, body: bytes, delivery_id: str | None,
                    timestamp: str | None, signature: str | None, max_age: int,
                    now: float | None = None) -> int:
    """Check the delivery's HMAC and timestamp; the timestamp it was signed with."""
    if not (delivery_id and timestamp and signature):
        raise WebhookSignatureError("missing X-MLflow-Signature, X-MLflow-Delivery-Id or "
                                    "X-MLflow-Timestamp", hint=_DELIVERY_HINT)
    if len(delivery_id) > _MAX_DELIVERY_ID:
        raise WebhookSignatureError(f"X-MLflow-Delivery-Id is longer than {_MAX_DELIVERY_ID} "
                                    "characters", hint=_DELIVERY_HINT)
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
        raise WebhookSignatureError("the delivery is not UTF-8", hint=_DELIVERY_HINT) from None
    mac = hmac.new(secret.encode("utf-8"), f"{delivery_id}.{timestamp}.{text}".encode(),
                   hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode("ascii")
    offered = [s.strip() for s in signature.split(" ") if s.strip()]
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in offered):
        raise WebhookSignatureError("the delivery's HMAC signature does not match",
                                    hint="the webhook secret differs from "
                                    "CUSTODY_MLFLOW_WEBHOOK_SECRET")
    return sent


# --- replay: each delivery id once within the signature window ---------------------------


_DELIVERIES = table_of(WebhookDelivery)
_MIGRATE = "run `custody migrate` if the ledger predates webhook replay protection (0006)"


def remember_delivery(engine: Engine, delivery_id: str, sent_at: int, *, window: int,
                      now: float | None = None) -> None:
    """Keep ``delivery_id``; refuse it if it was accepted before (``mlflow.replayed``).

    Rows whose signed timestamp is older than the window are deleted first: a replay of one of
    them is refused by its timestamp, so they protect nothing any more."""
    clock = now if now is not None else time.time()
    values = {"source": SOURCE, "delivery_id": delivery_id, "sent_at": sent_at,
              "received_at": datetime.fromtimestamp(clock, UTC)}
    try:
        with engine.begin() as conn:
            conn.execute(delete(_DELIVERIES).where(_DELIVERIES.c.source == SOURCE,
                                                   _DELIVERIES.c.sent_at < clock - window))
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING
            added = conn.execute(insert(_DELIVERIES).values(values).on_conflict_do_nothing(
                index_elements=["source", "delivery_id"]).returning(
                    _DELIVERIES.c.delivery_id)).first() is not None
    except (DBAPIError, SQLAlchemyError) as exc:
        raise LedgerError(f"cannot record the webhook delivery: {type(exc).__name__}",
                          hint=_MIGRATE) from None
    if not added:
        raise VerificationError(
            f"MLflow delivery {delivery_id} was already accepted: a replay", rule="mlflow.replayed",
            subject=delivery_id,
            hint="nothing to do if MLflow retried a delivery that was answered; a replay by "
            "someone else means the webhook secret leaked: rotate it in MLflow and in "
            "CUSTODY_MLFLOW_WEBHOOK_SECRET")


def forget_delivery(engine: Engine, delivery_id: str) -> None:
    """Drop a delivery that could not be handled (MLflow or the ledger was unavailable), so
    that MLflow's retry of it is handled rather than refused as a replay."""
    try:
        with engine.begin() as conn:
            conn.execute(delete(_DELIVERIES).where(_DELIVERIES.c.source == SOURCE,
                                                   _DELIVERIES.c.delivery_id == delivery_id))
    except (DBAPIError, SQLAlchemyError) as exc:
        raise LedgerError(f"cannot release the webhook delivery: {type(exc).__name__}",
                          hint=_MIGRATE) from None


# --- events ------------------------------------------------------------------------------------

# The payloads MLflow's "Test webhook" sends (mlflow.webhooks.types, ``example()``): signed like
# any delivery, about a model that does not exist.
_TEST_PAYLOADS: dict[tuple[str, str], dict[str, Any]] = {
    ("registered_model", "created"): {"name": "example_model",
                                      "tags": {"example_key": "example_value"},
                                      "description": "An example registered model"},
    ("model_version", "created"): {"name": "example_model", "version": "1",
                                   "source": "models:/123", "run_id": "abcd1234abcd5678",
                                   "tags": {"example_key": "example_value"},
                                   "description": "An example model version"},
    ("model_version_tag", "set"): {"name": "example_model", "version": "1",
                                   "key": "example_key", "value": "example_value"},
    ("model_version_tag", "deleted"): {"name": "example_model", "version": "1",
                                       "key": "example_key"},
    ("model_version_alias", "created"): {"name": "example_model", "alias": "example_alias",
                                         "version": "1"},
    ("model_version_alias", "deleted"): {"name": "example_model", "alias": "example_alias"},
}
GATED_EVENTS = ("model_version.created", "model_version_alias.created",
                "model_version_tag.set")


@dataclass(frozen=True)
class RegistryEvent:
    entity: str
    action: str
    data: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.entity}.{self.action}"

    def is_test(self) -> bool:
        """MLflow's "Test webhook" delivery: its example payload (or, for an event this module
        does not list, the example model with MLflow's example tag)."""
        known = _TEST_PAYLOADS.get((self.entity, self.action))
        if known is not None:
            return self.data == known
        return self.data.get("name") in ("example_model", "example_prompt") and (
            self.data.get("key") == "example_key"
            or self.data.get("tags") == {"example_key": "example_value"}
            or self.data.get("alias") == "example_alias")

    def version_event(self, alias: str) -> VersionEvent | None:
        """The model version the gate must judge, or None when this event changes nothing a
        deployment loads (another alias, a tag not of Custody, another entity)."""
        kind = {"model_version.created": "created", "model_version_alias.created": "alias",
                "model_version_tag.set": "tag"}.get(self.key)
        if kind is None:
            return None
        name, version = self.data.get("name"), self.data.get("version")
        if not isinstance(name, str) or not name or version is None or \
                isinstance(version, dict | list | bool):
            raise UsageError(f"{self.key} without data.name and data.version",
                             hint="send MLflow's own payload for this event")
        if kind == "alias" and self.data.get("alias") != alias:
            return None
        if kind == "tag" and not str(self.data.get("key", "")).startswith("custody."):
            return None
        return VersionEvent(kind, name, str(version))


@dataclass(frozen=True)
class VersionEvent:
    kind: str  # created | alias | tag
    name: str
    version: str


def parse_event(body: bytes) -> RegistryEvent:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError("the delivery is not JSON") from None
    if not isinstance(data, dict):
        raise UsageError("the delivery is not a JSON object")
    entity, action, payload = data.get("entity"), data.get("action"), data.get("data")
    if not isinstance(entity, str) or not isinstance(action, str):
        raise UsageError("the delivery names no entity and action",
                         hint="send MLflow's webhook payload: {entity, action, timestamp, data}")
    return RegistryEvent(entity, action, payload if isinstance(payload, dict) else {})


# --- the verdict -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GateVerdict:
    verdict: str  # verified | refused | unknown
    digest: str | None = None
    ref: str | None = None  # the ledger record the bytes are (when one was found)
    rule: str | None = None
    message: str | None = None
    check: RecordCheck | None = field(default=None, compare=False)

    @property
    def verified(self) -> bool:
        return self.verdict == "verified"

    def tags(self) -> dict[str, str | None]:
        """The ``custody.*`` tags this verdict sets (None: the tag is removed)."""
        reason = None if self.message is None else self.message[:_REASON_LIMIT]
        return {_TAG_VERDICT: self.verdict, _TAG_DIGEST: self.digest,
                _TAG_VERIFIED_REF: self.ref if self.verified else None,
                _TAG_RULE: self.rule, _TAG_REASON: reason}


def judge(ledger: Ledger, policy: Policy, verifier: NoteVerifier | None, manifest: Manifest,
          pinned: str | None) -> GateVerdict:
    """The verdict on bytes whose manifest is ``manifest``; ``pinned`` (the tag
    ``custody.artifact``) may only narrow the record they are matched to."""
    digest = manifest.ref
    name: str | None = None
    expected = None
    if pinned:
        pinned = pinned.strip()
        if "@" in pinned or pinned.startswith("sha256"):
            try:
                expected = ledger.resolve(pinned)
            except (NotFoundError, UsageError) as exc:
                return _mismatch(digest, f"the tag {_TAG_REF}={pinned} names no recorded version "
                                 f"({exc.message}); the version's bytes are {digest}")
            if (expected.digest_algorithm, expected.digest) != (manifest.algorithm,
                                                                manifest.digest):
                return _mismatch(
                    digest, f"the tag {_TAG_REF}={pinned} names {expected.ref}, recorded as "
                    f"{expected.digest_algorithm}:{expected.digest}, but the version's bytes "
                    f"are {digest}", ref=expected.ref)
            name = expected.name
        else:
            name = pinned
    try:
        result = verify_digest(ledger, policy, verifier, digest=digest, name=name)
        if expected is not None and result.node.ref != expected.ref:
            # the same bytes recorded more than once: the tag chooses which record is checked
            result = check_version(ledger, policy, verifier, expected)
    except RefusedError as exc:
        recorded = [v for v in ledger.find_by_digest(manifest.algorithm, manifest.digest)
                    if name is None or v.name == name]
        if exc.rule == "record.not_found" and name is not None and expected is None and \
                ledger.find_by_digest(manifest.algorithm, manifest.digest):
            return _mismatch(digest, f"the tag {_TAG_REF}={pinned} names {name}, but the "
                             f"version's bytes {digest} are recorded under another name")
        ref = expected.ref if expected is not None else recorded[-1].ref if recorded else None
        return GateVerdict("refused", digest, ref, exc.rule, exc.message)
    return GateVerdict("verified", digest, result.node.ref, check=result)


def _mismatch(digest: str, message: str, ref: str | None = None) -> GateVerdict:
    return GateVerdict("refused", digest, ref, rule="mlflow.tag_mismatch", message=message)


@dataclass
class GateOutcome:
    """What the gate decided for one version and what it changed in MLflow."""

    model: str
    version: str
    verdict: GateVerdict
    event: str
    tags_set: dict[str, str] = field(default_factory=dict)
    tags_removed: list[str] = field(default_factory=list)
    alias_set: bool = False
    alias_removed: bool = False

    def to_json(self, alias: str) -> dict[str, Any]:
        v = self.verdict
        out: dict[str, Any] = {"handled": True, "event": self.event, "model": self.model,
                               "version": self.version, "verdict": v.verdict,
                               "digest": v.digest, "ref": v.ref, "bytes_checked": True}
        if v.rule:
            out.update(rule=v.rule, message=v.message)
        out.update(tags_set=self.tags_set, tags_removed=self.tags_removed, alias=alias,
                   alias_set=self.alias_set, alias_removed=self.alias_removed)
        return out


def gate(rest: MlflowRest, ledger: Ledger, policy: Policy, verifier: NoteVerifier | None,
         event: VersionEvent, *, alias: str) -> GateOutcome:
    """Download, hash, verify and write the verdict back for one model version."""
    info = rest.get_model_version(event.name, event.version)
    with tempfile.TemporaryDirectory(prefix="custody-mlflow-") as tmp:  # mode 0700
        try:
            local = download_version(rest, rest.download_uri(event.name, event.version),
                                     Path(tmp) / "artifacts")
            manifest = hash_path(local)
        except ArtifactError as exc:
            verdict = GateVerdict("unknown", rule="mlflow.unresolved", message=exc.message)
        else:
            verdict = judge(ledger, policy, verifier, manifest, info.tags.get(_TAG_REF))
    outcome = GateOutcome(event.name, event.version, verdict,
                          {"created": "model_version.created",
                           "alias": "model_version_alias.created",
                           "tag": "model_version_tag.set"}[event.kind])
    for key, value in verdict.tags().items():
        if value is None and key in info.tags:
            rest.delete_tag(event.name, event.version, key)
            outcome.tags_removed.append(key)
        elif value is not None and info.tags.get(key) != value:
            rest.set_tag(event.name, event.version, key, value)
            outcome.tags_set[key] = value
    if verdict.verified and event.kind == "created" and alias not in info.aliases:
        rest.set_alias(event.name, alias, event.version)
        outcome.alias_set = True
    elif not verdict.verified and alias in info.aliases:
        rest.delete_alias(event.name, alias)
        outcome.alias_removed = True
    return outcome
