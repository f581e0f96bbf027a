"""The policy's ``[witness]`` table and what verify does with it, on SQLite and PostgreSQL:
coverage by a quorum of named witnesses, stale and missing cosignatures, tampered and foreign
files, and rollback or fork shown by any checkpoint the ledger signed (custody.verify,
open_verified and the CLI refuse alike)."""

from __future__ import annotations

import base64
import hashlib
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support.witness_helpers import POLICY_HEAD, head_size, roll_back, write_policy

import custody
from custody.errors import PolicyFileError, VerificationError
from custody.provenance.log.checkpoint import (
    Checkpoint,
    NoteSigner,
    sign_checkpoint,
    split_note,
)
from custody.provenance.log.witness import Witness, WitnessKey
from custody.provenance.policy.file import load_policy
from custody.provenance.verification.inclusion import InclusionChecker
from custody.provenance.verification.witnessing import check_witnessed
from custody.provenance.workspace import load_workspace

DAY = 86400


@pytest.fixture(autouse=True)
def _no_ambient_ledger_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTODY_LEDGER_VKEY", raising=False)


class Setup:
    """A workspace with one recorded file, witnesses (library Witness objects with their own
    state) and the folder their cosigned checkpoints go to."""

    def __init__(self, ws: Any, cli: Any, tmp: Path):
        self.ws, self.cli, self.tmp = ws, cli, tmp
        self.workspace = load_workspace(ws.home)
        verifier = self.workspace.ledger_verifier()
        assert verifier is not None
        self.verifier = verifier
        self.cosigned = tmp / "cosigned"
        self.cosigned.mkdir()
        self.path = self.record("a")

    def record(self, name: str) -> Path:
        path = self.ws.root / f"{name}.bin"
        path.write_bytes(f"content of {name}".encode())
        self.cli("record", path, "--name", name, "--kind", "dataset",
                 cwd=self.ws.root).expect(0)
        return path

    def witness(self, name: str) -> Witness:
        return Witness(WitnessKey.generate(f"witness.example/{name}"), self.tmp / f"st-{name}")

    def cosign(self, witness: Witness, at: int | None = None, file: str | None = None) -> Path:
        """``witness`` cosigns the ledger's head at time ``at`` and writes it to the folder."""
        with self.workspace.open_ledger() as ledger:
            done = witness.witness(ledger.head().note, ledger.prove_consistency, self.verifier,
                                   int(time.time()) if at is None else at)
        out = self.cosigned / (file or f"{witness.key.name.rsplit('/', 1)[-1]}.note")
        out.write_bytes(done.note)
        return out

    def policy(self, *witnesses: Witness, quorum: int, max_age: str | None = "24h") -> Path:
        return write_policy(self.ws.home, {w.key.name: w.key.verifier().vkey for w in witnesses},
                            quorum=quorum, cosigned=self.cosigned, max_age=max_age)

    def verify(self, policy: Path | None = None) -> Any:
        """custody.verify as a library call, in the workspace (its pinned ledger key)."""
        return custody.verify(self.path, policy or self.ws.home / "policy.toml")

    def refused(self, rule: str, *needles: str) -> VerificationError:
        with pytest.raises(VerificationError) as caught:
            self.verify()
        error = caught.value
        assert (error.rule, error.exit_code) == (rule, 1), (error.rule, error.message)
        assert error.hint and error.subject
        for needle in needles:
            assert needle in error.message + error.hint, (needle, error.message, error.hint)
        # the CLI refuses with the same rule, and open_verified does not hand the bytes over
        self.cli("verify", self.path, cwd=self.ws.root).expect(1, f"REFUSED [{rule}]")
        with pytest.raises(VerificationError) as again:
            custody.open_verified(self.path, self.ws.home / "policy.toml")
        assert again.value.rule == rule
        return error


