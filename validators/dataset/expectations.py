"""great-expectations (1.x) interop: run a user's suite on a snapshot; export baseline checks.

- :func:`run_suite` validates a snapshot against an expectation suite (JSON file or dict, the
  format of ``ExpectationSuite.to_json_dict()``) and returns one finding per failed expectation
  (``expectation.<type>``, medium, with the failing rows) plus an info finding summarising the
  run. A suite that great-expectations rejects is itself a high finding: it never passes.
- :func:`baseline_suite` turns a baseline profile into a suite with the checks Custody builds
  from it (ordered columns, not-null, ranges, value sets, label classes) for teams that already
  run great-expectations.

great-expectations is imported inside these functions only, with its analytics switched off
(``GX_ANALYTICS_ENABLED=false``) and an ephemeral in-memory context (no files, no network).
The snapshot is materialised as a pandas frame, so this path is for snapshots that fit in memory.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from custody.validators.dataset.profile import CATEGORICAL, NUMERIC, DatasetProfile
from custody.validators.findings import Finding, Severity

_MAX_SET = 50
_MAX_ROWS = 1000


def _gx() -> Any:
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def baseline_suite(profile: DatasetProfile, name: str = "custody-baseline", *,
                   label: str | None = None, skip: frozenset[str] = frozenset(),
                   mostly: float = 0.999) -> dict[str, Any]:
    """A great-expectations suite (as JSON) with the checks derived from ``profile``."""
    label = label or profile.label
    exps: list[dict[str, Any]] = [{
        "type": "expect_table_columns_to_match_ordered_list",
        "kwargs": {"column_list": [c["name"] for c in profile.schema]},
    }]
    for col in profile.columns.values():
        if col.name in skip:
            continue
        if col.nulls == 0 and col.count:
            exps.append({"type": "expect_column_values_to_not_be_null",
                         "kwargs": {"column": col.name}})
        if col.monotonic:
            continue  # time-like: expected to move forward, no range to hold it to
        if col.kind == NUMERIC and col.min is not None and col.max is not None and not (
                col.values is not None and col.name == label):
            exps.append({"type": "expect_column_values_to_be_between",
                         "kwargs": {"column": col.name, "min_value": col.min,
                                    "max_value": col.max, "mostly": mostly}})
            if col.mean is not None and col.std:
                exps.append({"type": "expect_column_mean_to_be_between",
                             "kwargs": {"column": col.name,
                                        "min_value": col.mean - 0.1 * col.std,
                                        "max_value": col.mean + 0.1 * col.std}})
        elif col.kind in (CATEGORICAL, NUMERIC) and col.values is not None \
                and len(col.values) <= _MAX_SET:
            exps.append({"type": "expect_column_values_to_be_in_set",
                         "kwargs": {"column": col.name,
                                    "value_set": [v for v, _ in col.values]}})
    return {"name": name, "expectations": exps,
            "meta": {"generated_by": "custody", "baseline_fingerprint": profile.fingerprint,
                     "baseline_rows": profile.rows}}


def _suite_from(suite: Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(suite, dict):
        return suite
    data = json.loads(Path(suite).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{suite}: an expectation suite is a JSON object")
    return data


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def run_suite(snapshot: Path, suite: Path | dict[str, Any], *, path: str | None = None,
              max_rows: int = _MAX_ROWS) -> list[Finding]:
    """Validate ``snapshot`` against ``suite``; one finding per failed expectation."""
    from custody.validators.dataset.reader import open_source

    display = path or str(snapshot)
    try:
        spec = _suite_from(suite)
    except (OSError, ValueError) as exc:
        return [Finding("expectation.suite_invalid", Severity.HIGH, display,
                        f"cannot read the expectation suite: {exc}")]
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.exceptions.exceptions import GreatExpectationsError

    gx_log = logging.getLogger("great_expectations")
    level = gx_log.level
    gx_log.setLevel(logging.CRITICAL)  # it logs (and skips) invalid expectations
    try:
        gx_suite = gx.ExpectationSuite(**spec)
    except (GreatExpectationsError, TypeError, ValueError) as exc:
        return [Finding("expectation.suite_invalid", Severity.HIGH, display,
                        f"great-expectations rejected the suite: {exc}")]
    finally:
        gx_log.setLevel(level)
    wanted = spec.get("expectations") or []
    if len(gx_suite.expectations) != len(wanted):
        known = {e.expectation_type for e in gx_suite.expectations}
        bad = [str(e.get("type")) for e in wanted
               if isinstance(e, dict) and e.get("type") not in known]
        return [Finding("expectation.suite_invalid", Severity.HIGH, display,
                        f"great-expectations dropped {len(wanted) - len(gx_suite.expectations)} "
                        f"invalid expectation(s): {', '.join(bad[:10]) or '?'}; the suite "
                        "cannot pass", evidence={"invalid": bad[:50]})]
    source = open_source(Path(snapshot))
    import pyarrow as pa

    frame = pa.Table.from_batches(list(source.batches()), schema=source.schema).to_pandas()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("custody").add_dataframe_asset("snapshot")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame})
    result = batch.validate(gx_suite, result_format={"result_format": "COMPLETE"})
    return _findings(result.to_json_dict(), spec, display, max_rows)


def _findings(result: dict[str, Any], spec: dict[str, Any], display: str,
              max_rows: int) -> list[Finding]:
    out: list[Finding] = []
    failed = 0
    for item in result.get("results", []):
        config = item.get("expectation_config", {})
        kind = str(config.get("type", "unknown"))
        if item.get("success"):
            continue
        failed += 1
        kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k != "batch_id"}
        res = item.get("result") or {}
        evidence: dict[str, Any] = {"expectation": kind, "kwargs": _plain(kwargs)}
        for key in ("observed_value", "unexpected_count", "unexpected_percent",
                    "element_count", "missing_count"):
            if key in res:
                evidence[key] = _plain(res[key])
        index = res.get("unexpected_index_list")
        if isinstance(index, list) and all(isinstance(i, int) for i in index):
            evidence["rows"] = index[:max_rows]
            evidence["row_count"] = len(index)
        if res.get("partial_unexpected_list"):
            evidence["examples"] = _plain(res["partial_unexpected_list"][:10])
        if item.get("exception_info", {}).get("raised_exception"):
            evidence["exception"] = str(item["exception_info"].get("exception_message"))
        column = kwargs.get("column")
        out.append(Finding(
            f"expectation.{kind}", Severity.MEDIUM, display,
            f"expectation {kind} failed" + (f" on column {column!r}" if column else ""),
            location=f"column {column}" if column else "", evidence=evidence))
    stats = result.get("statistics") or {}
    out.append(Finding(
        "expectation.suite_result", Severity.INFO, display,
        f"great-expectations suite {spec.get('name', '?')!r}: "
        f"{stats.get('successful_expectations', 0)} passed, {failed} failed",
        evidence={"suite": spec.get("name"), "success": bool(result.get("success")),
                  "statistics": _plain(stats)}))
    return out
