"""Keyless signing. The signing round trip needs Fulcio, Rekor and an OIDC token: it is marked
``online`` and runs only with CUSTODY_ONLINE=1 (and a token from CI or SIGSTORE_ID_TOKEN).
The offline tests cover trust-config loading and token acquisition failures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import vector_paths as _paths

from custody.errors import KeyMaterialError, SigningError, UsageError
from custody.signing.sigstore_sign import SigningTrust, SigstoreSigner, load_client_trust_config
from custody.signing.sigstore_verify import (
    IdentityPolicy,
    Instance,
    SigstoreTrust,
    SigstoreVerifier,
    check_subjects,
)
from custody.signing.statement import Statement, Subject

VECTORS = _paths.vector_folder("sigstore")
ONLINE = os.environ.get("CUSTODY_ONLINE") == "1"
CI_MARKERS = ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "SIGSTORE_ID_TOKEN")


@pytest.fixture
def staging_trust_config(tmp_path: Path) -> Path:
    config = {
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": json.loads((VECTORS / "trust" / "staging.trusted_root.json").read_text()),
        "signingConfig": json.loads(
            (VECTORS / "trust" / "staging.signing_config.v0.2.json").read_text()),
    }
    path = tmp_path / "staging.trust_config.json"
    path.write_text(json.dumps(config))
    return path


def test_trust_config_file_is_loaded_offline(staging_trust_config: Path) -> None:
    config = load_client_trust_config(SigningTrust(trust_config=staging_trust_config))
    assert "sigstage" in config.signing_config.get_oidc_url()


def test_bogus_trust_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{}")
    with pytest.raises(KeyMaterialError):
        load_client_trust_config(SigningTrust(trust_config=path))
    with pytest.raises(KeyMaterialError):
        load_client_trust_config(SigningTrust(trust_config=tmp_path / "missing.json"))


def test_malformed_identity_token_is_a_signing_error(staging_trust_config: Path) -> None:
    signer = SigstoreSigner(SigningTrust(trust_config=staging_trust_config),
                            identity_token="not-a-jwt", interactive=False)
    with pytest.raises(SigningError, match="identity token"):
        _ = signer.identity


def test_no_token_without_interaction_is_a_usage_error(
        staging_trust_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CI_MARKERS:
        monkeypatch.delenv(name, raising=False)
    signer = SigstoreSigner(SigningTrust(trust_config=staging_trust_config), interactive=False)
    with pytest.raises(UsageError) as info:
        _ = signer.identity
    assert info.value.hint and "--identity-token" in info.value.hint


@pytest.mark.online
@pytest.mark.skipif(not ONLINE, reason="set CUSTODY_ONLINE=1 to run keyless signing")
def test_keyless_sign_and_verify_on_staging() -> None:
    signer = SigstoreSigner(SigningTrust(instance=Instance.STAGING), interactive=False)
    statement = Statement(subjects=(Subject("artifact", {"sha256": "ab" * 32}),),
                          predicate_type="https://custody.dev/artifact-record/v1",
                          predicate={"test": True})
    bundle = signer.sign_statement(statement.to_bytes())
    facts = signer.last_facts
    assert facts is not None
    assert facts.identity == signer.identity
    assert facts.log_index is not None
    assert facts.signed_at is not None
    verifier = SigstoreVerifier(IdentityPolicy(facts.issuer, identity=facts.identity),
                                SigstoreTrust(instance=Instance.STAGING))
    verified = verifier.verify_dsse(bundle, source="new bundle")
    assert verified.payload == statement.to_bytes()
    check_subjects(verified.payload, "ab" * 32)
