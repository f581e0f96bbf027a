"""DSSE, in-toto and Sigstore bundle v0.3 with EC keys, including model_signing's own bundles."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support import vector_paths as _paths

from custody.errors import VerificationError
from custody.signing.bundle import BUNDLE_V03, load_key_bundle
from custody.signing.dsse import pae
from custody.signing.key_signer import ECKeySigner, ECKeyVerifier
from custody.signing.keys import key_hint, load_public_key
from custody.signing.statement import Statement, Subject

VECTORS = _paths.vector_folder("sigstore")
OMS = VECTORS / "model-transparency"


def _statement() -> bytes:
    return Statement(
        subjects=(Subject("m", {"sha256": "ab" * 32}),),
        predicate_type="https://custody.dev/artifact-record/v1",
        predicate={"x": 1},
    ).to_bytes()


def test_pae_matches_the_dsse_spec_example() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_round_trip_and_bundle_shape() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bundle_text = ECKeySigner(key).sign_statement(_statement())
    bundle = json.loads(bundle_text)
    assert bundle["mediaType"] == BUNDLE_V03
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == key_hint(key.public_key())
    assert bundle["verificationMaterial"]["tlogEntries"] == []
    assert bundle["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    verified = ECKeyVerifier([key.public_key()]).verify_bundle(bundle_text, source="b")
    assert verified.payload == _statement()
    assert verified.signer == f"key:{key_hint(key.public_key())}"


def test_tampered_payload_is_a_verification_error_not_a_value_error() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bundle = json.loads(ECKeySigner(key).sign_statement(_statement()))
    other = Statement(
        subjects=(Subject("m", {"sha256": "cd" * 32}),),
        predicate_type="https://custody.dev/artifact-record/v1",
        predicate={"x": 1},
    ).to_bytes()
    import base64

    bundle["dsseEnvelope"]["payload"] = base64.b64encode(other).decode()
    with pytest.raises(VerificationError) as info:
        ECKeyVerifier([key.public_key()]).verify_bundle(json.dumps(bundle), source="b")
    assert info.value.rule == "signature.invalid"
    assert not isinstance(info.value, ValueError)


def test_wrong_key_and_lying_hint_refused() -> None:
    signer_key = ec.generate_private_key(ec.SECP256R1())
    trusted = ec.generate_private_key(ec.SECP256R1())
    text = ECKeySigner(signer_key).sign_statement(_statement())
    with pytest.raises(VerificationError) as info:
        ECKeyVerifier([trusted.public_key()]).verify_bundle(text, source="b")
    assert info.value.rule == "signature.untrusted_key"
    # Claiming the trusted key's hint does not help: the signature must verify under it.
    bundle = json.loads(text)
    bundle["verificationMaterial"]["publicKey"]["hint"] = key_hint(trusted.public_key())
    with pytest.raises(VerificationError) as info:
        ECKeyVerifier([trusted.public_key()]).verify_bundle(json.dumps(bundle), source="b")
    assert info.value.rule == "signature.invalid"


@pytest.mark.parametrize("mangle", [
    lambda b: b.pop("dsseEnvelope"),
    lambda b: b.update(mediaType="application/json"),
    lambda b: b["dsseEnvelope"].update(payload="***not base64***"),
    lambda b: b["dsseEnvelope"]["signatures"].append(dict(b["dsseEnvelope"]["signatures"][0])),
    lambda b: b["dsseEnvelope"].update(payloadType="text/plain"),
])
def test_malformed_bundles_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(ec.SECP256R1())
    bundle = json.loads(ECKeySigner(key).sign_statement(_statement()))
    mangle(bundle)
    with pytest.raises(VerificationError):
        ECKeyVerifier([key.public_key()]).verify_bundle(json.dumps(bundle), source="b")


def test_model_signing_key_bundle_verifies_with_custody() -> None:
    """A P-384 key bundle written by model_signing 1.1 verifies with Custody's verifier."""
    key = load_public_key(OMS / "keys" / "signing-key-pub.pem")
    text = (OMS / "v1.1.0-elliptic-key" / "model.sig").read_text()
    verified = ECKeyVerifier([key]).verify_bundle(text, source="model.sig")
    statement = Statement.from_bytes(verified.payload)
    assert statement.predicate_type == "https://model_signing/signature/v1.0"
    assert load_key_bundle(text).key_hint == key_hint(key)


def test_model_signing_bundle_refused_with_another_key() -> None:
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    text = (OMS / "v1.1.0-elliptic-key" / "model.sig").read_text()
    with pytest.raises(VerificationError):
        ECKeyVerifier([other]).verify_bundle(text, source="model.sig")


def test_keyless_bundle_is_not_mistaken_for_a_key_bundle() -> None:
    text = (VECTORS / "sigstore-python" / "valid" / "bundle_v3.txt.sigstore").read_text()
    with pytest.raises(VerificationError) as info:
        load_key_bundle(text, source="bundle_v3")
    assert info.value.rule in {"bundle.unsupported", "bundle.malformed"}
