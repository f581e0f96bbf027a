"""The policy file (TOML): who is trusted for what, and what a verification requires.

Every key is checked: an unknown key, a wrong type or a dangling signer name is an error (exit
2) that names the key, never a silently ignored line. Paths are relative to the policy file.
The format is documented in docs/policy.md; ``custody policy check FILE`` validates one.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from custody.errors import KeyMaterialError, PolicyFileError, UsageError
from custody.provenance.log.witness import WitnessVerifier
from custody.provenance.policy.core import Policy, SignerRule, WitnessPolicy, check_trusted_root
from custody.signing.sigstore_verify import IdentityPolicy, Instance, SigstoreTrust
from custody.signing.trusted_signers import TrustedSigners
from custody.validators.findings import Severity

_TOP = {"version", "signers", "sigstore", "trust", "scan", "lineage", "datasets", "pickle",
        "artifacts", "witness"}
_KINDS = ("dataset", "model")
_WITNESS = {"witnesses", "quorum", "max_age", "max_age_hours", "cosigned"}
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_VKEY = re.compile(r"[^+\s]+\+[0-9a-fA-F]{8}\+[A-Za-z0-9+/]+=*")


@dataclass(frozen=True)
class _Ctx:
    path: Path

    def fail(self, key: str, problem: str) -> PolicyFileError:
        return PolicyFileError(f"{self.path}: {key}: {problem}", subject=str(self.path),
                               hint="see docs/policy.md for the policy file format")

    def table(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}" if key else unknown[0],
                            f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def strings(self, value: Any, key: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        return list(value)

    def file(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.path.parent / p


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyFileError(f"cannot read policy {path}: {exc.strerror or exc}",
                              subject=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{path} is not valid TOML: {exc}", subject=str(path)) from None
    return _parse_policy(data, path)


def _parse_policy(data: dict[str, Any], path: Path) -> Policy:
    ctx = _Ctx(path)
    ctx.table(data, "", _TOP)
    if data.get("version", 1) != 1:
        raise ctx.fail("version", "only version 1 is understood")
    sigstore = _sigstore(ctx, data.get("sigstore", {}))
    named = {name: _signers(ctx, f"signers.{name}", spec, sigstore)
             for name, spec in ctx.table(data.get("signers", {}), "signers",
                                         set(data.get("signers", {}))).items()}
    rules = tuple(_rule(ctx, i, spec, named) for i, spec in enumerate(_list(ctx, data, "trust")))
    scan = ctx.table(data.get("scan", {}), "scan", {"threshold", "thresholds"})
    lineage = ctx.table(data.get("lineage", {}), "lineage", {"max_depth", "require_trained_on"})
    datasets = ctx.table(data.get("datasets", {}), "datasets",
                         {"require_baseline", "expectation_suites"})
    pickle = ctx.table(data.get("pickle", {}), "pickle", {"allow_globals", "profiles"})
    artifacts = ctx.table(data.get("artifacts", {}), "artifacts", {"max_age_days"})
    thresholds = ctx.table(scan.get("thresholds", {}), "scan.thresholds", set(_KINDS))
    if not rules:
        raise ctx.fail("trust", "no [[trust]] rule: the policy would trust nobody")
    return Policy(
        sigstore=sigstore,
        rules=rules,
        scan_threshold=_severity(ctx, "scan.threshold", scan.get("threshold", "medium")),
        kind_thresholds={k: _severity(ctx, f"scan.thresholds.{k}", v)
                         for k, v in thresholds.items()},
        max_depth=_int(ctx, "lineage.max_depth", lineage.get("max_depth", 64)),
        require_trained_on=_bool(ctx, "lineage.require_trained_on",
                                 lineage.get("require_trained_on", False)),
        require_baseline=_bool(ctx, "datasets.require_baseline",
                               datasets.get("require_baseline", False)),
        expectation_suites=tuple(ctx.file(s) for s in ctx.strings(
            datasets.get("expectation_suites", []), "datasets.expectation_suites")),
        extra_safe_globals=frozenset(ctx.strings(pickle.get("allow_globals", []),
                                                 "pickle.allow_globals")),
        pickle_profiles=_profiles(ctx, pickle),
        max_age_days=_optional_int(ctx, "artifacts.max_age_days",
                                   artifacts.get("max_age_days")),
        witness=_witness(ctx, data["witness"]) if "witness" in data else None,
        source=str(path),
    )


def _profiles(ctx: _Ctx, pickle: dict[str, Any]) -> tuple[str, ...] | None:
    """``[pickle] profiles``: the allowlist profiles in force (absent: all of them)."""
    if "profiles" not in pickle:
        return None
    from custody.validators.models.allowlist import check_profile_names

    try:
        return check_profile_names(ctx.strings(pickle["profiles"], "pickle.profiles"))
    except UsageError as exc:
        raise ctx.fail("pickle.profiles", f"{exc.message} ({exc.hint})") from None


def _witness(ctx: _Ctx, raw: Any) -> WitnessPolicy:
    """``[witness]``: witnesses = [{name, key}], quorum, max_age ("24h") or max_age_hours,
    cosigned (a path or a list of paths: files or directories of cosigned checkpoints)."""
    spec = ctx.table(raw, "witness", _WITNESS)
    items = spec.get("witnesses")
    if not isinstance(items, list) or not items:
        raise ctx.fail("witness.witnesses", "must be a non-empty array of {name, key} tables")
    witnesses = tuple(_witness_key(ctx, f"witness.witnesses[{i}]", item)
                      for i, item in enumerate(items))
    if len({w.name for w in witnesses}) != len(witnesses):
        raise ctx.fail("witness.witnesses", "names one witness twice")
    quorum = spec.get("quorum", len(witnesses))
    if not isinstance(quorum, int) or isinstance(quorum, bool) or not (
            1 <= quorum <= len(witnesses)):
        raise ctx.fail("witness.quorum", f"must be a whole number from 1 to {len(witnesses)} "
                       "(the number of witnesses listed)")
    if "max_age" in spec and "max_age_hours" in spec:
        raise ctx.fail("witness.max_age", "give max_age or max_age_hours, not both")
    max_age = None
    if "max_age" in spec:
        max_age = _duration(ctx, "witness.max_age", spec["max_age"])
    elif "max_age_hours" in spec:
        hours = spec["max_age_hours"]
        if not isinstance(hours, int | float) or isinstance(hours, bool) or not hours > 0:
            raise ctx.fail("witness.max_age_hours", "must be a positive number of hours")
        max_age = timedelta(hours=hours)
    cosigned = spec.get("cosigned")
    paths = [cosigned] if isinstance(cosigned, str) else cosigned
    if not isinstance(paths, list) or not paths or not all(
            isinstance(p, str) and p for p in paths):
        raise ctx.fail("witness.cosigned", "must be a path (or a list of paths): the file or "
                       "directory of cosigned checkpoints that `custody audit witness --out` "
                       "writes")
    try:
        return WitnessPolicy(witnesses, quorum, tuple(ctx.file(p) for p in paths), max_age)
    except UsageError as exc:
        raise ctx.fail("witness", exc.message) from None


def _witness_key(ctx: _Ctx, key: str, raw: Any) -> WitnessVerifier:
    """``{name = "...", key = "NAME+KEYID+BASE64" or "path/to/file.vkey"}``."""
    spec = ctx.table(raw, key, {"name", "key"})
    name, vkey = spec.get("name"), spec.get("key")
    if not isinstance(name, str) or not name:
        raise ctx.fail(f"{key}.name", "must be the witness's name (as in its vkey)")
    if not isinstance(vkey, str) or not vkey:
        raise ctx.fail(f"{key}.key", "must be the witness's vkey, or the path of a file "
                       "holding it")
    if not _VKEY.fullmatch(vkey.strip()):
        source = ctx.file(vkey)
        try:
            vkey = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ctx.fail(f"{key}.key", f"is neither a vkey (NAME+KEYID+BASE64) nor a readable "
                           f"file ({source}: {getattr(exc, 'strerror', None) or exc})") from None
    try:
        verifier = WitnessVerifier.from_vkey(vkey)
    except KeyMaterialError as exc:
        raise ctx.fail(f"{key}.key", exc.message) from None
    if verifier.name != name:
        raise ctx.fail(f"{key}.name", f"is {name!r} but the key is witness {verifier.name!r}'s "
                       "(cosignatures are made under the name in the vkey)")
    return verifier


def _duration(ctx: _Ctx, key: str, value: Any) -> timedelta:
    """``"24h"``, ``"90m"``, ``"7d"``, ``"1h30m"``, ``"3600s"``."""
    match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or not any(match.groups()):
        raise ctx.fail(key, 'must be a duration such as "24h", "90m", "7d" or "1h30m"')
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    age = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if age <= timedelta(0):
        raise ctx.fail(key, "must be longer than zero")
    return age


def _list(ctx: _Ctx, data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ctx.fail(key, "must be an array of tables ([[trust]])")
    return value


def _sigstore(ctx: _Ctx, raw: Any) -> SigstoreTrust:
    spec = ctx.table(raw, "sigstore", {"trusted_root", "instance"})
    instance = spec.get("instance", "production")
    if instance not in ("production", "staging"):
        raise ctx.fail("sigstore.instance", 'must be "production" or "staging"')
    root = spec.get("trusted_root")
    if root is not None and not isinstance(root, str):
        raise ctx.fail("sigstore.trusted_root", "must be a path")
    trust = SigstoreTrust(trusted_root=ctx.file(root) if root else None,
                          instance=Instance(instance))
    try:
        check_trusted_root(trust)
    except KeyMaterialError as exc:
        raise ctx.fail("sigstore.trusted_root", exc.message) from None
    return trust


def _signers(ctx: _Ctx, key: str, raw: Any, sigstore: SigstoreTrust) -> TrustedSigners:
    from custody.signing.cert_signer import load_certificates
    from custody.signing.keys import load_public_key

    spec = ctx.table(raw, key, {"keys", "identities", "ca_certs"})
    identities = []
    ids = spec.get("identities", [])
    if not isinstance(ids, list):
        raise ctx.fail(f"{key}.identities",
                       "must be an array of tables ([[signers.NAME.identities]])")
    for i, item in enumerate(ids):
        entry = ctx.table(item, f"{key}.identities[{i}]",
                          {"identity", "identity_regexp", "issuer"})
        try:
            identities.append(IdentityPolicy(issuer=str(entry.get("issuer", "")),
                                             identity=entry.get("identity"),
                                             identity_regexp=entry.get("identity_regexp")))
        except UsageError as exc:
            raise ctx.fail(f"{key}.identities[{i}]", exc.message) from None
    try:
        keys = tuple(load_public_key(ctx.file(p))
                     for p in ctx.strings(spec.get("keys", []), f"{key}.keys"))
    except KeyMaterialError as exc:
        raise ctx.fail(f"{key}.keys", exc.message) from None
    try:
        roots = tuple(load_certificates([ctx.file(p) for p in ctx.strings(
            spec.get("ca_certs", []), f"{key}.ca_certs")]))
    except KeyMaterialError as exc:
        raise ctx.fail(f"{key}.ca_certs", exc.message) from None
    signers = TrustedSigners(keys=keys, identities=tuple(identities), ca_roots=roots,
                             sigstore=sigstore)
    if signers.empty:
        raise ctx.fail(key, "names no key, identity or CA certificate")
    return signers


def _rule(ctx: _Ctx, i: int, raw: Any, named: dict[str, TrustedSigners]) -> SignerRule:
    key = f"trust[{i}]"
    spec = ctx.table(raw, key, {"kind", "name", "signers"})
    kind = spec.get("kind")
    if kind is not None and kind not in _KINDS:
        raise ctx.fail(f"{key}.kind", f"must be one of {', '.join(_KINDS)}")
    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise ctx.fail(f"{key}.name", "must be a glob pattern string")
    refs = ctx.strings(spec.get("signers", []), f"{key}.signers")
    if not refs:
        raise ctx.fail(f"{key}.signers", "names no signer set")
    missing = [r for r in refs if r not in named]
    if missing:
        raise ctx.fail(f"{key}.signers", f"no [signers.{missing[0]}] table")
    merged = TrustedSigners(
        keys=tuple(k for r in refs for k in named[r].keys),
        identities=tuple(x for r in refs for x in named[r].identities),
        ca_roots=tuple(c for r in refs for c in named[r].ca_roots),
        sigstore=named[refs[0]].sigstore,
    )
    return SignerRule(kind=kind, name=name, signers=merged)


def _severity(ctx: _Ctx, key: str, value: Any) -> Severity:
    try:
        return Severity.parse(str(value))
    except ValueError as exc:
        raise ctx.fail(key, str(exc)) from None


def _int(ctx: _Ctx, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ctx.fail(key, "must be a whole number, zero or more")
    return value


def _optional_int(ctx: _Ctx, key: str, value: Any) -> int | None:
    return None if value is None else _int(ctx, key, value)


def _bool(ctx: _Ctx, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ctx.fail(key, "must be true or false")
    return value
