"""X.509 certificate-chain signing: throwaway CAs made at test time, real path building."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from custody.errors import KeyMaterialError, VerificationError
from custody.signing.bundle_info import BundleKind, classify_bundle
from custody.signing.cert_signer import CertChainSigner, CertChainVerifier

STATEMENT = b'{"_type":"https://in-toto.io/Statement/v1","predicate":{},"predicateType":"x",' \
            b'"subject":[{"digest":{"sha256":"00"},"name":"m"}]}'


@dataclass
class Chain:
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _cert(subject: str, issuer: str, key: ec.EllipticCurvePublicKey,
          signer: ec.EllipticCurvePrivateKey, *, ca: bool, usage: str = "sign",
          days: int = 30, start: datetime | None = None) -> x509.Certificate:
    now = start or datetime.now(UTC) - timedelta(minutes=5)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   signer.public_key()), critical=False))
    sign = usage == "sign"
    builder = builder.add_extension(
        x509.KeyUsage(digital_signature=sign and not ca, content_commitment=False,
                      key_encipherment=False, data_encipherment=False,
                      key_agreement=usage == "agree", key_cert_sign=ca, crl_sign=ca,
                      encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(signer, hashes.SHA256())


def make_chain(*, leaf_usage: str = "sign", leaf_days: int = 30) -> Chain:
    root_key = ec.generate_private_key(ec.SECP384R1())
    mid_key = ec.generate_private_key(ec.SECP384R1())
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    root = _cert("test-root", "test-root", root_key.public_key(), root_key, ca=True)
    mid = _cert("test-intermediate", "test-root", mid_key.public_key(), root_key, ca=True)
    leaf = _cert("model-signer", "test-intermediate", leaf_key.public_key(), mid_key, ca=False,
                 usage=leaf_usage, days=leaf_days)
    return Chain(root, mid, leaf, leaf_key)


def test_chain_bundle_round_trip() -> None:
    chain = make_chain()
    signer = CertChainSigner(chain.key, chain.leaf, [chain.intermediate])
    assert signer.identity == "x509:CN=model-signer"
    bundle = signer.sign_statement(STATEMENT)
    data = json.loads(bundle)
    assert data["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert data["verificationMaterial"]["tlogEntries"] == []
    assert len(data["verificationMaterial"]["x509CertificateChain"]["certificates"]) == 2
    assert classify_bundle(bundle) is BundleKind.X509_CHAIN
    verified = CertChainVerifier([chain.root]).verify_bundle(bundle, source="b")
    assert verified.payload == STATEMENT
    assert verified.signer == "x509:CN=model-signer"


def test_other_root_is_refused() -> None:
    chain, other = make_chain(), make_chain()
    bundle = CertChainSigner(chain.key, chain.leaf, [chain.intermediate]).sign_statement(
        STATEMENT)
    with pytest.raises(VerificationError) as info:
        CertChainVerifier([other.root]).verify_bundle(bundle, source="b")
    assert info.value.rule == "cert.chain"


def test_missing_intermediate_is_refused() -> None:
    chain = make_chain()
    bundle = CertChainSigner(chain.key, chain.leaf).sign_statement(STATEMENT)
    with pytest.raises(VerificationError) as info:
        CertChainVerifier([chain.root]).verify_bundle(bundle, source="b")
    assert info.value.rule == "cert.chain"


def test_expired_certificate_is_refused_unless_checked_at_signing_time() -> None:
    chain = make_chain(leaf_days=1)
    bundle = CertChainSigner(chain.key, chain.leaf, [chain.intermediate]).sign_statement(
        STATEMENT)
    later = datetime.now(UTC) + timedelta(days=3)
    with pytest.raises(VerificationError) as info:
        CertChainVerifier([chain.root], at=later).verify_bundle(bundle, source="b")
    assert info.value.rule == "cert.chain"
    CertChainVerifier([chain.root], at=datetime.now(UTC)).verify_bundle(bundle, source="b")


def test_certificate_that_may_not_sign_is_refused() -> None:
    chain = make_chain(leaf_usage="agree")
    bundle = CertChainSigner(chain.key, chain.leaf, [chain.intermediate]).sign_statement(
        STATEMENT)
    with pytest.raises(VerificationError) as info:
        CertChainVerifier([chain.root]).verify_bundle(bundle, source="b")
    assert info.value.rule == "cert.usage"


def test_altered_payload_is_refused() -> None:
    chain = make_chain()
    data = json.loads(CertChainSigner(chain.key, chain.leaf, [chain.intermediate])
                      .sign_statement(STATEMENT))
    data["dsseEnvelope"]["payload"] = base64.b64encode(STATEMENT.replace(b'"m"', b'"n"')).decode()
    with pytest.raises(VerificationError) as info:
        CertChainVerifier([chain.root]).verify_bundle(json.dumps(data), source="b")
    assert info.value.rule == "signature.invalid"


def test_swapped_leaf_is_refused() -> None:
    chain = make_chain()
    impostor = make_chain()
    data = json.loads(CertChainSigner(impostor.key, impostor.leaf, [impostor.intermediate])
                      .sign_statement(STATEMENT))
    honest = json.loads(CertChainSigner(chain.key, chain.leaf, [chain.intermediate])
                        .sign_statement(STATEMENT))
    data["verificationMaterial"] = honest["verificationMaterial"]
    with pytest.raises(VerificationError) as info:
        CertChainVerifier([chain.root]).verify_bundle(json.dumps(data), source="b")
    assert info.value.rule == "signature.invalid"


def test_key_not_matching_certificate_is_refused_at_signing() -> None:
    chain = make_chain()
    with pytest.raises(KeyMaterialError):
        CertChainSigner(ec.generate_private_key(ec.SECP384R1()), chain.leaf)


def test_key_bundle_is_not_a_chain_bundle() -> None:
    from custody.signing.key_signer import ECKeySigner

    chain = make_chain()
    bundle = ECKeySigner(ec.generate_private_key(ec.SECP256R1())).sign_statement(STATEMENT)
    with pytest.raises(VerificationError) as info:
        CertChainVerifier([chain.root]).verify_bundle(bundle, source="b")
    assert info.value.rule == "bundle.unsupported"