@pytest.fixture
def setup(ws: Any, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.chdir(ws.root)
    return Setup(ws, cli, tmp_path)


# --- verify with a witness policy -----------------------------------------------------------


def test_a_quorum_of_fresh_cosignatures_covers_the_record(setup: Setup) -> None:
    w1, w2 = setup.witness("w1"), setup.witness("w2")
    setup.policy(w1, w2, quorum=2)
    setup.cosign(w1)
    # each witness writes its own file: verify merges the cosignatures of one checkpoint
    setup.cosign(w2)
    report = setup.verify()
    assert report.witnessed is not None
    assert report.witnessed.witnesses == (w1.key.verifier().label, w2.key.verifier().label)
    assert report.witnessed.size == head_size(setup.ws)
    assert report.to_json()["witnessed"]["tree_size"] == head_size(setup.ws)
    # without a witness policy nothing of this is asked for
    plain = setup.ws.root / "plain.toml"
    plain.write_text(POLICY_HEAD.replace("keys/", ".custody/keys/"), encoding="utf-8")
    assert setup.verify(plain).witnessed is None


def test_quorum_not_met_with_one_cosignature_of_two(setup: Setup) -> None:
    w1, w2 = setup.witness("w1"), setup.witness("w2")
    setup.policy(w1, w2, quorum=2)
    setup.cosign(w1)
    setup.refused("witness.quorum_not_met", "has 1 of the 2 witness cosignatures",
                  f"missing {w2.key.verifier().label}", "custody audit witness", "a@1")
    setup.cosign(w2)  # following the hint
    assert setup.verify().witnessed is not None


def test_a_missing_cosignature_is_refused(setup: Setup) -> None:
    w1 = setup.witness("w1")
    setup.policy(w1, quorum=1)
    # the ledger's own checkpoint, exported but never cosigned
    setup.cli("audit", "checkpoint", "--out", setup.cosigned / "head.note",
              cwd=setup.ws.root).expect(0)
    setup.refused("witness.quorum_not_met", "signed by none", w1.key.verifier().label)
    # a witness the policy does not name counts for nothing
    setup.cosign(setup.witness("stranger"), file="head.note")
    setup.refused("witness.quorum_not_met", "signed by none")


def test_no_cosigned_checkpoint_at_all_is_not_covered(setup: Setup) -> None:
    w1 = setup.witness("w1")
    setup.policy(w1, quorum=1)
    setup.refused("witness.not_covered", "no cosigned checkpoint of ledger",
                  str(setup.cosigned), "--out")
    setup.cosigned.rmdir()  # a folder that is not there is no evidence either
    setup.refused("witness.not_covered", str(setup.cosigned))


def test_a_stale_witness_is_refused(setup: Setup) -> None:
    w1 = setup.witness("w1")
    setup.policy(w1, quorum=1, max_age="24h")
    then = int(time.time()) - 2 * DAY
    setup.cosign(w1, at=then)  # the witness last cosigned two days ago
    setup.refused("witness.stale", "is older than the maximum age 1d",
                  w1.key.verifier().label, "custody audit witness")
    # the same evidence is fine at a time within max_age of the cosignature (an injected now)
    policy = load_policy(setup.ws.home / "policy.toml")
    assert policy.witness is not None and policy.witness.max_age == timedelta(hours=24)
    with setup.workspace.open_ledger() as ledger:
        checker = InclusionChecker(ledger, setup.verifier)
        assert check_witnessed(policy.witness, checker, [0], subject="a@1",
                               now=then + 3600).witnesses == (w1.key.verifier().label,)
        with pytest.raises(VerificationError, match="older than the maximum age") as caught:
            check_witnessed(policy.witness, checker, [0], subject="a@1", now=then + DAY + 1)
        assert caught.value.rule == "witness.stale"
    # a stale cosignature does not count towards the quorum even if another one is fresh
    w2 = setup.witness("w2")
    setup.policy(w1, w2, quorum=2)
    setup.cosign(w2)
    setup.refused("witness.stale", "has 1 of the 2 witness cosignatures the quorum needs no "
                  "older than 1d")
    setup.cosign(w1)  # following the hint: w1 cosigns the current checkpoint again
    assert setup.verify().witnessed is not None


def test_a_tampered_cosignature_is_refused(setup: Setup) -> None:
    w1 = setup.witness("w1")
    setup.policy(w1, quorum=1)
    out = setup.cosign(w1)
    note = out.read_bytes()
    line = split_note(note)[1][-1].line().encode()
    blob = bytearray(base64.b64decode(line.split(b" ")[-1]))
    blob[20] ^= 1
    out.write_bytes(note.replace(line.split(b" ")[-1].strip(), base64.b64encode(bytes(blob))))
    setup.refused("witness.signature_invalid", f"cosignature by {w1.key.verifier().label}",
                  "does not verify", str(out))


def test_files_that_are_not_checkpoints_of_this_ledger(setup: Setup) -> None:
    w1 = setup.witness("w1")
    setup.policy(w1, quorum=1)
    setup.cosign(w1)
    (setup.cosigned / ".w1.note.tmp").write_text("half written")  # dot files are skipped
    other = NoteSigner.generate("other.ledger/1")  # another log's checkpoint is skipped
    (setup.cosigned / "other.note").write_bytes(
        sign_checkpoint(Checkpoint(other.name, 9, bytes(32)), other))
    assert setup.verify().witnessed is not None
    junk = setup.cosigned / "junk.note"
    junk.write_text("not a note")
    setup.refused("witness.cosigned_invalid", str(junk), "is not a cosigned checkpoint")
    # this log's name, but not its key: a forgery, refused
    impostor = NoteSigner.generate(setup.verifier.name)
    junk.write_bytes(sign_checkpoint(Checkpoint(setup.verifier.name, 1, bytes(32)), impostor))
    setup.refused("witness.cosigned_invalid", "no signature from a trusted key")
    junk.unlink()
    assert setup.verify().witnessed is not None


def test_tail_rollback_is_refused_by_verify(setup: Setup) -> None:
    w1 = setup.witness("w1")
    setup.policy(w1, quorum=1)
    kept = head_size(setup.ws)
    setup.record("b")
    setup.cosign(w1)
    size = head_size(setup.ws)
    assert setup.verify().witnessed is not None
    roll_back(setup.ws, kept)
    setup.refused("witness.rollback", f"shows {kept} entries but a witness cosigned {size}")


def test_any_checkpoint_the_ledger_signed_is_evidence_of_rollback_and_fork(setup: Setup) -> None:
    """Even a checkpoint no witness cosigned shows a rollback (it is larger than the head) or
    a fork (another root at a size the ledger has): the ledger's key signed it."""
    w1 = setup.witness("w1")
    setup.policy(w1, quorum=1)
    setup.cosign(w1)
    signer = setup.workspace.ledger_signer()
    assert signer is not None
    size = head_size(setup.ws)
    saved = setup.cosigned / "saved.note"
    saved.write_bytes(sign_checkpoint(Checkpoint(signer.name, size + 3,
                                                 hashlib.sha256(b"later").digest()), signer))
    setup.refused("witness.rollback", f"shows {size} entries but a witness cosigned {size + 3}",
                  str(saved))
    saved.write_bytes(sign_checkpoint(Checkpoint(signer.name, size,
                                                 hashlib.sha256(b"other").digest()), signer))
    setup.refused("witness.fork", f"signed two checkpoints of size {size} with different roots")


def test_a_record_newer_than_the_witnessed_checkpoint_is_not_covered(setup: Setup) -> None:
    w1 = setup.witness("w1")
    setup.policy(w1, quorum=1)
    setup.cosign(w1)
    covered = head_size(setup.ws)
    setup.path = setup.record("b")
    setup.refused("witness.not_covered", "ledger entry", f"the largest has {covered} entries")
    setup.cosign(w1)
    assert setup.verify().witnessed is not None


# --- the [witness] table --------------------------------------------------------------------


def _policy(tmp_path: Path, witness: str) -> Path:
    (tmp_path / "keys").mkdir(exist_ok=True)
    if not (tmp_path / "keys" / "signing.pub").exists():
        from custody.signing.keys import generate_key_pair

        generate_key_pair(tmp_path / "keys" / "signing")
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_HEAD + "[witness]\n" + witness, encoding="utf-8")
    return path


