"""``custody fetch --verify SRC DEST``: download, verify exactly the downloaded bytes, and only
then move them into DEST (the KServe storage initializer; registered by cli.py).

Logic in custody.provenance.verification.fetch; the trust is chosen as ``custody verify``
chooses it (``build_policy``: trust options, else --policy, else the workspace's)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custody._commands import render
from custody._commands.common import (
    JsonOpt,
    ThresholdOpt,
    current_workspace,
    open_workspace_ledger,
    want_json,
)
from custody.errors import UsageError
from custody.provenance.verification.policy_options import build_policy


def fetch(
    src: Annotated[str, typer.Argument(
        metavar="SRC", help="What to fetch: a path, file://, s3://, gs://, az://, hf://, "
        "https:// or memory:// (a file, a directory or a prefix).")],
    dest: Annotated[Path, typer.Argument(
        metavar="DEST", help="An empty or new directory (KServe passes /mnt/models).")],
    verify: Annotated[bool, typer.Option(
        "--verify", help="Required: say that only verified bytes may reach DEST.")] = False,
    name: Annotated[str | None, typer.Option("--name", metavar="NAME",
                                             help="Expected artifact name.")] = None,
    keys: Annotated[list[Path] | None, typer.Option(
        "--key", metavar="PUB", help="Trusted public key (repeatable; default: the workspace's "
        "trusted_keys).")] = None,
    identity: Annotated[str | None, typer.Option(
        metavar="IDENTITY", help="Trusted Sigstore keyless identity (certificate SAN), exact.")
    ] = None,
    identity_regexp: Annotated[str | None, typer.Option(
        metavar="REGEX", help="Trusted keyless identity as a regular expression (full match).")
    ] = None,
    issuer: Annotated[str | None, typer.Option(
        metavar="URL", help="OIDC issuer of the keyless identity, exact.")] = None,
    ca_certs: Annotated[list[Path] | None, typer.Option(
        "--ca-cert", metavar="PEM", help="Trusted CA root for certificate-chain signatures.")
    ] = None,
    trusted_root: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Pinned Sigstore trusted_root.json (fully offline).")] = None,
    policy_file: Annotated[Path | None, typer.Option(
        "--policy", metavar="FILE", help="Policy file (default: .custody/policy.toml if it "
        "exists).")] = None,
    ledger_vkey: Annotated[str | None, typer.Option(
        "--ledger-vkey", metavar="VKEY", help="The ledger's checkpoint key (default: "
        "$CUSTODY_LEDGER_VKEY, else the workspace's ledger_vkey).")] = None,
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
    explicit = bool(keys or identity or identity_regexp or issuer or ca_certs)
    ws = current_workspace()
    policy = build_policy(
        keys=keys or [], identity=identity, identity_regexp=identity_regexp, issuer=issuer,
        ca_certs=ca_certs or [], trusted_root=trusted_root, staging=False,
        threshold=threshold.value if threshold else None, policy_file=policy_file,
        workspace=None if explicit else ws)
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
