"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, signed with Ed25519.

A checkpoint commits a log to its size and root hash::

    custody.example/ledger          <- origin (the log's identity; also the key name)
    4021                            <- tree size, ASCII decimal
    pY7V...Qk=                      <- base64 RFC 6962 root hash
                                    <- blank line, then one line per signature:
    — custody.example/ledger <base64(4-byte key ID || Ed25519 signature)>

Key IDs follow signed-note: ``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]``.
Verifier keys are text, ``<name>+<hex key ID>+<base64(0x01 || public key)>``, and signer keys
``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``, as Go's ``golang.org/x/mod/sumdb/note``
writes them, so checkpoints interoperate with the transparency-dev tooling.

Verification fails closed: a malformed note, a known key whose signature does not verify, or no
signature from a trusted key raises :class:`CheckpointError`. Signatures from unknown keys
(witness cosignatures, rotated keys) are ignored, as the spec requires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from custody.errors import CheckpointError, KeyMaterialError

_ALG_ED25519 = 0x01
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
_SIG_PREFIX = "— "
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_KEY_ID_RE = re.compile(r"[0-9a-fA-F]{8}")


# --- keys ---------------------------------------------------------------------------------------


def is_valid_key_name(name: str) -> bool:
    """Signed-note key names: non-empty, no Unicode spaces, no ``+``, no control characters."""
    return bool(name) and "+" not in name and not any(c.isspace() or c < " " for c in name)


