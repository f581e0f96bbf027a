"""One registry of rule ids: every scanner finding and every refusal, with severity and docs.

A rule id (``pickle.global.dangerous``, ``signature.untrusted_key``) is the stable name of one
kind of finding or refusal; it appears in JSON output, SARIF, exit messages (``REFUSED
[rule]``) and the service's answers. ``kind`` says where it comes from: ``finding`` (a scanner
saw something; ``severity`` is its default, compared with the policy threshold) or ``refusal``
(verification, the ledger audit or a policy said no; exit code 1, no severity).

Two families are open-ended: ``chain.<rule>`` wraps any refusal of an upstream input, and
``expectation.<type>`` names a failed great-expectations expectation. :func:`rule` resolves
both. ``docs/rules.md`` is generated from this module: ``python -m custody.rules >
docs/rules.md``. Only the standard library is imported here, so every layer may import it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

SEVERITIES = ("info", "low", "medium", "high", "critical")  # the labels of validators' Severity
KINDS = ("finding", "refusal")


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    severity: str | None  # the default severity of a finding; None for a refusal
    summary: str  # what it means
    action: str  # what to do
    other_severities: tuple[str, ...] = ()  # severities the code also uses, by circumstance
    # a finding that means the input could not be read at all: the command could not do its
    # job, so it exits 2 (error), not 1 (refused)
    input_unreadable: bool = False
    family: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", self.id.split(".", 1)[0])
        if self.kind not in KINDS:
            raise ValueError(f"rule {self.id}: kind {self.kind!r} is not one of {KINDS}")
        labels = (self.severity, *self.other_severities) if self.severity else ()
        if (self.kind == "finding") != bool(labels) or not set(labels) <= set(SEVERITIES):
            raise ValueError(f"rule {self.id}: a finding has severities from {SEVERITIES}, "
                             "a refusal none")


_TAMPERED = ("treat the ledger as tampered with: run `custody audit verify` to find the first bad "
             "entry and restore the database from a trusted copy")
_UNSAFE = ("treat the file as unsafe: do not load it; get it again from a trusted source or "
           "repackage it in a format Custody can inspect (safetensors, zip)")
_UNREAD = ("the content was not inspected, so it counts as unsafe: do not load it; get it again "
           "from a trusted source")
_RESIGN = "ask the signer for a new signature or bundle; do not trust this one"
_DATA = ("review the rows or columns in the finding's evidence with the data's owner; record the "
         "snapshot only once the change is understood")
_POISON = ("review the rows listed in the evidence before training: drop or relabel them, and find "
           "out who changed the data")
_COSIGN = ("have the witnesses cosign the ledger's current checkpoint, then verify again")
_EVIDENCE = ("keep both checkpoints (the log's and the witness's) as evidence; " + _TAMPERED)
_LIMIT = ("the rest of the file was not inspected and it counts as unsafe; inspect a file this "
          "large or deep only from a source you trust")


def _f(rid: str, severity: str, summary: str, action: str, *others: str) -> Rule:
    return Rule(rid, "finding", severity, summary, action, others)


def _unreadable(rid: str, summary: str, action: str) -> Rule:
    return Rule(rid, "finding", "high", summary, action, input_unreadable=True)


def _r(rid: str, summary: str, action: str) -> Rule:
    return Rule(rid, "refusal", None, summary, action)


_ALL: tuple[Rule, ...] = (
    # --- service: Kubernetes admission and MLflow hooks -------------------------------------
    _r("admission.error", "the admission webhook could not check the model (ledger or policy "
       "error); it denies the object (in warn mode: admits it with a warning)",
       "read the message, fix the service's ledger or policy, retry"),
    _r("admission.malformed", "the AdmissionReview carries no object to check",
       "send a Kubernetes AdmissionReview v1 request with request.object"),
    _r("admission.annotation_mismatch", "the annotation custody.dev/artifact names another "
       "version than the bytes at the object's model URI are: an annotation only narrows what "
       "the bytes bind to", "serve the bytes of the version the annotation names, or correct or "
       "drop the annotation"),
    _r("admission.unbound", "the bytes at the object's model URI are not a recorded version: no "
       "record was made at that location with those object identities, and their digest is "
       "recorded nowhere (or they are too large to hash within the webhook)",
       "serve only recorded bytes: record the model from that URI with `custody record URI "
       "--name NAME --kind model`, then deploy it"),
    _r("admission.unreadable", "the webhook cannot read the objects at the model URI (missing, "
       "access denied, or a scheme custody does not read, e.g. pvc://), so nothing binds",
       "give the service read access to the store (its usual credential chain), fix the URI, or "
       "serve from a store custody reads (s3://, gs://, az://, hf://, https://, file://)"),
    _r("admission.unresolved", "the webhook cannot tell which recorded model the object runs: it "
       "names no model URI, or its custody.dev/artifact annotation is not a reference",
       "give the model's storage URI (storageUri, or the Pod annotation custody.dev/model-uri); "
       "the annotation custody.dev/artifact: NAME@VERSION only narrows it"),
    _r("admission.unsupported_kind", "the webhook checks InferenceServices and Pods only",
       "limit the webhook's rules to InferenceService and Pod resources"),
    _r("mlflow.replayed", "an MLflow webhook delivery id was already accepted within the "
       "signature window: a replay; nothing was checked or written",
       "nothing if MLflow retried a delivery it had an answer for; otherwise the webhook secret "
       "leaked: rotate it in MLflow and in CUSTODY_MLFLOW_WEBHOOK_SECRET"),
    _r("mlflow.tag_mismatch", "the model version's tag custody.artifact names a ledger record "
       "whose digest is not the digest of the version's bytes (or no record at all): the tag "
       "only narrows, it never binds",
       "register the bytes that were recorded, or record these bytes (`custody record DIR`) and "
       "fix or drop the tag"),
    _r("mlflow.unresolved", "the MLflow gate could not get the model version's artifacts to "
       "hash them (no download URI, a path on the MLflow host's disk, missing files, unsafe "
       "names): no verdict, the alias is not given",
       "let the tracking server serve the artifacts (what `mlflow server` does by default) or "
       "keep them in an object store, then set the alias on the version again to have it "
       "re-checked"),
    _r("ledger.error", "the lineage page could not check this node (ledger or policy error)",
       "run `custody verify REF` for the full error"),
    _r("unknown", "the lineage page has no verdict for this node: it was not checked",
       "run `custody verify REF` for this node"),
    # --- appending to the ledger ------------------------------------------------------------
    _r("append.entries_beyond_head", "the ledger holds entries beyond its newest signed "
       "checkpoint: they were written around the log; nothing was appended", _TAMPERED),
    _r("append.head_mismatch", "the ledger's head row does not match its signed checkpoint: "
       "its size or frontier was edited; nothing was appended", _TAMPERED),
    _r("append.head_unverified", "the ledger's head checkpoint does not verify under the "
       "ledger key; nothing was appended", _TAMPERED),
    _r("append.leaves_mismatch", "the stored leaves do not hash to the signed head: entries "
       "were removed, reordered or edited; nothing was appended", _TAMPERED),
    _r("append.tree_mismatch", "the stored Merkle nodes differ from the head's signed frontier; "
       "nothing was appended", _TAMPERED),
    # --- the artifact against its record ----------------------------------------------------
    _r("artifact.manifest_mismatch", "the bytes (or the manifest asked about) differ from the "
       "signed manifest of the recorded version", "do not load it; record a new version if "
       "the change is intended"),
    _r("artifact.modified", "the bytes match no recorded version of the artifact: they changed "
       "since recording", "do not load them; record a new version if the change is intended"),
    _r("record.not_found", "these bytes or this reference were never recorded in the ledger",
       "do not load them; record the artifact first (`custody record`), or check the reference "
       "with `custody list`"),
    _r("record.input_revoked", "`custody record` was given an --input that is revoked or "
       "flagged, or made from one (anything upstream); nothing was recorded", "record from an "
       "input version that is not revoked or flagged (see `custody lineage INPUT "
       "--downstream`), or pass --allow-flagged to record it as flagged"),
    _r("manifest.malformed", "the manifest inside a signed record is missing fields",
       "the record was not written by Custody: " + _TAMPERED),
    _r("manifest.inconsistent", "the manifest inside a signed record does not hash to its own "
       "root digest", "the record was not written by Custody: " + _TAMPERED),
    # --- object stores (s3://, gs://, az://, hf://, https://, file://, memory://) -------------
    _r("object.changed", "an object was replaced while it was hashed: its version id, ETag, "
       "generation or size is no longer the one listed before reading (docs/object-stores.md)",
       "wait until the upload has finished, or read a fixed version, then run the command "
       "again; if nobody should be writing there, find out who did"),
    _r("object.listing_changed", "objects were added to or removed from the prefix while it "
       "was hashed: the manifest would describe a set of objects the store no longer serves",
       "wait until the upload has finished, then run the command again; if nobody should be "
       "writing there, find out who did"),
    # --- the ledger audit -------------------------------------------------------------------
    _r("audit.checkpoint_edited", "a checkpoint row's columns differ from its signed note",
       _TAMPERED),
    _r("audit.checkpoint_missing", "the signed checkpoint an append extended is not stored "
       "(every append keeps one): checkpoint rows were deleted", _TAMPERED),
    _r("audit.entry_edited", "a ledger entry's payload no longer matches its leaf hash",
       _TAMPERED),
    _r("audit.entry_gap", "a ledger entry is missing (deleted or renumbered) or out of order",
       _TAMPERED),
    _r("audit.entry_malformed", "a ledger entry's payload is not a well-formed Custody entry: "
       "it was not written by Custody", _TAMPERED),
    _r("audit.index_malformed", "an index row holds a value the database cannot convert: it "
       "was edited", _TAMPERED),
    _r("audit.signature_invalid", "the signature of a ledger entry does not verify", _TAMPERED),
    _r("audit.entry_type", "a ledger entry has a type this version of Custody does not know",
       "upgrade Custody (`custody migrate` after upgrading); otherwise " + _TAMPERED),
    _r("audit.fork", "two signed checkpoints of one size have different roots: the log was "
       "forked", _TAMPERED),
    _r("audit.index_edited", "index rows (version, edge, revocation or stored statement) differ "
       "from the signed entry they were written from", _TAMPERED),
    _r("audit.index_inserted", "the index tables hold more rows than the signed log has entries",
       _TAMPERED),
    _r("audit.index_missing", "a signed entry has no index row: index rows were deleted",
       _TAMPERED),
    _r("audit.rollback", "a saved checkpoint has more entries than the ledger: entries were "
       "removed since", _TAMPERED),
    _r("audit.root_mismatch", "a range of entries does not hash to its signed checkpoint: an "
       "entry was edited, replaced, reordered or inserted", _TAMPERED),
    _r("audit.signature_unverifiable", "an entry's signing certificate carries a key that is not "
       "EC, so its signature cannot be checked", _TAMPERED),
    _r("audit.size_mismatch", "the number of entries differs from what the newest signed "
       "checkpoint covers: entries were deleted or inserted", _TAMPERED),
    _r("audit.tree_edited", "the stored Merkle nodes are malformed, missing, inserted or differ "
       "from the tree recomputed from the entries (proofs built from them would be wrong)",
       _TAMPERED),
    _r("ledger.inconsistent", "the stored bundle, statement or lineage differs from the signed "
       "log entry", _TAMPERED),
    _r("ledger.not_included", "the record's ledger entry is not covered by the newest signed "
       "checkpoint: it was written around the log", _TAMPERED),
    _r("ledger.key_mismatch", "the ledger database names another checkpoint key than the pinned "
       "one (the message names both key ids): its ledger_meta was edited", _TAMPERED),
    _r("ledger.key_unpinned", "no ledger checkpoint key is pinned, and the key stored in the "
       "database proves nothing: verify and audit refuse rather than trust it",
       "pin the verifier key from a trusted copy (the ledger_vkey line of the creating "
       "workspace's .custody/config.toml): `--ledger-vkey VKEY`, `CUSTODY_LEDGER_VKEY=VKEY`, or "
       "ledger_vkey in the workspace's config.toml"),
    # --- Merkle proofs, checkpoints and receipts --------------------------------------------
    _r("merkle.consistency_invalid", "a consistency proof does not show that the newer log "
       "extends the older one", "export a fresh checkpoint with `custody audit checkpoint`; "
       "if it still fails the log was forked: " + _TAMPERED),
    _r("merkle.inclusion_invalid", "an inclusion proof does not place the entry under the "
       "signed root", "export a fresh receipt with `custody audit prove REF`; if it still "
       "fails, " + _TAMPERED),
    _r("merkle.proof_invalid", "a Merkle proof does not check out", "export a fresh receipt "
       "with `custody audit prove REF`"),
    _r("merkle.proof_malformed", "a Merkle proof has the wrong number of hashes for its tree",
       "export a fresh receipt with `custody audit prove REF`"),
    _r("checkpoint.malformed", "a signed note or checkpoint cannot be parsed", "export a fresh "
       "one with `custody audit checkpoint`"),
    _r("checkpoint.origin_mismatch", "the checkpoint is for another log than the one expected",
       "pass this ledger's checkpoint, or the verifier key of the log it names"),
    _r("checkpoint.signature_invalid", "a checkpoint signature does not verify: the note was "
       "altered after signing, or forged", "export a fresh checkpoint with `custody audit "
       "checkpoint`; check which verifier key (vkey) you trust"),
    _r("checkpoint.untrusted_key", "no signature on the checkpoint is from a trusted key",
       "pass the verifier key (vkey) of the ledger that signed it"),
    _r("witness.fork", "the log shows a checkpoint of the size a witness cosigned, with "
       "another root: the log forked (a split view)", _EVIDENCE),
    _r("witness.future_timestamp", "a witness cosignature is dated in the future beyond the "
       "allowed clock skew", "check the clocks of this machine and of the witness (NTP), then "
       "have it cosign again"),
    _r("witness.inconsistent", "the log is not proven to extend the checkpoint a witness "
       "cosigned", _EVIDENCE),
    _r("witness.log_key_changed", "the log's checkpoints are signed by another key than the one "
       "the witness pinned", "pass the log key the witness pinned; confirm an announced key "
       "rotation out of band before moving the witness state aside"),
    _r("witness.quorum_not_met", "fewer valid witness cosignatures than the quorum needs",
       _COSIGN),
    _r("witness.rollback", "the log has fewer entries than a witness cosigned: it was rolled "
       "back or replaced", "restore the ledger from a backup holding all cosigned entries; "
       + _EVIDENCE),
    _r("witness.state_unsafe", "the witness's state directory is writable by others than the "
       "witness's user, so its memory of the log could be rewritten", "give the directory to "
       "the witness's user alone: chown it to that user and chmod 700 it"),
    _r("witness.signature_invalid", "a witness cosignature does not verify: the checkpoint or "
       "the cosignature line was altered, or forged", _COSIGN),
    _r("witness.stale", "fewer of the quorum's witness cosignatures than it needs are younger "
       "than the allowed maximum age", _COSIGN),
    _r("witness.not_covered", "the policy requires witnesses, and the record's ledger entry is "
       "in no checkpoint found cosigned (it is newer than all of them, or none was found)",
       "have each witness cosign the ledger's current checkpoint (`custody audit witness "
       "--out` into the policy's cosigned folder), then verify again"),
    _r("witness.cosigned_invalid", "a file in the policy's cosigned folder is not a signed "
       "checkpoint, or one of this ledger that does not verify under its key", "replace it "
       "with what `custody audit witness --out FILE` writes, or move it out of the folder"),
    _r("witness.state_invalid", "a witness's saved state for a log is unreadable or belongs to "
       "another log", "restore the state file from the witness's backup; do not delete it, "
       "or the witness trusts the next checkpoint on first use"),
    _r("receipt.malformed", "a receipt cannot be parsed, or it proves no artifact record",
       "export a fresh receipt with `custody audit prove REF`"),
    _r("receipt.inconsistent", "the receipt's ledger entry and its bundle name different "
       "artifacts", "export a fresh receipt with `custody audit prove REF`"),
    # --- bundles, signatures and certificates -----------------------------------------------
    _r("bundle.malformed", "the bundle is not a well-formed Sigstore bundle v0.3 with a DSSE "
       "envelope", "use the bundle Custody exported (`custody bundle REF`); " + _RESIGN),
    _r("bundle.payload_type", "the DSSE envelope does not carry an in-toto statement",
       "verify plain-file signatures as files, not as records; " + _RESIGN),
    _r("bundle.unsupported", "the bundle is signed in a way this verifier does not take (key, "
       "certificate chain or keyless)", "verify key bundles with --key, certificate chains "
       "with --ca-cert, keyless ones with --identity/--issuer"),
    _r("signature.count", "the envelope carries no signature or more than one",
       "Custody accepts exactly one signature per envelope: " + _RESIGN),
    _r("signature.invalid", "the signature does not verify: the statement or the signature was "
       "altered", _RESIGN),
    _r("signature.untrusted_key", "the signing key is not one the policy trusts",
       "pass the signer's public key with --key (or in the policy) if you trust it"),
    _r("signature.untrusted_kind", "the policy trusts no signer of this kind (key, certificate "
       "or keyless identity)", "trust the signer with --key, --ca-cert or --identity/--issuer, "
       "or in the policy's [[trust]] rules"),
    _r("cert.chain", "the signing certificate does not chain to a trusted CA root, or is given "
       "as the root itself", "pass the CA root that issued the chain with --ca-cert; check "
       "that no certificate has expired"),
    _r("cert.unsupported", "the signing certificate's key is not an EC key",
       "Custody verifies certificates with EC keys: " + _RESIGN),
    _r("cert.usage", "the certificate may not sign code (no digitalSignature or codeSigning "
       "usage)", "sign with a certificate issued for signing"),
    _r("sigstore.artifact", "the Sigstore signature is for other bytes", "the file is not the "
       "one that was signed: do not load it"),
    _r("sigstore.bundle", "the keyless bundle is malformed, or of the other type (plain file "
       "vs DSSE statement)", "verify DSSE bundles as statements and plain-file bundles with "
       "the file; key or certificate bundles with --key or --ca-cert"),
    _r("sigstore.chain", "the signing certificate does not chain to the Sigstore trust root, "
       "or it was expired when used", "was it signed on another Sigstore instance? try "
       "--staging or the instance's --trusted-root"),
    _r("sigstore.identity", "the keyless signer is not an identity the policy trusts",
       "check --identity/--identity-regexp and --issuer against the signer"),
    _r("sigstore.signature", "the signed DSSE statement or its signature was altered", _RESIGN),
    _r("sigstore.tlog", "the transparency-log entry is missing, altered, or does not match this "
       "signature", "the bundle's log proof cannot be trusted: " + _RESIGN),
    _r("sigstore.verify", "Sigstore verification failed for another reason (see the message)",
       "read the message; " + _RESIGN),
    # --- signed statements and OpenSSF Model Signing ---------------------------------------
    _r("statement.inconsistent", "the statement's subject digest does not match its own "
       "manifest", _RESIGN),
    _r("statement.malformed", "the signed payload is not a complete in-toto Statement v1 "
       "Custody record", _RESIGN),
    _r("statement.predicate", "the statement is signed, but it is not a Custody record",
       "verify other predicates with their own tools, or record the artifact with Custody"),
    _r("statement.subject_mismatch", "the signature covers other bytes or another artifact "
       "than the ones checked", "use the bundle recorded for this artifact (`custody bundle "
       "REF`); if it came from the ledger, " + _TAMPERED),
    _r("statement.unsupported", "the statement names single files, but a directory was given",
       "verify the file it names; a directory is verified with its own record or OMS signature"),
    _r("oms.changed_file", "a model file differs from the digest signed in its OMS manifest",
       "re-download the model, or ask the signer for a new signature"),
    _r("oms.extra_file", "the model folder holds a file its OMS signature does not cover",
       "remove the file, or ask the signer for a signature that covers it"),
    _r("oms.missing_file", "a file the OMS signature covers is missing from the model",
       "re-download the model, or ask the signer for a new signature"),
    _r("oms.ignore_paths", "an OMS ignore path is not a path inside the model (it could make the "
       "signature cover nothing)", _RESIGN),
    _r("oms.inconsistent", "the OMS resources do not hash to the statement's subject", _RESIGN),
    _r("oms.malformed", "the OMS statement or its resources are malformed", _RESIGN),
    _r("oms.unsupported", "the OMS statement uses a predicate, method or hash Custody does not "
       "verify (it verifies method 'files' with sha256)", "ask for a v1.0 'files' sha256 "
       "signature"),
    # --- lineage, revocation and policy -----------------------------------------------------
    _r("chain.digest_mismatch", "an input's digest in the ledger differs from the one in the "
       "signed record or statement", _TAMPERED),
    _r("chain.flagged", "an upstream input was recorded with a flagged scan verdict",
       "inspect the input with `custody lineage` and its scan report; re-make this artifact "
       "from clean inputs"),
    _r("chain.revoked", "an upstream input was revoked", "see `custody lineage REF "
       "--downstream` for what it affects; re-make this artifact from inputs that are not "
       "revoked"),
    _r("chain.too_deep", "the upstream chain is deeper than the policy's [lineage] max_depth",
       "raise max_depth in the policy if the depth is expected"),
    _r("revoked", "this version was revoked (the message gives the ledger entry and reason)",
       "do not use it; see `custody lineage REF --downstream` for what it affects"),
    _r("scan.flagged", "the artifact was recorded with a scan verdict at or above the policy "
       "threshold", "inspect it with `custody scan`; record a clean version"),
    _r("scan.error", "a scanner could not finish, so the scan fails closed", "run `custody scan` "
       "for the report; do not load the artifact"),
    _r("expectation.error", "a policy expectation suite could not run", "run `custody scan` with "
       "the suite to see why; fix the suite or the data"),
    _r("policy.baseline_required", "the policy requires datasets to be recorded with a baseline "
       "comparison, and this one was not", "record it with --baseline PATH|REF"),
    _r("policy.max_age", "the record is older than the policy's [artifacts] max_age_days",
       "record a fresh version"),
    _r("policy.no_signer", "no [[trust]] rule of the policy covers this artifact",
       "add a [[trust]] rule that covers it, or a catch-all rule"),
    _r("policy.trained_on_required", "the policy requires models to name a trained_on dataset, "
       "and this record names none", "record the model with --input DATASET --activity "
       "trained_on"),
    _r("dvc.workspace_mismatch", "a DVC-tracked path differs from what dvc.lock or its .dvc "
       "file recorded", "run `dvc add PATH` to record the new content, or `dvc checkout PATH` "
       "to restore it"),
    # --- scanner plumbing -------------------------------------------------------------------
    _f("scanner.crashed", "high", "a scanner crashed on the file; it fails closed", _UNSAFE),
    _unreadable("scanner.unreadable", "the file cannot be read", "check the path and its "
                "permissions, then scan again (the scan exits 2)"),
    _f("content.unreadable", "high", "the content cannot be read to the end", _UNREAD),
    _f("compressed.corrupt", "high", "a compressed stream cannot be decompressed", _UNREAD),
    _f("format.polyglot", "medium", "the content is both a pickle and a zip archive: loaders "
       "disagree on what it is", _UNSAFE),
    _f("format.unknown", "info", "unrecognised binary content, not inspected further",
       "nothing, unless a loader will read it: then convert it to a format Custody scans"),
    _f("format.unscanned", "info", "a recognised format with no scanner; not inspected",
       "nothing, unless a loader will execute it"),
    _f("limit.decompressed", "high", "more decompressed bytes than the scan allows", _LIMIT),
    _f("limit.depth", "high", "archives, compressed streams or pickles nested too deep", _LIMIT),
    _f("limit.members", "high", "more archive members than the scan allows", _LIMIT),
    _f("limit.memory", "high", "content inside a compressed stream too large to inspect in "
       "memory", _LIMIT),
    _f("limit.opcodes", "high", "more pickle opcodes than the scan allows", _LIMIT),
    _f("limit.ratio", "high", "a compression ratio typical of a decompression bomb", _LIMIT),
    _f("limit.time", "high", "the scan ran out of time", _LIMIT),
    # --- model formats ----------------------------------------------------------------------
    _f("pickle.global.dangerous", "critical", "the pickle imports a global that can run code "
       "or reach the system when loaded", "do not load it: it is an attack or unsafe by "
       "design; get the model as safetensors"),
    _f("pickle.global.unknown", "medium", "the pickle imports a global outside the allowlist "
       "(high when it cannot be determined statically)", "if the class is yours and safe, add it "
       "to the policy's [pickle] allow_globals; otherwise do not load it", "high"),
    _f("pickle.global.unresolved", "high", "a STACK_GLOBAL's module or name is computed, so it "
       "cannot be judged", _UNSAFE),
    _f("pickle.global.extension", "high", "the pickle loads a global from the copyreg extension "
       "registry: what it names depends on the loading process", _UNSAFE),
    _f("pickle.build.global", "high", "BUILD sets attributes on an imported object itself "
       "(monkey-patching during load)", _UNSAFE),
    _f("pickle.nested.opaque", "high", "the pickle loads a nested payload that cannot be read "
       "statically", _UNSAFE),
    _f("pickle.malformed", "high", "the pickle breaks part-way and loaders act on what it "
       "called before the break (low when an unpickler rejects it before calling anything; "
       "medium for a later pickle of a stream)", _UNSAFE, "low", "medium"),
    _f("pickle.trailing_data", "low", "bytes after the last pickle are not a pickle",
       "check where the extra bytes came from; strip them or get a clean copy"),
    _f("picklescan.dangerous", "high", "picklescan (the second opinion) calls a global dangerous "
       "that Custody did not flag as critical", _UNSAFE),
    _f("torch.legacy.storages", "medium", "legacy torch storages do not match their keys",
       _UNSAFE),
    _f("torch.legacy.trailing", "medium", "data follows the last legacy torch storage (scanned "
       "as pickles)", "re-save the model with a current torch.save, or as safetensors"),
    _f("torch.legacy_tar", "high", "a member of a legacy torch tar archive breaks", _UNSAFE),
    _f("torch.torchscript", "info", "a TorchScript archive: torch.jit.load compiles and runs its "
       "code/ members", "load it only with the trust you give to code from its author"),
    _f("numpy.malformed", "high", "a .npy header cannot be read", _UNREAD),
    _f("numpy.object_array", "low", "an object-dtype array: numpy.load needs allow_pickle=True, "
       "which runs the pickle that follows (scanned as well)", "prefer numeric arrays; load "
       "with allow_pickle=True only if the pickle findings are clean"),
    _f("numpy.size_mismatch", "medium", "the .npy header announces another data size than "
       "follows (medium when extra bytes hide content, low when data is missing)", _UNSAFE,
       "low"),
    _f("keras.config_too_large", "high", "the Keras model config is too large to inspect "
       "completely", _UNREAD),
    _f("keras.config_unreadable", "high", "the Keras model config cannot be read or is not "
       "JSON", _UNREAD),
    _f("keras.lambda", "high", "a Lambda layer: loading it runs the Python code it carries "
       "(CVE-2024-3660)", "rebuild the model without Lambda layers; never load it with "
       "safe_mode=False unless you trust its author as you trust code"),
    _f("keras.module", "medium", "the config makes Keras import a module outside Keras "
       "(CVE-2025-1550); as severe as that global is for pickles", "check the named module; do "
       "not load the model if you do not know it", "high", "critical"),
    _f("keras.tf_op", "high", "a TFOpLambda layer calls a risky TensorFlow op (file or process "
       "access)", _UNSAFE),
    _f("hdf5.malformed", "high", "a legacy Keras .h5 file's model_config cannot be read",
       _UNREAD),
    _f("gguf.malformed", "high", "a GGUF header cannot be decoded (medium for an unknown GGUF "
       "version)", _UNREAD, "medium"),
    _f("gguf.chat_template", "high", "a GGUF chat template reaches Python internals "
       "(template injection in GGUF loaders)", "replace the chat template with a plain one "
       "before loading"),
    _f("onnx.external_data_escape", "high", "an ONNX external-data location leaves the model's "
       "folder (absolute path, .. or a symlink out)", _UNSAFE),
    _f("onnx.malformed", "low", "the file looks like ONNX but its protobuf is malformed",
       "check the file with onnx.checker before loading"),
    _f("onnx.too_large", "medium", "the ONNX model is too large to parse; not inspected",
       _UNREAD),
    _f("safetensors.header", "medium", "the safetensors header is inconsistent (duplicate keys, "
       "holes, overlaps; high when it is unreadable)", _UNSAFE, "high"),
    _f("archive.7z_uninspected", "medium", "a 7z archive: its members cannot be inspected (the "
       "'nullifAI' models hid pickles this way)", "repackage the archive as zip and scan again"),
    _f("tar.link", "medium", "a tar member is a symbolic or hard link", "extract by hand and "
       "check where the link points"),
    _f("tar.malformed", "high", "the tar archive cannot be read further", _UNREAD),
    _f("tar.path_escape", "medium", "a tar member's path leaves the extraction folder", _UNSAFE),
    _f("zip.anomaly", "medium", "a zip structure anomaly (sizes, names or headers that loaders "
       "read differently)", _UNSAFE),
    _f("zip.bad_crc", "medium", "a zip member's CRC does not match its content", _UNSAFE),
    _f("zip.malformed", "high", "the zip archive cannot be read", _UNREAD),
    _f("zip.member_unreadable", "high", "a zip member cannot be read", _UNREAD),
    _f("zip.overlap", "medium", "two zip members overlap (zip-bomb or confusion technique)",
       _UNSAFE),
    _f("zip.prefixed", "medium", "foreign bytes come before the zip archive (zipfile and Keras "
       "still open it; torch does not): the zip is scanned as well", _UNSAFE),
    _f("picklescan.disagrees", "info", "picklescan's denylist calls a global dangerous that a "
       "curated allowlist profile admits; both views are in the evidence", "nothing: the "
       "profile's entry says what the global's reduce path calls; drop the profile in the "
       "policy ([pickle] profiles) to side with picklescan"),
    _f("limit.allocation", "high", "a declared length or a call (bytes(n), bytearray(n), "
       "list(range(n)), an ndarray shape, a storage size) makes the loader allocate more than "
       "the scan allows: an allocation bomb", _LIMIT),
    _f("limit.expansion", "high", "shared pickle references unfold to more values than the scan "
       "allows (memo-expansion 'billion laughs'): hashing or walking the object never ends",
       _LIMIT),
    _f("limit.pickle_depth", "high", "pickle values nested deeper than the scan allows: hashing "
       "or walking the object overflows the stack", _LIMIT),
    _f("compressed.uninspected", "high", "a compressed stream whose codec is not available to "
       "the scanner (lz4 without the lz4 package); its content was not inspected",
       "install the codec's package (pip install lz4) and scan again"),
    _f("torch.storage_mismatch", "high", "a torch storage declares more elements than its data "
       "holds (or names a storage that is missing): loaders read past the buffer", _UNSAFE),
    _f("torch.tensor_out_of_bounds", "high", "a tensor's offset, sizes and strides reach past "
       "the end of its storage: loaders read out of bounds", _UNSAFE),
    _f("torchscript.code", "critical", "TorchScript code calls an op that reads or writes files, "
       "loads libraries or runs code when the archive is loaded (medium for ops of an unknown "
       "namespace)", _UNSAFE, "medium", "high"),
    # --- datasets ---------------------------------------------------------------------------
    _unreadable("dataset.unreadable", "the snapshot cannot be read as a table (Parquet or CSV)",
                "check the file and its format; the scan exits 2"),
    _unreadable("dataset.baseline_unreadable", "the baseline cannot be read as a table",
                "check the --baseline path or reference; the scan exits 2"),
    _f("dataset.no_baseline", "info", "no baseline: only the profile and schema fingerprint "
       "were recorded", "pass --baseline PATH|REF to compare with a previous snapshot"),
    _f("dataset.checks", "info", "which poisoning rules ran against the baseline (its rows or "
       "its stored reference) and why any was skipped", "nothing to do; a skipped rule says "
       "what it needs (an id column in both versions, the previous version's columns)"),
    _f("dataset.poison_skipped", "info", "row-level poisoning checks were skipped (the baseline "
       "is a profile without a stored reference, or the label is not categorical)", "pass the "
       "baseline's rows (--baseline PATH) or a version recorded with its reference, and a "
       "categorical --label"),
    _f("schema.column_added", "medium", "a column not in the baseline", _DATA),
    _f("schema.column_removed", "high", "a column of the baseline is missing", _DATA),
    _f("schema.column_renamed", "medium", "a column appears renamed (same type and data)",
       _DATA),
    _f("schema.column_reordered", "low", "columns are in another order than in the baseline",
       "check readers that use column positions"),
    _f("schema.new_category", "medium", "a column holds values never seen in the baseline",
       _DATA),
    _f("schema.nullability_changed", "medium", "a column became nullable (low when it stopped "
       "being nullable)", _DATA, "low"),
    _f("schema.type_changed", "high", "a column's type changed in a way old values may not fit",
       _DATA),
    _f("schema.type_widened", "low", "a column's type widened: every old value still fits",
       "check readers that expect the old type"),
    _f("drift.distribution", "medium", "a column's distribution moved (PSI, Wasserstein or "
       "Jensen-Shannon beyond tolerance; low below the medium tolerance)", _DATA, "low"),
    _f("drift.label_marginal", "medium", "the label's class shares moved (low below the medium "
       "tolerance)", _DATA, "low"),
    _f("drift.null_rate", "medium", "a column's null rate moved (low below the medium "
       "tolerance)", _DATA, "low"),
    _f("drift.time_backwards", "low", "a time-like column moved backwards: the snapshot is "
       "older than the baseline", "check that the snapshot is the newer one"),
    _f("poison.boundary_relabel", "high", "among the rows the baseline model is unsure about, "
       "one label is far more common than it predicts, beyond a natural prior shift (labels "
       "moved near the decision boundary); each row is plausible alone, so the rows are "
       "candidates", "compare the candidate rows (custody scan PATH --baseline REF --json lists "
       "them) with their source labels before training, and find out who changed the data"),
    _f("poison.conflicting_duplicate", "high", "rows repeat a baseline row exactly but with "
       "another label", _POISON),
    _f("poison.injected_cluster", "high", "a dense cluster of rows carries one label where the "
       "baseline has few rows (injected near-duplicates or outliers)", _POISON),
    _f("poison.knn_disagreement", "high", "rows carry a label that all their nearest baseline "
       "neighbours contradict, beyond the baseline's own noise", _POISON),
    _f("poison.label_changed", "high", "rows keep their id but changed label since the "
       "baseline", _POISON),
    _f("poison.prior_shift_injected", "high", "the label marginal moved and the flagged rows "
       "explain the move", _POISON),
    _f("poison.trigger_pattern", "high", "a feature value or combination predicts one label "
       "far more strongly than in the baseline (backdoor trigger or targeted relabelling)",
       _POISON),
    _f("expectation.suite_invalid", "high", "the great-expectations suite cannot be read or "
       "has invalid expectations, so it cannot pass", "fix the suite JSON (the message names "
       "the invalid expectations)"),
    _f("expectation.suite_result", "info", "the suite's totals: expectations passed and failed",
       "nothing; failures have their own findings"),
)

RULES: Mapping[str, Rule] = MappingProxyType({r.id: r for r in _ALL})

# Open-ended families: the fixed prefix of the id, and the rule every member shares.
PATTERNS: Mapping[str, Rule] = MappingProxyType({
    "chain.": _r("chain.<rule>", "an upstream input was refused: the id is `chain.` and that "
                 "input's rule (the message names the input and its depth)",
                 "do what the entry of that rule says, for the input the message names"),
    "expectation.": _f("expectation.<type>", "medium", "a great-expectations expectation of "
                       "the suite failed (the evidence names rows and values)", _DATA),
})
if len(RULES) != len(_ALL):
    raise RuntimeError("rules.py registers a rule id twice")


def rule(rule_id: str) -> Rule:
    """The registered rule for ``rule_id``, including members of the open-ended families."""
    found = RULES.get(rule_id)
    if found is not None:
        return found
    for prefix, shared in PATTERNS.items():
        rest = rule_id.removeprefix(prefix)
        if rest != rule_id and rest and (prefix != "chain." or _known(rest)):
            return shared
    raise LookupError(f"unknown rule id {rule_id!r}: register it in custody/rules.py")


def _known(rule_id: str) -> bool:
    try:
        rule(rule_id)
    except LookupError:
        return False
    return True


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown() -> str:
    """The content of docs/rules.md."""
    out = [
        "# Rule ids",
        "",
        "Every finding and every refusal carries a stable rule id: in JSON and SARIF output, in",
        "`REFUSED [rule]` messages and in the service's answers. A **finding** comes from a",
        "scanner; its severity (the default is listed, others in the meaning) is compared with",
        "the policy threshold. A **refusal** comes from verification, the ledger or the policy,",
        "and exits 1.",
        "",
        "This file is generated from `rules.py`: run `python -m custody.rules > docs/rules.md`",
        "after changing a rule (tests/project/test_rules_registry.py checks that they agree).",
    ]
    families: dict[str, list[Rule]] = {}
    for r in [*RULES.values(), *PATTERNS.values()]:
        families.setdefault(r.family, []).append(r)
    for family in sorted(families):
        out += ["", f"## {family}", "", "| id | kind | default severity | meaning | what to do |",
                "|---|---|---|---|---|"]
        for r in sorted(families[family], key=lambda r: r.id):
            severity = r.severity or "-"
            if r.other_severities:
                severity += " (or " + ", ".join(r.other_severities) + ")"
            out.append(f"| `{r.id}` | {r.kind} | {severity} | {_cell(r.summary)} | "
                       f"{_cell(r.action)} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
