"""Standalone signatures via `custody verify --bundle`: every Sigstore and OMS vector, offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import vector_paths as _paths

VECTORS = _paths.vector_folder("sigstore")
VALID = VECTORS / "sigstore-python" / "valid"
INVALID = VECTORS / "sigstore-python" / "invalid"
OMS = VECTORS / "model-transparency"
STAGING = ["--trusted-root", str(VECTORS / "trust" / "staging.trusted_root.json")]
PRODUCTION = ["--trusted-root", str(VECTORS / "trust" / "production.trusted_root.json")]
GH = "https://github.com/login/oauth"
IBM = "https://sigstore.verify.ibm.com/oauth2"
GHA = "https://token.actions.githubusercontent.com"
BEACON = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
          ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")


def _verify(cli, tmp_path, artifact: Path, bundle: Path, *trust: str):  # type: ignore[no-untyped-def]
    return cli("verify", artifact, "--bundle", bundle, *trust, "--json", cwd=tmp_path)


@pytest.mark.parametrize(("artifact", "bundle", "identity"), [
    ("bundle_v3.txt", "bundle_v3.txt.sigstore", "william@yossarian.net"),
    ("bundle.txt", "bundle.txt.sigstore", "a@tny.town"),
    ("staging-rekor-v2.txt", "staging-rekor-v2.txt.sigstore.json", "jku@goto.fi"),
])
def test_keyless_artifact_bundles_verify(cli, tmp_path, artifact, bundle, identity) -> None:  # type: ignore[no-untyped-def]
    out = _verify(cli, tmp_path, VALID / artifact, VALID / bundle, "--identity", identity,
                  "--issuer", GH, *STAGING).expect(0).json()
    assert out["artifact"]["signer"].startswith(identity)


@pytest.mark.parametrize(("option", "value", "rule"), [
    ("--identity", "mallory@example.com", "sigstore.identity"),
    ("--issuer", "https://accounts.google.com", "sigstore.identity"),
])
def test_wrong_identity_or_issuer_refused(cli, tmp_path, option, value, rule) -> None:  # type: ignore[no-untyped-def]
    args = {"--identity": "william@yossarian.net", "--issuer": GH, option: value}
    _verify(cli, tmp_path, VALID / "bundle_v3.txt", VALID / "bundle_v3.txt.sigstore",
            "--identity", args["--identity"], "--issuer", args["--issuer"], *STAGING).expect(
        1, rule)


def test_identity_regexp(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _verify(cli, tmp_path, VALID / "bundle_v3.txt", VALID / "bundle_v3.txt.sigstore",
            "--identity-regexp", r"william@.*\.net", "--issuer", GH, *STAGING).expect(0)
    _verify(cli, tmp_path, VALID / "bundle_v3.txt", VALID / "bundle_v3.txt.sigstore",
            "--identity-regexp", r"william@", "--issuer", GH, *STAGING).expect(
        1, "sigstore.identity")


def test_tampered_artifact_and_wrong_root_refused(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tampered = tmp_path / "bundle_v3.txt"
    tampered.write_bytes((VALID / "bundle_v3.txt").read_bytes() + b"!")
    trust = ["--identity", "william@yossarian.net", "--issuer", GH]
    _verify(cli, tmp_path, tampered, VALID / "bundle_v3.txt.sigstore", *trust, *STAGING).expect(
        1, "sigstore.")
    _verify(cli, tmp_path, VALID / "bundle_v3.txt", VALID / "bundle_v3.txt.sigstore", *trust,
            *PRODUCTION).expect(1, "sigstore.chain")


def test_cve_2022_36056_refused(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _verify(cli, tmp_path, INVALID / "bundle_cve_2022_36056.txt",
            INVALID / "bundle_cve_2022_36056.txt.sigstore", "--identity",
            "william@yossarian.net", "--issuer", GH, *STAGING).expect(1, "sigstore.")


@pytest.mark.parametrize("name", ["bundle_no_log_entry.txt", "bundle_no_checkpoint.txt"])
def test_invalid_bundles_refused(cli, tmp_path, name) -> None:  # type: ignore[no-untyped-def]
    _verify(cli, tmp_path, INVALID / name, INVALID / f"{name}.sigstore", "--identity",
            "a@tny.town", "--issuer", GH, *STAGING).expect(1, "sigstore.")


def test_dsse_subject_is_compared_with_the_artifact(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _verify(cli, tmp_path, VALID / "a.dsse.staging-rekor-v2.txt",
            VALID / "a.dsse.staging-rekor-v2.txt.sigstore.json", "--identity", BEACON,
            "--issuer", GHA, *STAGING).expect(1, "statement.subject_mismatch")


def test_no_trust_for_the_bundle_kind_is_refused(cli, tmp_path, make_file) -> None:  # type: ignore[no-untyped-def]
    cli("keygen", "--out", tmp_path / "k", cwd=tmp_path).expect(0)
    _verify(cli, tmp_path, VALID / "bundle_v3.txt", VALID / "bundle_v3.txt.sigstore",
            "--key", tmp_path / "k.pub").expect(1, "signature.untrusted_kind")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    dst.chmod(0o755)
    return dst


@pytest.mark.parametrize(("folder", "trust"), [
    ("v1.1.0-elliptic-key", ["--key", str(OMS / "keys" / "signing-key-pub.pem")]),
    ("v1.1.0-certificate", ["--ca-cert", str(OMS / "keys" / "ca-cert.pem")]),
    ("v1.1.0-sigstore", ["--identity", "stefanb@us.ibm.com", "--issuer", IBM, *PRODUCTION]),
])
def test_model_signing_signatures_verify_and_tampering_is_refused(  # type: ignore[no-untyped-def]
        cli, tmp_path, folder, trust) -> None:
    model = _copy(OMS / folder, tmp_path / folder)
    out = _verify(cli, tmp_path, model, model / "model.sig", *trust).expect(0).json()
    assert out["artifact"]["ref"] == f"{folder} (OMS)"
    (model / "extra.bin").write_bytes(b"not signed")
    _verify(cli, tmp_path, model, model / "model.sig", *trust).expect(1, "oms.extra_file")
    (model / "extra.bin").unlink()
    (model / "signme-1").write_bytes(b"changed")
    _verify(cli, tmp_path, model, model / "model.sig", *trust).expect(1, "oms.changed_file")


def test_model_signing_v100_single_file(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = OMS / "v1.0.0-elliptic-key"
    _verify(cli, tmp_path, folder / "signme-1", folder / "model.sig", "--key",
            OMS / "keys" / "signing-key-pub.pem").expect(0)


def test_certificate_signature_with_leaf_as_root_refused(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _copy(OMS / "v1.1.0-certificate", tmp_path / "m")
    _verify(cli, tmp_path, model, model / "model.sig", "--ca-cert",
            OMS / "keys" / "signing-key-cert.pem").expect(1, "cert.")


def test_issuer_without_identity_is_a_usage_error(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _verify(cli, tmp_path, VALID / "bundle_v3.txt", VALID / "bundle_v3.txt.sigstore",
            "--issuer", GH, *STAGING).expect(2, "--identity")
