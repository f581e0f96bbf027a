"""EC key material: generate, store (private keys mode 0600), load, and name by hint.

A key's hint is the SHA-256 of its PEM SubjectPublicKeyInfo, as OpenSSF Model Signing writes it
into ``verificationMaterial.publicKey.hint``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from custody.errors import KeyMaterialError

_HASH_FOR_CURVE: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def hash_for(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    """The digest Sigstore pairs with the key's curve (P-256 → SHA-256, P-384 → SHA-384)."""
    try:
        return _HASH_FOR_CURVE[key.curve.name]()
    except KeyError:
        raise KeyMaterialError(f"unsupported elliptic curve {key.curve.name}") from None


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_hint(key: ec.EllipticCurvePublicKey) -> str:
    return hashlib.sha256(public_pem(key)).hexdigest()


def generate_key_pair(prefix: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (PEM PKCS#8, mode 0600) and ``PREFIX.pub``; return both paths."""
    key_path = prefix.with_name(prefix.name + ".key")
    pub_path = prefix.with_name(prefix.name + ".pub")
    for path in (key_path, pub_path):
        if path.exists() and not overwrite:
            raise KeyMaterialError(
                f"{path} already exists",
                hint="choose another --out prefix, or remove the old key if it is unused",
                subject=str(path),
            )
    if not key_path.parent.is_dir():
        raise KeyMaterialError(
            f"directory {key_path.parent} does not exist", subject=str(key_path.parent)
        )
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(key_path, flags, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(pem)
    key_path.chmod(0o600)
    pub_path.write_bytes(public_pem(private.public_key()))
    return key_path, pub_path


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    data = _read(path, "private key")
    password = os.environ.get("CUSTODY_KEY_PASSWORD")
    try:
        key = serialization.load_pem_private_key(
            data, password=password.encode() if password else None
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(
            f"cannot load private key {path}: {exc}",
            hint="pass a PEM EC private key (make one with `custody keygen`); set "
            "CUSTODY_KEY_PASSWORD if it is encrypted",
            subject=str(path),
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"{path} is not an EC private key", subject=str(path))
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    data = _read(path, "public key")
    return parse_public_key(data, source=str(path))


def parse_public_key(data: bytes, *, source: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(
            f"cannot load public key {source}: {exc}",
            hint="pass a PEM EC public key (the .pub file written by `custody keygen`)",
            subject=source,
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyMaterialError(f"{source} is not an EC public key", subject=source)
    return key


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(
            f"cannot read {what} {path}: {exc.strerror or exc}", subject=str(path)
        ) from None
