"""A pinned Sigstore trusted root that is missing, unreadable or not a trust root is an error
(exit 2) naming the file, when the policy is checked or verify starts: never a silent no-op."""

from __future__ import annotations

from pathlib import Path

import pytest

from custody.errors import KeyMaterialError
from custody.provenance.policy.core import Policy
from custody.signing.sigstore_verify import SigstoreTrust

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sigstore"  # see vector_paths.py
ROOT = VECTORS / "trust" / "production.trusted_root.json"


def _policy(folder: Path, root: str) -> Path:
    (folder / "keys").mkdir(exist_ok=True)
    from custody.signing.keys import generate_key_pair

    if not (folder / "keys" / "k.pub").exists():
        generate_key_pair(folder / "keys" / "k")
    path = folder / "policy.toml"
    path.write_text(f'version = 1\n[sigstore]\ntrusted_root = "{root}"\n'
                    '[signers.s]\nkeys = ["keys/k.pub"]\n[[trust]]\nsigners = ["s"]\n',
                    encoding="utf-8")
    return path


def _bad_roots(folder: Path) -> dict[str, str]:
    """name in the policy → what is there."""
    (folder / "garbage.json").write_text("{not json", encoding="utf-8")
    (folder / "other.json").write_text('{"mediaType": "something else"}', encoding="utf-8")
    (folder / "adir.json").mkdir()
    return {"nope/x.json": "missing", "garbage.json": "not JSON", "other.json": "not a root",
            "adir.json": "a directory"}


def test_policy_check_refuses_a_missing_or_invalid_trusted_root(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    for name in _bad_roots(tmp_path):
        policy = _policy(tmp_path, name)
        cli("policy", "check", policy, cwd=tmp_path).expect(
            2, "sigstore.trusted_root", name, "what to do")


def test_policy_check_accepts_a_real_trusted_root(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "root.json").write_bytes(ROOT.read_bytes())
    cli("policy", "check", _policy(tmp_path, "root.json"), cwd=tmp_path).expect(0, "is valid")


def test_verify_refuses_a_missing_or_invalid_trusted_root(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    model = make_file(ws.root / "model.bin", b"weights" * 10)
    cli("record", model, "--name", "m", "--kind", "model", cwd=ws.root).expect(0)
    for name in [*_bad_roots(ws.root), "missing.json"]:
        cli("verify", model, "--trusted-root", name, cwd=ws.root).expect(2, name, "what to do")
        cli("verify", model, "--trusted-root", name, "--identity", "me@example.com",
            "--issuer", "https://accounts.example.com", cwd=ws.root).expect(2, name)
    policy = _policy(ws.root, "nope/x.json")
    cli("verify", model, "--policy", policy, cwd=ws.root).expect(2, "nope/x.json")
    cli("verify", model, "--trusted-root", ROOT, cwd=ws.root).expect(0, "VERIFIED")


def test_library_policy_with_a_missing_trusted_root_is_refused(tmp_path: Path) -> None:
    from custody.signing.keys import generate_key_pair

    generate_key_pair(tmp_path / "k")
    with pytest.raises(KeyMaterialError, match=r"missing\.json") as caught:
        Policy.from_key_files([tmp_path / "k.pub"],
                              sigstore=SigstoreTrust(trusted_root=tmp_path / "missing.json"))
    assert caught.value.hint and caught.value.subject == str(tmp_path / "missing.json")
