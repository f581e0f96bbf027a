"""in-toto Statement v1: build the statement Custody signs, and read one back safely."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from custody.errors import VerificationError

_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
CUSTODY_PREDICATE = "https://custody.dev/artifact-record/v1"


def canonical_json(value: Any) -> bytes:
    """RFC 8785-compatible bytes for Custody's own documents (no floats are ever written)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True)
class Subject:
    name: str
    digest: dict[str, str]


@dataclass(frozen=True)
class Statement:
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "_type": _STATEMENT_TYPE,
            "subject": [{"name": s.name, "digest": dict(s.digest)} for s in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_bytes(cls, payload: bytes) -> Statement:
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VerificationError(
                f"signed payload is not JSON: {exc}", rule="statement.malformed"
            ) from None
        if not isinstance(data, dict) or data.get("_type") != _STATEMENT_TYPE:
            raise VerificationError(
                "signed payload is not an in-toto Statement v1", rule="statement.malformed"
            )
        try:
            subjects = tuple(
                Subject(
                    name=str(s["name"]),
                    digest={str(k): str(v) for k, v in s["digest"].items()},
                )
                for s in data["subject"]
            )
            predicate = data["predicate"]
            predicate_type = str(data["predicateType"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise VerificationError(
                f"in-toto statement is missing field {exc}", rule="statement.malformed"
            ) from None
        if not subjects or not isinstance(predicate, dict):
            raise VerificationError(
                "in-toto statement has no subject or no predicate", rule="statement.malformed"
            )
        return cls(subjects=subjects, predicate_type=predicate_type, predicate=predicate)

    def custody_predicate(self) -> dict[str, Any]:
        if self.predicate_type != CUSTODY_PREDICATE:
            raise VerificationError(
                f"statement predicate is {self.predicate_type!r}, not a Custody record",
                rule="statement.predicate",
            )
        return self.predicate
