"""Witness cosignatures through a real `custody serve` on SQLite and PostgreSQL: witnesses POST
their cosigned checkpoints, readers GET the checkpoint with them and verify them themselves; a
forked, foreign or tampered post is refused, and an edited stored cosignature is caught by the
client."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import service_support as support
from support.witness_helpers import head_size, keygen, write_policy

from custody.errors import VerificationError
from custody.provenance.log.checkpoint import (
    Checkpoint,
    NoteSigner,
    sign_checkpoint,
    split_note,
)
from custody.provenance.log.witness import WitnessKey, WitnessVerifier, cosign, verify_cosignatures
from custody.provenance.workspace import load_workspace

W1, W2 = "witness.example/w1", "witness.example/w2"


class Served:
    def __init__(self, base: str, tokens: dict[str, str], ws: Any, cli: Any, tmp: Path):
        self.base, self.tokens, self.ws, self.cli, self.tmp = base, tokens, ws, cli, tmp

    def call(self, method: str, path: str, role: str = "reader", **kw: Any) -> httpx.Response:
        response = httpx.request(method, self.base + path, headers=support.auth(
            self.tokens[role]), timeout=60, **kw)
        assert "Traceback" not in response.text
        return response

    def witness(self, skey: Path, name: str = "w1") -> str:
        """`custody audit witness` (the real CLI) cosigns the ledger's head; its note."""
        out = self.tmp / f"{name}.note"
        self.cli("audit", "witness", "--key", skey, "--state", self.tmp / f"state-{name}",
                 "--out", out, cwd=self.ws.root).expect(0)
        return out.read_text()

    def post(self, note: str | bytes, vkey: str | None = None, role: str = "publisher"
             ) -> httpx.Response:
        text = note.decode() if isinstance(note, bytes) else note
        return self.call("POST", "/v1/checkpoint/cosignatures", role=role,
                         json={"note": text, **({"witness": vkey} if vkey else {})})


def _record(cli: Any, ws: Any, name: str) -> None:
    path = ws.root / f"{name}.bin"
    path.write_bytes(f"bytes of {name}".encode())
    cli("record", path, "--name", name, "--kind", "dataset", cwd=ws.root).expect(0)


@pytest.fixture
def keys(ws: Any, cli: Any) -> dict[str, tuple[Path, str]]:
    _record(cli, ws, "a")
    return {name: keygen(cli, ws.root, name) for name in (W1, W2)}


@pytest.fixture
def served(ws: Any, cli: Any, tmp_path: Path, keys: dict[str, tuple[Path, str]]
           ) -> Iterator[Served]:
    tokens = support.make_tokens(ws.url)
    with support.running_server(ws.root) as base:
        yield Served(base, tokens, ws, cli, tmp_path)


def _trusted(keys: dict[str, tuple[Path, str]], *names: str) -> list[WitnessVerifier]:
    return [WitnessVerifier.from_vkey(keys[n][1]) for n in names]


def test_witnesses_post_cosignatures_and_readers_verify_them(
        served: Served, keys: dict[str, tuple[Path, str]]) -> None:
    size = head_size(served.ws)
    for name in (W1, W2):
        skey, vkey = keys[name]
        r = served.post(served.witness(skey, name.rsplit("/")[-1]), vkey)
        assert r.status_code == 200, r.text
        assert r.json()["size"] == size and [a["witness"] for a in r.json()["added"]] == [
            _trusted(keys, name)[0].label]
    assert r.json()["cosignatures"] == 2
    body = served.call("GET", "/v1/checkpoint").json()
    assert body["size"] == size and [c["witness"] for c in body["cosignatures"]] == [
        w.label for w in _trusted(keys, W1, W2)]
    now = int(time.time())
    # the client checks the cosignatures with the witness keys it trusts, not the server's word
    counted = verify_cosignatures(body["note"], _trusted(keys, W1, W2), quorum=2, max_age=3600,
                                  now=now)
    assert [c.name for c in counted] == [W1, W2]
    note = served.call("GET", "/v1/checkpoint", params={"format": "note"}).text
    assert note == body["note"]
    # the fetched note is evidence verify accepts: a quorum-2 policy over it passes
    folder = served.tmp / "fetched"
    folder.mkdir()
    (folder / "service.note").write_text(note)
    write_policy(served.ws.home, {W1: keys[W1][1], W2: keys[W2][1]}, quorum=2, cosigned=folder)
    served.cli("verify", served.ws.root / "a.bin", cwd=served.ws.root).expect(0, "VERIFIED")
    # the newest checkpoint carries none until the witnesses run again; ?witnessed=true gives
    # the newest one that has some
    _record(served.cli, served.ws, "b")
    assert served.call("GET", "/v1/checkpoint").json()["cosignatures"] == []
    witnessed = served.call("GET", "/v1/checkpoint", params={"witnessed": "true"}).json()
    assert witnessed["size"] == size and len(witnessed["cosignatures"]) == 2


