"""Custody's vocabulary as enums: what an artifact is, how versions relate, who may do what.

Only the standard library (and :mod:`custody.errors`) is imported, so every layer and the CLI's
start-up path may use these. Values are the strings stored in the ledger and signed in statements,
so a ``Kind`` compares equal to ``"dataset"``. Scan severities and verdicts live with the scanners
(:class:`custody.validators.findings.Severity`, :class:`~custody.validators.findings.Verdict`).
"""

from __future__ import annotations

import enum

from custody.errors import UsageError


class _Choice(enum.StrEnum):
    @classmethod
    def parse(cls, value: str, what: str) -> _Choice:
        """``value`` as a member, else a usage error (exit 2) that lists the choices."""
        try:
            return cls(str(value))
        except ValueError:
            raise UsageError(f"unknown {what} {value!r}",
                             hint=f"use one of: {', '.join(m.value for m in cls)}") from None


class Kind(_Choice):
    """What an artifact is."""

    DATASET = "dataset"
    MODEL = "model"

    @classmethod
    def of(cls, value: str) -> Kind:
        kind = cls.parse(value, "kind")
        assert isinstance(kind, Kind)  # noqa: S101 - parse returns a member of cls
        return kind


class Activity(_Choice):
    """How a recorded version relates to each of its inputs (the lineage edge's label)."""

    TRAINED_ON = "trained_on"
    DERIVED_FROM = "derived_from"
    EVALUATED_ON = "evaluated_on"
    CONVERTED_FROM = "converted_from"

    @classmethod
    def of(cls, value: str) -> Activity:
        activity = cls.parse(value, "activity")
        assert isinstance(activity, Activity)  # noqa: S101 - parse returns a member of cls
        return activity


class Role(_Choice):
    """A service token's role, weakest first: each role may do what the ones before it may."""

    READER = "reader"
    AUDITOR = "auditor"
    PUBLISHER = "publisher"
    ADMIN = "admin"


KINDS: tuple[str, ...] = tuple(k.value for k in Kind)
ACTIVITIES: tuple[str, ...] = tuple(a.value for a in Activity)
ROLES: tuple[str, ...] = tuple(r.value for r in Role)
