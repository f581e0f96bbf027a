"""Witnesses and cosignatures (C2SP tlog-witness / tlog-cosignature) against real ledgers on
SQLite and PostgreSQL: trust on first use, honest growth, rollback, fork, forged proofs, stale,
missing and tampered cosignatures, the state directory, and the key formats."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ledger_helpers

from custody.errors import KeyMaterialError, UsageError, VerificationError
from custody.provenance.ledger.store import Ledger
from custody.provenance.log.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    sign_checkpoint,
    split_note,
    verify_checkpoint,
)
from custody.provenance.log.witness import (
    Cosignature,
    Witness,
    WitnessKey,
    WitnessVerifier,
    cosign,
    detect_rollback,
    signed_message,
    verify_cosignatures,
)
from custody.provenance.workspace import load_workspace

NOW = 1_800_000_000
HOUR = 3600




@dataclass
class Log:
    ledger: Ledger
    signer: NoteSigner  # the real ledger key, as its administrator holds it
    verifier: NoteVerifier
    home: Path
    grown: int = 0

    def grow(self, count: int) -> bytes:
        ledger_helpers.append_records(self.ledger, self.home, count, with_inputs=False,
                                  prefix=f"g{self.grown}")
        self.grown += 1
        return self.head()

    def head(self) -> bytes:
        return self.ledger.head().note.encode()

    def forged(self, size: int, seed: bytes = b"forged") -> bytes:
        """A checkpoint signed by the real ledger key that the ledger never had."""
        return sign_checkpoint(Checkpoint(self.signer.name, size, hashlib.sha256(seed).digest()),
                               self.signer)


@pytest.fixture
def log(ws: Any) -> Iterator[Log]:
    workspace = load_workspace(ws.home)
    signer, verifier = workspace.ledger_signer(), workspace.ledger_verifier()
    assert signer is not None and verifier is not None
    ledger = workspace.open_ledger(append=True)
    try:
        yield Log(ledger, signer, verifier, ws.home)
    finally:
        ledger.close()


@pytest.fixture
def witness(tmp_path: Path) -> Witness:
    return Witness(WitnessKey.generate("witness.example/w1"), tmp_path / "w1-state")


def _refused(rule: str, *needles: str) -> Any:
    class Check:
        error: VerificationError

        def __enter__(self) -> Check:
            return self

        def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
            assert isinstance(exc, VerificationError), exc
            assert exc.rule == rule and exc.exit_code == 1, (exc.rule, exc.message)
            assert exc.hint and exc.subject
            for needle in needles:
                assert needle in exc.message + exc.hint, (needle, exc.message, exc.hint)
            self.error = exc
            return True

    return Check()


# --- witnessing a real ledger -------------------------------------------------------------------


def test_first_use_is_trusted_and_said_so(log: Log, witness: Witness) -> None:
    note = log.grow(3)
    result = witness.witness(note, log.ledger.prove_consistency, log.verifier, NOW)
    assert result.first_use and result.previous_size is None
    assert "trust on first use" in result.message
    # the log's signature line is kept, the cosignature verifies for the checkpoint as shown
    assert verify_checkpoint(bytes(result), log.verifier).size == 3
    assert split_note(result.note)[1][0] == split_note(note)[1][0]
    cosigs = verify_cosignatures(result.note, [witness.key.verifier()], quorum=1,
                                 max_age=HOUR, now=NOW)
    assert [c.timestamp for c in cosigs] == [NOW] and cosigs[0] == result.cosignature
    path = witness.state_path(log.signer.name)
    assert path.parent == witness.state_dir and path.stat().st_mode & 0o777 == 0o600
    assert witness.latest(log.signer.name, log.verifier) == result.note
    # a checkpoint the pinned ledger key did not sign is refused, and the state stays
    stranger = NoteSigner.generate(log.signer.name)
    with _refused("checkpoint.untrusted_key", "no signature from a trusted key"):
        witness.witness(sign_checkpoint(Checkpoint.parse(split_note(note)[0]), stranger),
                        log.ledger.prove_consistency, log.verifier, NOW + 1)
    assert witness.latest(log.signer.name, log.verifier) == result.note
    # now as an aware datetime works like POSIX seconds; a naive one is refused
    later = witness.witness(note, log.ledger.prove_consistency, log.verifier,
                            datetime.fromtimestamp(NOW + 7, UTC))
    assert later.cosignature.timestamp == NOW + 7 and later.cosignature.iso.endswith("Z")
    with pytest.raises(ValueError, match="timezone-aware"):
        witness.witness(note, log.ledger.prove_consistency, log.verifier, datetime(2030, 1, 1))


def test_honest_growth_is_cosigned_each_time(log: Log, witness: Witness) -> None:
    witness.witness(log.grow(2), log.ledger.prove_consistency, log.verifier, NOW)
    second = witness.witness(log.grow(3), log.ledger.prove_consistency, log.verifier, NOW + 60)
    assert (second.first_use, second.previous_size, second.checkpoint.size) == (False, 2, 5)
    assert "consistent with the 2 it cosigned before" in second.message
    third = witness.witness(log.grow(4), log.ledger.prove_consistency, log.verifier, NOW + 120)
    assert (third.previous_size, third.checkpoint.size) == (5, 9)
    # the same head again: cosigned afresh (a newer time), no proof needed
    again = witness.witness(log.head(), lambda a, b: [], log.verifier, NOW + 180)
    assert again.cosignature.timestamp == NOW + 180 and again.previous_size == 9
    # re-cosigning the cosigned note replaces the witness's own line instead of adding one
    assert len(split_note(cosign(again.note, witness.key, NOW + 200))[1]) == 2


def test_rollback_is_refused(log: Log, witness: Witness) -> None:
    old = log.grow(2)
    latest = witness.witness(log.grow(3), log.ledger.prove_consistency, log.verifier, NOW)
    with _refused("witness.rollback", "shows 2 entries but a witness cosigned 5",
                  "restore the ledger from a backup holding all 5 entries",
                  str(witness.state_path(log.signer.name))):
        witness.witness(old, log.ledger.prove_consistency, log.verifier, NOW + 1)
    assert witness.latest(log.signer.name, log.verifier) == latest.note  # the evidence stays
    # verify's side: the ledger now serves the older head, the witnessed checkpoint is newer
    with _refused("witness.rollback", "shows 2 entries but a witness cosigned 5"):
        detect_rollback(old, latest.note, log.verifier)
    assert detect_rollback(log.head(), latest.note, log.verifier,
                           prove_consistency=log.ledger.prove_consistency).size == 5


def test_a_fork_of_the_same_size_is_refused(log: Log, witness: Witness) -> None:
    head = log.grow(4)
    witness.witness(head, log.ledger.prove_consistency, log.verifier, NOW)
    fork = log.forged(4)
    assert verify_checkpoint(fork, log.verifier).size == 4  # properly signed by the ledger key
    with _refused("witness.fork", "two signed checkpoints of size 4 with different roots",
                  f"keep the witness state {witness.state_path(log.signer.name)} and the "
                  "ledger's checkpoint as evidence", "`custody audit verify`"):
        witness.witness(fork, log.ledger.prove_consistency, log.verifier, NOW + 1)
    with _refused("witness.fork", "size 4", "keep the witnessed checkpoint"):
        detect_rollback(fork, witness.latest(log.signer.name, log.verifier) or b"", log.verifier)


def test_an_inconsistent_checkpoint_is_refused_and_does_not_advance_the_state(
        log: Log, witness: Witness) -> None:
    first = witness.witness(log.grow(3), log.ledger.prove_consistency, log.verifier, NOW)
    honest = log.grow(4)  # the ledger really grows to 7 ...
    forged = log.forged(7)  # ... and its administrator signs another tree of 7 leaves
    real_proof = log.ledger.prove_consistency(3, 7)
    bogus = [hashlib.sha256(bytes([i])).digest() for i in range(len(real_proof))]
    proofs = {"the real proof": log.ledger.prove_consistency, "a forged proof": lambda a, b: bogus,
              "no proof": lambda a, b: []}
    for name, prove in proofs.items():
        with _refused("witness.inconsistent", "at 7 entries is not proven to extend the cosigned "
                      "checkpoint of 3 entries"):
            witness.witness(forged, prove, log.verifier, NOW + 1)
        state = witness.latest(log.signer.name, log.verifier)
        assert state and verify_checkpoint(state, log.verifier).size == 3, name
    # a checkpoint beyond what the ledger holds: it cannot prove it
    with _refused("witness.inconsistent", "not proven to extend"):
        witness.witness(log.forged(40), log.ledger.prove_consistency, log.verifier, NOW + 1)
    # the state did not move: the honest checkpoint is checked against 3, and accepted
    accepted = witness.witness(honest, log.ledger.prove_consistency, log.verifier, NOW + 2)
    assert (accepted.previous_size, accepted.checkpoint.size) == (3, 7)
    with _refused("witness.inconsistent", "not proven to extend"):  # detect_rollback checks too
        detect_rollback(forged, first.note, log.verifier,
                        prove_consistency=log.ledger.prove_consistency)
    with _refused("witness.fork", "size 7"):
        witness.witness(forged, log.ledger.prove_consistency, log.verifier, NOW + 3)


def test_stale_and_future_cosignatures_are_refused(log: Log, witness: Witness) -> None:
    keys = [witness.key.verifier()]
    note = witness.witness(log.grow(2), log.ledger.prove_consistency, log.verifier, NOW).note
    with _refused("witness.stale", "is older than the maximum age 1h",
                  witness.key.verifier().label, "`custody audit witness`"):
        verify_cosignatures(note, keys, quorum=1, max_age=HOUR, now=NOW + HOUR + 1)
    # following the hint: the witness cosigns the current checkpoint again
    fresh = witness.witness(log.head(), log.ledger.prove_consistency, log.verifier,
                            NOW + HOUR + 1).note
    assert verify_cosignatures(fresh, keys, quorum=1, max_age=HOUR, now=NOW + HOUR + 1)
    with _refused("witness.future_timestamp", "s in the future", "clocks"):
        verify_cosignatures(fresh, keys, quorum=1, max_age=HOUR, now=NOW)
    assert verify_cosignatures(fresh, keys, quorum=1, max_age=None, now=NOW + HOUR - 30)


def test_quorum_two_of_two_with_one_cosignature(log: Log, witness: Witness,
                                                tmp_path: Path) -> None:
    other = Witness(WitnessKey.generate("witness.example/w2"), tmp_path / "w2-state")
    keys = [witness.key.verifier(), other.key.verifier()]
    one = witness.witness(log.grow(3), log.ledger.prove_consistency, log.verifier, NOW).note
    with _refused("witness.quorum_not_met", "has 1 of the 2 witness cosignatures",
                  f"signed by {keys[0].label}; missing {keys[1].label}",
                  "`custody audit witness`") as check:
        verify_cosignatures(one, keys, quorum=2, max_age=HOUR, now=NOW)
    assert check.error.subject == f"{log.signer.name}@3"
    with _refused("witness.quorum_not_met", "signed by none; missing"):
        verify_cosignatures(log.head(), keys, quorum=1, max_age=HOUR, now=NOW)
    # following the hint: the missing witness cosigns the (already cosigned) checkpoint
    both = other.witness(one, log.ledger.prove_consistency, log.verifier, NOW + 5).note
    cosigs = verify_cosignatures(both, keys, quorum=2, max_age=HOUR, now=NOW + 5)
    assert [c.name for c in cosigs] == ["witness.example/w1", "witness.example/w2"]
    with pytest.raises(UsageError, match="quorum of 3 cannot be met by 2"):
        verify_cosignatures(both, keys, quorum=3, max_age=HOUR, now=NOW)
    twin = WitnessVerifier("witness.example/w1-again", keys[0].public_key)  # one key, two names
    with pytest.raises(UsageError, match="share one public key"):
        verify_cosignatures(both, [*keys, twin], quorum=2, max_age=HOUR, now=NOW)


def test_tampered_cosignatures_are_refused_unknown_ones_ignored(log: Log,
                                                                witness: Witness) -> None:
    keys = [witness.key.verifier()]
    note = witness.witness(log.grow(2), log.ledger.prove_consistency, log.verifier, NOW).note
    text, sigs = split_note(note)
    line = sigs[-1].line().encode()
    b64 = line.split(b" ")[-1].rstrip()
    blob = base64.b64decode(b64)

    def flipped(at: int) -> bytes:
        bad = bytearray(blob)
        bad[at] ^= 1
        return note.replace(b64, base64.b64encode(bytes(bad)))

    for at in (4, 11, 12, 40, len(blob) - 1):  # the timestamp, the signature
        with _refused("witness.signature_invalid", "cosignature by " + keys[0].label,
                      "does not verify", "cosigned again"):
            verify_cosignatures(flipped(at), keys, quorum=1, max_age=HOUR, now=NOW)
    truncated = note.replace(b64, base64.b64encode(blob[:-1]))
    with _refused("witness.signature_invalid", "does not verify"):
        verify_cosignatures(truncated, keys, quorum=1, max_age=HOUR, now=NOW)
    # another key ID: the line is no longer this witness's, so it does not count
    with _refused("witness.quorum_not_met", "missing " + keys[0].label):
        verify_cosignatures(flipped(0), keys, quorum=1, max_age=HOUR, now=NOW)
    # the checkpoint text changed under the cosignature (the log's own line dropped)
    moved = Checkpoint.parse(text).text().replace(b"\n2\n", b"\n3\n") + b"\n" + line
    with _refused("witness.signature_invalid", "does not verify"):
        verify_cosignatures(moved, keys, quorum=1, max_age=HOUR, now=NOW)
    # a stranger's line, and a witness key of the same name but another key, are ignored
    stranger = WitnessKey.generate("witness.example/w1")
    mixed = cosign(note, stranger, NOW)
    assert verify_cosignatures(mixed, keys, quorum=1, max_age=HOUR, now=NOW)[0].label \
        == keys[0].label
    with _refused("witness.quorum_not_met", "missing " + keys[0].label):
        verify_cosignatures(cosign(log.head(), stranger, NOW), keys, quorum=1, max_age=HOUR,
                            now=NOW)


# --- the witness's state ------------------------------------------------------------------------


def test_a_damaged_state_file_is_refused_and_restoring_it_helps(log: Log,
                                                                witness: Witness) -> None:
    witness.witness(log.grow(2), log.ledger.prove_consistency, log.verifier, NOW)
    path = witness.state_path(log.signer.name)
    backup = path.read_bytes()
    data = json.loads(backup)
    log_line = data["note"].split("\n\n")[1].split("\n")[0] + "\n"
    damages = {
        b"{not json": "Expecting property name",
        b"\xff": "can't decode",
        json.dumps({**data, "format": "v0"}).encode(): "not a custody-witness-state/v1 object",
        json.dumps({**data, "note": data["note"].replace("\n2\n", "\n1\n")}).encode():
            "does not verify",
        json.dumps({**data, "note": data["note"].split("\n\n")[0] + "\n\n" + log_line}).encode():
            "carries no cosignature by this witness",
    }
    for damaged, needle in damages.items():
        path.write_bytes(damaged)
        with _refused("witness.state_invalid", str(path), needle, "restore", "backup"):
            witness.witness(log.grow(1), log.ledger.prove_consistency, log.verifier, NOW + 1)
    path.write_bytes(backup)  # following the hint
    result = witness.witness(log.head(), log.ledger.prove_consistency, log.verifier, NOW + 2)
    assert result.previous_size == 2 and result.checkpoint.size == 2 + len(damages)


def test_the_state_directory_must_be_the_witness_s_alone(tmp_path: Path) -> None:
    key = WitnessKey.generate("witness.example/w1")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with _refused("witness.state_unsafe", "writable by others", "chmod 700") as check:
        Witness(key, shared)
    command = check.error.hint.split(": ", 1)[1]  # following the hint, as printed
    subprocess.run(command, shell=True, check=True)  # noqa: S602
    assert Witness(key, shared).state_dir == shared
    names = {Witness(key, shared).state_path(o).name for o in ("a/b", "a_b", "../x", ".")}
    assert len(names) == 4 and all("/" not in n and not n.startswith(".") for n in names)


def test_the_pinned_log_key_must_not_change(log: Log, witness: Witness) -> None:
    witness.witness(log.grow(1), log.ledger.prove_consistency, log.verifier, NOW)
    impostor = NoteSigner.generate(log.signer.name)
    note = sign_checkpoint(Checkpoint(log.signer.name, 9, hashlib.sha256(b"x").digest()),
                           impostor)
    with _refused("witness.log_key_changed", impostor.verifier().vkey, "out of band"):
        witness.witness(note, log.ledger.prove_consistency, impostor.verifier(), NOW + 1)


# --- key formats ----------------------------------------------------------------------------


SEED = bytes(range(32))


def test_key_id_and_key_text_known_answer() -> None:
    private = Ed25519PrivateKey.from_private_bytes(SEED)
    public = private.public_key().public_bytes_raw()
    name = "witness.example/w1"
    kid = hashlib.sha256(name.encode() + b"\x0a\x04" + public).digest()[:4].hex()
    key = WitnessKey(name, private)
    vkey = f"{name}+{kid}+" + base64.b64encode(b"\x04" + public).decode()
    assert key.verifier().vkey == vkey and f"{key.verifier().key_id:08x}" == kid
    assert key.skey == f"PRIVATE+KEY+{name}+{kid}+" + base64.b64encode(b"\x04" + SEED).decode()
    # a log's note key (type 0x01) of the same bytes is not a witness key, and vice versa
    note_vkey = NoteSigner(name, private).verifier().vkey
    assert note_vkey.split("+")[1] != kid
    with pytest.raises(KeyMaterialError, match="type 0x04"):
        WitnessVerifier.from_vkey(note_vkey)
    with pytest.raises(KeyMaterialError, match="does not match"):
        WitnessVerifier.from_vkey(vkey.replace(kid, "00000000"))
    with pytest.raises(KeyMaterialError, match="type 0x04"):
        WitnessKey.from_skey(NoteSigner(name, private).skey)
    # the signed message and the line layout of C2SP tlog-cosignature
    text = Checkpoint("example.com/behind-the-sofa", 20852163, bytes(32)).text()
    assert signed_message(text, 1679315147) == b"cosignature/v1\ntime 1679315147\n" + text
    cosig = key.cosign_text(text, 1679315147)
    blob = base64.b64decode(cosig.line().split(" ")[-1])
    assert blob[:4].hex() == kid and int.from_bytes(blob[4:12], "big") == 1679315147
    private.public_key().verify(blob[12:], signed_message(text, 1679315147))


def test_the_spec_example_line_decodes() -> None:
    """The cosignature in C2SP tlog-cosignature's example: key ID, then the big-endian time."""
    note = ("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
            "\n— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9"
            "dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n")
    cosig = Cosignature.from_line(split_note(note)[1][0])
    assert cosig and (cosig.key_id, cosig.timestamp) == (0x8D66CF3F, 1679315147)
    assert cosig.iso == "2023-03-20T12:25:47Z"


_NAMES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF,
                               blacklist_characters="+",
                               blacklist_categories=("Cc", "Zs")), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(name=_NAMES, seed=st.binary(min_size=32, max_size=32))
def test_key_text_round_trips(name: str, seed: bytes) -> None:
    key = WitnessKey(name, Ed25519PrivateKey.from_private_bytes(seed))
    again = WitnessKey.from_skey(key.skey)
    assert (again.name, again.private_key.private_bytes_raw()) == (name, seed)
    verifier = WitnessVerifier.from_vkey(key.verifier().vkey)
    assert verifier.vkey == key.verifier().vkey
    assert (verifier.name, verifier.key_id) == (name, key.verifier().key_id)
