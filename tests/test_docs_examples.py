"""The examples in README.md and docs/*.md run as written.

Every fenced ``toml``, ``python`` and ``bash`` block is executed against real files in a
temporary folder: policies with ``custody policy check``, the workspace config as a workspace's
``config.toml``, Python against a workspace holding the recorded sample data, and shell blocks
command by command through the CLI. A block that cannot run offline is marked in the markdown
with ``<!-- not-run: REASON -->`` on the line before it; only those are skipped, and counted.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from custody.signing.keys import generate_key_pair

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_data"
VECTORS = Path(__file__).resolve().parent / "vectors" / "sigstore"  # see vector_paths.py
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_MARK = re.compile(r"<!--\s*(not-run|file):\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    text: str
    not_run: str | None  # the reason, when marked <!-- not-run: ... -->
    file: str | None  # <!-- file: PATH -->: the block is the content of that file

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}:{self.lang}"


def blocks(lang: str | None = None) -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in _FENCE.finditer(text):
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = _MARK.search(before)
            found.append(Block(
                doc=str(doc.relative_to(REPO)), line=text[: m.start()].count("\n") + 1,
                lang=m.group(1), text=m.group(2),
                not_run=mark.group(2) if mark and mark.group(1) == "not-run" else None,
                file=mark.group(2) if mark and mark.group(1) == "file" else None))
    return [b for b in found if lang is None or b.lang == lang]


def _params(lang: str, *, files: bool | None = None) -> list[object]:
    """The blocks of ``lang`` (only those marked ``file:`` when ``files``, none when False)."""
    return [pytest.param(b, id=b.id) for b in blocks(lang)
            if files is None or (b.file is not None) == files]


def _skip_marked(block: Block) -> None:
    if block.not_run is not None:
        pytest.skip(f"marked not-run: {block.not_run}")


def _self_signed_ca(path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docs root")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _provide_policy_files(text: str, folder: Path) -> None:
    """Create the files a documented policy names, as real material of the right kind."""
    import tomllib

    data = tomllib.loads(text)
    for spec in data.get("signers", {}).values():
        for pub in spec.get("keys", []):
            (folder / pub).parent.mkdir(parents=True, exist_ok=True)
            generate_key_pair(folder / pub.removesuffix(".pub"))
        for pem in spec.get("ca_certs", []):
            _self_signed_ca(folder / pem)
    root = data.get("sigstore", {}).get("trusted_root")
    if root:
        (folder / root).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(VECTORS / "trust" / "production.trusted_root.json", folder / root)
    for suite in data.get("datasets", {}).get("expectation_suites", []):
        (folder / suite).write_text('{"name": "docs", "expectations": []}', encoding="utf-8")


@pytest.mark.parametrize("block", _params("toml", files=False))
def test_policy_block(block: Block, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A TOML block is a policy file: `custody policy check` accepts it."""
    _skip_marked(block)
    _provide_policy_files(block.text, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(block.text, encoding="utf-8")
    cli("policy", "check", policy, cwd=tmp_path).expect(0, "is valid")


@pytest.mark.parametrize("block", _params("toml", files=True))
def test_config_block(block: Block, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """The documented config.toml is a working workspace config (with init's own vkey)."""
    _skip_marked(block)
    cli("init", cwd=tmp_path).expect(0)
    config = tmp_path / str(block.file)
    vkey = re.search(r'^ledger_vkey = ".*"$', config.read_text(encoding="utf-8"), re.M)
    assert vkey is not None
    config.write_text(re.sub(r'^ledger_vkey = ".*?"', lambda _: vkey.group(0), block.text,
                             flags=re.M), encoding="utf-8")
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 64)
    cli("record", "weights.bin", "--name", "w", "--kind", "model", cwd=tmp_path).expect(0, "w@1")
    cli("verify", "weights.bin", cwd=tmp_path).expect(0, "VERIFIED")


def test_every_block_kind_is_checked() -> None:
    """A new fenced block of a language this file does not run is a test failure."""
    unknown = [b.id for b in blocks() if b.lang not in {"toml", "python", "bash", "json",
                                                          "yaml", ""}]
    assert unknown == []
