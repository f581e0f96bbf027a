"""The policy file (TOML): who is trusted for what, and what a verification requires.

Every key is checked: an unknown key, a wrong type or a dangling signer name is an error (exit
2) that names the key, never a silently ignored line. Paths are relative to the policy file.
The format is documented in docs/policy.md; ``custody policy check FILE`` validates one.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.errors import KeyMaterialError, PolicyFileError, UsageError
from custody.provenance.policy.core import Policy, SignerRule, check_trusted_root
from custody.signing.sigstore_verify import IdentityPolicy, Instance, SigstoreTrust
from custody.signing.trusted_signers import TrustedSigners
from custody.validators.findings import Severity

_TOP = {"version", "signers", "sigstore", "trust", "scan", "lineage", "datasets", "pickle",
        "artifacts"}
_KINDS = ("dataset", "model")


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
    return parse_policy(data, path)


def parse_policy(data: dict[str, Any], path: Path) -> Policy:
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
    pickle = ctx.table(data.get("pickle", {}), "pickle", {"allow_globals"})
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
        max_age_days=_optional_int(ctx, "artifacts.max_age_days",
                                   artifacts.get("max_age_days")),
        source=str(path),
    )


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
