"""Every sigstore-python row of tests/vectors/sigstore/README.md through Custody's verifier.

Real Fulcio certificates and Rekor entries, pinned trust roots, no network. Mutations of the
transparency-log entry are made in memory on a copy of the bundle JSON.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import vector_paths as _paths

from custody.errors import KeyMaterialError, UsageError, VerificationError
from custody.signing.bundle_info import BundleKind, classify_bundle, keyless_facts
from custody.signing.interface import BundleVerifier
from custody.signing.sigstore_verify import (
    IdentityPolicy,
    SigstoreTrust,
    SigstoreVerifier,
    check_subjects,
    load_trusted_root,
    verify_artifact,
    verify_dsse,
)
from custody.signing.statement import Statement

VECTORS = _paths.vector_folder("sigstore")
VALID = VECTORS / "sigstore-python" / "valid"
INVALID = VECTORS / "sigstore-python" / "invalid"
STAGING = SigstoreTrust(trusted_root=VECTORS / "trust" / "staging.trusted_root.json")
PRODUCTION = SigstoreTrust(trusted_root=VECTORS / "trust" / "production.trusted_root.json")

GH_OAUTH = "https://github.com/login/oauth"
GHA = "https://token.actions.githubusercontent.com"
WILLIAM = IdentityPolicy(GH_OAUTH, identity="william@yossarian.net")
BEACON = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
          ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")



def _sha(artifact: Path | bytes) -> str:
    """The SHA-256 (hex) that verify_artifact takes: callers hash, signing never reads files."""
    data = artifact.read_bytes() if isinstance(artifact, Path) else artifact
    return hashlib.sha256(data).hexdigest()

def refused(rule: str, call: Callable[[], object], *needles: str) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        call()
    assert info.value.rule == rule, (info.value.rule, info.value.message)
    for needle in needles:
        assert needle in info.value.message, (needle, info.value.message)
    return info.value


V3_SHA = _sha(VALID / "bundle_v3.txt")


def v3_bundle() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VALID / "bundle_v3.txt.sigstore").read_text())
    return data


def flip_b64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# --- valid bundles -------------------------------------------------------------------------


def test_bundle_v3_verifies_with_identity_and_issuer() -> None:
    facts = verify_artifact(V3_SHA, (VALID / "bundle_v3.txt.sigstore")
                            .read_text(), WILLIAM, STAGING)
    assert facts.identity == "william@yossarian.net"
    assert facts.issuer == GH_OAUTH
    assert facts.log_index == 25915956
    assert facts.integrated_time is not None
    assert facts.integrated_time.year == 2024
    assert facts.entry_kind == "hashedrekord/0.0.1"


def test_bundle_v3_verifies_from_bytes_too() -> None:
    verify_artifact(_sha((VALID / "bundle_v3.txt").read_bytes()),
                    (VALID / "bundle_v3.txt.sigstore").read_bytes(), WILLIAM, STAGING)


def test_identity_regexp_must_match_the_whole_san() -> None:
    bundle = (VALID / "bundle_v3.txt.sigstore").read_text()
    ok = IdentityPolicy(GH_OAUTH, identity_regexp=r"[a-z]+@yossarian\.net")
    verify_artifact(V3_SHA, bundle, ok, STAGING)
    partial = IdentityPolicy(GH_OAUTH, identity_regexp="william")
    refused("sigstore.identity",
            lambda: verify_artifact(V3_SHA, bundle, partial, STAGING),
            "do not match")
    wrong_issuer = IdentityPolicy("https://accounts.google.com", identity_regexp=".*")
    refused("sigstore.identity",
            lambda: verify_artifact(V3_SHA, bundle, wrong_issuer, STAGING),
            "OIDCIssuer does not match")


def test_legacy_v01_bundle_verifies() -> None:
    facts = verify_artifact(_sha(VALID / "bundle.txt"), (VALID / "bundle.txt.sigstore").read_text(),
                            IdentityPolicy(GH_OAUTH, identity="a@tny.town"), STAGING)
    assert facts.identity == "a@tny.town"


def test_rekor_v2_bundle_with_rfc3161_timestamp_verifies() -> None:
    facts = verify_artifact(_sha(VALID / "staging-rekor-v2.txt"),
                            (VALID / "staging-rekor-v2.txt.sigstore.json").read_text(),
                            IdentityPolicy(GH_OAUTH, identity="jku@goto.fi"), STAGING)
    assert facts.entry_kind == "hashedrekord/0.0.2"
    assert facts.integrated_time is None
    assert facts.timestamp is not None
    assert facts.signed_at == facts.timestamp


def test_dsse_bundle_verifies_and_names_its_signer() -> None:
    bundle = (VALID / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_text()
    verified = verify_dsse(bundle, IdentityPolicy(GHA, identity=BEACON), STAGING)
    assert verified.signer == f"{BEACON} ({GHA})"
    assert verified.facts.identity == BEACON
    assert verified.facts.issuer == GHA
    statement = Statement.from_bytes(verified.payload)
    assert statement.subjects[0].name == "a.txt"


def test_sigstore_verifier_is_a_bundle_verifier() -> None:
    verifier: BundleVerifier = SigstoreVerifier(IdentityPolicy(GHA, identity=BEACON), STAGING)
    bundle = (VALID / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_bytes()
    assert verifier.verify_bundle(bundle, source="a.dsse").payload_type == \
        "application/vnd.in-toto+json"


def test_dsse_subject_is_compared_with_the_real_artifact() -> None:
    bundle = (VALID / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_text()
    verified = verify_dsse(bundle, IdentityPolicy(GHA, identity=BEACON), STAGING)
    artifact = VALID / "a.dsse.staging-rekor-v2.txt"
    actual = hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert actual.startswith("e248a5db")
    refused("statement.subject_mismatch",
            lambda: check_subjects(verified.payload, {artifact.name: actual}), "a.txt")
    refused("statement.subject_mismatch", lambda: check_subjects(verified.payload, actual))
    # The digest the statement does name is accepted, by digest or by name and digest.
    signed = Statement.from_bytes(verified.payload).subjects[0].digest["sha256"]
    assert signed.startswith("a0cfc712")
    check_subjects(verified.payload, {"a.txt": signed}, match_names=True)
    check_subjects(verified.payload, f"sha256:{signed}")
    refused("statement.subject_mismatch",
            lambda: check_subjects(verified.payload, {"b.txt": signed}, match_names=True))


def test_trusted_root_may_be_a_client_trust_config(tmp_path: Path) -> None:
    config = {
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": json.loads((VECTORS / "trust" / "staging.trusted_root.json").read_text()),
        "signingConfig": json.loads(
            (VECTORS / "trust" / "staging.signing_config.v0.2.json").read_text()),
    }
    path = tmp_path / "trust_config.json"
    path.write_text(json.dumps(config))
    verify_artifact(V3_SHA, (VALID / "bundle_v3.txt.sigstore").read_text(),
                    WILLIAM, SigstoreTrust(trusted_root=path))


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "needle"), [
    (IdentityPolicy(GH_OAUTH, identity="mallory@example.com"), "SANs do not match"),
    (IdentityPolicy("https://accounts.google.com", identity="william@yossarian.net"),
     "OIDCIssuer does not match"),
])
def test_wrong_identity_or_issuer_is_refused(policy: IdentityPolicy, needle: str) -> None:
    bundle = (VALID / "bundle_v3.txt.sigstore").read_text()
    error = refused("sigstore.identity",
                    lambda: verify_artifact(V3_SHA, bundle, policy, STAGING),
                    needle)
    assert error.hint and "--issuer" in error.hint


def test_tampered_artifact_is_refused() -> None:
    data = (VALID / "bundle_v3.txt").read_bytes() + b"\n"
    refused("sigstore.artifact",
            lambda: verify_artifact(_sha(data), (VALID / "bundle_v3.txt.sigstore").read_text(),
                                    WILLIAM, STAGING),
            "Bundle message digest mismatch")


def test_wrong_trust_root_is_refused() -> None:
    error = refused("sigstore.chain",
                    lambda: verify_artifact(V3_SHA,
                                            (VALID / "bundle_v3.txt.sigstore").read_text(),
                                            WILLIAM, PRODUCTION))
    assert error.hint and "--staging" in error.hint


def _set_proof_hash(entry: dict[str, Any]) -> None:
    entry["inclusionProof"]["hashes"][0] = flip_b64(entry["inclusionProof"]["hashes"][0])


def _set_root_hash(entry: dict[str, Any]) -> None:
    entry["inclusionProof"]["rootHash"] = flip_b64(entry["inclusionProof"]["rootHash"])


def _set_set(entry: dict[str, Any]) -> None:
    promise = entry["inclusionPromise"]
    promise["signedEntryTimestamp"] = flip_b64(promise["signedEntryTimestamp"])


def _set_time(entry: dict[str, Any]) -> None:
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)


def _set_index(entry: dict[str, Any]) -> None:
    entry["logIndex"] = str(int(entry["logIndex"]) + 1)


@pytest.mark.parametrize(("mutate", "needle"), [
    (_set_proof_hash, "inclusion proof"),
    (_set_root_hash, "inclusion proof"),
    (_set_set, "SET"),
    (_set_time, "SET"),
    (_set_index, "SET"),
], ids=["proof-hash", "root-hash", "set", "integrated-time", "log-index"])
def test_altered_log_entry_is_refused(mutate: Callable[[dict[str, Any]], None],
                                      needle: str) -> None:
    data = v3_bundle()
    original = copy.deepcopy(data)
    mutate(data["verificationMaterial"]["tlogEntries"][0])
    assert data != original
    error = refused("sigstore.tlog",
                    lambda: verify_artifact(V3_SHA, json.dumps(data), WILLIAM,
                                            STAGING),
                    "invalid log entry", needle)
    assert error.subject == "bundle"


def test_missing_log_entry_is_refused() -> None:
    data = v3_bundle()
    data["verificationMaterial"]["tlogEntries"] = []
    refused("sigstore.bundle",
            lambda: verify_artifact(V3_SHA, json.dumps(data), WILLIAM, STAGING),
            "expected exactly one log entry")


def test_dsse_bundle_is_refused_as_a_plain_artifact_signature() -> None:
    bundle = (VALID / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_text()
    error = refused("sigstore.bundle",
                    lambda: verify_artifact(_sha(VALID / "a.dsse.staging-rekor-v2.txt"), bundle,
                                            IdentityPolicy(GHA, identity=BEACON), STAGING),
                    "Missing bundle message signature")
    assert error.hint and "DSSE" in error.hint


def test_artifact_bundle_is_refused_as_a_dsse_bundle() -> None:
    refused("sigstore.bundle",
            lambda: verify_dsse((VALID / "bundle_v3.txt.sigstore").read_text(), WILLIAM,
                                STAGING),
            "without a DSSE envelope")


def test_cve_2022_36056_log_entry_for_another_artifact_is_refused() -> None:
    bundle = (INVALID / "bundle_cve_2022_36056.txt.sigstore").read_text()
    refused("sigstore.tlog",
            lambda: verify_artifact(_sha(INVALID / "bundle_cve_2022_36056.txt"), bundle, WILLIAM,
                                    STAGING),
            "transparency log entry is inconsistent with other materials")


@pytest.mark.parametrize(("name", "needle"), [
    ("bundle_no_log_entry.txt.sigstore", "expected exactly one log entry in bundle"),
    ("bundle_no_checkpoint.txt.sigstore", "entry must contain inclusion proof, with checkpoint"),
    ("bundle_v3_no_signed_time.txt.sigstore.json",
     "bundle must contain an inclusion promise or signed timestamp(s)"),
])
def test_invalid_bundles_are_refused(name: str, needle: str) -> None:
    artifact = INVALID / name.split(".sigstore", maxsplit=1)[0]
    refused("sigstore.bundle",
            lambda: verify_artifact(_sha(artifact), (INVALID / name).read_text(), WILLIAM, STAGING),
            needle)


def test_malformed_bundle_is_refused() -> None:
    refused("sigstore.bundle",
            lambda: verify_artifact(_sha(b"x"), "{not json", WILLIAM, STAGING))


# --- policy, trust and facts ---------------------------------------------------------------


def test_identity_policy_needs_issuer_and_exactly_one_identity_form() -> None:
    with pytest.raises(UsageError):
        IdentityPolicy("", identity="a@b")
    with pytest.raises(UsageError):
        IdentityPolicy(GH_OAUTH)
    with pytest.raises(UsageError):
        IdentityPolicy(GH_OAUTH, identity="a", identity_regexp="a")
    with pytest.raises(UsageError):
        IdentityPolicy(GH_OAUTH, identity_regexp="(")


def test_unreadable_or_bogus_trust_root_is_an_operational_error(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError):
        load_trusted_root(SigstoreTrust(trusted_root=tmp_path / "missing.json"))
    bogus = tmp_path / "root.json"
    bogus.write_text('{"mediaType": "nope"}')
    with pytest.raises(KeyMaterialError):
        load_trusted_root(SigstoreTrust(trusted_root=bogus))


@pytest.mark.parametrize(("path", "kind"), [
    (VALID / "bundle_v3.txt.sigstore", BundleKind.KEYLESS_ARTIFACT),
    (VALID / "bundle.txt.sigstore", BundleKind.KEYLESS_ARTIFACT),
    (VALID / "a.dsse.staging-rekor-v2.txt.sigstore.json", BundleKind.KEYLESS_DSSE),
    (VECTORS / "model-transparency" / "v1.1.0-sigstore" / "model.sig", BundleKind.KEYLESS_DSSE),
    (VECTORS / "model-transparency" / "v1.1.0-certificate" / "model.sig",
     BundleKind.X509_CHAIN),
    (VECTORS / "model-transparency" / "v1.1.0-elliptic-key" / "model.sig", BundleKind.KEY),
    (VECTORS / "model-transparency" / "v1.0.0-elliptic-key" / "model.sig", BundleKind.KEY),
], ids=lambda v: v.name if isinstance(v, Path) else str(v))
def test_bundle_kind_is_recognised(path: Path, kind: BundleKind) -> None:
    assert classify_bundle(path.read_text()) is kind


def test_keyless_facts_for_the_ledger() -> None:
    facts = keyless_facts((VALID / "bundle_v3.txt.sigstore").read_text())
    stored = facts.to_json()
    assert stored["identity"] == "william@yossarian.net"
    assert stored["issuer"] == GH_OAUTH
    assert stored["log_index"] == 25915956
    assert str(stored["integrated_time"]).startswith("2024-04-02T19:19:09")
