"""Witnessed verification: what verify trusts only once witnesses have seen it (``[witness]``).

With a witness policy, an artifact verifies only when its ledger entry (and every upstream
entry) lies in a checkpoint of the ledger that a quorum of the named witnesses cosigned, each
counted cosignature no older than the policy's ``max_age`` (C2SP tlog-witness). The cosigned
checkpoints are read from the files or directories the policy names (``custody audit witness
--out``); the ledger's head, verified under the pinned ledger key, must extend every one of them:

- a head smaller than a checkpoint the ledger signed is ``witness.rollback`` (entries were
  deleted: "latest" went back a version);
- the same size with another root, or two such checkpoints among the files, ``witness.fork``;
- a larger head the ledger cannot prove consistent with it, ``witness.inconsistent``.

Every checkpoint in the files counts as evidence of what the log committed to (it carries the
ledger's own signature), cosigned by a quorum or not; only the coverage needs the quorum.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from custody.errors import CheckpointError, VerificationError
from custody.provenance.log.checkpoint import (
    Checkpoint,
    NoteVerifier,
    parse_checkpoint_unverified,
    split_note,
    verify_checkpoint,
)
from custody.provenance.log.witness import (
    ProveConsistency,
    check_extends,
    merge_cosigned,
    verify_cosignatures,
)
from custody.provenance.policy.core import Policy, WitnessPolicy
from custody.provenance.verification.chain import NodeResult
from custody.provenance.verification.inclusion import InclusionChecker

_MAX_FILE = 1 << 20  # bytes: a signed note is at most this large


@dataclass(frozen=True)
class Cosigned:
    """One checkpoint of the ledger found in the cosigned files: its note with every signature
    line the files hold for it, and the files it came from."""

    checkpoint: Checkpoint
    note: bytes
    sources: tuple[str, ...]

    @property
    def where(self) -> str:
        return ", ".join(self.sources)


@dataclass(frozen=True)
class Witnessing:
    """The checkpoint that covers what was verified, and who cosigned it."""

    size: int
    root: str
    witnesses: tuple[str, ...]  # name+keyid of each counted cosignature
    newest: str  # the newest counted cosignature's time, ISO 8601
    compared: int  # cosigned checkpoints the head was shown to extend
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"tree_size": self.size, "root": self.root, "witnesses": list(self.witnesses),
                "newest_cosignature": self.newest, "checkpoints_compared": self.compared,
                "source": self.source}


def check_chain(policy: Policy, inclusion: InclusionChecker, nodes: Iterable[NodeResult], *,
                subject: str, now: datetime | None = None) -> Witnessing | None:
    """For verify and the service: None without a witness policy, else
    :func:`check_witnessed` for the ledger entries of ``nodes`` (the artifact and its chain)."""
    if policy.witness is None:
        return None
    indices = [int(n.inclusion["index"]) for n in nodes if n.inclusion]
    return check_witnessed(policy.witness, inclusion, indices, subject=subject, now=now)


def check_witnessed(policy: WitnessPolicy, inclusion: InclusionChecker, indices: Iterable[int],
                    *, subject: str, now: datetime | int | None = None) -> Witnessing:
    """Refuse unless the ledger entries ``indices`` are covered by a checkpoint cosigned as
    ``policy`` requires, and the ledger's head extends every cosigned checkpoint found."""
    verifier, head = inclusion.verifier, inclusion.checkpoint
    found = _load_cosigned(policy.cosigned, verifier)
    _check_head(head, found, inclusion.ledger.prove_consistency)
    wanted = max(indices, default=-1) + 1
    candidates = sorted((c for c in found if c.checkpoint.size >= wanted),
                        key=lambda c: -c.checkpoint.size)
    at = now if now is not None else datetime.now(UTC)
    first: VerificationError | None = None
    for cosigned in candidates:
        try:
            counted = verify_cosignatures(cosigned.note, policy.witnesses, quorum=policy.quorum,
                                          max_age=policy.max_age, now=at)
        except VerificationError as exc:
            if exc.rule not in ("witness.quorum_not_met", "witness.stale"):  # else: the next
                raise _evidence_error(exc, cosigned) from None
            first = first or exc
            continue
        newest = max(counted, key=lambda c: c.timestamp)
        return Witnessing(cosigned.checkpoint.size, cosigned.checkpoint.root.hex(),
                          tuple(c.label for c in counted), newest.iso, len(found),
                          cosigned.where)
    places = ", ".join(str(p) for p in policy.cosigned)
    if first is not None:
        raise VerificationError(
            f"{subject}: ledger entry {wanted - 1} is in no checkpoint cosigned as the policy "
            f"requires: {first.message}", rule=first.rule, subject=first.subject,
            hint=first.hint)
    largest = max((c.checkpoint.size for c in found), default=None)
    detail = (f"no cosigned checkpoint of ledger {verifier.name} was found in {places}"
              if largest is None else f"it is newer than every cosigned checkpoint in {places} "
              f"(the largest has {largest} entries)")
    raise VerificationError(
        f"{subject}: ledger entry {wanted - 1} is not covered by a witnessed checkpoint: {detail}",
        rule="witness.not_covered", subject=subject,
        hint=f"have each witness cosign the ledger's current checkpoint (`custody audit witness "
        f"--key WITNESS.skey --state STATE_DIR --out {_out_example(policy)}`), then verify again")


