"""Helpers shared by the CLI modules: global state, common options, workspace access."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

from custody.domain import Activity, Kind, Role
from custody.errors import UsageError

if TYPE_CHECKING:
    from custody.provenance.ledger.store import Ledger
    from custody.provenance.policy.core import Policy
    from custody.provenance.workspace import Workspace
    from custody.signing.interface import Signer

STATE: dict[str, Any] = {"ledger": None, "json": False}


# --- choices ----------------------------------------------------------------------------------
# Enums (parsed by choice()) make an unknown value a usage error (exit 2) that lists the
# choices. Kind, Activity and Role are custody.domain's; Threshold repeats the scanners'
# Severity labels (tests/cli/test_cli_help.py checks they agree) because importing the
# scanners would slow down `custody --help`.


class Threshold(enum.StrEnum):
    """The scan severities, weakest first (custody.validators.findings.Severity)."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


def one_of(choices: type[enum.StrEnum]) -> str:
    """``a, b or c``: the choices of an option, for its help text."""
    names = [c.value for c in choices]
    return ", ".join(names[:-1]) + " or " + names[-1]


E = TypeVar("E", bound=enum.StrEnum)


def choice(choices: type[E], what: str, *, fold_case: bool = False) -> Callable[[str], E]:
    """The parser of an enumerated option: an unknown value is a usage error (exit 2) that says
    ``unknown WHAT 'x' (expected one of: a, b, c)``, as the ledger and the scanners say it."""

    def parse(text: str) -> E:
        try:
            return choices(text.lower() if fold_case else text)
        except ValueError:
            names = ", ".join(c.value for c in choices)
            raise typer.BadParameter(f"unknown {what} {text!r} (expected one of: {names})"
                                     ) from None

    return parse


# --- help rendering ---------------------------------------------------------------------------


class CustodyCommand(TyperCommand):
    """A command whose help shows every placeholder in one style, UPPERCASE (PATH, REF, FILE):
    arguments as their metavar alone (Typer would add ``<path>`` and put braces in the usage)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_usage_piece(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((placeholder(param), record[1]))
            elif param.param_type_name == "option":
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def placeholder(param: Any) -> str:
    """An argument's placeholder: its metavar, else its name in capitals."""
    return str(param.metavar or (param.name or "").upper())


def _usage_piece(param: Any) -> str:
    text = placeholder(param)
    if param.nargs != 1:
        text += "..."
    return text if param.required else f"[{text}]"


def use_custody_help(app: typer.Typer) -> typer.Typer:
    """Render every command of ``app`` (and of its sub-apps) with :class:`CustodyCommand`; call
    it once all commands are registered."""
    for info in app.registered_commands:
        if info.cls is None or info.cls is TyperCommand:
            info.cls = CustodyCommand
    for group in app.registered_groups:
        if group.typer_instance is not None:
            use_custody_help(group.typer_instance)
    return app


JsonOpt = Annotated[bool, typer.Option("--json", help="Write the report as JSON to stdout.")]
RecordBaselineOpt = Annotated[str | None, typer.Option(
    "--baseline", metavar="PATH|REF", help="Datasets: compare with this snapshot instead of the "
    "previous version of NAME (the default): an existing PATH, or a REF in the ledger (its "
    "stored profile and reference); every rule runs either way.")]
ScanBaselineOpt = Annotated[str | None, typer.Option(
    "--baseline", metavar="PATH|REF", help="Compare PATH, a Parquet or CSV table, with this "
    "baseline as well (schema, drift and poisoning rules): an existing file, else a REF "
    "(NAME@VERSION, NAME or sha256:HEX) recorded in this workspace's ledger (its stored profile "
    "and reference). Without it scan checks PATH on its own.")]
ThresholdOpt = Annotated[Threshold | None, typer.Option(
    "--threshold", metavar="SEVERITY", parser=choice(Threshold, "severity", fold_case=True),
    help=f"Lowest severity that refuses: {one_of(Threshold)} (default: the policy's, else "
    "medium).")]
KindOpt = Annotated[Kind, typer.Option(
    "--kind", metavar="KIND", parser=choice(Kind, "kind"),
    help=f"What PATH is: {one_of(Kind)}.")]
ActivityOpt = Annotated[Activity, typer.Option(
    "--activity", metavar="ACTIVITY", parser=choice(Activity, "activity"),
    help=f"How it relates to its --input: {one_of(Activity)}.")]
RoleOpt = Annotated[Role, typer.Option(
    "--role", metavar="ROLE", parser=choice(Role, "role"),
    help=f"{one_of(Role)}: reader and auditor may read (verify, artifacts, lineage, proofs), "
    "publisher may also append records, admin may also manage "
    "tokens.")]