def test_the_witness_table_is_read_and_every_key_checked(tmp_path: Path, cli: Any) -> None:
    w1, w2 = WitnessKey.generate("witness.example/w1"), WitnessKey.generate("w2")
    (tmp_path / "w2.vkey").write_text(w2.verifier().vkey + "\n")
    good = _policy(tmp_path, f'witnesses = [{{name = "witness.example/w1", key = '
                   f'"{w1.verifier().vkey}"}}, {{name = "w2", key = "w2.vkey"}}]\n'
                   'quorum = 2\nmax_age = "1d12h"\ncosigned = ["cosigned", "/srv/more"]\n')
    policy = load_policy(good).witness
    assert policy is not None
    assert [w.vkey for w in policy.witnesses] == [w1.verifier().vkey, w2.verifier().vkey]
    assert (policy.quorum, policy.max_age) == (2, timedelta(days=1, hours=12))
    assert policy.cosigned == (tmp_path / "cosigned", Path("/srv/more"))
    cli("policy", "check", good, cwd=tmp_path).expect(0, "is valid")
    entry = f'witnesses = [{{name = "w2", key = "{w2.verifier().vkey}"}}]\ncosigned = "c"\n'
    hours = load_policy(_policy(tmp_path, entry + "max_age_hours = 1.5\n")).witness
    assert hours is not None and hours.max_age == timedelta(minutes=90) and hours.quorum == 1
    assert load_policy(_policy(tmp_path, entry)).witness.max_age is None  # type: ignore[union-attr]
    bad = {
        entry + "quorom = 1\n": "witness.quorom: unknown key",
        entry + "quorum = 2\n": "witness.quorum: must be a whole number from 1 to 1",
        entry + "quorum = 0\n": "witness.quorum",
        entry + 'max_age = "soon"\n': "witness.max_age: must be a duration",
        entry + 'max_age = "0h"\n': "witness.max_age: must be longer than zero",
        entry + 'max_age = "1h"\nmax_age_hours = 1\n': "give max_age or max_age_hours",
        entry + "max_age_hours = -1\n": "witness.max_age_hours",
        'cosigned = "c"\n': "witness.witnesses: must be a non-empty array",
        f'witnesses = [{{name = "w2", key = "{w2.verifier().vkey}"}}]\n': "witness.cosigned",
        f'witnesses = [{{name = "w3", key = "{w2.verifier().vkey}"}}]\ncosigned = "c"\n':
            "witness.witnesses[0].name: is 'w3' but the key is witness 'w2'",
        'witnesses = [{name = "w2", key = "missing.vkey"}]\ncosigned = "c"\n':
            "witness.witnesses[0].key: is neither a vkey",
        f'witnesses = [{{name = "w2", key = "{w2.verifier().vkey}", role = "x"}}]\n'
        'cosigned = "c"\n': "witness.witnesses[0].role: unknown key",
        f'witnesses = [{{name = "w2", key = "{w2.verifier().vkey}"}}, '
        f'{{name = "w2", key = "{w2.verifier().vkey}"}}]\ncosigned = "c"\n': "names one witness "
        "twice",
        f'witnesses = [{{name = "x", key = "{NoteSigner.generate("x").verifier().vkey}"}}]\n'
        'cosigned = "c"\n': "type 0x04",
    }
    for text, needle in bad.items():
        path = _policy(tmp_path, text)
        with pytest.raises(PolicyFileError, match=r".*") as caught:
            load_policy(path)
        assert needle in caught.value.message, (text, caught.value.message)
        assert str(path) in caught.value.message and "docs/policy.md" in (caught.value.hint or "")
        cli("policy", "check", path, cwd=tmp_path).expect(2, needle)
