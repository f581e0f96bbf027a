"""``custody quickstart``: the whole flow on the bundled sample data, in one folder, offline.

init → record the sample dataset → record a model trained on it → verify the model's chain →
show its lineage → show three refusals: a copy of the model with one byte changed, a
malicious pickle refused before it is ever recorded, and a next dataset snapshot whose labels
were poisoned.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from custody.errors import RefusedError, UsageError
from custody.provenance.ledger.audit import audit_ledger
from custody.provenance.policy.core import Policy
from custody.provenance.recording.record import RecordResult, record
from custody.provenance.scanning.step import DatasetOptions
from custody.provenance.verification.lineage import LineageGraph, lineage
from custody.provenance.verification.verify import VerificationReport, verify
from custody.provenance.workspace import CONFIG, DIRNAME, Workspace, init_workspace, load_workspace
from custody.signing.key_signer import ECKeySigner
from custody.signing.keys import load_private_key

SAMPLES = ("dataset-v1.parquet", "dataset-v2-poisoned.parquet", "model.pkl", "malicious.pkl")


@dataclass
class QuickstartResult:
    workspace: Workspace
    dataset: RecordResult
    model: RecordResult
    verified: VerificationReport
    graph: LineageGraph
    refusals: list[RefusedError] = field(default_factory=list)


def _sample_file(name: str) -> bytes:
    return resources.files("custody.sample_data").joinpath(name).read_bytes()


def run_quickstart(directory: Path, say: Callable[[str], None], *, version: str
                   ) -> QuickstartResult:
    directory.mkdir(parents=True, exist_ok=True)
    home = directory / DIRNAME
    if (home / CONFIG).exists():
        workspace = load_workspace(home)
        say(f"using the existing workspace {home}")
    else:
        workspace = init_workspace(directory)
        say(f"created workspace {home} (SQLite ledger, EC P-256 signing key)")
    if workspace.signing_key is None:
        raise UsageError(f"{home / CONFIG} names no signing_key")
    data = directory / "quickstart-data"
    data.mkdir(exist_ok=True)
    for name in SAMPLES:
        (data / name).write_bytes(_sample_file(name))
    say(f"copied the sample data to {data}")
    signer = ECKeySigner(load_private_key(workspace.signing_key))
    policy = Policy.from_key_files(workspace.trusted_keys)
    with workspace.open_ledger(append=True) as ledger:
        dataset = record(data / "dataset-v1.parquet", name="sample-dataset", kind="dataset",
                         ledger=ledger, signer=signer, tool_version=version)
        say(f"recorded {dataset.version.ref}  {dataset.manifest.ref}")
        model = record(data / "model.pkl", name="sample-model", kind="model", ledger=ledger,
                       signer=signer, inputs=[dataset.version.ref], activity="trained_on",
                       tool_version=version)
        say(f"recorded {model.version.ref}  {model.manifest.ref}  (trained_on "
            f"{dataset.version.ref})")
        verified = verify(data / "model.pkl", policy, ledger=ledger)
        say(f"verified {verified.artifact.ref}: signature, scan and "
            f"{len(verified.chain)} upstream record(s) check out")
        graph = lineage(ledger, model.version.ref, upstream=True)
        audit = audit_ledger(ledger, workspace.ledger_verifier())
        say(f"audited the ledger: {audit.entries} entries, {audit.checkpoints} signed "
            f"checkpoints, root {audit.root[:16]}… (the Merkle log proves nothing was rewritten)")
        result = QuickstartResult(workspace, dataset, model, verified, graph)
        tampered = data / "model-tampered.pkl"
        shutil.copyfile(data / "model.pkl", tampered)
        raw = bytearray(tampered.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        tampered.write_bytes(bytes(raw))
        try:
            verify(tampered, policy, ledger=ledger, name="sample-model")
        except RefusedError as exc:
            result.refusals.append(exc)
        try:
            record(data / "malicious.pkl", name="sample-malicious", kind="model", ledger=ledger,
                   signer=signer, tool_version=version)
        except RefusedError as exc:
            result.refusals.append(exc)
        try:
            record(data / "dataset-v2-poisoned.parquet", name="sample-dataset", kind="dataset",
                   ledger=ledger, signer=signer, tool_version=version,
                   dataset=DatasetOptions(baseline=str(data / "dataset-v1.parquet")))
        except RefusedError as exc:
            result.refusals.append(exc)
        return result
