"""Witnesses: cosign a log's checkpoints only while the log stays append-only (C2SP tlog-witness).

A witness keeps per log origin the last checkpoint it cosigned. Shown a newer one and a
consistency proof, it checks that the log only grew and appends a C2SP tlog-cosignature
(``cosignature/v1``, Ed25519, key type 0x04): a note signature line whose blob is ``key ID (4) ||
timestamp (8, big-endian) || signature (64)``, the signature over the lines ``cosignature/v1``
and ``time <POSIX seconds>`` followed by the checkpoint's note text. Keys are text like
checkpoint.NoteSigner's: ``<name>+<hex key ID>+<base64(0x04 || public key)>`` and
``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x04 || seed)>``.

For ``custody audit witness``, the policy and the service: :meth:`Witness.witness`,
:meth:`Witness.latest`, :func:`verify_cosignatures` and :func:`detect_rollback`. ``now`` is
always passed in (an aware datetime or POSIX seconds); refusals are :class:`VerificationError`
(exit 1) with a ``witness.*`` rule, a subject and a hint.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from custody import errors
from custody.errors import CheckpointError, VerificationError
from custody.provenance.log import checkpoint as notes
from custody.provenance.log.checkpoint import (
    Checkpoint,
    NoteVerifier,
    split_note,
    verify_checkpoint,
)
from custody.provenance.log.merkle import verify_consistency

ALG_COSIGNATURE_V1 = 0x04
MAX_SKEW = 60  # seconds a cosignature may be dated after ``now`` (clock skew)
STATE_FORMAT = "custody-witness-state/v1"
_MAX_TIMESTAMP = (1 << 63) - 1
_KEY_ID_RE = re.compile(r"[0-9a-fA-F]{8}")
_HINT_COSIGN = ("have the witnesses cosign the ledger's current checkpoint (run `custody audit "
                "witness` with each witness named missing above), then verify again")
_HINT_EVIDENCE = ("keep {evidence} and the ledger's checkpoint as evidence, treat the ledger as "
                  "tampered with, and run `custody audit verify` to find the first bad entry")

Now = datetime | int
ProveConsistency = Callable[[int, int], Sequence[bytes]]
"""``prove_consistency(old_size, new_size)``: RFC 9162 proof hashes (``Ledger.prove_consistency``,
the service's proof endpoint, a file); a ``LedgerError`` from it counts as no proof."""


def key_id(name: str, public_key: bytes) -> int:
    """Cosignature/v1 key ID: ``SHA-256(name || 0x0A || 0x04 || public_key)[:4]``, big-endian."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key)
    return int.from_bytes(digest.digest()[:4], "big")


def signed_message(text: bytes, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: header, time line, then the checkpoint note text."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text


def _unix(now: Now) -> int:
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime (or POSIX seconds)")
        return int(now.timestamp())
    return now


def _key_text(text: str, *, private: bool) -> tuple[str, bytes]:
    """``[PRIVATE+KEY+]NAME+KEYID+BASE64(0x04 || 32 bytes)`` -> (name, the 32 bytes); a
    ``KeyMaterialError`` if malformed or the key ID does not match the name and key."""
    prefix, text = "PRIVATE+KEY+" if private else "", text.strip()
    parts = text.removeprefix(prefix).split("+", 2)
    key = notes.b64decode_strict(parts[2]) if len(parts) == 3 and text.startswith(prefix) else None
    if key is None or not notes.is_valid_key_name(parts[0]) or not _KEY_ID_RE.fullmatch(parts[1]):
        raise errors.KeyMaterialError(f"malformed witness key: expected {prefix}NAME+KEYID+BASE64",
                                      hint="copy the key exactly as the witness operator wrote it")
    if len(key) != 33 or key[0] != ALG_COSIGNATURE_V1:
        raise errors.KeyMaterialError("not a witness key: a cosignature/v1 key has type 0x04",
                                      hint="pass a witness's key, not a log's note key (0x01)")
    public = Ed25519PrivateKey.from_private_bytes(key[1:]).public_key().public_bytes_raw() \
        if private else key[1:]
    if int(parts[1], 16) != key_id(parts[0], public):
        raise errors.KeyMaterialError("witness key ID does not match its name and public key",
                                      hint="ask the witness operator for its key again")
    return parts[0], key[1:]


@dataclass(frozen=True)
class WitnessVerifier:
    """A witness's name and public key: checks its cosignatures."""

    name: str
    public_key: Ed25519PublicKey

    def __post_init__(self) -> None:
        if not notes.is_valid_key_name(self.name):
            raise ValueError(f"invalid witness name {self.name!r}: no spaces or '+'")

    @property
    def key_id(self) -> int:
        return key_id(self.name, self.public_key.public_bytes_raw())

    @property
    def label(self) -> str:  # name+keyid, as messages name the witness
        return f"{self.name}+{self.key_id:08x}"

    @property
    def vkey(self) -> str:
        """``<name>+<hex key ID>+<base64(0x04 || public key)>``."""
        raw = bytes([ALG_COSIGNATURE_V1]) + self.public_key.public_bytes_raw()
        return f"{self.label}+{base64.b64encode(raw).decode()}"

    @classmethod
    def from_vkey(cls, vkey: str) -> WitnessVerifier:
        """Parse a vkey (``KeyMaterialError`` if malformed, not type 0x04, or a wrong key ID)."""
        name, public = _key_text(vkey, private=False)
        return cls(name, Ed25519PublicKey.from_public_bytes(public))

    def verify(self, text: bytes, cosignature: Cosignature) -> bool:
        """Whether ``cosignature`` is this witness's over the note text ``text``."""
        try:
            self.public_key.verify(cosignature.signature,
                                   signed_message(text, cosignature.timestamp))
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class WitnessKey:
    """A witness's name and Ed25519 private key; keep :attr:`skey` as secret as the key."""

    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        self.verifier()  # checks the name

    @classmethod
    def generate(cls, name: str) -> WitnessKey:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> WitnessKey:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x04 || seed)>``."""
        name, seed = _key_text(skey, private=True)
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def skey(self) -> str:
        seed = bytes([ALG_COSIGNATURE_V1]) + self.private_key.private_bytes_raw()
        return f"PRIVATE+KEY+{self.verifier().label}+{base64.b64encode(seed).decode()}"

    def verifier(self) -> WitnessVerifier:
        return WitnessVerifier(self.name, self.private_key.public_key())

    def cosign_text(self, text: bytes, timestamp: int) -> Cosignature:
        """A cosignature over the note text ``text`` dated ``timestamp`` (POSIX seconds)."""
        if not 0 <= timestamp <= _MAX_TIMESTAMP:
            raise ValueError(f"cosignature timestamp out of range: {timestamp}")
        return Cosignature(self.name, self.verifier().key_id, timestamp,
                           self.private_key.sign(signed_message(text, timestamp)))


@dataclass(frozen=True)
class Cosignature:
    """One cosignature/v1 line: witness name, key ID, POSIX timestamp, Ed25519 signature."""

    name: str
    key_id: int
    timestamp: int
    signature: bytes

    @classmethod
    def from_line(cls, sig: notes.NoteSignature) -> Cosignature | None:
        """A note signature read as a cosignature; None unless 8 + 64 bytes, time < 2**63."""
        blob, stamp = sig.signature, int.from_bytes(sig.signature[:8], "big")
        if len(blob) != 72 or stamp > _MAX_TIMESTAMP:
            return None
        return cls(sig.name, sig.key_id, stamp, blob[8:])

    @property
    def label(self) -> str:
        return f"{self.name}+{self.key_id:08x}"

    @property
    def iso(self) -> str:
        return f"{datetime.fromtimestamp(self.timestamp, UTC):%Y-%m-%dT%H:%M:%SZ}"

    def line(self) -> str:
        blob = self.key_id.to_bytes(4, "big") + self.timestamp.to_bytes(8, "big") + self.signature
        return f"— {self.name} {base64.b64encode(blob).decode()}\n"


def cosign(note: bytes | str, key: WitnessKey, now: Now) -> bytes:
    """``note`` (a signed checkpoint) with ``key``'s cosignature last, the other lines kept (an
    earlier one by ``key`` is replaced). Checks nothing: use :meth:`Witness.witness`."""
    return _cosign(note, key, _unix(now))[0]


def _cosign(note: bytes | str, key: WitnessKey, timestamp: int) -> tuple[bytes, Cosignature]:
    text, sigs = split_note(note)
    Checkpoint.parse(text)
    cosig, mine = key.cosign_text(text, timestamp), (key.name, key.verifier().key_id)
    lines = [s.line() for s in sigs if (s.name, s.key_id) != mine] + [cosig.line()]
    return text + b"\n" + "".join(lines).encode(), cosig


def merge_cosigned(notes: Sequence[bytes | str]) -> bytes:
    """One signed note of the checkpoint that all ``notes`` carry (each witness writes its own
    copy), with the signature lines of all of them: each line once, and of the cosignatures of one
    key (name and key ID) only the newest. Checks no signature; ``CheckpointError`` if a note is
    malformed, ``ValueError`` if the notes are of different checkpoints."""
    if not notes:
        raise ValueError("no note to merge")
    text: bytes | None = None
    lines: dict[object, tuple[int, str]] = {}
    for note in notes:
        body, sigs = split_note(note)
        Checkpoint.parse(body)
        if text is not None and body != text:
            raise ValueError("the notes to merge are of different checkpoints")
        text = body
        for sig in sigs:
            cosig = Cosignature.from_line(sig)
            if cosig is None:  # the log's own signature, or another kind: kept as it is
                lines.setdefault(sig.line(), (0, sig.line()))
                continue
            key, seen = (sig.name, sig.key_id), lines.get((sig.name, sig.key_id))
            if seen is None or cosig.timestamp > seen[0]:
                lines[key] = (cosig.timestamp, sig.line())
    assert text is not None  # noqa: S101 - notes is not empty
    return text + b"\n" + "".join(line for _, line in lines.values()).encode()


def verify_cosignatures(note: bytes | str, witnesses: Sequence[WitnessVerifier], *, quorum: int,
                        max_age: timedelta | int | None, now: Now,
                        max_skew: int = MAX_SKEW) -> list[Cosignature]:
    """Check that ``quorum`` of ``witnesses`` cosigned ``note`` at most ``max_age`` ago (a
    timedelta or seconds; None: any age); return the cosignatures that count, one per witness
    (its newest), in ``witnesses`` order.

    Only a cosignature no older than ``max_age`` counts towards the quorum: a witness that
    stopped cosigning vouches for nothing recent. Lines of unknown keys are ignored (a witness
    is known by name AND key ID). Refused: a known witness's line that does not verify
    (``witness.signature_invalid``), one dated more than ``max_skew`` seconds after ``now``
    (``witness.future_timestamp``), too few witnesses (``witness.quorum_not_met``), enough
    witnesses but too few of them recently (``witness.stale``).
    """
    if len({w.public_key.public_bytes_raw() for w in witnesses}) != len(witnesses):
        raise errors.UsageError("two configured witnesses share one public key; cosignature/v1 "
                                "does not sign the name, so they would count twice",
                                hint="list each witness's vkey once")
    if not 0 <= quorum <= len(witnesses):
        raise errors.UsageError(
            f"a quorum of {quorum} cannot be met by {len(witnesses)} witness key(s)",
            hint=f"set the quorum to at most {len(witnesses)}, or configure more witness vkeys")
    cp = Checkpoint.parse(split_note(note)[0])
    where, at = f"{cp.origin}@{cp.size}", _unix(now)
    valid = _cosignatures(note, witnesses, subject=where)
    for c in valid.values():
        if c.timestamp > at + max_skew:
            raise VerificationError(
                f"the cosignature by {c.label} on checkpoint {where} is dated {c.iso}, "
                f"{c.timestamp - at} s in the future", rule="witness.future_timestamp",
                subject=where, hint=f"check the clocks of this machine and of witness {c.name} "
                "(NTP), then have it cosign again")
    labels = [w.label for w in witnesses]
    if len(valid) < quorum:
        signed = ", ".join(k for k in labels if k in valid) or "none"
        raise VerificationError(
            f"checkpoint {where} has {len(valid)} of the {quorum} witness cosignatures the "
            f"quorum needs: signed by {signed}; missing "
            + ", ".join(k for k in labels if k not in valid),
            rule="witness.quorum_not_met", subject=where, hint=_HINT_COSIGN)
    limit = timedelta(seconds=max_age) if isinstance(max_age, int) else max_age
    fresh = {k: c for k, c in valid.items()
             if limit is None or timedelta(seconds=at - c.timestamp) <= limit}
    if len(fresh) < quorum:
        old = sorted((c for k, c in valid.items() if k not in fresh), key=lambda c: -c.timestamp)
        age = duration(limit) if limit is not None else ""
        raise VerificationError(
            f"checkpoint {where} has {len(fresh)} of the {quorum} witness cosignatures the "
            f"quorum needs no older than {age}: "
            + "; ".join(f"the cosignature by {c.label} ({c.iso}) is older than the maximum age "
                        f"{age}" for c in old),
            rule="witness.stale", subject=where, hint=_HINT_COSIGN)
    return [fresh[k] for k in labels if k in fresh]


def duration(age: timedelta) -> str:
    """``1d12h``, ``24h`` is ``1d``, ``90m`` is ``1h30m``: as the policy file writes ages."""
    seconds, parts = int(age.total_seconds()), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _cosignatures(note: bytes | str, witnesses: Sequence[WitnessVerifier], *,
                  subject: str) -> dict[str, Cosignature]:
    text, sigs = split_note(note)
    known = {(w.name, w.key_id): w for w in witnesses}
    valid: dict[str, Cosignature] = {}
    for sig in sigs:
        witness = known.get((sig.name, sig.key_id))
        if witness is None:
            continue
        cosig = Cosignature.from_line(sig)
        if cosig is None or not witness.verify(text, cosig):
            raise CheckpointError(
                f"the cosignature by {witness.label} on checkpoint {subject} does not verify: "
                "the checkpoint or the cosignature line was altered, or it was forged",
                rule="witness.signature_invalid", subject=subject,
                hint=f"get the checkpoint cosigned again by {witness.label} (`custody audit "
                "witness`); do not trust this copy")
        if witness.label not in valid or cosig.timestamp > valid[witness.label].timestamp:
            valid[witness.label] = cosig
    return valid


def detect_rollback(head_note: bytes | str, witnessed_note: bytes | str,
                    ledger_verifier: NoteVerifier, *,
                    prove_consistency: ProveConsistency | None = None) -> Checkpoint:
    """Compare the ledger's head with the newest checkpoint a witness cosigned, both verified
    under ``ledger_verifier``; return the head. A smaller head is ``witness.rollback``, the same
    size with another root ``witness.fork``; a larger one must extend the witnessed checkpoint
    when ``prove_consistency`` is given (``witness.inconsistent``): give it, or a forked log that
    grew on passes. Check the cosignatures on ``witnessed_note`` with :func:`verify_cosignatures`.
    """
    head = verify_checkpoint(head_note, ledger_verifier, subject="the ledger's head")
    seen = verify_checkpoint(witnessed_note, ledger_verifier, subject="the witnessed checkpoint")
    check_extends(seen, head, prove_consistency, evidence="the witnessed checkpoint")
    return head


def check_extends(old: Checkpoint, new: Checkpoint, prove: ProveConsistency | None, *,
                  evidence: str) -> None:
    """Refuse unless ``new`` extends ``old`` (both already verified): a smaller ``new`` is
    ``witness.rollback``, the same size with another root ``witness.fork``, a larger one that
    ``prove`` does not prove consistent ``witness.inconsistent`` (no check without ``prove``).
    ``evidence`` names what to keep (it goes in the hint)."""
    where, hint = f"{new.origin}@{new.size}", _HINT_EVIDENCE.format(evidence=evidence)
    if new.size < old.size:
        raise VerificationError(
            f"log {new.origin} shows {new.size} entries but a witness cosigned {old.size}: it "
            "was rolled back or replaced", rule="witness.rollback", subject=where,
            hint=f"restore the ledger from a backup holding all {old.size} entries; {hint}")
    if new.size == old.size and new.root != old.root:
        raise VerificationError(
            f"log {new.origin} has two signed checkpoints of size {new.size} with different "
            "roots: it forked (a split view)", rule="witness.fork", subject=where, hint=hint)
    if new.size == old.size or prove is None:
        return
    try:
        verify_consistency(old.size, new.size, list(prove(old.size, new.size)), old.root,
                           new.root, subject=where)
    except (errors.MerkleProofError, errors.LedgerError) as exc:  # a bad proof, or none to be had
        raise VerificationError(
            f"log {new.origin} at {new.size} entries is not proven to extend the cosigned "
            f"checkpoint of {old.size} entries: {exc.message}", rule="witness.inconsistent",
            subject=where, hint=hint) from None


@dataclass(frozen=True)
class Witnessed:
    """What :meth:`Witness.witness` returns: the cosigned note (also ``bytes(result)``), its
    checkpoint, the new cosignature, and the size cosigned before (None: trust on first use)."""

    note: bytes
    checkpoint: Checkpoint
    cosignature: Cosignature
    previous_size: int | None

    @property
    def first_use(self) -> bool:  # no state for this log yet: trusted as shown
        return self.previous_size is None

    @property
    def message(self) -> str:
        done = f"{self.cosignature.label} cosigned {self.checkpoint.origin} at " \
               f"{self.checkpoint.size} entries"
        if self.previous_size is None:
            return f"{done} on trust on first use: it had no earlier checkpoint of this log"
        return f"{done}, consistent with the {self.previous_size} it cosigned before"

    def __bytes__(self) -> bytes:
        return self.note


class Witness:
    """A witness keeping its state in ``state_dir``: per log origin one JSON file with the last
    note it cosigned and the log's pinned vkey. The directory must be the witness user's alone
    (no group/other write), out of the ledger administrator's reach; else it is refused."""

    def __init__(self, key: WitnessKey, state_dir: Path | str) -> None:
        self.key, self.state_dir = key, Path(state_dir)
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = self.state_dir.stat()
        if info.st_mode & 0o022 or info.st_uid != os.geteuid():
            raise VerificationError(
                f"witness state directory {self.state_dir} is writable by others (mode "
                f"{info.st_mode & 0o777:04o}, owner uid {info.st_uid})",
                rule="witness.state_unsafe", subject=str(self.state_dir),
                hint=f"give it to the witness's user alone: chown $(id -u) {self.state_dir} && "
                f"chmod 700 {self.state_dir}")

    def state_path(self, origin: str) -> Path:
        """The state file of ``origin``: a safe name plus a hash, so origins never collide."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", origin)[:80].lstrip(".")
        return self.state_dir / f"{safe}-{hashlib.sha256(origin.encode()).hexdigest()[:16]}.json"

    def latest(self, origin: str, ledger_verifier: NoteVerifier) -> bytes | None:
        """The last note this witness cosigned for ``origin``, verified (None before any)."""
        with self._locked(origin):
            state = self._load(origin, ledger_verifier)
        return state[1] if state else None

    def witness(self, note: bytes | str, prove_consistency: ProveConsistency,
                ledger_verifier: NoteVerifier, now: Now) -> Witnessed:
        """Verify ``note`` under the pinned ``ledger_verifier``, check that it extends the last
        checkpoint cosigned for its log, persist it, and return it cosigned. Refuses
        ``witness.rollback``, ``witness.fork``, ``witness.inconsistent`` (the state stays),
        ``witness.log_key_changed``, ``witness.state_invalid``; ``checkpoint.*`` for the note."""
        cp = verify_checkpoint(note, ledger_verifier, subject="the checkpoint to witness")
        with self._locked(cp.origin):  # check and persist atomically (tlog-witness)
            state = self._load(cp.origin, ledger_verifier)
            if state is not None:
                evidence = f"the witness state {self.state_path(cp.origin)}"
                check_extends(state[0], cp, prove_consistency, evidence=evidence)
            cosigned, cosig = _cosign(note, self.key, _unix(now))
            self._store(cp.origin, ledger_verifier, cosigned)  # persisted before it is returned
        return Witnessed(cosigned, cp, cosig, state[0].size if state else None)

    @contextmanager
    def _locked(self, origin: str) -> Iterator[None]:
        fd = os.open(self.state_path(origin).with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _load(self, origin: str, verifier: NoteVerifier) -> tuple[Checkpoint, bytes] | None:
        path = self.state_path(origin)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or any(
                    not isinstance(data.get(k), str) for k in ("log_vkey", "note")):
                raise CheckpointError(f"it is not a {STATE_FORMAT} object with log_vkey and note")
            if data["log_vkey"] != verifier.vkey:
                raise VerificationError(
                    f"log {origin} was witnessed under key {data['log_vkey']}, now it is shown "
                    f"checkpoints signed by {verifier.vkey}", rule="witness.log_key_changed",
                    subject=str(path), hint="pass the log key the witness pinned; if the log "
                    f"operator announced a key rotation, confirm it out of band, then move {path} "
                    "aside (the witness then trusts the next checkpoint on first use)")
            note = data["note"].encode()
            cp = verify_checkpoint(note, verifier, origin=origin)
            if not _cosignatures(note, [self.key.verifier()], subject=str(path)):
                raise CheckpointError("its checkpoint carries no cosignature by this witness")
        except (OSError, ValueError, CheckpointError) as exc:  # JSON and Unicode errors too
            raise VerificationError(
                f"witness state {path} for log {origin} is invalid: "
                + (exc.message if isinstance(exc, CheckpointError) else str(exc)),
                rule="witness.state_invalid", subject=str(path),
                hint=f"restore {path} from the witness's backup; do not delete it, or the witness "
                "trusts the next checkpoint of this log on first use") from None
        return cp, note

    def _store(self, origin: str, verifier: NoteVerifier, note: bytes) -> None:
        """Write the state atomically: temp file, fsync, rename, fsync the directory."""
        data = {"format": STATE_FORMAT, "origin": origin, "log_vkey": verifier.vkey,
                "note": note.decode()}
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".state-", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(json.dumps(data, indent=1).encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(self.state_path(origin))
        dir_fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
