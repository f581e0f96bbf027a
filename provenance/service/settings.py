"""Service settings (command-line options and environment) and the one place that builds the
verification policy the service applies."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from custody.errors import UsageError

if TYPE_CHECKING:
    from custody.provenance.ledger.store import Ledger
    from custody.provenance.log.checkpoint import NoteVerifier
    from custody.provenance.policy.core import Policy
    from custody.provenance.workspace import Workspace

_DEFAULT_MAX_BODY = 16 * 1024 * 1024
ADMISSION_MODES = ("enforce", "warn")


@dataclass(frozen=True)
class Settings:
    ledger: str | None = None  # URL or path; else $CUSTODY_LEDGER, else the nearest .custody/
    max_body_bytes: int = _DEFAULT_MAX_BODY
    threshold: str | None = None  # overrides the policy's scan threshold
    policy_file: Path | None = None  # else .custody/policy.toml, else the workspace's keys
    admission_mode: str = "enforce"
    mlflow_secret: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_token: str | None = field(default=None, repr=False)
    mlflow_alias: str = "custody-verified"
    webhook_max_age: int = 300  # seconds an MLflow delivery's timestamp may be off

    @classmethod
    def from_env(cls, *, ledger: str | None = None) -> Settings:
        """Settings from the environment: CUSTODY_SERVICE_MAX_BODY, CUSTODY_THRESHOLD,
        CUSTODY_POLICY, CUSTODY_ADMISSION_MODE, CUSTODY_MLFLOW_WEBHOOK_SECRET,
        CUSTODY_MLFLOW_TRACKING_URI (or MLFLOW_TRACKING_URI), MLFLOW_TRACKING_TOKEN,
        CUSTODY_MLFLOW_ALIAS; the ledger from ``ledger``, else $CUSTODY_LEDGER."""
        env = os.environ
        try:
            max_body = int(env.get("CUSTODY_SERVICE_MAX_BODY", _DEFAULT_MAX_BODY))
        except ValueError:
            raise UsageError("CUSTODY_SERVICE_MAX_BODY must be a number of bytes") from None
        settings = cls(
            ledger=ledger,
            max_body_bytes=max_body,
            threshold=env.get("CUSTODY_THRESHOLD") or None,
            policy_file=Path(env["CUSTODY_POLICY"]) if env.get("CUSTODY_POLICY") else None,
            admission_mode=env.get("CUSTODY_ADMISSION_MODE", "enforce"),
            mlflow_secret=env.get("CUSTODY_MLFLOW_WEBHOOK_SECRET") or None,
            mlflow_tracking_uri=(env.get("CUSTODY_MLFLOW_TRACKING_URI")
                                 or env.get("MLFLOW_TRACKING_URI") or None),
            mlflow_token=env.get("MLFLOW_TRACKING_TOKEN") or None,
            mlflow_alias=env.get("CUSTODY_MLFLOW_ALIAS", "custody-verified"),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if self.max_body_bytes < 1024:
            raise UsageError("the request size limit must be at least 1024 bytes")
        if self.admission_mode not in ADMISSION_MODES:
            raise UsageError(f"unknown admission mode {self.admission_mode!r}",
                             hint="use enforce or warn")


def build_policy(settings: Settings, workspace: Workspace) -> Policy:
    """The verification policy of the service, chosen as ``custody verify`` chooses it:
    ``--policy FILE`` (CUSTODY_POLICY), else the workspace's ``.custody/policy.toml``, else the
    workspace's trusted keys; ``threshold`` overrides the scan threshold. The single place where
    the service's policy is built."""
    from custody.provenance.verification.policy_options import build_policy as cli_policy

    return cli_policy(keys=[], identity=None, identity_regexp=None, issuer=None, ca_certs=[],
                      trusted_root=None, staging=False, threshold=settings.threshold,
                      policy_file=settings.policy_file, workspace=workspace)


@dataclass
class ServiceContext:
    """What every request needs: settings, the ledger (able to append), trust."""

    settings: Settings
    workspace: Workspace
    ledger: Ledger
    policy: Policy
    ledger_verifier: NoteVerifier | None

    @classmethod
    def open(cls, settings: Settings) -> ServiceContext:
        from custody.provenance.workspace import resolve

        workspace = resolve(settings.ledger)
        policy = build_policy(settings, workspace)
        ledger = workspace.open_ledger(append=workspace.ledger_key is not None)
        return cls(settings, workspace, ledger, policy, workspace.ledger_verifier())

    def close(self) -> None:
        self.ledger.close()
