"""`custody audit witness` end to end on SQLite and PostgreSQL: the real CLI cosigns, verify with a
witness policy accepts what is witnessed, and an administrator who rolls the ledger back, forks it,
or shows the witness a checkpoint it cannot prove is refused by verify and by the witness, whose
state does not move."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from support.witness_helpers import head_size, keygen, roll_back, write_policy

from custody.provenance.log.checkpoint import Checkpoint, NoteSigner, sign_checkpoint, split_note
from custody.provenance.log.witness import WitnessKey, WitnessVerifier, verify_cosignatures
from custody.provenance.workspace import load_workspace

W1 = "witness.example/w1"
W2 = "witness.example/w2"


@pytest.fixture(autouse=True)
def _no_ambient_ledger_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTODY_LEDGER_VKEY", raising=False)


def record(cli: Any, ws: Any, name: str) -> Path:
    path = ws.root / f"{name}.bin"
    path.write_bytes(f"the bytes of {name}".encode())
    cli("record", path, "--name", name, "--kind", "dataset", cwd=ws.root).expect(0, f"{name}@")
    return path


class Witnessing:
    """One witness: its key, its state directory and where it writes its cosigned checkpoint."""

    def __init__(self, cli: Any, ws: Any, tmp: Path, name: str = W1):
        self.cli, self.ws, self.name = cli, ws, name
        self.skey, self.vkey = keygen(cli, ws.root, name)
        self.state = tmp / f"state-{name.rsplit('/', 1)[-1]}"
        self.cosigned = tmp / "cosigned"
        self.cosigned.mkdir(exist_ok=True)
        self.out = self.cosigned / f"{name.rsplit('/', 1)[-1]}.note"

    def run(self, code: int = 0, *needles: str) -> Any:
        return self.cli("audit", "witness", "--key", self.skey, "--state", self.state, "--out",
                        self.out, cwd=self.ws.root).expect(code, *needles)

    def state_bytes(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.state.glob("*.json"))}


def test_witness_keygen_writes_a_private_key_and_prints_its_vkey(ws: Any, cli: Any) -> None:
    skey, vkey = keygen(cli, ws.root, W1)
    assert skey.stat().st_mode & 0o777 == 0o600
    before = skey.read_text()
    key = WitnessKey.from_skey(before)
    assert key.verifier().vkey == vkey == WitnessVerifier.from_vkey(vkey).vkey
    cli("audit", "witness-keygen", W1, "--out", skey, cwd=ws.root).expect(
        2, "exists; a key file is never overwritten", "move the old key aside")
    assert skey.read_text() == before
    cli("audit", "witness-keygen", "bad name", "--out", ws.root / "x.skey",
        cwd=ws.root).expect(2, "no spaces")
    data = cli("audit", "witness-keygen", W2, "--out", ws.root / "w2.skey", "--json",
               cwd=ws.root).expect(0).json()
    assert data["vkey"].startswith(W2 + "+") and data["key_file"].endswith("w2.skey")


def test_audit_witness_then_verify_with_a_witness_policy_passes(ws: Any, cli: Any,
                                                                tmp_path: Path) -> None:
    a = record(cli, ws, "a")
    w1 = Witnessing(cli, ws, tmp_path)
    w1.run(0, "cosigned", "on trust on first use")
    note = w1.out.read_bytes()
    cosigs = verify_cosignatures(note, [WitnessVerifier.from_vkey(w1.vkey)], quorum=1,
                                 max_age=3600, now=int(w1.out.stat().st_mtime))
    assert [c.name for c in cosigs] == [W1]
    write_policy(ws.home, {W1: w1.vkey}, quorum=1, cosigned=w1.cosigned)
    report = cli("verify", a, "--json", cwd=ws.root).expect(0).json()
    size = head_size(ws)
    assert report["witnessed"]["tree_size"] == size
    assert report["witnessed"]["witnesses"] == [WitnessVerifier.from_vkey(w1.vkey).label]
    # a record made after the witness ran is not covered until it runs again
    b = record(cli, ws, "b")
    refused = cli("verify", b, cwd=ws.root).expect(1, "REFUSED [witness.not_covered]", "b@1",
                                                   "newer than every cosigned checkpoint",
                                                   "custody audit witness")
    assert f"(the largest has {size} entries)" in refused.err
    cli("verify", a, cwd=ws.root).expect(0, "VERIFIED")  # the head still extends what was seen
    w1.run(0, f"consistent with the {size} it cosigned before")
    cli("verify", b, cwd=ws.root).expect(0, "VERIFIED")
    # --json, and stdout without --out: the cosigned note itself
    data = cli("audit", "witness", "--key", w1.skey, "--state", w1.state, "--json",
               cwd=ws.root).expect(0).json()
    assert (data["size"], data["previous_size"], data["first_use"]) == (head_size(ws),
                                                                          head_size(ws), False)
    plain = cli("audit", "witness", "--key", w1.skey, "--state", w1.state, cwd=ws.root)
    text, lines = split_note(plain.expect(0).out)
    assert Checkpoint.parse(text).size == head_size(ws) and [s.name for s in lines][1:] == [W1]


def test_tail_rollback_after_a_witness_cosigned_is_refused(ws: Any, cli: Any,
                                                           tmp_path: Path) -> None:
    a = record(cli, ws, "a")
    kept = head_size(ws)
    record(cli, ws, "a")  # a@2: "latest" of a
    size = head_size(ws)
    w1 = Witnessing(cli, ws, tmp_path)
    w1.run(0)
    cosigned, state = w1.out.read_bytes(), w1.state_bytes()
    write_policy(ws.home, {W1: w1.vkey}, quorum=1, cosigned=w1.cosigned)
    cli("verify", a, cwd=ws.root).expect(0)
    roll_back(ws, kept)  # the newest entries and checkpoints deleted: a@2 never happened
    cli("audit", "verify", cwd=ws.root).expect(0, "AUDIT PASSED")  # invisible from inside
    cli("list", "--json", cwd=ws.root).expect(0, '"a@1"')
    cli("verify", a, cwd=ws.root).expect(
        1, "REFUSED [witness.rollback]", f"shows {kept} entries but a witness cosigned {size}",
        "restore the ledger from a backup", str(w1.out))
    # the witness refuses to cosign the older head, and neither its state nor its output moves
    w1.run(1, "REFUSED [witness.rollback]", f"shows {kept} entries but a witness cosigned")
    assert w1.state_bytes() == state and w1.out.read_bytes() == cosigned


def test_a_fork_of_one_size_is_refused(ws: Any, cli: Any, tmp_path: Path) -> None:
    a = record(cli, ws, "a")
    kept = head_size(ws)
    record(cli, ws, "b")
    size = head_size(ws)
    w1 = Witnessing(cli, ws, tmp_path)
    w1.run(0)
    state = w1.state_bytes()
    write_policy(ws.home, {W1: w1.vkey}, quorum=1, cosigned=w1.cosigned)
    roll_back(ws, kept)
    record(cli, ws, "c")  # another entry where b was: a second history of the same size
    assert head_size(ws) == size
    cli("verify", a, cwd=ws.root).expect(1, "REFUSED [witness.fork]",
                                         f"two signed checkpoints of size {size}")
    w1.run(1, "REFUSED [witness.fork]", "different roots")
    assert w1.state_bytes() == state
    # the administrator shows the fork to a second witness, who never saw the first history:
    # it cosigns on first use, and the two cosigned checkpoints of one size are a fork by
    # themselves, whatever the ledger shows now
    w2 = Witnessing(cli, ws, tmp_path, W2)
    w2.run(0, "on trust on first use")
    write_policy(ws.home, {W1: w1.vkey, W2: w2.vkey}, quorum=1, cosigned=w1.cosigned)
    cli("verify", a, cwd=ws.root).expect(1, "REFUSED [witness.fork]",
                                         f"signed two checkpoints of size {size}",
                                         str(w1.out), str(w2.out))


def test_a_fork_that_grew_on_is_inconsistent(ws: Any, cli: Any, tmp_path: Path) -> None:
    a = record(cli, ws, "a")
    kept = head_size(ws)
    record(cli, ws, "b")
    size = head_size(ws)
    w1 = Witnessing(cli, ws, tmp_path)
    w1.run(0)
    state = w1.state_bytes()
    write_policy(ws.home, {W1: w1.vkey}, quorum=1, cosigned=w1.cosigned)
    roll_back(ws, kept)
    record(cli, ws, "c")
    record(cli, ws, "d")
    assert head_size(ws) > size
    cli("verify", a, cwd=ws.root).expect(
        1, "REFUSED [witness.inconsistent]",
        f"is not proven to extend the cosigned checkpoint of {size} entries")
    w1.run(1, "REFUSED [witness.inconsistent]", "not proven to extend")
    assert w1.state_bytes() == state


def test_a_witness_shown_an_inconsistent_checkpoint_refuses_and_keeps_its_state(
        ws: Any, cli: Any, tmp_path: Path) -> None:
    record(cli, ws, "a")
    w1 = Witnessing(cli, ws, tmp_path)
    w1.run(0)
    state, cosigned = w1.state_bytes(), w1.out.read_bytes()
    # the administrator holds the ledger key and plants a head it signed over a tree it made up
    signer = load_workspace(ws.home).ledger_signer()
    assert isinstance(signer, NoteSigner)
    size = head_size(ws) + 5
    forged = sign_checkpoint(Checkpoint(signer.name, size, hashlib.sha256(b"x").digest()),
                             signer).decode()
    ws.sql("INSERT INTO checkpoints (size, root, note, frontier, created_at) "
           "VALUES (:s, :r, :n, '', CURRENT_TIMESTAMP)", s=size, r="00" * 32, n=forged)
    w1.run(1, "REFUSED [witness.inconsistent]", f"at {size} entries is not proven to extend")
    assert w1.state_bytes() == state and w1.out.read_bytes() == cosigned
    # the honest head again: the witness goes on from the state it kept
    ws.sql("DELETE FROM checkpoints WHERE size = :s", s=size)
    w1.run(0, f"consistent with the {head_size(ws)} it cosigned before")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_witness_pins_the_ledger_key_and_never_takes_it_from_the_database(
        ws: Any, cli: Any, tmp_path: Path, backend: str) -> None:
    record(cli, ws, "a")
    skey, _ = keygen(cli, ws.root, W1)
    elsewhere = tmp_path / "witness-host"
    elsewhere.mkdir()
    state = tmp_path / "state"
    args = ("audit", "witness", "--key", skey, "--state", state, "--ledger", ws.url)
    cli(*args, cwd=elsewhere).expect(1, "REFUSED [ledger.key_unpinned]",
                                     "needs the ledger's checkpoint key pinned", "--ledger-vkey")
    body = cli("--json", *args, cwd=elsewhere).expect(1).json()
    assert body["rule"] == "ledger.key_unpinned" and "--ledger-vkey VKEY" in body["hint"]
    assert not state.exists() or not list(state.glob("*.json"))
    impostor = NoteSigner.generate(load_workspace(ws.home).ledger_vkey.split("+")[0])  # type: ignore[union-attr]
    cli(*args, "--ledger-vkey", impostor.verifier().vkey, cwd=elsewhere).expect(
        1, "REFUSED [checkpoint.untrusted_key]")
    assert not list(state.glob("*.json"))
    vkey = load_workspace(ws.home).ledger_vkey
    assert vkey is not None
    out = cli(*args, "--ledger-vkey", vkey, "--json", cwd=elsewhere).expect(0).json()
    assert out["first_use"] is True and out["origin"] == vkey.split("+")[0]


def test_a_state_directory_others_may_write_is_refused(ws: Any, cli: Any,
                                                       tmp_path: Path) -> None:
    record(cli, ws, "a")
    skey, _ = keygen(cli, ws.root, W1)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    cli("audit", "witness", "--key", skey, "--state", shared, cwd=ws.root).expect(
        1, "REFUSED [witness.state_unsafe]", f"chmod 700 {shared}")
    skey.chmod(0o644)
    cli("audit", "witness", "--key", skey, "--state", tmp_path / "s", cwd=ws.root).expect(
        2, "accessible to group or others", f"chmod 600 {skey}")
    skey.chmod(0o600)
    (ws.root / "bad.skey").write_text("PRIVATE+KEY+nonsense\n")
    (ws.root / "bad.skey").chmod(0o600)
    cli("audit", "witness", "--key", ws.root / "bad.skey", "--state", tmp_path / "s",
        cwd=ws.root).expect(2, "malformed witness key")
    assert json.loads(cli("audit", "witness", "--key", skey, "--state", tmp_path / "s",
                          "--json", cwd=ws.root).expect(0).out)["ok"] is True
