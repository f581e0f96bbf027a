"""Helpers for the witness tests: witness keys through the real CLI, a witness policy, and the
attacks an administrator with write access to the ledger database can run (SQL only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

POLICY_HEAD = """version = 1
[signers.workspace]
keys = ["keys/signing.pub"]
[[trust]]
signers = ["workspace"]
"""


def keygen(cli: Any, root: Path, name: str) -> tuple[Path, str]:
    """``custody audit witness-keygen NAME``: the private key file and the vkey it printed."""
    skey = root / f"{name.replace('/', '_')}.skey"
    vkey = cli("audit", "witness-keygen", name, "--out", skey, cwd=root).expect(0).out.strip()
    return skey, vkey


def write_policy(home: Path, witnesses: dict[str, str], *, quorum: int, cosigned: Path,
                 max_age: str | None = "24h") -> Path:
    """``.custody/policy.toml`` trusting the workspace key and requiring these witnesses."""
    listed = ", ".join(f'{{name = "{n}", key = "{v}"}}' for n, v in witnesses.items())
    text = (POLICY_HEAD + f"[witness]\nwitnesses = [{listed}]\nquorum = {quorum}\n"
            f'cosigned = "{cosigned}"\n' + (f'max_age = "{max_age}"\n' if max_age else ""))
    path = home / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def head_size(ws: Any) -> int:
    return int(ws.sql("SELECT max(size) FROM checkpoints")[0][0])


def roll_back(ws: Any, size: int) -> None:
    """Tail rollback, as an administrator of the database would do it: delete every entry from
    ``size`` on, with its index rows, Merkle nodes and checkpoints, so that the ledger is the
    honest ledger of ``size`` entries again (``custody audit verify`` passes)."""
    assert ws.sql("SELECT size FROM checkpoints WHERE size = :n", n=size), "no checkpoint there"
    for statement in (
        "DELETE FROM signed_statements WHERE version_id IN "
        "(SELECT id FROM artifact_versions WHERE entry_idx >= :n)",
        "DELETE FROM manifest_files WHERE version_id IN "
        "(SELECT id FROM artifact_versions WHERE entry_idx >= :n)",
        "DELETE FROM lineage_edges WHERE entry_idx >= :n OR output_version_id IN "
        "(SELECT id FROM artifact_versions WHERE entry_idx >= :n)",
        "DELETE FROM revocations WHERE entry_idx >= :n",
        "DELETE FROM artifact_versions WHERE entry_idx >= :n",
        "DELETE FROM artifacts WHERE id NOT IN (SELECT artifact_id FROM artifact_versions)",
        'DELETE FROM merkle_nodes WHERE ("index" + 1) * (1 << level) > :n',
        "DELETE FROM checkpoints WHERE size > :n",
        "DELETE FROM ledger_entries WHERE idx >= :n",
    ):
        ws.sql(statement, n=size)
