"""Inclusion receipts (C2SP tlog-proof v1): build, parse, verify offline, and refuse tampering."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from custody.provenance.log.checkpoint import (
    Checkpoint,
    CheckpointError,
    NoteSigner,
    sign_checkpoint,
)
from custody.provenance.log.merkle import (
    MerkleProofError,
    build_nodes,
    inclusion_proof,
    leaf_hash,
    root_from_store,
)
from custody.provenance.log.receipt import (
    HEADER,
    Receipt,
    ReceiptError,
    build_receipt,
    parse_receipt,
    verify_receipt,
)

ORIGIN = "custody.example/ledger"
ENTRIES = [f'{{"entry":{i}}}'.encode() for i in range(13)]
LEAVES = [leaf_hash(e) for e in ENTRIES]
NODES = build_nodes(LEAVES)


def get_node(level: int, index: int) -> bytes:
    return NODES[level, index]


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


def _checkpoint_note(signer: NoteSigner, size: int = len(LEAVES)) -> bytes:
    return sign_checkpoint(Checkpoint(ORIGIN, size, root_from_store(size, get_node)), signer)


def _receipt(signer: NoteSigner, index: int = 5, extra: bytes | None = None) -> bytes:
    proof = inclusion_proof(index, len(LEAVES), get_node)
    return build_receipt(index, proof, _checkpoint_note(signer), extra=extra)


def test_round_trip(signer: NoteSigner) -> None:
    data = _receipt(signer, extra=b"context")
    lines = data.decode().split("\n")
    assert lines[0] == HEADER
    assert lines[1] == "extra " + base64.b64encode(b"context").decode()
    assert lines[2] == "index 5"
    receipt = parse_receipt(data)
    assert receipt.index == 5 and receipt.extra == b"context"
    assert receipt.to_bytes() == data
    verified = verify_receipt(data, LEAVES[5], signer.verifier())
    assert verified.checkpoint.size == len(LEAVES)
    assert verify_receipt(receipt, LEAVES[5], [signer.verifier()], origin=ORIGIN).receipt == receipt


@pytest.mark.parametrize("index", range(len(LEAVES)))
def test_every_leaf_has_a_verifying_receipt(signer: NoteSigner, index: int) -> None:
    verify_receipt(_receipt(signer, index), LEAVES[index], signer.verifier())


def test_a_single_leaf_log_has_an_empty_proof(signer: NoteSigner) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, LEAVES[0]), signer)
    data = build_receipt(0, [], note)
    assert data.startswith(f"{HEADER}\nindex 0\n\n".encode())
    verify_receipt(data, LEAVES[0], signer.verifier())


def test_another_entry_is_refused(signer: NoteSigner) -> None:
    with pytest.raises(MerkleProofError):
        verify_receipt(_receipt(signer, 5), LEAVES[6], signer.verifier())
    with pytest.raises(MerkleProofError):
        verify_receipt(_receipt(signer, 5), leaf_hash(b'{"entry":5} '), signer.verifier())


def test_a_changed_index_or_proof_line_is_refused(signer: NoteSigner) -> None:
    data = _receipt(signer, 5)
    with pytest.raises(MerkleProofError):
        verify_receipt(data.replace(b"index 5\n", b"index 4\n"), LEAVES[5], signer.verifier())
    receipt = parse_receipt(data)
    for i in range(len(receipt.proof)):
        proof = list(receipt.proof)
        proof[i] = bytes([proof[i][0] ^ 1]) + proof[i][1:]
        forged = Receipt(receipt.index, tuple(proof), receipt.checkpoint_note).to_bytes()
        with pytest.raises(MerkleProofError):
            verify_receipt(forged, LEAVES[5], signer.verifier())


def test_a_checkpoint_from_another_key_or_log_is_refused(signer: NoteSigner) -> None:
    impostor = NoteSigner.generate(ORIGIN)
    data = _receipt(impostor, 5)
    with pytest.raises(CheckpointError) as caught:
        verify_receipt(data, LEAVES[5], signer.verifier())
    assert caught.value.rule == "checkpoint.untrusted_key"
    with pytest.raises(CheckpointError, match=r"other\.example"):
        verify_receipt(_receipt(signer, 5), LEAVES[5], signer.verifier(), origin="other.example")


def test_a_checkpoint_of_another_size_is_refused(signer: NoteSigner) -> None:
    proof = inclusion_proof(5, len(LEAVES), get_node)
    data = build_receipt(5, proof, _checkpoint_note(signer, size=12))
    with pytest.raises(MerkleProofError):
        verify_receipt(data, LEAVES[5], signer.verifier())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.replace(HEADER.encode(), b"c2sp.org/tlog-proof@v2"), "does not start"),
        (lambda d: d.replace(b"index 5\n", b""), "no 'index N' line"),
        (lambda d: d.replace(b"index 5\n", b"index 05\n"), "no 'index N' line"),
        (lambda d: d.replace(b"index 5\n", b"index -5\n"), "no 'index N' line"),
        (lambda d: d.replace(b"index 5\n", b"index 5\nnot-base64!\n"), "proof line 1"),
        (lambda d: d.replace(b"index 5\n", b"index 5\nAAAA\n"), "proof line 1"),
        (lambda d: d.split(b"\n\n")[0], "no blank line"),
        (lambda d: d.replace(b"index 5", "índex 5".encode()), "not ASCII"),
    ],
    ids=[
        "header",
        "no-index",
        "leading-zero",
        "negative",
        "bad-base64",
        "short-hash",
        "no-checkpoint",
        "non-ascii",
    ],
)
def test_malformed_receipts_are_refused(
    signer: NoteSigner, mutate: Callable[[bytes], bytes], message: str
) -> None:
    with pytest.raises(ReceiptError, match=message) as caught:
        verify_receipt(mutate(_receipt(signer, 5)), LEAVES[5], signer.verifier())
    assert caught.value.rule == "receipt.malformed"
    assert caught.value.exit_code == 1


def test_building_refuses_impossible_receipts(signer: NoteSigner) -> None:
    note = _checkpoint_note(signer)
    with pytest.raises(ValueError, match="not in the tree"):
        build_receipt(len(LEAVES), [], note)
    with pytest.raises(ValueError, match="32 bytes"):
        build_receipt(1, [b"short"], note)
