"""Binding a served model URI to the ledger version its bytes are (the rule: the docstring of
``kubernetes.py``, and docs/service.md): by a signed record's location and the objects' strong
identities, else by hashing the bytes at the URI; an annotation only narrows the match. The
index of recorded locations is computed from the signed log entries and extended by the entries
a newer checkpoint adds."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from custody.errors import ArtifactError, CustodyError, LedgerError, UsageError, VerificationError
from custody.provenance.hashing.locations import Locations, ObjectIdentity
from custody.provenance.hashing.manifest import Manifest
from custody.provenance.integrations.kubernetes import ANNOTATION_REF
from custody.provenance.ledger.models import ArtifactVersionPublic, LedgerEntry
from custody.provenance.ledger.store import Ledger
from custody.provenance.log.checkpoint import NoteVerifier
from custody.provenance.policy.core import Policy
from custody.provenance.verification.digest import RecordCheck, check_version
from custody.provenance.verification.fetch import Listing, Source, hash_source, open_source
from custody.signing.dsse import Envelope
from custody.signing.statement import Statement

_PIN = re.compile(r"^(?:(?P<alg>sha256(?:-manifest-v1)?):(?P<hex>[0-9a-f]{64})|"
                  r"(?P<name>[A-Za-z0-9][A-Za-z0-9._/-]{0,199})(?:@(?P<v>[0-9]{1,9}))?)$")
_STRONG = ("version_id", "etag", "generation")  # identities a store assigns to one version
_DEFAULT_MAX_HASH_BYTES = 4 * 1024**3  # larger unrecorded objects: record them at their location


@dataclass(frozen=True)
class RecordedAt:
    """A record's signed claim that it was read from ``locations`` (as its entry says it)."""

    entry_idx: int
    name: str
    version: int
    locations: Locations

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Binding:
    version: ArtifactVersionPublic
    how: str  # "location": by the recorded location and identities; "bytes": by their digest
    manifest: Manifest | None  # the digest's manifest when the bytes were hashed


@dataclass
class LocationIndex:
    """Recorded locations by source URI, read from the log's signed ``artifact_version`` entries
    below a checkpoint size, and extended as the log grows (never re-read, never shrunk: a log
    that is rewritten fails the inclusion proofs of the check that follows a lookup)."""

    size: int = 0
    by_source: dict[str, list[RecordedAt]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, ledger: Ledger, size: int) -> None:
        with self.lock:
            if size <= self.size:
                return
            with Session(ledger.engine) as session:
                rows = session.exec(
                    select(LedgerEntry.idx, LedgerEntry.payload)
                    .where(col(LedgerEntry.idx) >= self.size, col(LedgerEntry.idx) < size,
                           col(LedgerEntry.entry_type) == "artifact_version")
                    .order_by(col(LedgerEntry.idx))).all()
            for idx, payload in rows:
                recorded = _recorded_at(idx, payload)
                if recorded is not None:
                    self.by_source.setdefault(recorded.locations.source, []).append(recorded)
            self.size = size

    def at(self, source: str) -> list[RecordedAt]:
        with self.lock:
            return list(self.by_source.get(source, ()))


def _recorded_at(idx: int, payload: Any) -> RecordedAt | None:
    """The locations claim of one entry's statement, read without judging its signer (the
    version it binds to is verified before anything is allowed); None when it has none."""
    try:
        entry = json.loads(payload if isinstance(payload, str) else bytes(payload))
        statement = Statement.from_bytes(
            Envelope.from_json(json.loads(entry["bundle"])["dsseEnvelope"]).payload)
        data = statement.predicate.get("locations")
        if data is None:
            return None
        return RecordedAt(idx, str(entry["name"]), int(entry["version"]),
                          Locations.from_json(data))
    except (KeyError, TypeError, ValueError, AttributeError, CustodyError):
        return None


def _strongly_same(recorded: ObjectIdentity, now: ObjectIdentity) -> bool:
    """The same stored version: a store-assigned identity that matches, every field equal."""
    strong = [f for f in _STRONG if getattr(recorded, f) is not None]
    return bool(strong) and not recorded.differs(now)


def _same_objects(recorded: Locations, listing: Listing) -> bool:
    mine = {o.relpath: o for o in listing.objects}
    theirs = recorded.by_relpath()
    if not listing.is_directory and len(mine) == len(theirs) == 1:  # one object: its own name
        return _strongly_same(next(iter(theirs.values())).identity,
                              next(iter(mine.values())).identity)
    return mine.keys() == theirs.keys() and all(
        _strongly_same(theirs[rel].identity, mine[rel].identity) for rel in mine)


