"""``custody verify PATH --bundle FILE``: verify bytes against a standalone signature, no ledger.

Any bundle kind is accepted (key, certificate chain, Sigstore keyless DSSE or plain artifact
signature) and any statement Custody understands: its own record, an OpenSSF Model Signing
(OMS) signature of a model file or directory, or any other in-toto statement whose subject must
then carry PATH's digest. The signature is checked first, then that it is about these bytes
(sigstore-python does not compare DSSE subjects; this does), then the content is scanned.
"""

from __future__ import annotations

from pathlib import Path

from custody.errors import UsageError, VerificationError
from custody.provenance.hashing.files import hash_path
from custody.provenance.hashing.manifest import Manifest, diff_manifests
from custody.provenance.log.checkpoint import NoteVerifier
from custody.provenance.policy.core import Policy
from custody.provenance.verification.attestation import parse_claims
from custody.provenance.verification.chain import NodeResult
from custody.provenance.verification.inclusion import open_receipt
from custody.provenance.verification.oms_files import verify_model
from custody.provenance.verification.verify import VerificationReport, scan_or_refuse
from custody.signing.bundle_info import BundleKind, classify_bundle
from custody.signing.oms import OMS_PREDICATE
from custody.signing.statement import CUSTODY_PREDICATE, Statement
from custody.signing.subjects import check_subjects


def verify_standalone(
    path: Path,
    bundle_text: str,
    policy: Policy,
    *,
    bundle_path: Path,
    allow_symlinks: bool = False,
) -> VerificationReport:
    source = str(bundle_path)
    manifest = hash_path(path, allow_symlinks=allow_symlinks)
    kind = classify_bundle(bundle_text, source=source)
    if kind is BundleKind.KEYLESS_ARTIFACT:
        signer = _verify_artifact_signature(path, manifest, bundle_text, policy, source)
        return _report(path, manifest, policy, ref=manifest.name, kind="file", signer=signer)
    verifier = policy.verifier()
    verified = verifier.verify_bundle(bundle_text, source=source)
    statement = Statement.from_bytes(verified.payload)
    if statement.predicate_type == OMS_PREDICATE:
        oms = verify_model(path, bundle_path, verifier)
        return _report(path, manifest, policy, ref=f"{oms.manifest.model_name} (OMS)",
                       kind="model", signer=oms.signer)
    if statement.predicate_type == CUSTODY_PREDICATE:
        claims = parse_claims(statement, source=source)
        # Trusted for something is not enough: it must be trusted for this kind and name.
        policy.verifier_for(claims.kind, claims.name).verify_bundle(bundle_text, source=source)
        if claims.manifest != manifest:
            diff = diff_manifests(claims.manifest, manifest).describe()
            raise VerificationError(
                f"{path} is not the artifact {source} was signed for "
                f"({claims.name}@{claims.version}: {diff})",
                rule="statement.subject_mismatch",
                hint="the bundle belongs to other bytes; use the bundle recorded for this "
                "artifact",
                subject=str(path),
            )
        return _report(path, manifest, policy, ref=f"{claims.name}@{claims.version}",
                       kind=claims.kind, signer=verified.signer,
                       inputs=tuple(f"{i.name}@{i.version}" for i in claims.inputs))
    if manifest.is_directory:
        raise VerificationError(
            f"{source} is a {statement.predicate_type} statement, which names files, not "
            f"directories", rule="statement.unsupported", subject=source)
    check_subjects(statement, manifest.digest, source=source)
    return _report(path, manifest, policy, ref=manifest.name, kind="file",
                   signer=verified.signer)


def verify_receipt_file(
    path: Path, receipt: bytes, policy: Policy, ledger_verifier: NoteVerifier, *, source: str,
    allow_symlinks: bool = False,
) -> VerificationReport:
    """Verify ``path`` offline against an inclusion receipt from ``custody audit prove``."""
    payload = open_receipt(receipt, ledger_verifier, subject=source)
    report = verify_standalone(path, str(payload.get("bundle", "")), policy,
                               bundle_path=Path(source), allow_symlinks=allow_symlinks)
    if report.artifact.ref != f"{payload.get('name')}@{payload.get('version')}":
        raise VerificationError(f"{source}: the receipt's entry and its bundle disagree",
                                rule="receipt.inconsistent", subject=source)
    return report


def _verify_artifact_signature(path: Path, manifest: Manifest, bundle_text: str,
                               policy: Policy, source: str) -> str:
    if manifest.is_directory:
        raise UsageError(f"{source} signs one file, but {path} is a directory")
    if not policy.identities:
        raise VerificationError(
            f"{source} is a Sigstore keyless signature, and the policy trusts no identity",
            rule="signature.untrusted_kind", hint="pass --identity ID --issuer URL",
            subject=source)
    from custody.signing.sigstore_verify import SigstoreVerifier

    digest = manifest.files[0].sha256  # the bytes hashed once, for the whole verification
    last: VerificationError | None = None
    for identity in policy.identities:
        try:
            facts = SigstoreVerifier(identity, policy.sigstore).verify_artifact(
                digest, bundle_text, source=source)
        except VerificationError as exc:
            if exc.rule != "sigstore.identity":
                raise
            last = exc
            continue
        return f"{facts.identity} ({facts.issuer})"
    assert last is not None  # noqa: S101 - at least one identity was tried
    raise last


def _report(path: Path, manifest: Manifest, policy: Policy, *, ref: str, kind: str,
            signer: str, inputs: tuple[str, ...] = ()) -> VerificationReport:
    scan = scan_or_refuse(path, manifest, policy,
                          kind=kind if kind in ("dataset", "model") else None)
    node = NodeResult(ref=ref, kind=kind, digest=manifest.ref, signer=signer,
                      scan_verdict=scan.verdict.value, depth=0, inputs=inputs)
    return VerificationReport(str(path), manifest, node, scan)