def _check_head(head: Checkpoint, found: Iterable[Cosigned], prove: ProveConsistency) -> None:
    """The head must extend every cosigned checkpoint (rollback, fork, inconsistency), and no
    two of them may be of one size with different roots (a fork shown to different witnesses)."""
    by_size: dict[int, Cosigned] = {}
    for cosigned in found:
        other = by_size.setdefault(cosigned.checkpoint.size, cosigned)
        if other.checkpoint.root != cosigned.checkpoint.root:
            where = f"{head.origin}@{cosigned.checkpoint.size}"
            raise VerificationError(
                f"log {head.origin} signed two checkpoints of size {cosigned.checkpoint.size} "
                f"with different roots ({other.where}; {cosigned.where}): it forked (a split "
                "view)", rule="witness.fork", subject=where,
                hint=f"keep {other.where} and {cosigned.where} as evidence, treat the ledger as "
                "tampered with, and run `custody audit verify` to find the first bad entry")
    for cosigned in sorted(by_size.values(), key=lambda c: -c.checkpoint.size):
        try:
            check_extends(cosigned.checkpoint, head, prove,
                          evidence=f"the cosigned checkpoint {cosigned.where}")
        except VerificationError as exc:
            raise VerificationError(f"{exc.message} (cosigned checkpoint: {cosigned.where})",
                                    rule=exc.rule, subject=exc.subject, hint=exc.hint) from None


def _load_cosigned(paths: Iterable[Path], verifier: NoteVerifier) -> list[Cosigned]:
    """The checkpoints of the ledger signed by ``verifier`` in these files (a directory: each
    regular file in it whose name does not start with a dot), merged per checkpoint. Another
    log's checkpoints are skipped; a file that is not a signed note, or a checkpoint of this
    log that does not verify under its key, is refused (``witness.cosigned_invalid``)."""
    notes: dict[bytes, tuple[Checkpoint, list[bytes], list[str]]] = {}
    for path in _files(paths):
        data = _read(path)
        try:
            claimed = parse_checkpoint_unverified(data)
            if claimed.origin != verifier.name:
                continue
            checkpoint = verify_checkpoint(data, verifier, origin=verifier.name,
                                           subject=str(path))
        except CheckpointError as exc:
            raise _invalid(path, exc.message) from None
        text = split_note(data)[0]
        entry = notes.setdefault(text, (checkpoint, [], []))
        entry[1].append(data)
        entry[2].append(str(path))
    found = []
    for checkpoint, datas, sources in notes.values():
        try:
            merged = merge_cosigned(datas)
        except CheckpointError as exc:  # too many signature lines together
            raise _invalid(Path(sources[0]), exc.message) from None
        found.append(Cosigned(checkpoint, merged, tuple(sources)))
    return found


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue  # nothing cosigned there yet: not covered, said with the places looked in
        except OSError as exc:
            raise _invalid(path, exc.strerror or str(exc)) from None
        if stat.S_ISDIR(mode):
            try:
                inside = sorted(path.iterdir())
            except OSError as exc:
                raise _invalid(path, exc.strerror or str(exc)) from None
            out.extend(p for p in inside if not p.name.startswith(".") and p.is_file())
        else:
            out.append(path)
    return out


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE + 1)
    except OSError as exc:
        raise _invalid(path, exc.strerror or str(exc)) from None
    if len(data) > _MAX_FILE:
        raise _invalid(path, f"it is larger than {_MAX_FILE} bytes")
    return data


def _invalid(path: Path, problem: str) -> VerificationError:
    return VerificationError(
        f"{path} is not a cosigned checkpoint of this ledger: {problem}",
        rule="witness.cosigned_invalid", subject=str(path),
        hint=f"replace {path} with what `custody audit witness --out {path}` writes, or move it "
        "out of the policy's cosigned folder if it is no cosigned checkpoint of this ledger")


def _evidence_error(exc: VerificationError, cosigned: Cosigned) -> VerificationError:
    return type(exc)(f"{exc.message} (cosigned checkpoint: {cosigned.where})", rule=exc.rule,
                     subject=exc.subject, hint=exc.hint)


def _out_example(policy: WitnessPolicy) -> str:
    place = policy.cosigned[0]
    return str(place / "WITNESS.note") if place.is_dir() else str(place)