class Admission:
    """Binds model URIs to recorded versions for one service (its ledger, policy and key).

    Thread-safe: requests run in a thread pool and share the caches."""

    def __init__(self, ledger: Ledger, policy: Policy, verifier: NoteVerifier | None, *,
                 max_hash_bytes: int = _DEFAULT_MAX_HASH_BYTES, cache_entries: int = 4096,
                 verdict_seconds: float = 60.0, listing_seconds: float = 2.0,
                 open_uri: Callable[[str], Source] = open_source):
        self.ledger, self.policy, self.verifier = ledger, policy, verifier
        self.max_hash_bytes = max_hash_bytes
        self.cache_entries = cache_entries
        self.open_uri = open_uri
        self.index = LocationIndex()
        self.verdict_seconds = verdict_seconds
        self.listing_seconds = listing_seconds
        self._listings: dict[str, tuple[Source, Listing, float]] = {}
        self._hashed: OrderedDict[tuple[Any, ...], Manifest] = OrderedDict()
        self._verdicts: dict[tuple[int, int], tuple[RecordCheck, float]] = {}
        self._lock = threading.Lock()

    def check(self, uri: str, pinned: str | None) -> str:
        """The verified ``NAME@VERSION`` the bytes at ``uri`` are; raises a refusal if none."""
        pin = _parse_pin(pinned) if pinned is not None else None
        source, listing = self._listed(uri)
        size = self.ledger.head().size
        binding = self.bind(source, listing, pin, pinned, size=size)
        result = self._verified(binding.version, size)
        self._confirm(binding, result, listing)
        return result.node.ref

    def _listed(self, uri: str) -> tuple[Source, Listing]:
        """The objects at ``uri`` as listed now, or within the last ``listing_seconds`` (a
        listing is one or two store round trips; the storage initializer lists and hashes again
        when the pod starts, whatever admission saw)."""
        now = time.monotonic()
        with self._lock:
            cached = self._listings.get(uri)
        if cached is not None and cached[2] > now:
            return cached[0], cached[1]
        try:
            source = self.open_uri(uri)
            listing = source.listing()
        except UsageError as exc:  # a URI custody cannot read (scheme, package, form)
            raise ArtifactError(exc.message, hint=exc.hint, subject=exc.subject) from None
        if self.listing_seconds > 0:
            with self._lock:
                if len(self._listings) >= self.cache_entries:
                    self._listings.clear()
                self._listings[uri] = (source, listing, now + self.listing_seconds)
        return source, listing

    def _verified(self, version: ArtifactVersionPublic, size: int) -> RecordCheck:
        """check_version, remembered while the log keeps this size (any append, a revocation
        among them, makes it check again) and for at most ``verdict_seconds``."""
        key = (version.id, size)
        now = time.monotonic()
        with self._lock:
            cached = self._verdicts.get(key)
            if cached is not None and cached[1] > now:
                return cached[0]
        result = check_version(self.ledger, self.policy, self.verifier, version)
        with self._lock:
            if len(self._verdicts) >= self.cache_entries:
                self._verdicts.clear()
            self._verdicts[key] = (result, now + self.verdict_seconds)
        return result

    def bind(self, source: Source, listing: Listing, pin: dict[str, str] | None,
             pinned: str | None, *, size: int) -> Binding:
        """The recorded version the listed objects are (by location, else by digest)."""
        self.index.refresh(self.ledger, size)
        at_location = [r for r in self.index.at(listing.location)
                       if _same_objects(r.locations, listing)]
        if at_location:
            chosen = _narrow([self._version(r) for r in at_location], pin, pinned, listing)
            return Binding(chosen, "location", None)
        manifest = self._digest(source, listing)
        found = self.ledger.find_by_digest(manifest.algorithm, manifest.digest)
        if not found:
            raise VerificationError(
                f"the bytes at {listing.location} ({manifest.ref}) are not recorded in the "
                "ledger, at this location or anywhere else", rule="admission.unbound",
                subject=listing.location,
                hint="serve only recorded bytes: `custody record URI --name NAME --kind model` "
                "records them (and their location)")
        return Binding(_narrow(found, pin, pinned, listing), "bytes", manifest)

    def _version(self, recorded: RecordedAt) -> ArtifactVersionPublic:
        version = self.ledger.resolve(recorded.ref)
        if version.entry_idx != recorded.entry_idx:
            raise VerificationError(
                f"{recorded.ref}: the ledger row names entry {version.entry_idx}, the signed "
                f"log has it at entry {recorded.entry_idx}", rule="ledger.inconsistent",
                hint="the ledger database was edited; run `custody audit verify`",
                subject=recorded.ref)
        return version

    def _digest(self, source: Source, listing: Listing) -> Manifest:
        key = listing.key()
        with self._lock:
            cached = self._hashed.get(key)
            if cached is not None:
                self._hashed.move_to_end(key)
                return cached
        total = sum(o.size for o in listing.objects)
        if total > self.max_hash_bytes:
            raise VerificationError(
                f"{listing.location} holds {total} bytes, more than the webhook hashes "
                f"({self.max_hash_bytes}), and no record was made at this location with these "
                "object identities", rule="admission.unbound", subject=listing.location,
                hint="record the model from this URI (`custody record URI ...`): admission then "
                "binds it by its location and version ids without reading it")
        hashed, manifest = hash_source(source)
        if listing.identified and hashed.key() == key:
            with self._lock:
                self._hashed[key] = manifest
                while len(self._hashed) > self.cache_entries:
                    self._hashed.popitem(last=False)
        return manifest

    def _confirm(self, binding: Binding, result: RecordCheck, listing: Listing) -> None:
        """What bound the URI must be what the verified record signs."""
        signed = result.claims.manifest
        if binding.manifest is not None:
            if (signed.algorithm, signed.digest) != (binding.manifest.algorithm,
                                                     binding.manifest.digest):
                raise VerificationError(
                    f"the bytes at {listing.location} are {binding.manifest.ref}, the signed "
                    f"record of {result.node.ref} says {signed.ref}",
                    rule="artifact.manifest_mismatch", subject=result.node.ref)
            return
        claimed = getattr(result.claims, "locations", None)
        if claimed is None:  # the signed statement itself, not the index read from it
            claimed = _signed_locations(self.ledger, binding.version)
        if claimed is None or claimed.source != listing.location or not _same_objects(
                claimed, listing):
            raise VerificationError(
                f"{result.node.ref}: its signed record does not say it was read from "
                f"{listing.location} with these object identities", rule="ledger.inconsistent",
                hint="the ledger database was edited; run `custody audit verify`",
                subject=result.node.ref)


