"""OpenSSF Model Signing (OMS): build the model statement, and verify a model against one.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from custody.errors import ArtifactError, VerificationError
from custody.provenance.hashing import default_workers, iter_files, sha256_file
from custody.provenance.manifest import Manifest
from custody.signing.bundle_info import load_bundle_json
from custody.signing.interface import BundleVerifier, Signer, VerifiedPayload
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


def hash_model(model_path: Path, *, ignore_paths: Iterable[str] = (),
               signature_path: Path | None = None, allow_symlinks: bool = False,
               ignore_git_paths: bool = True) -> OmsManifest:
    """Hash a model file or directory into its OMS manifest.

    ``ignore_paths`` are relative to the model directory; a directory ignores all below it. The
    signature file, when inside the model, is ignored and recorded as ignored, as model_signing
    does; so are the git paths (``.git``, ``.github``, ...) unless ``ignore_git_paths`` is off.
    """
    ignored = [_check_ignore(p) for p in ignore_paths]
    if signature_path is not None and model_path.is_dir():
        rel = _relative_to(signature_path, model_path)
        if rel is not None:
            ignored.append(rel)
    if ignore_git_paths:
        ignored.extend(GIT_PATHS)
    recorded = sorted(set(ignored))
    resources = _hash_files(model_path, recorded, allow_symlinks)
    serialization_args: dict[str, Any] = {"method": "files", "hash_type": "sha256",
                                          "allow_symlinks": allow_symlinks}
    if recorded and model_path.is_dir():
        serialization_args["ignore_paths"] = recorded
    return OmsManifest(model_name=_model_name(model_path), resources=resources,
                       serialization=serialization_args)


def oms_manifest_from(manifest: Manifest, model_path: Path) -> OmsManifest:
    """The OMS manifest of a model already hashed by Custody (no second pass over the bytes).

    The same files, names and ordering as :func:`hash_model` with its defaults: git paths are
    left out, resources are ordered as model_signing orders them, a single file is ``"."``.
    """
    if not manifest.is_directory:
        resources: tuple[OmsResource, ...] = (OmsResource(SINGLE_FILE, manifest.digest),)
        serialization: dict[str, Any] = {"method": "files", "hash_type": "sha256",
                                         "allow_symlinks": False}
    else:
        prefixes = [PurePosixPath(p) for p in GIT_PATHS]
        resources = tuple(sorted(
            (OmsResource(f.relpath, f.sha256) for f in manifest.files
             if not any(PurePosixPath(f.relpath).is_relative_to(p) for p in prefixes)),
            key=lambda r: PurePosixPath(r.name)))
        serialization = {"method": "files", "hash_type": "sha256", "allow_symlinks": False,
                         "ignore_paths": sorted(GIT_PATHS)}
    return OmsManifest(model_name=_model_name(model_path), resources=resources,
                       serialization=serialization)


def build_oms_statement(model_path: Path, *, ignore_paths: Iterable[str] = (),
                        signature_path: Path | None = None,
                        allow_symlinks: bool = False) -> Statement:
    """The OMS in-toto statement for a model, ready to sign (``statement.to_bytes()``)."""
    return hash_model(model_path, ignore_paths=ignore_paths, signature_path=signature_path,
                      allow_symlinks=allow_symlinks).statement()


def sign_model(model_path: Path, signer: Signer, signature_path: Path, *,
               ignore_paths: Iterable[str] = (), allow_symlinks: bool = False) -> OmsManifest:
    """Sign a model in OMS form and write the bundle to ``signature_path`` (model.sig)."""
    manifest = hash_model(model_path, ignore_paths=ignore_paths, signature_path=signature_path,
                          allow_symlinks=allow_symlinks)
    signature_path.write_text(signer.sign_statement(manifest.statement().to_bytes()),
                              encoding="utf-8")
    return manifest


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
        _check_ignore(entry, source=source)
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


def verify_model(model_path: Path, signature_path: Path, verifier: BundleVerifier, *,
                 ignore_git_paths: bool = True) -> OmsVerification:
    """Verify ``model_path`` against the OMS signature file ``signature_path``.

    Refusals: the verifier's own (signature, identity, chain); ``oms.*`` for the statement;
    ``oms.changed_file``, ``oms.missing_file``, ``oms.extra_file`` for the model's files.
    """
    source = str(signature_path)
    try:
        text = signature_path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read signature {signature_path}: {exc.strerror or exc}",
                            hint="pass the signature file (model.sig) with --bundle",
                            subject=source) from None
    verified = verifier.verify_bundle(text, source=source)
    expected = parse_oms_statement(verified.payload, source=source)
    ignored = list(expected.ignore_paths)
    if model_path.is_dir():
        rel = _relative_to(signature_path, model_path)
        if rel is not None:
            ignored.append(rel)
        if ignore_git_paths:
            ignored.extend(GIT_PATHS)
    allow = bool(expected.serialization.get("allow_symlinks", False))
    actual = _hash_files(model_path, ignored, allow)
    compare_manifests(expected, actual, model=str(model_path))
    return OmsVerification(manifest=expected, signer=verified.signer, payload=verified)


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


def _hash_files(model_path: Path, ignored: Iterable[str], allow_symlinks: bool
                ) -> tuple[OmsResource, ...]:
    prefixes = [PurePosixPath(p) for p in ignored]
    single = model_path.is_file()
    planned = [
        (path, SINGLE_FILE if single else rel)
        for path, rel in iter_files(model_path, allow_symlinks=allow_symlinks)
        if single or not any(PurePosixPath(rel).is_relative_to(p) for p in prefixes)
    ]

    def one(item: tuple[Path, str]) -> OmsResource:
        return OmsResource(name=item[1], digest=sha256_file(item[0], follow=True)[1]
                           if single or allow_symlinks else sha256_file(item[0])[1])

    with ThreadPoolExecutor(max_workers=default_workers(),
                            thread_name_prefix="custody-oms") as pool:
        resources = list(pool.map(one, planned))
    return tuple(sorted(resources, key=lambda r: PurePosixPath(r.name)))


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


def _check_ignore(entry: Any, *, source: str = "ignore_paths") -> str:
    pure = PurePosixPath(str(entry)) if isinstance(entry, str) else None
    if pure is None or str(pure) in ("", ".") or pure.is_absolute() or ".." in pure.parts:
        raise VerificationError(
            f"{source}: ignore path {entry!r} is not a path inside the model",
            rule="oms.ignore_paths",
            hint="an ignore path that covers the whole model would make the signature vacuous",
            subject=source,
        )
    return str(pure)


def _relative_to(path: Path, root: Path) -> str | None:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return rel.as_posix() if rel.parts else None


def _model_name(model_path: Path) -> str:
    return model_path.name or model_path.resolve().name


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
