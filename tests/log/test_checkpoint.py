"""Signed checkpoints (C2SP tlog-checkpoint in C2SP signed notes, Ed25519): round trips, known
answers from Go's sumdb/note and the live Go checksum database, and every kind of tampering."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.errors import KeyMaterialError
from custody.provenance.log.checkpoint import (
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointError,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_note,
    parse_checkpoint_unverified,
    sign_checkpoint,
    sign_note,
    split_note,
    verify_checkpoint,
)

ORIGIN = "custody.example/ledger"
ROOT = hashlib.sha256(b"root").digest()

# Known answer from the documentation of golang.org/x/mod/sumdb/note.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
GO_SIG = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
GO_NOTE = GO_TEXT + f"\n— PeterNeumann {GO_SIG}\n".encode()

# A checkpoint signed by the Go checksum database (sum.golang.org) with its published key.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = (
    "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n"
    "— sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYs"
    "pg3dxXABkGZZKdsQ8=\n"
)


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture(scope="module")
def note(signer: NoteSigner) -> bytes:
    return sign_checkpoint(Checkpoint(ORIGIN, 4021, ROOT), signer)


# --- round trips and known answers --------------------------------------------------------


def test_round_trip(signer: NoteSigner, note: bytes) -> None:
    lines = note.decode().split("\n")
    assert lines[:4] == [ORIGIN, "4021", base64.b64encode(ROOT).decode(), ""]
    assert lines[4].startswith(f"— {ORIGIN} ")
    assert lines[5:] == [""]
    assert verify_checkpoint(note, signer.verifier()) == Checkpoint(ORIGIN, 4021, ROOT)
    assert verify_checkpoint(note.decode(), [signer.verifier()], origin=ORIGIN).size == 4021
    assert parse_checkpoint_unverified(note).root == ROOT


def test_extension_lines_and_empty_tree_round_trip(signer: NoteSigner) -> None:
    checkpoint = Checkpoint(ORIGIN, 0, hashlib.sha256(b"").digest(), ("ext one", "ext two"))
    assert verify_checkpoint(sign_checkpoint(checkpoint, signer), signer.verifier()) == checkpoint


def test_go_sumdb_note_known_answer() -> None:
    signer = NoteSigner.from_skey(GO_SKEY)
    assert signer.skey == GO_SKEY
    assert signer.verifier().vkey == GO_VKEY
    assert f"{signer.key_id:08x}" == "c74f20a3"
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE  # Ed25519 is deterministic
    text, sigs = open_note(GO_NOTE, [NoteVerifier.from_vkey(GO_VKEY)])
    assert text == GO_TEXT
    assert [(s.name, s.key_id) for s in sigs] == [("PeterNeumann", 0xC74F20A3)]


def test_key_id_is_the_signed_note_recipe() -> None:
    public = base64.b64decode(GO_VKEY.split("+", 2)[2])[1:]
    digest = hashlib.sha256(b"PeterNeumann\n\x01" + public).digest()
    assert key_id("PeterNeumann", public) == int.from_bytes(digest[:4], "big") == 0xC74F20A3


def test_a_real_go_checksum_database_checkpoint_verifies() -> None:
    verifier = NoteVerifier.from_vkey(SUMDB_VKEY)
    checkpoint = verify_checkpoint(SUMDB_NOTE, verifier, origin="go.sum database tree")
    assert checkpoint.size == 65209736
    # the key name is not the origin, so without an explicit origin it is refused
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(SUMDB_NOTE, verifier)
    assert caught.value.rule == "checkpoint.origin_mismatch"


def test_skey_and_vkey_round_trip(signer: NoteSigner) -> None:
    again = NoteSigner.from_skey(signer.skey)
    assert again.verifier().vkey == signer.verifier().vkey
    assert NoteVerifier.from_vkey(signer.verifier().vkey).key_id == signer.key_id


# --- tampering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"\n4021\n", b"\n4022\n"),
        (b"\n4021\n", b"\n402\n"),
        (ORIGIN.encode() + b"\n", b"custody.example/other\n"),
        (base64.b64encode(ROOT), base64.b64encode(hashlib.sha256(b"other").digest())),
    ],
    ids=["size", "size-shorter", "origin", "root"],
)
def test_tampered_body_is_refused(signer: NoteSigner, note: bytes, old: bytes, new: bytes) -> None:
    tampered = note.replace(old, new, 1)
    assert tampered != note
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(tampered, signer.verifier(), subject="cp.txt")
    assert caught.value.rule == "checkpoint.signature_invalid"
    assert caught.value.subject == "cp.txt"
    assert caught.value.exit_code == 1
    assert caught.value.hint


@pytest.mark.parametrize("bit", [0, 7, 40, 300, 511])
def test_tampered_signature_is_refused(signer: NoteSigner, note: bytes, bit: int) -> None:
    text, (sig,) = split_note(note)
    raw = bytearray(sig.signature)
    raw[bit // 8] ^= 1 << (bit % 8)
    line = sig.line().replace(
        base64.b64encode(sig.key_id.to_bytes(4, "big") + sig.signature).decode(),
        base64.b64encode(sig.key_id.to_bytes(4, "big") + bytes(raw)).decode(),
    )
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(text + b"\n" + line.encode(), signer.verifier())
    assert caught.value.rule == "checkpoint.signature_invalid"


def test_wrong_key_is_refused(note: bytes) -> None:
    impostor = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())  # same name, other key
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(note, impostor.verifier())
    assert caught.value.rule == "checkpoint.untrusted_key"
    assert "no signature from a trusted key" in str(caught.value)
    other_name = NoteSigner("someone.else/log", Ed25519PrivateKey.generate())
    with pytest.raises(CheckpointError, match="trusted"):
        verify_checkpoint(note, [other_name.verifier()])
    with pytest.raises(CheckpointError, match="trusted keys: none"):
        verify_checkpoint(note, [])


def test_a_colliding_key_id_with_another_key_is_refused(signer: NoteSigner, note: bytes) -> None:
    # a verifier that claims the signer's name and key ID but holds another public key
    class Colliding(NoteVerifier):
        @property
        def key_id(self) -> int:
            return signer.key_id

    impostor = Colliding(ORIGIN, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(note, impostor)
    assert caught.value.rule == "checkpoint.signature_invalid"


def test_unknown_cosignatures_are_ignored_but_bad_known_ones_are_not(signer: NoteSigner) -> None:
    witness = NoteSigner.generate("witness.example")
    checkpoint = Checkpoint(ORIGIN, 9, ROOT)
    cosigned = sign_checkpoint(checkpoint, signer, witness)
    assert verify_checkpoint(cosigned, signer.verifier()) == checkpoint
    assert verify_checkpoint(cosigned, [signer.verifier(), witness.verifier()]) == checkpoint
    # the witness's key alone proves nothing about the log's origin
    with pytest.raises(CheckpointError, match=r"expected 'witness\.example'"):
        verify_checkpoint(cosigned, witness.verifier())
    # a known key's signature from another text poisons the whole note
    other = sign_checkpoint(Checkpoint(ORIGIN, 10, ROOT), witness)
    forged = cosigned.replace(cosigned.split(b"\n")[-2], other.split(b"\n")[-2])
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(forged, [signer.verifier(), witness.verifier()])


# --- malformed notes ----------------------------------------------------------------------

SIG = "— custody.example/ledger " + "A" * 72 + "\n"
BODY = f"{ORIGIN}\n4021\n{base64.b64encode(ROOT).decode()}\n"


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("", "no blank line"),
        (BODY + SIG, "no blank line"),
        (BODY + "\n", "does not end with a signature line"),
        (BODY + "\n" + SIG[:-1], "does not end with a signature line"),
        (BODY + "\n" + SIG.replace("—", "-"), "signature line 1"),
        (BODY + "\n" + SIG.replace("— ", "—"), "signature line 1"),
        (BODY + "\n" + SIG.replace(" AAAA", " AA!A"), "signature line 1"),
        (BODY + "\n— custody.example/ledger " + "A" * 68 + "AAB=\n", "signature line 1"),
        (BODY + "\n— custody.example/ledger AAAA\n", "signature line 1"),
        (BODY + "\n— bad+name AAAAAAAA\n", "signature line 1"),
        (BODY + "\n" + SIG + "\n", "does not end with a signature line"),
        (BODY.replace("4021", "40\t21") + "\n" + SIG, "control characters"),
        (BODY + "\r\n" + SIG, "control characters"),
        (BODY + "\n" + SIG * (MAX_SIGNATURES + 1), f"more than {MAX_SIGNATURES}"),
        (BODY + "x" * (1 << 20) + "\n\n" + SIG, "larger than"),
    ],
    ids=[
        "empty",
        "no-blank-line",
        "no-signatures",
        "no-final-newline",
        "hyphen",
        "no-space",
        "bad-base64",
        "non-canonical-base64",
        "short-signature",
        "name-with-plus",
        "trailing-blank",
        "tab",
        "carriage-return",
        "too-many-signatures",
        "too-large",
    ],
)
def test_malformed_notes_are_refused(signer: NoteSigner, note: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message) as caught:
        verify_checkpoint(note, signer.verifier())
    assert caught.value.rule == "checkpoint.malformed"


def test_invalid_utf8_is_refused(signer: NoteSigner, note: bytes) -> None:
    with pytest.raises(CheckpointError, match="UTF-8"):
        verify_checkpoint(note.replace(b"custody", b"cust\xffdy", 1), signer.verifier())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"{ORIGIN}\n4021\n", "at least three non-empty lines"),
        (f"{ORIGIN}\n\n4021\n{base64.b64encode(ROOT).decode()}\n", "at least three non-empty"),
        (BODY + "extension\n\nmore\n", "at least three non-empty"),
        (BODY.replace("4021", "04021"), "leading zeroes"),
        (BODY.replace("4021", "+4021"), "leading zeroes"),
        (BODY.replace("4021", "-1"), "leading zeroes"),
        (BODY.replace("4021", "4_021"), "leading zeroes"),
        (BODY.replace("4021", "٤٠٢١"), "leading zeroes"),
        (BODY.replace("4021", str(1 << 64)), "leading zeroes"),
        (BODY.replace("4021", "4021 "), "leading zeroes"),
        (f"{ORIGIN}\n4021\n{base64.b64encode(ROOT[:31]).decode()}\n", "32 bytes"),
        (f"{ORIGIN}\n4021\n{base64.b64encode(ROOT).decode().rstrip('=')}\n", "32 bytes"),
        (f"{ORIGIN}\n4021\n{ROOT.hex()}\n", "32 bytes"),
    ],
    ids=[
        "two-lines",
        "blank-line-in-body",
        "blank-extension",
        "leading-zero",
        "plus-sign",
        "negative",
        "underscore",
        "arabic-digits",
        "too-big",
        "trailing-space",
        "short-root",
        "unpadded-root",
        "hex-root",
    ],
)
def test_malformed_checkpoint_bodies_are_refused_even_when_signed(
    signer: NoteSigner, body: str, message: str
) -> None:
    note = sign_note(body.encode(), [signer])
    with pytest.raises(CheckpointError, match=message) as caught:
        verify_checkpoint(note, signer.verifier())
    assert caught.value.rule == "checkpoint.malformed"


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",
    ],
    ids=["empty", "name-only", "no-key", "wrong-id", "short-id", "space", "bad-key", "short-key"],
)
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(KeyMaterialError):
        NoteVerifier.from_vkey(vkey)


@pytest.mark.parametrize(
    "skey",
    [GO_VKEY, GO_SKEY.replace("c74f20a3", "c74f20a4"), GO_SKEY.replace("PRIVATE+", ""), ""],
    ids=["public-key", "wrong-id", "no-prefix", "empty"],
)
def test_malformed_signer_keys_are_refused(skey: str) -> None:
    with pytest.raises(KeyMaterialError):
        NoteSigner.from_skey(skey)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("two\nlines", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, 1 << 64, ROOT, ()),
        (ORIGIN, 1, ROOT[:20], ()),
        (ORIGIN, 1, ROOT, ("",)),
    ],
    ids=["empty-origin", "newline-origin", "negative", "too-big", "short-root", "empty-ext"],
)
def test_invalid_checkpoints_cannot_be_made(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        Checkpoint(origin, size, root, extensions)


def test_signing_needs_a_signer_and_a_final_newline(signer: NoteSigner) -> None:
    with pytest.raises(ValueError, match="at least one signer"):
        sign_note(b"text\n", [])
    with pytest.raises(ValueError, match="newline"):
        sign_note(b"text", [signer])
    with pytest.raises(ValueError, match="invalid key name"):
        NoteSigner.generate("has space")
