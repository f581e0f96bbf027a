"""OpenSSF Model Signing (OMS): the model statement, its parsing and the comparison of manifests.

This module never reads the model: hashing a model directory, signing it and verifying it on
disk live in :mod:`custody.provenance.verification.oms_files`.

The statement (predicate ``https://model_signing/signature/v1.0``) lists every file of the model
as a resource ``{name, algorithm: sha256, digest}``; its one subject is the model's name with a
sha256 over the concatenated raw resource digests, in resource order. Resources are ordered as
model_signing orders them, by ``PurePosixPath`` (so ``a/b`` sorts before ``a.txt``). A single-file
model has one resource named ``"."``. ``predicate.serialization`` records how the list was made:
``{"method": "files", "hash_type": "sha256", "allow_symlinks": false, "ignore_paths": [...]}``.

Verification checks the signature with any :class:`BundleVerifier` (key, certificate chain or
Sigstore keyless), then re-hashes the model honouring the recorded ``ignore_paths`` (plus the git
paths model_signing always ignores, and the signature file itself) and refuses extra, missing or
changed files. Older signatures (model_signing v1.0.0: ``publicKey.rawBytes``, no ignore_paths)
are read too. Sharded serialization and other hash types are refused as unsupported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from custody.errors import VerificationError
from custody.signing.bundle_info import load_bundle_json
from custody.signing.interface import VerifiedPayload
from custody.signing.key_signer import ECKeyVerifier
from custody.signing.keys import key_hint
from custody.signing.statement import Statement, Subject

OMS_PREDICATE = "https://model_signing/signature/v1.0"
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
SINGLE_FILE = "."


@dataclass(frozen=True)
class OmsResource:
    name: str
    digest: str  # sha256 hex
    algorithm: str = "sha256"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "algorithm": self.algorithm, "digest": self.digest}


@dataclass(frozen=True)
class OmsManifest:
    """A model as OMS sees it: its name, files, root digest and serialization parameters."""

    model_name: str
    resources: tuple[OmsResource, ...]
    serialization: dict[str, Any]

    @property
    def root_digest(self) -> str:
        return root_digest(self.resources)

    @property
    def ignore_paths(self) -> tuple[str, ...]:
        return tuple(str(p) for p in self.serialization.get("ignore_paths", ()))

    def digests(self) -> dict[str, str]:
        return {r.name: r.digest for r in self.resources}

    def statement(self) -> Statement:
        return Statement(
            subjects=(Subject(name=self.model_name, digest={"sha256": self.root_digest}),),
            predicate_type=OMS_PREDICATE,
            predicate={"serialization": dict(self.serialization),
                       "resources": [r.to_json() for r in self.resources]},
        )


@dataclass(frozen=True)
class OmsVerification:
    """A model that matched its signature: what was signed, by whom."""

    manifest: OmsManifest
    signer: str
    payload: VerifiedPayload


def root_digest(resources: Iterable[OmsResource]) -> str:
    """sha256 over the raw bytes of each resource digest, in the given order."""
    h = hashlib.sha256()
    for r in resources:
        h.update(bytes.fromhex(r.digest))
    return h.hexdigest()


def parse_oms_statement(statement: Statement | bytes, *, source: str = "signature"
                        ) -> OmsManifest:
    """Read a signed OMS statement; refuse one whose resources do not hash to its subject."""
    stmt = statement if isinstance(statement, Statement) else Statement.from_bytes(statement)
    if stmt.predicate_type != OMS_PREDICATE:
        raise VerificationError(
            f"{source}: predicate is {stmt.predicate_type!r}, not OpenSSF Model Signing v1.0",
            rule="oms.unsupported", subject=source,
        )
    if len(stmt.subjects) != 1 or "sha256" not in stmt.subjects[0].digest:
        raise VerificationError(f"{source}: an OMS statement has exactly one sha256 subject",
                                rule="oms.malformed", subject=source)
    predicate = stmt.predicate
    args = predicate.get("serialization")
    if not isinstance(args, dict):
        raise VerificationError(f"{source}: OMS predicate has no serialization",
                                rule="oms.malformed", subject=source)
    if args.get("method") != "files" or args.get("hash_type") != "sha256":
        raise VerificationError(
            f"{source}: OMS serialization {args.get('method')!r}/{args.get('hash_type')!r} is "
            "not supported (Custody verifies method 'files' with sha256)",
            rule="oms.unsupported", subject=source,
        )
    ignore = args.get("ignore_paths", [])
    if not isinstance(ignore, list) or not isinstance(args.get("allow_symlinks", False), bool):
        raise VerificationError(f"{source}: OMS serialization parameters are malformed",
                                rule="oms.malformed", subject=source)
    for entry in ignore:
        check_ignore_path(entry, source=source)
    resources = _resources(predicate.get("resources"), source)
    subject = stmt.subjects[0]
    claimed = subject.digest["sha256"].lower()
    if root_digest(resources) != claimed:
        raise VerificationError(
            f"{source}: OMS resources hash to {root_digest(resources)[:16]}…, but the subject "
            f"claims {claimed[:16]}…",
            rule="oms.inconsistent", subject=source,
        )
    return OmsManifest(model_name=subject.name, resources=resources, serialization=dict(args))


def compare_manifests(expected: OmsManifest, actual: Sequence[OmsResource], *,
                      model: str) -> None:
    """Refuse the model if any file was changed, removed or added since signing."""
    want = expected.digests()
    have = {r.name: r.digest for r in actual}
    changed = sorted(n for n in want.keys() & have.keys() if want[n] != have[n])
    missing = sorted(want.keys() - have.keys())
    extra = sorted(have.keys() - want.keys())
    problems = [(rule, label, names) for rule, label, names in (
        ("oms.changed_file", "changed", changed),
        ("oms.missing_file", "missing", missing),
        ("oms.extra_file", "not signed", extra),
    ) if names]
    if not problems:
        return
    message = "; ".join(
        f"{label}: {', '.join(names[:5])}{' …' if len(names) > 5 else ''}"
        for _, label, names in problems
    )
    raise VerificationError(
        f"{model} does not match its signature ({message})",
        rule=problems[0][0],
        hint="the model's files differ from what was signed; re-download it or ask the "
        "signer for a new signature",
        subject=model,
    )


class OmsKeyVerifier:
    """Key verification for OMS signatures of both formats: ``publicKey.hint`` (model_signing
    >= 1.1) and the older ``publicKey.rawBytes`` (v1.0.0), whose key must be a trusted key."""

    def __init__(self, trusted_keys: Sequence[ec.EllipticCurvePublicKey]):
        self._keys = list(trusted_keys)

    def verify_bundle(self, bundle_json: str | bytes, *, source: str) -> VerifiedPayload:
        data = load_bundle_json(bundle_json, source=source)
        public_key = data["verificationMaterial"].get("publicKey")
        if isinstance(public_key, dict) and not public_key.get("hint") and \
                "rawBytes" in public_key:
            embedded = _raw_public_key(public_key["rawBytes"], source)
            matches = [k for k in self._keys if k.public_numbers() == embedded.public_numbers()]
            if not matches:
                raise VerificationError(
                    f"{source} is signed by key {key_hint(embedded)[:16]}…, which is not trusted",
                    rule="signature.untrusted_key",
                    hint="pass the signer's public key with --key if you trust it",
                    subject=source,
                )
            data["verificationMaterial"]["publicKey"] = {"hint": key_hint(matches[0])}
            data["verificationMaterial"].setdefault("tlogEntries", [])
            bundle_json = json.dumps(data)
        return ECKeyVerifier(self._keys).verify_bundle(bundle_json, source=source)


def _resources(raw: Any, source: str) -> tuple[OmsResource, ...]:
    if not isinstance(raw, list) or not raw:
        raise VerificationError(f"{source}: OMS predicate lists no resources",
                                rule="oms.malformed", subject=source)
    out: list[OmsResource] = []
    for item in raw:
        try:
            name, algorithm, digest = str(item["name"]), str(item["algorithm"]), item["digest"]
            bytes.fromhex(digest)
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"{source}: OMS resource is malformed ({exc})",
                                    rule="oms.malformed", subject=source) from None
        if algorithm != "sha256" or len(digest) != 64:
            raise VerificationError(
                f"{source}: resource {name} uses {algorithm!r}; Custody verifies sha256 only",
                rule="oms.unsupported", subject=source)
        pure = PurePosixPath(name)
        if name != SINGLE_FILE and (pure.is_absolute() or ".." in pure.parts):
            raise VerificationError(f"{source}: resource name {name!r} leaves the model",
                                    rule="oms.malformed", subject=source)
        out.append(OmsResource(name=name, digest=digest.lower(), algorithm=algorithm))
    if len({r.name for r in out}) != len(out):
        raise VerificationError(f"{source}: OMS resources name a file twice",
                                rule="oms.malformed", subject=source)
    return tuple(out)


def check_ignore_path(entry: Any, *, source: str = "ignore_paths") -> str:
    pure = PurePosixPath(str(entry)) if isinstance(entry, str) else None
    if pure is None or str(pure) in ("", ".") or pure.is_absolute() or ".." in pure.parts:
        raise VerificationError(
            f"{source}: ignore path {entry!r} is not a path inside the model",
            rule="oms.ignore_paths",
            hint="an ignore path that covers the whole model would make the signature vacuous",
            subject=source,
        )
    return str(pure)


def _raw_public_key(raw: Any, source: str) -> ec.EllipticCurvePublicKey:
    try:
        data = base64.b64decode(str(raw), validate=True)
        key = (serialization.load_pem_public_key(data) if data.startswith(b"-----BEGIN")
               else serialization.load_der_public_key(data))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise VerificationError(f"{source}: publicKey.rawBytes is not a public key ({exc})",
                                rule="bundle.malformed", subject=source) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationError(f"{source}: publicKey.rawBytes is not an EC key",
                                rule="bundle.unsupported", subject=source)
    return key