def _signed_locations(ledger: Ledger, version: ArtifactVersionPublic) -> Locations | None:
    try:
        data = Statement.from_bytes(ledger.stored_record(version).statement).predicate.get(
            "locations")
        return Locations.from_json(data) if data is not None else None
    except (KeyError, TypeError, ValueError, LedgerError):
        return None


def _parse_pin(pinned: str) -> dict[str, str]:
    match = _PIN.match(pinned)
    if match is None or "@@" in pinned:
        raise UsageError(f"the annotation {ANNOTATION_REF}: {pinned[:200]!r} is not a valid "
                         "reference", hint="use NAME@VERSION, NAME or sha256:HEX")
    return {k: v for k, v in match.groupdict().items() if v is not None}


def _narrow(found: list[ArtifactVersionPublic], pin: dict[str, str] | None, pinned: str | None,
            listing: Listing) -> ArtifactVersionPublic:
    """The newest version among those the bytes bind to that the annotation allows."""
    kept = [v for v in found if pin is None or _pinned(v, pin)]
    if not kept:
        bound = ", ".join(sorted({v.ref for v in found}))
        raise VerificationError(
            f"the annotation {ANNOTATION_REF}: {str(pinned)[:200]} names another version than "
            f"the bytes at {listing.location}, which are {bound}",
            rule="admission.annotation_mismatch", subject=listing.location,
            hint=f"an annotation only narrows what the bytes are: serve the bytes of "
            f"{str(pinned)[:200]}, or drop or correct the annotation")
    return max(kept, key=lambda v: v.entry_idx)


def _pinned(version: ArtifactVersionPublic, pin: dict[str, str]) -> bool:
    if "hex" in pin:
        algorithms = ({"sha256", "sha256-manifest-v1"} if pin["alg"] == "sha256"
                      else {pin["alg"]})
        return version.digest == pin["hex"] and version.digest_algorithm in algorithms
    if version.name != pin["name"]:
        return False
    return "v" not in pin or version.version == int(pin["v"])
