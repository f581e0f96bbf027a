"""A ledger writer process for the concurrency and crash tests.

usage: python ledger_writer.py HOME COUNT PREFIX
Appends COUNT records named PREFIX-0.. to the workspace ledger at HOME (a .custody/ folder) and
prints ``START name`` before each append and ``ACK name@version idx`` after its commit, so a
killed writer's acknowledged appends are known exactly and a test can stop it at a chosen point of
its progress (between two appends, or inside one) without watching the clock.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from custody.provenance.workspace import load_workspace


def main() -> None:
    home, count, prefix = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    spec = importlib.util.spec_from_file_location(
        "ledger_helpers", Path(__file__).with_name("ledger_helpers.py"))
    assert spec and spec.loader
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    from custody.signing.key_signer import ECKeySigner
    from custody.signing.keys import load_private_key

    workspace = load_workspace(home)
    ledger = workspace.open_ledger(append=True)
    signer = ECKeySigner(load_private_key(home / "keys" / "signing.key"))
    previous = None
    for i in range(count):
        inputs = [previous] if previous is not None and i % 2 else None
        sys.stdout.write(f"START {prefix}-{i}\n")
        sys.stdout.flush()
        version = helpers.append_one(ledger, signer, f"{prefix}-{i}",
                                     "model" if inputs else "dataset",
                                     f"{prefix} {i}".encode(), inputs)
        sys.stdout.write(f"ACK {version.ref} {version.entry_idx}\n")
        sys.stdout.flush()
        previous = version
    ledger.close()


if __name__ == "__main__":
    main()
