"""Interop with the real `model-signing` package, both ways, with throwaway keys and CAs.

Custody's key and certificate signatures of a model verify with model_signing's verifier, and
model_signing's signatures verify with Custody. Tampered models are refused by both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from custody.errors import VerificationError
from custody.provenance.verification.oms_files import sign_model, verify_model
from custody.signing.cert_signer import CertChainSigner, CertChainVerifier
from custody.signing.key_signer import ECKeySigner
from custody.signing.keys import public_pem
from custody.signing.oms import OmsKeyVerifier

ms_signing = pytest.importorskip("model_signing.signing")
ms_verifying = pytest.importorskip("model_signing.verifying")
pytest.importorskip("OpenSSL")


def make_model(root: Path) -> Path:
    model = root / "my-model"
    (model / "a").mkdir(parents=True)
    (model / "weights").mkdir()
    (model / "a" / "b").write_bytes(b"nested")
    (model / "a.txt").write_bytes(b"path order differs from string order here")
    (model / "a-b").write_bytes(b"dash")
    (model / "weights" / "part-0.bin").write_bytes(bytes(range(256)) * 64)
    (model / "config.json").write_text('{"layers": 2}')
    (model / ".gitignore").write_text("*.tmp\n")
    return model


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)  # custody refuses private keys that others may read
    return path


def write_pem(path: Path, *items: x509.Certificate | ec.EllipticCurvePublicKey) -> Path:
    out = b""
    for item in items:
        out += (item.public_bytes(serialization.Encoding.PEM)
                if isinstance(item, x509.Certificate) else public_pem(item))
    path.write_bytes(out)
    return path


def _cert(subject: str, issuer_name: str, public: ec.EllipticCurvePublicKey,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.now(UTC) - timedelta(minutes=5)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=not ca, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)
            .sign(issuer_key, hashes.SHA256()))


class Pki:
    def __init__(self, tmp: Path):
        root_key = ec.generate_private_key(ec.SECP384R1())
        mid_key = ec.generate_private_key(ec.SECP384R1())
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.root = _cert("interop-root", "interop-root", root_key.public_key(), root_key,
                          ca=True)
        self.mid = _cert("interop-mid", "interop-root", mid_key.public_key(), root_key, ca=True)
        self.leaf = _cert("interop-signer", "interop-mid", self.key.public_key(), mid_key,
                          ca=False)
        self.key_path = write_key(tmp / "leaf.key", self.key)
        self.leaf_path = write_pem(tmp / "leaf.pem", self.leaf)
        self.mid_path = write_pem(tmp / "mid.pem", self.mid)
        self.root_path = write_pem(tmp / "root.pem", self.root)


def ms_key_verify(model: Path, signature: Path, pub: Path) -> None:
    ms_verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(model, signature)


def ms_cert_verify(model: Path, signature: Path, root: Path) -> None:
    ms_verifying.Config().use_certificate_verifier(certificate_chain=[root]).verify(
        model, signature)


# --- Custody signs, model_signing verifies ---------------------------------------------------


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["p256", "p384"])
def test_custody_key_signature_verifies_with_model_signing(tmp_path: Path,
                                                           curve: ec.EllipticCurve) -> None:
    model = make_model(tmp_path)
    key = ec.generate_private_key(curve)
    pub = write_pem(tmp_path / "key.pub", key.public_key())
    signature = tmp_path / "model.sig"
    sign_model(model, ECKeySigner(key), signature)
    ms_key_verify(model, signature, pub)
    verify_model(model, signature, OmsKeyVerifier([key.public_key()]))
    (model / "a" / "b").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="Signature mismatch"):
        ms_key_verify(model, signature, pub)
    with pytest.raises(VerificationError):
        verify_model(model, signature, OmsKeyVerifier([key.public_key()]))


def test_custody_signature_inside_the_model_is_ignored_by_model_signing(
        tmp_path: Path) -> None:
    model = make_model(tmp_path)
    (model / "ignore-me").write_text("scratch")
    key = ec.generate_private_key(ec.SECP256R1())
    pub = write_pem(tmp_path / "key.pub", key.public_key())
    signature = model / "model.sig"
    manifest = sign_model(model, ECKeySigner(key), signature, ignore_paths=["ignore-me"])
    assert {"model.sig", "ignore-me", ".gitignore"} <= set(manifest.ignore_paths)
    (model / "ignore-me").write_text("changed, and ignored")
    ms_key_verify(model, signature, pub)
    verify_model(model, signature, OmsKeyVerifier([key.public_key()]))


def test_custody_single_file_signature_verifies_with_model_signing(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"\x00" * 1000)
    key = ec.generate_private_key(ec.SECP256R1())
    pub = write_pem(tmp_path / "key.pub", key.public_key())
    signature = tmp_path / "model.sig"
    sign_model(model, ECKeySigner(key), signature)
    ms_key_verify(model, signature, pub)


def test_custody_certificate_signature_verifies_with_model_signing(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    model = make_model(tmp_path)
    signature = tmp_path / "model.sig"
    sign_model(model, CertChainSigner.from_files(pki.key_path, pki.leaf_path, [pki.mid_path]),
               signature)
    ms_cert_verify(model, signature, pki.root_path)
    result = verify_model(model, signature, CertChainVerifier.from_files([pki.root_path]))
    assert result.signer == "x509:CN=interop-signer"
    (model / "extra.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="Signature mismatch"):
        ms_cert_verify(model, signature, pki.root_path)
    with pytest.raises(VerificationError) as info:
        verify_model(model, signature, CertChainVerifier.from_files([pki.root_path]))
    assert info.value.rule == "oms.extra_file"


# --- model_signing signs, Custody verifies ---------------------------------------------------


def test_model_signing_key_signature_verifies_with_custody(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = write_key(tmp_path / "key.pem", key)
    signature = tmp_path / "model.sig"
    ms_signing.Config().use_elliptic_key_signer(private_key=key_path).sign(model, signature)
    result = verify_model(model, signature, OmsKeyVerifier([key.public_key()]))
    names = [r.name for r in result.manifest.resources]
    assert names == ["a/b", "a-b", "a.txt", "config.json", "weights/part-0.bin"]
    (model / "config.json").write_text('{"layers": 3}')
    with pytest.raises(VerificationError) as info:
        verify_model(model, signature, OmsKeyVerifier([key.public_key()]))
    assert info.value.rule == "oms.changed_file"


def test_model_signing_signature_inside_the_model_verifies_with_custody(tmp_path: Path) -> None:
    from model_signing import hashing

    model = make_model(tmp_path)
    key = ec.generate_private_key(ec.SECP384R1())
    key_path = write_key(tmp_path / "key.pem", key)
    signature = model / "model.sig"
    config = hashing.Config().set_ignored_paths(paths=["model.sig"])
    (ms_signing.Config().set_hashing_config(config)
     .use_elliptic_key_signer(private_key=key_path).sign(model, signature))
    verify_model(model, signature, OmsKeyVerifier([key.public_key()]))
    ms_key_verify(model, signature, write_pem(tmp_path / "key.pub", key.public_key()))


def test_model_signing_certificate_signature_verifies_with_custody(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    model = make_model(tmp_path)
    signature = tmp_path / "model.sig"
    (ms_signing.Config()
     .use_certificate_signer(private_key=pki.key_path, signing_certificate=pki.leaf_path,
                             certificate_chain=[pki.mid_path])
     .sign(model, signature))
    result = verify_model(model, signature, CertChainVerifier.from_files([pki.root_path]))
    assert result.signer == "x509:CN=interop-signer"
    (tmp_path / "other").mkdir()
    other = Pki(tmp_path / "other")
    with pytest.raises(VerificationError) as info:
        verify_model(model, signature, CertChainVerifier.from_files([other.root_path]))
    assert info.value.rule == "cert.chain"
