"""``custody hash`` and ``custody scan``: digests and findings, nothing recorded (registered by
cli.py)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from custody import __version__
from custody._commands import render
from custody._commands.common import (
    IdOpt,
    JsonOpt,
    LabelOpt,
    ScanBaselineOpt,
    SymlinkOpt,
    ThresholdOpt,
    optional_workspace,
    size_hint,
    want_json,
)
from custody.errors import EXIT_OK, ReportedOutcome, UsageError
from custody.provenance.verification.policy_options import parse_threshold

if TYPE_CHECKING:
    from custody.validators.findings import ScanReport, Severity
    from custody.validators.interface import ScanOptions

ExecutorOpt = Annotated[str | None, typer.Option(
    "--executor", metavar="ENGINE", help="Where the work runs: local, local[N] or "
    "dask://HOST:PORT (default: CUSTODY_DASK_SCHEDULER if set, else this process; "
    "docs/scaling.md).")]


def hash_cmd(
    path: Annotated[str, typer.Argument(
        metavar="PATH|URI", help="A file or directory, or an object-store URI: s3://, gs://, "
        "az://, hf://, https://, file://, memory:// (docs/object-stores.md).")],
    allow_symlinks: SymlinkOpt = False,
    executor: ExecutorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the manifest of PATH: per-file relpath, size, sha256, and the root digest.

    For a URI, also each object's location and identity (version id / ETag / generation).

    \b
    Examples:
      custody hash models/resnet
      custody hash data/train.parquet --json
      custody hash s3://bucket/models/resnet/
      custody hash data/shards --executor dask://scheduler:8786
    """
    from custody.provenance.execution.interface import parse_executor
    from custody.provenance.hashing.locations import is_uri

    engine = parse_executor(executor)

    if is_uri(path):
        from custody.provenance.hashing.objects import hash_uri

        with engine or nullcontext(), \
                render.progress("hashing", None, enabled=not want_json(as_json)) as tick:
            hashed = hash_uri(path, progress=tick, executor=engine)
        if want_json(as_json):
            render.emit_json(hashed.to_json())
        else:
            render.manifest_table(hashed.manifest)
            render.err().print(f"source: {hashed.source} ({len(hashed.locations.objects)} "
                               "object(s), identities in --json)", markup=False)
        return
    from custody.provenance.hashing.files import hash_path

    local = Path(path)
    with engine or nullcontext(), \
            render.progress("hashing", size_hint(local), enabled=not want_json(as_json)) as tick:
        manifest = hash_path(local, allow_symlinks=allow_symlinks, progress=tick,
                             executor=engine)
    if want_json(as_json):
        render.emit_json(manifest.to_json())
    else:
        render.manifest_table(manifest)


def scan(
    path: Annotated[str, typer.Argument(
        metavar="PATH|URI", help="A file or directory to scan, or an object-store URI (read "
        "once into a private copy, which is scanned).")],
    threshold: ThresholdOpt = None,
    policy_file: Annotated[Path | None, typer.Option(
        "--policy", metavar="FILE", help="Policy file: threshold and allowed pickle globals.")
    ] = None,
    sarif: Annotated[Path | None, typer.Option(
        "--sarif", metavar="FILE", help="Also write the findings as SARIF 2.1.0.")] = None,
    baseline: ScanBaselineOpt = None,
    label: LabelOpt = None,
    id_column: IdOpt = None,
    rows_out: Annotated[Path | None, typer.Option(
        "--rows-out", metavar="FILE", help="Datasets: write every row a poisoning finding "
        "names (row, id, rule, label, score, what the baseline predicts) to FILE, .parquet or "
        ".csv; the JSON evidence lists at most 1,000 rows per finding.")] = None,
    allow_symlinks: SymlinkOpt = False,
    executor: ExecutorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Scan PATH for dangerous content without loading it (exit 1 on a finding).

    With --baseline (or --label, --id), PATH is a table whose rows are checked as well.

    \b
    Examples:
      custody scan models/model.pkl
      custody scan models --threshold high --sarif scan.sarif
      custody scan data/new.parquet --baseline train@1
      custody scan s3://bucket/models/model.pkl
      custody scan models/llama --executor local[4]
    """
    from custody.provenance.hashing.locations import is_uri
    from custody.provenance.scanning.step import (
        DatasetOptions,
        scan_objects,
        with_dataset_checks,
    )
    from custody.validators.interface import ScanOptions

    limit = parse_threshold(threshold or "medium")
    options = ScanOptions()
    if policy_file is not None:
        from custody.provenance.policy.file import load_policy

        policy = load_policy(policy_file)
        limit = parse_threshold(threshold) if threshold else policy.scan_threshold
        options = ScanOptions(extra_safe_globals=policy.extra_safe_globals,
                              pickle_profiles=policy.pickle_profiles)

    def finish(report: ScanReport, table: Path, shown: str) -> None:
        """Dataset checks, SARIF and the report (``table``: the bytes that were read)."""
        extra: dict[str, object] = {}
        if baseline is not None or label is not None or id_column is not None \
                or rows_out is not None:
            ws = optional_workspace()
            ledger = ws.open_ledger() if ws is not None else None
            try:
                report, assessment = with_dataset_checks(
                    report, table, ledger=ledger, name=None,
                    dataset=DatasetOptions(baseline=baseline, label=label, id_column=id_column))
            finally:
                if ledger is not None:
                    ledger.close()
            if assessment is None:
                raise UsageError(f"{shown} is not a Parquet or CSV table")
            if rows_out is not None:
                from custody.provenance.scanning.datasets import write_rows_out

                write_rows_out(assessment, rows_out)
            extra = {"schema_fingerprint": assessment.claims.get("schema_fingerprint"),
                     "baseline": assessment.claims.get("baseline")}
        if sarif is not None:
            import json

            from custody.validators.sarif import to_sarif

            sarif.write_text(json.dumps(to_sarif(report, base=shown, tool_version=__version__),
                                        indent=2) + "\n", encoding="utf-8")
        if want_json(as_json):
            render.emit_json({**report.to_json(), **extra})
        else:
            render.scan_table(report)
        if report.exit_code != EXIT_OK:
            raise ReportedOutcome(report.exit_code)

    if is_uri(path):
        from custody.provenance.hashing.objects import fetch_private

        with render.progress("reading", None, enabled=not want_json(as_json)) as tick, \
                fetch_private(path, progress=tick) as fetched:
            assert fetched.copy is not None  # noqa: S101 - fetch_private always makes it
            finish(scan_objects(fetched, threshold=limit, options=options), fetched.copy,
                   fetched.source)
        return
    local = Path(path)
    finish(_scan_local(local, limit, options, allow_symlinks=allow_symlinks, executor=executor,
                       as_json=as_json), local, path)


def _scan_local(local: Path, limit: Severity, options: ScanOptions, *, allow_symlinks: bool,
                executor: str | None, as_json: bool) -> ScanReport:
    from custody.provenance.execution.interface import parse_executor
    from custody.provenance.scanning.step import scan_path

    engine = parse_executor(executor)
    with engine or nullcontext(), \
            render.progress("scanning", size_hint(local), enabled=not want_json(as_json)):
        return scan_path(local, threshold=limit, options=options, allow_symlinks=allow_symlinks,
                         executor=engine)