def test_posting_needs_the_publisher_role(served: Served,
                                          keys: dict[str, tuple[Path, str]]) -> None:
    note = served.witness(keys[W1][0])
    r = served.post(note, keys[W1][1], role="reader")
    assert r.status_code == 403 and "publisher" in r.json()["hint"]
    r = httpx.post(served.base + "/v1/checkpoint/cosignatures", json={"note": note}, timeout=60)
    assert r.status_code == 401


def test_a_forked_checkpoint_posted_is_refused(served: Served,
                                               keys: dict[str, tuple[Path, str]]) -> None:
    """The ledger's administrator signs a second checkpoint of the head's size and has a witness
    cosign it: the service refuses it as a fork and keeps nothing."""
    signer = load_workspace(served.ws.home).ledger_signer()
    assert signer is not None
    size = head_size(served.ws)
    forged = sign_checkpoint(Checkpoint(signer.name, size, hashlib.sha256(b"fork").digest()),
                             signer)
    key = WitnessKey.from_skey(keys[W1][0].read_text())
    r = served.post(cosign(forged, key, int(time.time())), keys[W1][1])
    assert r.status_code == 422 and r.json()["rule"] == "witness.fork", r.text
    assert "forked" in r.json()["message"] and "custody audit verify" in r.json()["hint"]
    assert served.call("GET", "/v1/checkpoint").json()["cosignatures"] == []
    # beyond the head: the ledger has no such checkpoint
    beyond = sign_checkpoint(Checkpoint(signer.name, size + 7, bytes(32)), signer)
    r = served.post(cosign(beyond, key, int(time.time())), keys[W1][1])
    assert r.status_code == 404, r.text


def test_tampered_foreign_and_malformed_posts_are_refused(
        served: Served, keys: dict[str, tuple[Path, str]]) -> None:
    note = served.witness(keys[W1][0]).encode()
    line = split_note(note)[1][-1].line().encode()
    b64 = line.split(b" ")[-1].strip()
    blob = bytearray(base64.b64decode(b64))
    blob[30] ^= 1
    r = served.post(note.replace(b64, base64.b64encode(bytes(blob))), keys[W1][1])
    assert r.status_code == 422 and r.json()["rule"] == "witness.signature_invalid", r.text
    # a checkpoint the ledger key did not sign
    impostor = NoteSigner.generate(split_note(note)[0].split(b"\n")[0].decode())
    text = split_note(note)[0]
    r = served.post(cosign(sign_checkpoint(Checkpoint.parse(text), impostor),
                           WitnessKey.from_skey(keys[W1][0].read_text()), int(time.time())),
                    keys[W1][1])
    assert r.status_code == 422 and r.json()["rule"] == "checkpoint.untrusted_key", r.text
    # no known witness, a cosignature of another witness than the one named, bad bodies
    r = served.post(note)
    assert r.status_code == 400 and "knows no witness" in r.json()["message"]
    r = served.post(note, keys[W2][1])
    assert r.status_code == 400 and "carries no cosignature by" in r.json()["message"]
    for body in ({"note": 3}, {"note": "x", "witness": 1}):
        r = served.call("POST", "/v1/checkpoint/cosignatures", role="publisher", json=body)
        assert r.status_code == 400 and r.json()["hint"], r.text
    r = served.post("not a note", keys[W1][1])
    assert r.status_code == 422 and r.json()["rule"].startswith("checkpoint."), r.text
    assert served.call("GET", "/v1/checkpoint").json()["cosignatures"] == []


def test_an_edited_stored_cosignature_is_caught_by_the_client(
        served: Served, keys: dict[str, tuple[Path, str]]) -> None:
    """The stored cosignatures are a cache the database administrator can edit: a client that
    verifies them refuses an edited line, and a deleted one only leaves the quorum unmet."""
    assert served.post(served.witness(keys[W1][0]), keys[W1][1]).status_code == 200
    trusted = _trusted(keys, W1)
    now = int(time.time())
    (line,) = served.ws.sql("SELECT line FROM checkpoint_cosignatures")[0]
    b64 = line.split(" ")[-1].strip()
    blob = bytearray(base64.b64decode(b64))
    blob[-1] ^= 1
    served.ws.sql("UPDATE checkpoint_cosignatures SET line = :l",
                  l=line.replace(b64, base64.b64encode(bytes(blob)).decode()))
    note = served.call("GET", "/v1/checkpoint", params={"format": "note"}).text
    with pytest.raises(VerificationError) as caught:
        verify_cosignatures(note, trusted, quorum=1, max_age=3600, now=now)
    assert caught.value.rule == "witness.signature_invalid"
    served.ws.sql("DELETE FROM checkpoint_cosignatures")
    note = served.call("GET", "/v1/checkpoint", params={"format": "note"}).text
    with pytest.raises(VerificationError) as caught:
        verify_cosignatures(note, trusted, quorum=1, max_age=3600, now=now)
    assert caught.value.rule == "witness.quorum_not_met"
    r = served.call("GET", "/v1/checkpoint", params={"witnessed": "true"})
    assert r.status_code == 404 and "POST /v1/checkpoint/cosignatures" in r.json()["hint"]


