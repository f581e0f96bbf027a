"""Recording with every offline signer, OMS signatures from the ledger, schema migrations."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

INTEROP = Path(__file__).resolve().parents[1] / "signing" / "test_oms_interop.py"


def _interop():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("oms_interop_helpers", INTEROP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(root: Path, make_file) -> Path:  # type: ignore[no-untyped-def]
    make_file(root / "model" / "config.json", '{"layers": 2}')
    make_file(root / "model" / "weights" / "w.bin", b"\x01" * 4096)
    return root / "model"


def test_recorded_model_signature_verifies_with_model_signing(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    """The OMS signature Custody keeps for a model is accepted by `model_signing` itself."""
    helpers = _interop()
    model = _model(ws.root, make_file)
    sig = ws.root / "model.sig"
    cli("record", model, "--name", "m", "--kind", "model", "--oms-out", sig,
        cwd=ws.root).expect(0)
    exported = cli("bundle", "m@1", "--oms", cwd=ws.root).expect(0).out
    assert exported == sig.read_text()
    helpers.ms_key_verify(model, sig, ws.pub)
    cli("verify", model, "--bundle", sig, "--key", ws.pub, cwd=ws.root).expect(0)
    (model / "weights" / "w.bin").write_bytes(b"\x02" * 4096)
    with pytest.raises(ValueError, match="Signature mismatch"):
        helpers.ms_key_verify(model, sig, ws.pub)
    cli("verify", model, "--bundle", sig, "--key", ws.pub, cwd=ws.root).expect(
        1, "oms.changed_file")


def test_datasets_get_no_oms_signature(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    d = make_file(ws.root / "d.csv", "a\n1\n")
    cli("record", d, "--name", "d", "--kind", "dataset", cwd=ws.root).expect(0)
    cli("bundle", "d", "--oms", cwd=ws.root).expect(2, "no OMS signature")


def test_certificate_chain_signer_through_the_ledger(ws, cli, make_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pki = _interop().Pki(tmp_path)
    model = _model(ws.root, make_file)
    sig = ws.root / "model.sig"
    cli("record", model, "--name", "m", "--kind", "model", "--key", pki.key_path, "--cert",
        pki.leaf_path, "--cert-chain", pki.mid_path, "--oms-out", sig, cwd=ws.root).expect(0)
    out = cli("verify", model, "--ca-cert", pki.root_path, "--json", cwd=ws.root).expect(0).json()
    assert out["artifact"]["signer"] == "x509:CN=interop-signer"
    cli("verify", model, cwd=ws.root).expect(1, "signature.untrusted_kind")
    _interop().ms_cert_verify(model, sig, pki.root_path)
    cli("audit", "verify", cwd=ws.root).expect(0)


def test_signer_option_conflicts_are_usage_errors(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    d = make_file(ws.root / "d.csv", "a\n1\n")
    cli("record", d, "--name", "d", "--kind", "dataset", "--sigstore", "--key", ws.pub,
        cwd=ws.root).expect(2, "--sigstore")
    cli("record", d, "--name", "d", "--kind", "dataset", "--staging", cwd=ws.root).expect(
        2, "--sigstore")
    cli("record", d, "--name", "d", "--kind", "dataset", "--cert-chain", ws.pub,
        cwd=ws.root).expect(2, "--cert")
    assert ws.entry_count() == 0


def test_old_schema_is_refused_until_migrated(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    d = make_file(ws.root / "d.csv", "a\n1\n")
    cli("record", d, "--name", "d", "--kind", "dataset", cwd=ws.root).expect(0)
    from sqlalchemy import inspect

    base = {"ledger_entries", "merkle_nodes", "checkpoints", "ledger_meta", "artifacts",
            "artifact_versions", "manifest_files", "signed_statements", "lineage_edges",
            "alembic_version"}
    engine = create_engine(ws.url)
    try:
        with engine.begin() as conn:
            for table in set(inspect(conn).get_table_names()) - base:  # tables after 0001
                conn.execute(text(f"DROP TABLE {table}"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
            if ws.backend == "postgresql":
                for table, column in (("artifact_versions", "signer_issuer"),
                                      ("artifact_versions", "log_index"),
                                      ("artifact_versions", "signed_at"),
                                      ("signed_statements", "oms_bundle")):
                    conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    finally:
        engine.dispose()
    if ws.backend == "sqlite":  # SQLite drops columns by table rebuild: let Alembic do it
        from alembic.migration import MigrationContext
        from alembic.operations import Operations

        engine = create_engine(ws.url)
        with engine.begin() as conn:
            ops = Operations(MigrationContext.configure(conn))
            with ops.batch_alter_table("artifact_versions") as batch:
                for column in ("signer_issuer", "log_index", "signed_at"):
                    batch.drop_column(column)
            with ops.batch_alter_table("signed_statements") as batch:
                batch.drop_column("oms_bundle")
        engine.dispose()
    cli("verify", d, cwd=ws.root).expect(2, "custody migrate")
    from custody.provenance.ledger.migrate import head_revision

    out = cli("migrate", "--json", cwd=ws.root).expect(0).json()
    assert (out["from"], out["to"]) == ("0001", head_revision())
    cli("verify", d, cwd=ws.root).expect(0)
    cli("audit", "verify", cwd=ws.root).expect(0)


def test_migrations_build_exactly_the_models_schema(ws) -> None:  # type: ignore[no-untyped-def]
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import custody.provenance.ledger.models  # noqa: F401 - registers the tables

    engine = create_engine(ws.url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_the_head_constant_is_alembics_head() -> None:
    from custody.provenance.ledger.migrate import HEAD, head_revision

    assert head_revision() == HEAD
