"""The model-transparency rows of tests/vectors/sigstore/README.md through Custody's OMS verifier.

Key (v1.0.0 rawBytes and v1.1.0 hint), certificate-chain and Sigstore keyless signatures made
by model_signing verify; copies with a changed, missing or extra file do not.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support import vector_paths as _paths

from custody.errors import VerificationError
from custody.provenance.verification.oms_files import (
    build_oms_statement,
    hash_model,
    verify_model,
)
from custody.signing.cert_signer import CertChainVerifier
from custody.signing.interface import BundleVerifier
from custody.signing.key_signer import ECKeySigner
from custody.signing.keys import load_public_key
from custody.signing.oms import OMS_PREDICATE, OmsKeyVerifier, parse_oms_statement
from custody.signing.sigstore_verify import (
    IdentityPolicy,
    SigstoreTrust,
    SigstoreVerifier,
    check_subjects,
    verify_dsse,
)
from custody.signing.statement import Statement, Subject

VECTORS = _paths.vector_folder("sigstore")
MT = VECTORS / "model-transparency"
KEYS = MT / "keys"
IBM = "https://sigstore.verify.ibm.com/oauth2"
STEFAN = IdentityPolicy(IBM, identity="stefanb@us.ibm.com")
PRODUCTION = SigstoreTrust(trusted_root=VECTORS / "trust" / "production.trusted_root.json")
STAGING = SigstoreTrust(trusted_root=VECTORS / "trust" / "staging.trusted_root.json")


def refused(rule: str, call: Callable[[], object], *needles: str) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        call()
    assert info.value.rule == rule, (info.value.rule, info.value.message)
    for needle in needles:
        assert needle in info.value.message, (needle, info.value.message)
    return info.value


def key_verifier() -> OmsKeyVerifier:
    return OmsKeyVerifier([load_public_key(KEYS / "signing-key-pub.pem")])


def cert_verifier() -> CertChainVerifier:
    return CertChainVerifier.from_files([KEYS / "ca-cert.pem"])


def keyless_verifier(trust: SigstoreTrust = PRODUCTION,
                     policy: IdentityPolicy = STEFAN) -> SigstoreVerifier:
    return SigstoreVerifier(policy, trust)


VERIFIERS: dict[str, Callable[[], BundleVerifier]] = {
    "v1.1.0-elliptic-key": key_verifier,
    "v1.1.0-certificate": cert_verifier,
    "v1.1.0-sigstore": keyless_verifier,
}


@pytest.fixture
def copy_of(tmp_path: Path) -> Callable[[str], Path]:
    def make(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(MT / name, target)
        return target
    return make


# --- the signatures verify -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_model_signing_v110_signatures_verify(name: str) -> None:
    model = MT / name
    result = verify_model(model, model / "model.sig", VERIFIERS[name]())
    assert [r.name for r in result.manifest.resources] == ["signme-1", "signme-2"]
    assert "ignore-me" in result.manifest.ignore_paths
    assert "model.sig" in result.manifest.ignore_paths


def test_signers_are_named() -> None:
    assert verify_model(MT / "v1.1.0-elliptic-key", MT / "v1.1.0-elliptic-key" / "model.sig",
                        key_verifier()).signer.startswith("key:e8450dec4eb99dae")
    assert verify_model(MT / "v1.1.0-certificate", MT / "v1.1.0-certificate" / "model.sig",
                        cert_verifier()).signer == "x509:CN=intermediate-ca"
    assert verify_model(MT / "v1.1.0-sigstore", MT / "v1.1.0-sigstore" / "model.sig",
                        keyless_verifier()).signer == f"stefanb@us.ibm.com ({IBM})"


def test_v100_single_file_signature_in_the_older_format_verifies() -> None:
    model = MT / "v1.0.0-elliptic-key" / "signme-1"
    result = verify_model(model, MT / "v1.0.0-elliptic-key" / "model.sig", key_verifier())
    assert [r.name for r in result.manifest.resources] == ["."]
    assert result.manifest.model_name == "signme-1"


def test_keyless_oms_bundle_verifies_with_sigstore_and_names_its_subject() -> None:
    verified = verify_dsse((MT / "v1.1.0-sigstore" / "model.sig").read_text(), STEFAN,
                           PRODUCTION)
    statement = Statement.from_bytes(verified.payload)
    assert statement.predicate_type == OMS_PREDICATE
    assert statement.subjects[0].name == "v1.1.0-sigstore"
    root = statement.subjects[0].digest["sha256"]
    assert root.startswith("61d4849d") and root.endswith("d226")
    assert verified.facts.entry_kind == "dsse/0.0.1"
    # The subject digest is what Custody computes for the model directory itself.
    check_subjects(statement, hash_model(MT / "v1.1.0-sigstore",
                                         ignore_paths=["ignore-me", "model.sig"]).root_digest)


# --- Custody builds the same statement model_signing signed --------------------------------


@pytest.mark.parametrize(("name", "root"), [
    ("v1.1.0-elliptic-key",
     "92745110b1ab4368471cbe31664e10174e954b113a3df333db860317b2c6dec4"),
    ("v1.1.0-sigstore", "61d4849d9d90076d6215f4d525f13d6574af8e3f67aef3e6f36fc40a14fdd226"),
])
def test_oms_statement_matches_the_signed_one(name: str, root: str) -> None:
    model = MT / name
    built = build_oms_statement(model, ignore_paths=["ignore-me"],
                                signature_path=model / "model.sig")
    assert built.subjects[0].digest["sha256"] == root
    signed = json.loads(verify_model(model, model / "model.sig", VERIFIERS[name]())
                        .payload.payload)
    assert built.predicate["resources"] == sorted(signed["predicate"]["resources"],
                                                  key=lambda r: r["name"])
    assert sorted(built.predicate["serialization"]["ignore_paths"]) == \
        sorted(signed["predicate"]["serialization"]["ignore_paths"])


def test_single_file_statement_matches_v100() -> None:
    built = build_oms_statement(MT / "v1.0.0-elliptic-key" / "signme-1")
    assert built.subjects[0].digest["sha256"].startswith("afa48c8674afe334")
    assert built.predicate["resources"][0]["name"] == "."


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_changed_file_is_refused(name: str, copy_of: Callable[[str], Path]) -> None:
    model = copy_of(name)
    (model / "signme-1").write_bytes(b"tampered")
    refused("oms.changed_file", lambda: verify_model(model, model / "model.sig",
                                                     VERIFIERS[name]()), "signme-1")


@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_extra_file_is_refused(name: str, copy_of: Callable[[str], Path]) -> None:
    model = copy_of(name)
    (model / "sub").mkdir()
    (model / "sub" / "payload.pkl").write_bytes(b"extra")
    refused("oms.extra_file", lambda: verify_model(model, model / "model.sig",
                                                   VERIFIERS[name]()), "sub/payload.pkl")


@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_missing_file_is_refused(name: str, copy_of: Callable[[str], Path]) -> None:
    model = copy_of(name)
    (model / "signme-2").unlink()
    refused("oms.missing_file", lambda: verify_model(model, model / "model.sig",
                                                     VERIFIERS[name]()), "signme-2")


def test_ignored_paths_are_ignored(copy_of: Callable[[str], Path]) -> None:
    model = copy_of("v1.1.0-elliptic-key")
    (model / "ignore-me").write_bytes(b"anything at all")
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    verify_model(model, model / "model.sig", key_verifier())


def test_signature_elsewhere_verifies_the_model(tmp_path: Path) -> None:
    signature = tmp_path / "elsewhere.sig"
    shutil.copyfile(MT / "v1.1.0-elliptic-key" / "model.sig", signature)
    verify_model(MT / "v1.1.0-elliptic-key", signature, key_verifier())


def test_tampered_single_file_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "signme-1"
    model.write_bytes(b"tampered")
    refused("oms.changed_file", lambda: verify_model(
        model, MT / "v1.0.0-elliptic-key" / "model.sig", key_verifier()))


def test_keyless_wrong_identity_issuer_or_root_is_refused() -> None:
    model = MT / "v1.1.0-sigstore"
    refused("sigstore.identity", lambda: verify_model(
        model, model / "model.sig",
        keyless_verifier(policy=IdentityPolicy(IBM, identity="mallory@example.com"))))
    refused("sigstore.identity", lambda: verify_model(
        model, model / "model.sig",
        keyless_verifier(policy=IdentityPolicy("https://accounts.google.com",
                                               identity="stefanb@us.ibm.com"))))
    refused("sigstore.chain", lambda: verify_model(model, model / "model.sig",
                                                   keyless_verifier(trust=STAGING)))


def test_certificate_signature_with_the_leaf_as_root_is_refused() -> None:
    model = MT / "v1.1.0-certificate"
    verifier = CertChainVerifier.from_files([KEYS / "signing-key-cert.pem"])
    refused("cert.chain", lambda: verify_model(model, model / "model.sig", verifier))


def test_key_signature_with_another_key_is_refused() -> None:
    other = OmsKeyVerifier([ec.generate_private_key(ec.SECP384R1()).public_key()])
    refused("signature.untrusted_key", lambda: verify_model(
        MT / "v1.1.0-elliptic-key", MT / "v1.1.0-elliptic-key" / "model.sig", other))
    refused("signature.untrusted_key", lambda: verify_model(
        MT / "v1.0.0-elliptic-key" / "signme-1", MT / "v1.0.0-elliptic-key" / "model.sig",
        other))


@pytest.mark.parametrize("name", ["v1.1.0-elliptic-key", "v1.1.0-certificate"])
def test_key_and_chain_bundles_are_not_keyless_bundles(name: str) -> None:
    refused("sigstore.bundle", lambda: verify_dsse((MT / name / "model.sig").read_text(), STEFAN,
                                                   PRODUCTION), "expected certificate in bundle")


def test_statement_whose_resources_do_not_hash_to_its_subject_is_refused(
        tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"weights")
    statement = build_oms_statement(model)
    forged = Statement(subjects=(Subject("model", {"sha256": "00" * 32}),),
                       predicate_type=statement.predicate_type, predicate=statement.predicate)
    key = ec.generate_private_key(ec.SECP256R1())
    signature = tmp_path / "model.sig"
    signature.write_text(ECKeySigner(key).sign_statement(forged.to_bytes()))
    refused("oms.inconsistent",
            lambda: verify_model(model, signature, OmsKeyVerifier([key.public_key()])))


@pytest.mark.parametrize("ignore", [".", "", "/etc", "../x", "a/../../b"])
def test_ignore_path_covering_the_model_or_leaving_it_is_refused(ignore: str) -> None:
    statement = Statement(
        subjects=(Subject("m", {"sha256": "00" * 32}),), predicate_type=OMS_PREDICATE,
        predicate={"serialization": {"method": "files", "hash_type": "sha256",
                                     "allow_symlinks": False, "ignore_paths": [ignore]},
                   "resources": [{"name": "a", "algorithm": "sha256", "digest": "00" * 32}]})
    refused("oms.ignore_paths", lambda: parse_oms_statement(statement))


def test_unsupported_serialization_is_refused() -> None:
    statement = Statement(
        subjects=(Subject("m", {"sha256": "00" * 32}),), predicate_type=OMS_PREDICATE,
        predicate={"serialization": {"method": "shards", "hash_type": "sha256",
                                     "shard_size": 1000, "allow_symlinks": False},
                   "resources": [{"name": "a:0:10", "algorithm": "sha256",
                                  "digest": "00" * 32}]})
    refused("oms.unsupported", lambda: parse_oms_statement(statement))