def test_the_service_policy_names_the_witnesses_it_keeps_and_its_verify_requires(
        ws: Any, cli: Any, tmp_path: Path, keys: dict[str, tuple[Path, str]]) -> None:
    write_policy(ws.home, {W1: keys[W1][1]}, quorum=1, cosigned=tmp_path / "cosigned")
    with support.running_server(ws.root) as base:
        served = Served(base, support.make_tokens(ws.url), ws, cli, tmp_path)
        w2_note = served.witness(keys[W2][0], "w2")
        r = served.post(w2_note, keys[W2][1])  # its own vkey sent along does not make it known
        assert r.status_code == 400 and _trusted(keys, W1)[0].label in r.json()["message"]
        digest = {"digest": "sha256:" + hashlib.sha256(b"bytes of a").hexdigest()}
        verdict = served.call("POST", "/v1/verify", json=digest).json()
        assert (verdict["verdict"], verdict["rule"]) == ("refused", "witness.not_covered")
        note = served.witness(keys[W1][0])
        r = served.post(note)
        assert r.status_code == 200 and r.json()["cosignatures"] == 1, r.text
        # the service's own verify applies the policy's [witness] table as custody verify does
        (tmp_path / "cosigned").mkdir()
        (tmp_path / "cosigned" / "w1.note").write_text(note)
        assert served.call("POST", "/v1/verify", json=digest).json()["verdict"] == "verified"


def test_a_witness_reads_the_service_and_publishes_there(
        served: Served, keys: dict[str, tuple[Path, str]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A witness on another host, without database access: the head and the consistency proofs
    come from the service, the ledger key is pinned on the command line, and the cosigned
    checkpoint is posted back; a rollback of the database is refused through the service too."""
    from support.witness_helpers import roll_back

    vkey = load_workspace(served.ws.home).ledger_vkey
    assert vkey is not None
    elsewhere = tmp_path / "witness-host"
    elsewhere.mkdir()
    monkeypatch.setenv("CUSTODY_TOKEN", served.tokens["publisher"])
    state = tmp_path / "remote-state"
    args = ("audit", "witness", "--key", keys[W1][0], "--state", state, "--ledger", served.base,
            "--ledger-vkey", vkey, "--publish", served.base)
    kept = head_size(served.ws)
    first = served.cli(*args, "--json", cwd=elsewhere).expect(0).json()
    assert first["first_use"] and first["published"]["cosignatures"] == 1
    _record(served.cli, served.ws, "b")
    grown = served.cli(*args, cwd=elsewhere).expect(
        0, f"consistent with the {kept} it cosigned before", "posted to")
    body = served.call("GET", "/v1/checkpoint").json()
    assert body["size"] == head_size(served.ws) and len(body["cosignatures"]) == 1
    assert verify_cosignatures(body["note"], _trusted(keys, W1), quorum=1, max_age=3600,
                               now=int(time.time()))
    assert "Traceback" not in grown.err
    saved = {p.name: p.read_bytes() for p in state.glob("*.json")}
    roll_back(served.ws, kept)
    served.cli(*args, cwd=elsewhere).expect(1, "REFUSED [witness.rollback]")
    assert {p.name: p.read_bytes() for p in state.glob("*.json")} == saved
    # a reader token may fetch but not publish; no token at all is told how to send one
    monkeypatch.setenv("CUSTODY_TOKEN", served.tokens["reader"])
    served.cli("audit", "witness", "--key", keys[W2][0], "--state", tmp_path / "w2-state",
               "--ledger", served.base, "--ledger-vkey", vkey, "--publish", served.base,
               cwd=elsewhere).expect(2, "answered 403", "publisher")
    monkeypatch.delenv("CUSTODY_TOKEN")
    served.cli("audit", "witness", "--key", keys[W2][0], "--state", tmp_path / "w2-state",
               "--ledger", served.base, "--ledger-vkey", vkey, cwd=elsewhere).expect(
        2, "answered 401", "Authorization")
    served.cli("audit", "witness", "--key", keys[W2][0], "--state", tmp_path / "w2-state",
               "--ledger", served.base, cwd=elsewhere).expect(
        1, "REFUSED [ledger.key_unpinned]", "--ledger-vkey")
