"""``POST /v1/records``: append a record that a client hashed, scanned and signed itself.

The service trusts nothing in the request: the bundle must verify with the policy's signers, its
statement must be a well-formed Custody record whose manifest matches its subject, every input
must be recorded with the digest the statement names, the version must be the next one (it is
checked under the append lock, inside the transaction), and a flagged scan is refused unless the
client asks to record it as flagged. The append itself is the ledger's own append path.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from custody.domain import ACTIVITIES, KINDS
from custody.errors import UsageError, VerificationError, VersionConflict
from custody.provenance.hashing.manifest import Manifest
from custody.provenance.ledger.append import InputLink, SignedRecord
from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger, check_name
from custody.provenance.policy.core import Policy
from custody.provenance.verification.attestation import parse_claims
from custody.signing.bundle_info import (
    BundleKind,
    classify_bundle,
    keyless_facts,
    load_bundle_json,
)
from custody.signing.keys import key_hint, public_pem
from custody.signing.oms import SINGLE_FILE, parse_oms_statement
from custody.signing.statement import Statement

SOURCE = "submitted bundle"


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return json.dumps(value)
    raise UsageError(f"{what} must be the bundle JSON (an object or a string)")


def append_signed(ledger: Ledger, policy: Policy, body: dict[str, Any]) -> ArtifactVersionPublic:
    bundle = _text(body.get("bundle"), "bundle")
    allow_flagged = body.get("allow_flagged", False)
    if not isinstance(allow_flagged, bool):
        raise UsageError("allow_flagged must be true or false")
    claimed = _unverified_payload(bundle)
    claims = parse_claims(Statement.from_bytes(claimed), source=SOURCE)
    check_name(claims.name)
    # The signers trusted for this kind and name decide; then the payload they verified must be
    # the one the claims were read from.
    verified = policy.verifier_for(claims.kind, claims.name).verify_bundle(bundle, source=SOURCE)
    if verified.payload != claimed:
        raise VerificationError(f"{SOURCE}: the verified payload is not the envelope's payload",
                                rule="signature.invalid", subject=SOURCE)
    if claims.kind not in KINDS:
        raise UsageError(f"unknown kind {claims.kind!r}", hint=f"use one of: {', '.join(KINDS)}")
    links: list[InputLink] = []
    for item in claims.inputs:
        if item.activity not in ACTIVITIES:
            raise UsageError(f"unknown activity {item.activity!r}",
                             hint=f"use one of: {', '.join(ACTIVITIES)}")
        upstream = ledger.resolve(f"{item.name}@{item.version}")
        if (upstream.digest_algorithm, upstream.digest) != (item.algorithm, item.digest):
            raise VerificationError(
                f"input {upstream.ref} has digest {upstream.digest[:16]}… in the ledger but "
                f"{item.digest[:16]}… in the signed statement",
                rule="chain.digest_mismatch", subject=upstream.ref)
        links.append(InputLink(version=upstream, activity=item.activity))
    if len({link.version.id for link in links}) != len(links):
        raise UsageError("the statement lists the same input twice")
    verdict = str(claims.scan.get("verdict", "error"))
    if verdict != "clean" and not allow_flagged:
        raise VerificationError(
            f"{claims.name}@{claims.version} was scanned with verdict {verdict!r}",
            rule="scan.flagged",
            hint="send allow_flagged: true to record it as flagged (verify then refuses it and "
            "everything made from it)",
            subject=f"{claims.name}@{claims.version}")
    if body.get("oms_bundle") is not None and claims.kind != "model":
        raise UsageError("oms_bundle is for models only")
    oms_bundle = _oms(body.get("oms_bundle"), claims.name, claims.manifest, policy)
    signer_key = _signer_key(policy, verified.signer)
    keyless = _keyless(bundle)
    scan_report = body.get("scan_report")
    report: dict[str, Any] = dict(claims.scan)
    if isinstance(scan_report, dict):
        if scan_report.get("verdict") != verdict:
            raise UsageError("scan_report.verdict differs from the signed scan verdict")
        report = scan_report

    def build(version: int) -> SignedRecord:
        if version != claims.version:
            raise VersionConflict(
                f"the statement is signed for {claims.name}@{claims.version}, but the next "
                f"version is {version}",
                hint=f"sign the statement again for version {version}",
                subject=f"{claims.name}@{claims.version}")
        return SignedRecord(statement=verified.payload, bundle=bundle, signer=verified.signer,
                            scan_report=report, signer_key=signer_key, oms_bundle=oms_bundle,
                            keyless=keyless)

    return ledger.append_version(name=claims.name, kind=claims.kind, manifest=claims.manifest,
                                 inputs=links, build=build)


def _signer_key(policy: Policy, signer: str) -> str | None:
    if not signer.startswith("key:"):
        return None
    hint = signer.removeprefix("key:")
    keys = [*policy.trusted_keys, *(k for rule in policy.rules for k in rule.signers.keys)]
    for key in keys:
        if key_hint(key) == hint:
            return public_pem(key).decode("ascii")
    raise VerificationError(f"{SOURCE}: signer {signer} is not a trusted key",
                            rule="signature.untrusted_key", subject=SOURCE)


def _unverified_payload(bundle: str) -> bytes:
    """The DSSE payload as the envelope carries it (verified right after)."""
    envelope = load_bundle_json(bundle, source=SOURCE).get("dsseEnvelope")
    payload = envelope.get("payload") if isinstance(envelope, dict) else None
    if not isinstance(payload, str):
        raise VerificationError(f"{SOURCE} carries no DSSE envelope", rule="bundle.malformed",
                                subject=SOURCE)
    try:
        return base64.b64decode(payload, validate=True)
    except ValueError:
        raise VerificationError(f"{SOURCE}: the DSSE payload is not base64",
                                rule="bundle.malformed", subject=SOURCE) from None


def _keyless(bundle: str) -> dict[str, Any] | None:
    if classify_bundle(bundle, source=SOURCE) not in (BundleKind.KEYLESS_DSSE,
                                                      BundleKind.KEYLESS_ARTIFACT):
        return None
    return keyless_facts(bundle, source=SOURCE).to_json()


def _oms(raw: Any, name: str, manifest: Manifest, policy: Policy) -> str | None:
    """A model's OpenSSF Model Signing bundle, if sent: trusted and about the same files."""
    if raw is None:
        return None
    text = _text(raw, "oms_bundle")
    source = "submitted OMS bundle"
    verified = policy.verifier_for("model", name).verify_bundle(text, source=source)
    oms = parse_oms_statement(verified.payload, source=source)
    files = ({SINGLE_FILE: manifest.files[0].sha256} if not manifest.is_directory
             else {f.relpath: f.sha256 for f in manifest.files})
    if oms.digests() != files:
        raise VerificationError(f"{source} is about other files than the record's manifest",
                                rule="statement.subject_mismatch", subject=source)
    return text