KeyOpt = Annotated[Path | None, typer.Option(
    "--key", metavar="FILE", help="EC private key (PEM; default: the workspace's signing key).")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", metavar="FILE", help="Write here instead of stdout.")]
LabelOpt = Annotated[str | None, typer.Option(
    "--label", metavar="COLUMN", help="Datasets: the label column (else detected).")]
IdOpt = Annotated[str | None, typer.Option(
    "--id", metavar="COLUMN", help="Datasets: the row id column (else detected).")]
SymlinkOpt = Annotated[
    bool, typer.Option("--allow-symlinks", help="Follow symlinks that stay inside the artifact.")
]

# The trust options of the commands that verify (verify, fetch): one definition each.
NameOpt = Annotated[str | None, typer.Option("--name", metavar="NAME",
                                             help="Expected artifact name.")]
TrustKeysOpt = Annotated[list[Path] | None, typer.Option(
    "--key", metavar="PUB", help="Trusted public key (repeatable; default: the workspace's "
    "trusted_keys).")]
IdentityOpt = Annotated[str | None, typer.Option(
    "--identity", metavar="IDENTITY",
    help="Trusted Sigstore keyless identity (certificate SAN), exact.")]
IdentityRegexpOpt = Annotated[str | None, typer.Option(
    "--identity-regexp", metavar="REGEX",
    help="Trusted keyless identity as a regular expression (full match).")]
IssuerOpt = Annotated[str | None, typer.Option(
    "--issuer", metavar="URL",
    help="OIDC issuer of the keyless identity, exact (required with --identity*).")]
CaCertsOpt = Annotated[list[Path] | None, typer.Option(
    "--ca-cert", metavar="PEM", help="Trusted CA root for certificate-chain signatures.")]
TrustedRootOpt = Annotated[Path | None, typer.Option(
    "--trusted-root", metavar="FILE", help="Pinned Sigstore trusted_root.json (fully offline).")]
PolicyFileOpt = Annotated[Path | None, typer.Option(
    "--policy", metavar="FILE", help="Policy file (default: .custody/policy.toml if it exists).")]
LedgerVkeyOpt = Annotated[str | None, typer.Option(
    "--ledger-vkey", metavar="VKEY", help="The ledger's checkpoint key (default: "
    "$CUSTODY_LEDGER_VKEY, else the workspace's ledger_vkey).")]


@dataclass(frozen=True)
class TrustOptions:
    """What the trust options of a verifying command say, turned into a policy by :meth:`policy`:
    explicit trust (keys, identities, CA roots) replaces the workspace's, as in ``build_policy``."""

    keys: list[Path] | None
    identity: str | None
    identity_regexp: str | None
    issuer: str | None
    ca_certs: list[Path] | None
    trusted_root: Path | None
    policy_file: Path | None
    threshold: Threshold | None
    staging: bool = False

    def policy(self, workspace: Workspace | None) -> Policy:
        from custody.provenance.verification.policy_options import build_policy

        explicit = bool(self.keys or self.identity or self.identity_regexp or self.issuer
                        or self.ca_certs)
        return build_policy(
            keys=self.keys or [], identity=self.identity, identity_regexp=self.identity_regexp,
            issuer=self.issuer, ca_certs=self.ca_certs or [], trusted_root=self.trusted_root,
            staging=self.staging, threshold=self.threshold.value if self.threshold else None,
            policy_file=self.policy_file, workspace=None if explicit else workspace)


def want_json(flag: bool) -> bool:
    return flag or bool(STATE["json"])


def current_workspace(ledger: str | None = None) -> Workspace:
    from custody.provenance.workspace import resolve

    return resolve(ledger or STATE["ledger"])


def optional_workspace() -> Workspace | None:
    """The workspace if there is one (standalone checks do not need it)."""
    try:
        return current_workspace()
    except UsageError:
        return None


def open_workspace_ledger(workspace: Workspace) -> Ledger:
    return workspace.open_ledger()


def size_hint(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", subject=str(path)) from None


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", subject=str(path)) from None


def make_signer(
    ws: Workspace,
    *,
    key: Path | None,
    cert: Path | None,
    cert_chain: list[Path],
    sigstore: bool,
    staging: bool,
    trust_config: Path | None,
    identity_token: str | None,
) -> Signer:
    """The signer chosen by the record options: Sigstore keyless, X.509 chain, or an EC key."""
    import sys

    if sigstore:
        if key or cert:
            raise UsageError("--sigstore signs keylessly: drop --key and --cert")
        if staging and trust_config is not None:
            raise UsageError("give --staging or --trust-config, not both")
        from custody.signing.sigstore_sign import SigningTrust, SigstoreSigner
        from custody.signing.sigstore_verify import Instance

        trust = SigningTrust(instance=Instance.STAGING if staging else Instance.PRODUCTION,
                             trust_config=trust_config)
        return SigstoreSigner(trust, identity_token=identity_token,
                              interactive=sys.stdin.isatty())
    if staging or trust_config or identity_token:
        raise UsageError("--staging, --trust-config and --identity-token go with --sigstore")
    key_path = key or ws.signing_key
    if key_path is None:
        raise UsageError("no signing key", hint="pass --key FILE, --sigstore, or run "
                         "`custody init`")
    from custody.provenance.workspace import check_private_key_file

    check_private_key_file(key_path)
    if cert is not None:
        from custody.signing.cert_signer import CertChainSigner

        return CertChainSigner.from_files(key_path, cert, cert_chain)
    if cert_chain:
        raise UsageError("--cert-chain goes with --cert")
    from custody.signing.key_signer import ECKeySigner
    from custody.signing.keys import load_private_key

    return ECKeySigner(load_private_key(key_path))
