"""The Custody record statement: what is signed for every recorded artifact version.

Subject: the artifact's root digest under ``sha256`` (for a directory, the SHA-256 of its
canonical manifest, ``sha256-manifest-v1``). Predicate ``https://custody.dev/artifact-record/v1``:
the artifact's name, kind and version, the full manifest (OMS-compatible resources), the scan
summary, and the inputs it was made from (name, version, digest, activity).

Optional claims: ``dvc``, ``activity``, ``dataset`` and, for an artifact read from an object
store, ``locations``: the source URI and, per file of the manifest, the object's URI and identity
(size, version id / ETag / generation), never a credential (see
:mod:`custody.provenance.hashing.locations`). Statements without it still parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from custody.errors import VerificationError
from custody.provenance.hashing.locations import Locations
from custody.provenance.hashing.manifest import Manifest
from custody.signing.statement import CUSTODY_PREDICATE, Statement, Subject


@dataclass(frozen=True)
class RecordedInput:
    name: str
    version: int
    algorithm: str
    digest: str
    activity: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "digest": {"algorithm": self.algorithm, "value": self.digest},
            "activity": self.activity,
        }


@dataclass(frozen=True)
class RecordClaims:
    """The predicate's content, parsed and type-checked."""

    name: str
    kind: str
    version: int
    manifest: Manifest
    inputs: tuple[RecordedInput, ...]
    scan: dict[str, Any]
    recorded_at: str
    dvc: dict[str, Any] | None = None  # DVC's hash of the artifact, when DVC tracks it
    activity: dict[str, Any] | None = None  # how it was made, e.g. a DVC stage's cmd/params
    dataset: dict[str, Any] | None = None  # schema fingerprint, label counts, baseline, profile
    locations: Locations | None = None  # where the bytes were read from (object stores)


def build_statement(
    *,
    name: str,
    kind: str,
    version: int,
    manifest: Manifest,
    inputs: list[RecordedInput],
    scan_summary: dict[str, Any],
    recorded_at: datetime,
    tool_version: str,
    dvc: Mapping[str, Any] | None = None,
    activity: Mapping[str, Any] | None = None,
    dataset: Mapping[str, Any] | None = None,
    locations: Locations | None = None,
) -> Statement:
    predicate = {
        "artifact": {"name": name, "kind": kind, "version": version},
        "manifest": manifest.to_json(),
        "inputs": [i.to_json() for i in inputs],
        "scan": scan_summary,
        "recordedAt": recorded_at.isoformat(timespec="seconds"),
        "recorder": {"name": "custody", "version": tool_version},
    }
    if dvc is not None:
        predicate["dvc"] = dict(dvc)
    if activity is not None:
        predicate["activity"] = dict(activity)
    if dataset is not None:
        predicate["dataset"] = dict(dataset)
    if locations is not None:
        _check_locations(locations, manifest, source="the new record")
        predicate["locations"] = locations.to_json()
    return Statement(
        subjects=(Subject(name=name, digest={"sha256": manifest.digest}),),
        predicate_type=CUSTODY_PREDICATE,
        predicate=predicate,
    )


def parse_claims(statement: Statement, *, source: str) -> RecordClaims:
    data = statement.custody_predicate()
    try:
        artifact = data["artifact"]
        manifest = Manifest.from_json(data["manifest"])
        inputs = tuple(
            RecordedInput(
                name=str(i["name"]),
                version=int(i["version"]),
                algorithm=str(i["digest"]["algorithm"]),
                digest=str(i["digest"]["value"]),
                activity=str(i["activity"]),
            )
            for i in data["inputs"]
        )
        claims = RecordClaims(
            name=str(artifact["name"]),
            kind=str(artifact["kind"]),
            version=int(artifact["version"]),
            manifest=manifest,
            inputs=inputs,
            scan=dict(data["scan"]),
            recorded_at=str(data["recordedAt"]),
            dvc=_optional_object(data, "dvc"),
            activity=_optional_object(data, "activity"),
            dataset=_optional_object(data, "dataset"),
            locations=_optional_locations(data),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(
            f"{source}: the signed record is malformed (field {exc})",
            rule="statement.malformed",
            subject=source,
        ) from None
    subject_digests = [s.digest.get("sha256") for s in statement.subjects]
    if subject_digests != [manifest.digest]:
        raise VerificationError(
            f"{source}: the statement's subject digest does not match its own manifest",
            rule="statement.inconsistent",
            subject=source,
        )
    if claims.locations is not None:
        _check_locations(claims.locations, manifest, source=source)
    return claims


def _optional_object(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        raise TypeError(key)
    return value


def _optional_locations(data: dict[str, Any]) -> Locations | None:
    value = _optional_object(data, "locations")
    return None if value is None else Locations.from_json(value)


def _check_locations(locations: Locations, manifest: Manifest, *, source: str) -> None:
    """One location per file of the manifest, each of that file's size."""
    sizes = {f.relpath: f.size for f in manifest.files}
    given = {o.relpath: o.identity.size for o in locations.objects}
    if len(given) != len(locations.objects) or given != sizes:
        raise VerificationError(
            f"{source}: the signed locations do not name the manifest's files and sizes",
            rule="statement.inconsistent",
            subject=source,
        )
