"""``custody fetch --verify SRC DEST``: download, verify exactly the downloaded bytes, and only
then move them into DEST (the KServe storage initializer; registered by cli.py).

Logic in custody.provenance.verification.fetch; the trust is chosen as ``custody verify``
chooses it (``TrustOptions.policy``: trust options, else --policy, else the workspace's)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custody._commands import render
from custody._commands.common import (
    CaCertsOpt,
    IdentityOpt,
    IdentityRegexpOpt,
    IssuerOpt,
    JsonOpt,
    LedgerVkeyOpt,
    NameOpt,
    PolicyFileOpt,
    ThresholdOpt,
    TrustedRootOpt,
    TrustKeysOpt,
    TrustOptions,
    current_workspace,
    open_workspace_ledger,
    want_json,
)
from custody.errors import UsageError


def fetch(
    src: Annotated[str, typer.Argument(
        metavar="SRC", help="What to fetch: a path, file://, s3://, gs://, az://, hf://, "
        "https:// or memory:// (a file, a directory or a prefix).")],
    dest: Annotated[Path, typer.Argument(
        metavar="DEST", help="An empty or new directory (KServe passes /mnt/models).")],
    verify: Annotated[bool, typer.Option(
        "--verify", help="Required: say that only verified bytes may reach DEST.")] = False,
    name: NameOpt = None,
    keys: TrustKeysOpt = None,
    identity: IdentityOpt = None,
    identity_regexp: IdentityRegexpOpt = None,
    issuer: IssuerOpt = None,
    ca_certs: CaCertsOpt = None,
    trusted_root: TrustedRootOpt = None,
    policy_file: PolicyFileOpt = None,
    ledger_vkey: LedgerVkeyOpt = None,
    threshold: ThresholdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download SRC into a private staging directory, hashing while it downloads; verify the
    record, signature, scan and upstream chain of exactly those bytes; only then move them into
    DEST. Refused (exit 1) or failed (exit 2): DEST is left as it was.

    \b
    Examples:
      custody fetch --verify s3://models/fraud-clf/3 /mnt/models
      custody --ledger postgresql://reader@db/custody fetch --verify gs://b/m /tmp/m --name m
    """
    from custody.provenance.log.checkpoint import NoteVerifier
    from custody.provenance.verification.fetch import fetch_verified

    if not verify:
        raise UsageError("custody fetch delivers verified bytes only: pass --verify",
                         hint="custody fetch --verify SRC DEST")
    ws = current_workspace()
    policy = TrustOptions(keys, identity, identity_regexp, issuer, ca_certs, trusted_root,
                          policy_file, threshold).policy(ws)
    pinned = NoteVerifier.from_vkey(ledger_vkey) if ledger_vkey else ws.ledger_verifier()
    with open_workspace_ledger(ws) as ledger:
        result = fetch_verified(src, dest, policy, ledger=ledger, ledger_verifier=pinned,
                                name=name)
    if want_json(as_json):
        render.emit_json(result.to_json())
        return
    render.verification(result.source, result.report)
    render.err().print(f"  fetched {len(result.listing.objects)} object(s) into "
                       f"{render.esc(result.dest)}")
