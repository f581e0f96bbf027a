"""Append real, signed records to a ledger quickly (no file hashing or scanning)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from custody.provenance.hashing.manifest import FileEntry, Manifest
from custody.provenance.ledger.append import InputLink, SignedRecord
from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger
from custody.provenance.verification.attestation import RecordedInput, build_statement
from custody.signing.key_signer import ECKeySigner
from custody.signing.keys import load_private_key

CLEAN_SCAN = {"verdict": "clean", "max_severity": None, "threshold": "medium", "counts": {},
              "scanners": []}


def append_one(ledger: Ledger, signer: ECKeySigner, name: str, kind: str, content: bytes,
               inputs: list[ArtifactVersionPublic] | None = None) -> ArtifactVersionPublic:
    digest = hashlib.sha256(content).hexdigest()
    manifest = Manifest.for_file(f"{name}.bin", FileEntry(f"{name}.bin", len(content), digest))
    links = [InputLink(v, "trained_on") for v in inputs or []]
    recorded = [RecordedInput(v.name, v.version, v.digest_algorithm, v.digest, "trained_on")
                for v in inputs or []]

    def build(version: int) -> SignedRecord:
        statement = build_statement(name=name, kind=kind, version=version, manifest=manifest,
                                    inputs=recorded, scan_summary=CLEAN_SCAN,
                                    recorded_at=datetime.now(UTC), tool_version="test").to_bytes()
        return SignedRecord(statement, signer.sign_statement(statement), signer.identity,
                            {**CLEAN_SCAN, "path": name, "findings": []}, signer.public_key_pem)

    return ledger.append_version(name=name, kind=kind, manifest=manifest, inputs=links,
                                 build=build)


def append_records(ledger: Ledger, home: Path, count: int, *, with_inputs: bool,
                   prefix: str = "art") -> list[ArtifactVersionPublic]:
    """``count`` records; with inputs, each odd one is a model trained on the one before."""
    signer = ECKeySigner(load_private_key(home / "keys" / "signing.key"))
    out: list[ArtifactVersionPublic] = []
    for i in range(count):
        model = with_inputs and i % 2 == 1
        inputs = [out[-1]] if model else None
        out.append(append_one(ledger, signer, f"{prefix}-{i}", "model" if model else "dataset",
                              f"{prefix} content {i}".encode(), inputs))
    return out