def key_id(name: str, public_key: bytes) -> int:
    """Signed-note Ed25519 key ID: the first 4 bytes, big-endian, of
    ``SHA-256(name || 0x0A || 0x01 || public_key)``."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([_ALG_ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise ValueError(f"invalid key name {name!r}: it must be non-empty, without spaces or '+'")


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 public key with its signed-note name."""

    name: str
    public_key: Ed25519PublicKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def key_id(self) -> int:
        return key_id(self.name, _raw_public(self.public_key))

    @property
    def vkey(self) -> str:
        """``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        encoded = base64.b64encode(bytes([_ALG_ED25519]) + _raw_public(self.public_key)).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key; raise :class:`KeyMaterialError` if it is malformed or its key ID
        does not match its name and key."""
        name, _, rest = vkey.strip().partition("+")
        hex_id, _, b64 = rest.partition("+")
        key = b64decode_strict(b64)
        if not is_valid_key_name(name) or not _KEY_ID_RE.fullmatch(hex_id) or key is None:
            raise KeyMaterialError(
                "malformed verifier key: expected NAME+KEYID+BASE64", subject=vkey
            )
        if len(key) != 33 or key[0] != _ALG_ED25519:
            raise KeyMaterialError("verifier key is not an Ed25519 signed-note key", subject=vkey)
        if int(hex_id, 16) != key_id(name, key[1:]):
            raise KeyMaterialError(
                "verifier key ID does not match its name and public key", subject=vkey
            )
        return cls(name, Ed25519PublicKey.from_public_bytes(key[1:]))

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class NoteSigner:
    """An Ed25519 private key with its signed-note name (the log's origin, for checkpoints)."""

    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``."""
        parts = skey.strip().split("+", 4)
        seed = b64decode_strict(parts[4]) if len(parts) == 5 else None
        if (
            parts[:2] != ["PRIVATE", "KEY"]
            or seed is None
            or len(seed) != 33
            or seed[0] != _ALG_ED25519
            or not _KEY_ID_RE.fullmatch(parts[3])
            or not is_valid_key_name(parts[2])
        ):
            raise KeyMaterialError("malformed signer key: expected PRIVATE+KEY+NAME+KEYID+BASE64")
        signer = cls(parts[2], Ed25519PrivateKey.from_private_bytes(seed[1:]))
        if signer.key_id != int(parts[3], 16):
            raise KeyMaterialError("signer key ID does not match its name and public key")
        return signer

    @property
    def skey(self) -> str:
        """The secret signer key string; keep it as secret as the private key."""
        seed = self.private_key.private_bytes_raw()
        encoded = base64.b64encode(bytes([_ALG_ED25519]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{encoded}"

    @property
    def key_id(self) -> int:
        return key_id(self.name, _raw_public(self.private_key.public_key()))

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.private_key.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


# --- signed notes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID, and the signature bytes (without the key ID)."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


def sign_note(text: bytes, signers: Sequence[NoteSigner]) -> bytes:
    """Sign ``text`` (UTF-8, ending in a newline) with every signer; return the signed note."""
    if not signers:
        raise ValueError("a signed note needs at least one signer")
    _check_text(text, require_newline=True)
    sigs = [NoteSignature(s.name, s.key_id, s.sign(text)) for s in signers]
    return text + b"\n" + "".join(sig.line() for sig in sigs).encode()


def split_note(note: bytes | str) -> tuple[bytes, list[NoteSignature]]:
    """Parse a signed note into its text and signature lines, verifying nothing."""
    data = note.encode() if isinstance(note, str) else note
    if len(data) > MAX_NOTE_BYTES:
        raise CheckpointError(f"signed note is larger than {MAX_NOTE_BYTES} bytes")
    _check_text(data, require_newline=False)
    split = data.rfind(b"\n\n")
    if split < 0:
        raise CheckpointError("signed note has no blank line before its signatures")
    text, block = data[: split + 1], data[split + 2 :]
    if not block.endswith(b"\n"):
        raise CheckpointError("signed note does not end with a signature line and a newline")
    lines = block[:-1].decode().split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"signed note has more than {MAX_SIGNATURES} signatures")
    sigs = []
    for number, line in enumerate(lines, 1):
        name, _, b64 = line.removeprefix(_SIG_PREFIX).partition(" ")
        blob = b64decode_strict(b64)
        if (
            not line.startswith(_SIG_PREFIX)
            or not is_valid_key_name(name)
            or blob is None
            or (len(blob) < 5)
        ):
            raise CheckpointError(
                f"signature line {number} is not '— <key name> <base64 signature>'"
            )
        sigs.append(NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:]))
    return text, sigs


def open_note(
    note: bytes | str, verifiers: Sequence[NoteVerifier], *, subject: str | None = None
) -> tuple[bytes, list[NoteSignature]]:
    """Verify a signed note; return its text and the signatures that verified.

    Signatures from keys not in ``verifiers`` (matched by name *and* key ID) are ignored; one
    from a known key that does not verify, or none from a known key at all, is refused.
    """
    try:
        text, sigs = split_note(note)
    except CheckpointError as exc:
        exc.subject = subject
        raise
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[NoteSignature] = []
    for sig in sigs:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(text, sig.signature):
            raise CheckpointError(
                f"the signature by {sig.name}+{sig.key_id:08x} does not verify: the note text "
                "was altered after signing, or the signature was forged",
                rule="checkpoint.signature_invalid",
                subject=subject,
            )
        verified.append(sig)
    if not verified:
        present = ", ".join(f"{s.name}+{s.key_id:08x}" for s in sigs)
        trusted = ", ".join(f"{v.name}+{v.key_id:08x}" for v in verifiers) or "none"
        raise CheckpointError(
            f"no signature from a trusted key: the note is signed by {present}; "
            f"trusted keys: {trusted}",
            rule="checkpoint.untrusted_key",
            subject=subject,
        )
    return text, verified


# --- checkpoints --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, RFC 6962 root hash and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for line in (self.origin, *self.extensions):
            if not line or any(c < " " for c in line):
                raise ValueError(f"checkpoint lines must be non-empty, one line each: {line!r}")
        if not 0 <= self.size < 1 << 64:
            raise ValueError(f"checkpoint tree size out of range: {self.size}")
        if len(self.root) != 32:
            raise ValueError(f"checkpoint root must be 32 bytes, got {len(self.root)}")

    def text(self) -> bytes:
        """The note text that gets signed."""
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines).encode()

    @classmethod
    def parse(cls, text: bytes) -> Checkpoint:
        """Parse a checkpoint body (the note text); raise :class:`CheckpointError` if malformed."""
        if not text.endswith(b"\n"):
            raise CheckpointError("checkpoint text does not end with a newline")
        lines = text[:-1].decode().split("\n")
        if len(lines) < 3 or not all(lines):
            raise CheckpointError(
                "checkpoint text must be at least three non-empty lines: origin, size, root hash"
            )
        origin, size, root_b64, *extensions = lines
        if not _SIZE_RE.fullmatch(size) or int(size) >= 1 << 64:
            raise CheckpointError(
                f"checkpoint tree size {size!r} is not a decimal without leading zeroes"
            )
        root = b64decode_strict(root_b64)
        if root is None or len(root) != 32:
            raise CheckpointError("checkpoint root hash is not the base64 of 32 bytes")
        try:
            return cls(origin, int(size), root, tuple(extensions))
        except ValueError as exc:
            raise CheckpointError(f"malformed checkpoint: {exc}") from None


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner, *cosigners: NoteSigner) -> bytes:
    """The signed note for ``checkpoint``: the log signs it, optional cosigners after it."""
    return sign_note(checkpoint.text(), [signer, *cosigners])


def parse_checkpoint_unverified(note: bytes | str) -> Checkpoint:
    """Read a signed checkpoint without checking signatures: for display only, never trust it."""
    text, _ = split_note(note)
    return Checkpoint.parse(text)


def verify_checkpoint(
    note: bytes | str,
    verifiers: NoteVerifier | Sequence[NoteVerifier],
    *,
    origin: str | None = None,
    subject: str | None = None,
) -> Checkpoint:
    """Verify a signed checkpoint and return it.

    The checkpoint's origin must equal ``origin``; without one, it must equal the name of a key
    whose signature verified (the log signs under its origin). Raises :class:`CheckpointError`.
    """
    trusted = [verifiers] if isinstance(verifiers, NoteVerifier) else list(verifiers)
    text, verified = open_note(note, trusted, subject=subject)
    try:
        checkpoint = Checkpoint.parse(text)
    except CheckpointError as exc:
        exc.subject = subject
        raise
    expected = {origin} if origin is not None else {s.name for s in verified}
    if checkpoint.origin not in expected:
        raise CheckpointError(
            f"checkpoint is for log {checkpoint.origin!r}, expected "
            + " or ".join(repr(e) for e in sorted(expected)),
            rule="checkpoint.origin_mismatch",
            subject=subject,
            hint="pass the checkpoint of this ledger, or the verifier key of the log it names",
        )
    return checkpoint


# --- helpers ------------------------------------------------------------------------------------


def b64decode_strict(value: str) -> bytes | None:
    """Strict, canonical standard base64, or None."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if raw and base64.b64encode(raw).decode() == value else None


def _check_text(data: bytes, *, require_newline: bool) -> None:
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("signed note is not valid UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in decoded):
        raise CheckpointError("signed note contains control characters other than newline")
    if require_newline and not decoded.endswith("\n"):
        raise ValueError("note text must end with a newline")
