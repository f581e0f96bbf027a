"""custody record URI: objects read from a real S3 server (moto_server on loopback), scanned on
the private copy, their locations signed in the statement; nothing written before every check,
no credential in the ledger."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.s3_server import S3Server

from custody.errors import VerificationError
from custody.provenance.hashing.locations import Locations, ObjectIdentity, ObjectLocation
from custody.provenance.hashing.manifest import FileEntry, Manifest
from custody.provenance.verification.attestation import build_statement, parse_claims
from custody.signing.statement import Statement

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server.start() as server:
        yield server


@pytest.fixture
def aws(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3


def _statement(ws, ref: str) -> Statement:  # type: ignore[no-untyped-def]
    from custody.provenance.workspace import load_workspace

    with load_workspace(ws.home).open_ledger() as ledger:
        return Statement.from_bytes(ledger.stored_record(ledger.resolve(ref)).statement)


def _ledger_text(ws) -> str:  # type: ignore[no-untyped-def]
    """Everything the ledger database holds, as text: entries, statements, bundles, reports."""
    rows = ws.sql("SELECT payload FROM ledger_entries")
    rows += ws.sql("SELECT statement, bundle, scan_report FROM signed_statements")
    return json.dumps([[v if isinstance(v, str) else bytes(v).decode("utf-8", "replace")
                        if v is not None else "" for v in row] for row in rows])


def test_record_from_s3_signs_the_locations_and_no_credential(ws, cli, aws: S3Server,
                                                               tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket = aws.bucket()
    v_model = aws.put(bucket, "models/fraud/model.pkl", (SAMPLES / "model.pkl").read_bytes())
    v_cfg = aws.put(bucket, "models/fraud/config.json", b'{"layers": 3}')
    local = tmp_path / "fraud"
    local.mkdir()
    (local / "model.pkl").write_bytes((SAMPLES / "model.pkl").read_bytes())
    (local / "config.json").write_bytes(b'{"layers": 3}')
    expected = cli("hash", local, "--json").expect(0).json()["digest"]["value"]

    out = cli("record", f"s3://{bucket}/models/fraud/", "--name", "fraud", "--kind", "model",
              "--json", cwd=ws.root).expect(0).json()
    assert out["ref"] == "fraud@1"
    assert out["digest"] == f"sha256-manifest-v1:{expected}"  # the same root as on disk
    assert out["locations"]["source"] == f"s3://{bucket}/models/fraud/"

    claims = parse_claims(_statement(ws, "fraud@1"), source="fraud@1")
    assert claims.locations is not None
    assert claims.locations.source == f"s3://{bucket}/models/fraud/"
    by_rel = claims.locations.by_relpath()
    assert by_rel["model.pkl"].uri == f"s3://{bucket}/models/fraud/model.pkl"
    assert by_rel["model.pkl"].identity.version_id == v_model
    assert by_rel["config.json"].identity.version_id == v_cfg
    assert by_rel["config.json"].identity.size == len(b'{"layers": 3}')
    assert claims.manifest.digest == expected

    text = _ledger_text(ws)
    assert v_model in text  # the identities are in the signed entry ...
    for secret in (aws.secret_key, aws.access_key):  # ... the credentials never
        assert secret not in text
    # the bytes recorded from S3 are the bytes on disk: verify finds the record by digest
    cli("verify", local, cwd=ws.root).expect(0, "fraud@1")


def test_record_from_s3_scans_the_copy_and_refuses_before_writing(ws, cli, aws: S3Server
                                                                   ) -> None:  # type: ignore[no-untyped-def]
    bucket = aws.bucket()
    aws.put(bucket, "m/model.pkl", (SAMPLES / "malicious.pkl").read_bytes())
    before = ws.entry_count()
    cli("record", f"s3://{bucket}/m/model.pkl", "--name", "m", "--kind", "model",
        "--bundle-out", ws.root / "m.sigstore", cwd=ws.root).expect(
        1, f"not recorded: s3://{bucket}/m/model.pkl", "pickle.")
    assert ws.entry_count() == before
    assert not (ws.root / "m.sigstore").exists()


def test_record_dataset_from_s3(ws, cli, aws: S3Server) -> None:  # type: ignore[no-untyped-def]
    bucket = aws.bucket()
    aws.put(bucket, "data/train.parquet", (SAMPLES / "dataset-v1.parquet").read_bytes())
    out = cli("record", f"s3://{bucket}/data/train.parquet", "--name", "train", "--kind",
              "dataset", "--json", cwd=ws.root).expect(0).json()
    assert out["ref"] == "train@1"
    claims = parse_claims(_statement(ws, "train@1"), source="train@1")
    assert claims.dataset is not None and claims.dataset.get("schema_fingerprint")
    assert claims.locations is not None
    assert [o.relpath for o in claims.locations.objects] == ["train.parquet"]


def test_record_missing_object_or_bad_credentials_exit_2_and_write_nothing(
        ws, cli, aws: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    bucket = aws.bucket()
    aws.put(bucket, "m/model.pkl", (SAMPLES / "model.pkl").read_bytes())
    before = ws.entry_count()
    cli("record", f"s3://{bucket}/m/absent.pkl", "--name", "m", "--kind", "model",
        cwd=ws.root).expect(2, f"s3://{bucket}/m/absent.pkl", "no such object")
    wrong = "NotTheSecretKeyAtAll0123456789abcdefghij"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    with aws.authenticating():
        result = cli("record", f"s3://{bucket}/m/model.pkl", "--name", "m", "--kind", "model",
                     cwd=ws.root).expect(2, "refused the credentials", "AWS_ACCESS_KEY_ID")
    assert wrong not in result.out + result.err
    assert ws.entry_count() == before


def test_listing_changed_while_recording_appends_nothing(ws, aws: S3Server) -> None:  # type: ignore[no-untyped-def]
    """An object lands in the prefix while record reads it: object.listing_changed, no entry."""
    from custody.provenance.recording.record import record
    from custody.provenance.workspace import load_workspace
    from custody.signing.key_signer import ECKeySigner
    from custody.signing.keys import load_private_key

    bucket = aws.bucket()
    for name in ("a.bin", "b.bin", "c.bin"):
        aws.put(bucket, f"m/{name}", os.urandom(1000))
    done = threading.Event()

    def upload_meanwhile(_: int) -> None:
        if not done.is_set():
            done.set()
            aws.put(bucket, "m/extra.bin", b"late")

    workspace = load_workspace(ws.home)
    assert workspace.signing_key is not None
    signer = ECKeySigner(load_private_key(workspace.signing_key))
    before = ws.entry_count()
    with workspace.open_ledger(append=True) as ledger:
        with pytest.raises(VerificationError) as caught:
            record(f"s3://{bucket}/m", name="m", kind="model", ledger=ledger, signer=signer,
                   progress=upload_meanwhile)
        assert caught.value.rule == "object.listing_changed"
        assert ws.entry_count() == before
        again = record(f"s3://{bucket}/m", name="m", kind="model", ledger=ledger, signer=signer)
    assert again.version.version == 1
    assert again.locations is not None
    assert [o.relpath for o in again.locations.objects] == ["a.bin", "b.bin", "c.bin",
                                                            "extra.bin"]


def test_replaced_object_records_a_new_identity_for_the_same_digest(ws, cli, aws: S3Server
                                                                    ) -> None:  # type: ignore[no-untyped-def]
    bucket = aws.bucket()
    data = (SAMPLES / "model.pkl").read_bytes()
    first = aws.put(bucket, "m/model.pkl", data)
    cli("record", f"s3://{bucket}/m/model.pkl", "--name", "m", "--kind", "model",
        cwd=ws.root).expect(0, "m@1")
    second = aws.put(bucket, "m/model.pkl", data)  # same name, same bytes, new version
    cli("record", f"s3://{bucket}/m/model.pkl", "--name", "m", "--kind", "model",
        cwd=ws.root).expect(0, "m@2")
    one = parse_claims(_statement(ws, "m@1"), source="m@1")
    two = parse_claims(_statement(ws, "m@2"), source="m@2")
    assert one.manifest.digest == two.manifest.digest
    assert one.locations is not None and two.locations is not None
    assert one.locations.objects[0].identity.version_id == first
    assert two.locations.objects[0].identity.version_id == second


# --- the locations claim -----------------------------------------------------------------


def _manifest() -> Manifest:
    return Manifest.for_directory("m", [FileEntry("a.bin", 3, "aa" * 32),
                                        FileEntry("b.bin", 4, "bb" * 32)])


def _locations(**change: object) -> Locations:
    objects = [ObjectLocation("a.bin", "s3://bkt/m/a.bin", ObjectIdentity(3, version_id="v1")),
               ObjectLocation("b.bin", "s3://bkt/m/b.bin", ObjectIdentity(4, etag='"e"'))]
    return Locations(str(change.get("source", "s3://bkt/m")), tuple(objects))


def _signed(predicate_edit=None, **kwargs) -> Statement:  # type: ignore[no-untyped-def]
    statement = build_statement(name="m", kind="model", version=1, manifest=_manifest(),
                                inputs=[], scan_summary={"verdict": "clean"},
                                recorded_at=datetime(2026, 1, 1, tzinfo=UTC), tool_version="t",
                                **kwargs)
    if predicate_edit is None:
        return statement
    predicate = json.loads(json.dumps(statement.predicate))
    predicate_edit(predicate)
    return Statement(subjects=statement.subjects, predicate_type=statement.predicate_type,
                     predicate=predicate)


def test_statement_without_locations_still_parses() -> None:
    claims = parse_claims(_signed(), source="old")
    assert claims.locations is None
    assert "locations" not in _signed().predicate


def test_locations_round_trip_through_the_statement() -> None:
    statement = Statement.from_bytes(_signed(locations=_locations()).to_bytes())
    claims = parse_claims(statement, source="new")
    assert claims.locations == _locations()


def test_locations_naming_other_files_are_inconsistent() -> None:
    def drop_one(predicate: dict) -> None:  # type: ignore[type-arg]
        predicate["locations"]["objects"].pop()

    def wrong_size(predicate: dict) -> None:  # type: ignore[type-arg]
        predicate["locations"]["objects"][0]["size"] = 99

    for edit in (drop_one, wrong_size):
        with pytest.raises(VerificationError) as caught:
            parse_claims(_signed(edit, locations=_locations()), source="edited")
        assert caught.value.rule == "statement.inconsistent"


def test_locations_with_a_credential_in_the_uri_are_malformed() -> None:
    """A location is redacted by construction; one carrying a query or userinfo is refused."""
    def signed_url(predicate: dict) -> None:  # type: ignore[type-arg]
        predicate["locations"]["objects"][0]["uri"] = "https://h/m/a.bin?X-Amz-Signature=s"

    def userinfo(predicate: dict) -> None:  # type: ignore[type-arg]
        predicate["locations"]["source"] = "s3://KEY:SECRET@bkt/m"

    def not_a_list(predicate: dict) -> None:  # type: ignore[type-arg]
        predicate["locations"]["objects"] = "s3://bkt/m"

    for edit in (signed_url, userinfo, not_a_list):
        with pytest.raises(VerificationError) as caught:
            parse_claims(_signed(edit, locations=_locations()), source="edited")
        assert caught.value.rule == "statement.malformed"
