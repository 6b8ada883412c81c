"""The run's report folder `reports/<run_id>/`: manifest, DQ results and the steward report.

Nothing written here may carry a direct identifier: files are named by their path in the landing
folder, rows by their row number, patients by their pseudonymous key.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

import blinaetl
from blinaetl.ingest.fingerprint import inputs_fingerprint
from blinaetl.reports.html import template_env
from blinaetl.validate.contracts import KAHN_CATEGORIES
from blinaetl.warehouse import models

STATUS_ORDER = ("error", "not_applicable", "failed", "passed")
QUERY_STATUSES = ("new", "reopened", "open", "corrected", "miscorrected", "resolved", "closed")
KAHN_ORDER = KAHN_CATEGORIES


def code_version() -> dict[str, str]:
    """Package version and, from a checkout, the git commit."""
    version = {"blinaetl": blinaetl.__version__}
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(blinaetl.__file__).parent,
            timeout=5,
        )
        version["git_commit"] = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.write_json())


def build_manifest(cfg: Any, result: Any, timings: dict[str, float]) -> dict[str, Any]:
    files = result.files
    if "fix" not in files.columns:  # file listings built by hand (tests, older callers)
        files = files.with_columns(pl.lit(None, pl.Utf8).alias("fix"))
    files = files.select(
        "path",
        "sha256",
        "source_id",
        "table_name",
        "rows_read",
        "rows_loaded",
        "rows_quarantined",
        "status",
        "error",
        "fix",
    ).sort("path")

    defs = models.load_definitions(overrides=cfg.definitions)
    fingerprint = inputs_fingerprint(cfg)
    return {
        "run_id": cfg.run_id,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "mode": "demo" if cfg.demo else "production",
        "inputs_fingerprint": fingerprint,
        "definitions": {k: v["value"] for k, v in sorted(defs.items())},
        "files": _records(files),
        "source_mappings": list(getattr(result, "mappings", [])),
        "totals": {
            "files": files.height,
            "rows_read": int(files["rows_read"].sum()),
            "rows_loaded": int(files["rows_loaded"].sum()),
            "rows_quarantined": int(files["rows_quarantined"].sum()),
        },
        "needs_attention": bool(result.needs_attention),
        "incremental": incremental_summary(cfg, result),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "analytics_database": str(cfg.analytics_path),
    }


def incremental_summary(cfg: Any, result: Any) -> dict[str, Any]:
    """Which files the run took from the per-file cache, and which tables' validation (names
    and counts only, never values)."""
    reused = sorted(getattr(result, "reused", None) or [])
    return {
        "full_run": bool(getattr(cfg, "full", False)),
        "files_reused": len(reused),
        "reused_from_cache": reused,
        "tables_not_validated_again": sorted(getattr(result, "validated_reused", None) or []),
    }


def _summarise_checks(dq: pl.DataFrame) -> list[dict[str, Any]]:
    groups = []
    for kahn in KAHN_ORDER:
        part = dq.filter(pl.col("kahn") == kahn)
        counts = {s: int((part["status"] == s).sum()) for s in STATUS_ORDER}
        groups.append({"kahn": kahn, "checks": part.height, **counts})
    return groups


SNAPSHOT = "patients_snapshot.parquet"


def changes_since_previous(
    reports: Path, run_id: str, current: pl.DataFrame
) -> dict[str, Any] | None:
    """New and removed patients and changed values by field against the previous run's snapshot."""
    earlier = sorted(
        p for p in reports.iterdir() if p.is_dir() and p.name < run_id and (p / SNAPSHOT).exists()
    )
    if not earlier:
        return None
    previous = pl.read_parquet(earlier[-1] / SNAPSHOT)
    keys_now, keys_before = set(current["patient_key"]), set(previous["patient_key"])
    both = current.join(previous, on="patient_key", how="inner", suffix="__before")
    changed = []
    for col in current.columns:
        if col == "patient_key" or f"{col}__before" not in both.columns:
            continue
        n = both.filter(~pl.col(col).eq_missing(pl.col(f"{col}__before"))).height
        if n:
            changed.append({"field": col, "patients": n})
    return {
        "previous_run": earlier[-1].name,
        "new_patients": len(keys_now - keys_before),
        "removed_patients": len(keys_before - keys_now),
        "changed": changed,
    }


def _steward_listings(cfg: Any) -> dict[str, list[dict[str, Any]]]:
    """Vocabulary gaps for stewards: unreadable CD19 wordings and unmapped EM site terms.

    Digits are masked in CD19 wordings so that no number from an extract reaches the report.
    """
    import duckdb

    con = duckdb.connect(str(cfg.restricted_path), read_only=True)
    try:
        cd19 = con.execute(
            "SELECT source_id, regexp_replace(descriptor, '[0-9]', '#', 'g') AS descriptor, "
            "sum(n_specimens) AS n FROM harmonized.cd19_unreadable GROUP BY ALL ORDER BY n DESC LIMIT 50"
        ).fetchall()
        em = con.execute(
            "SELECT term, n_mentions, n_reports FROM harmonized.em_unmapped_terms ORDER BY n_mentions DESC, term LIMIT 50"
        ).fetchall()
        discordant = con.execute(
            "SELECT reported_response, derived_category, count(*) FROM harmonized.response_discordance "
            "GROUP BY ALL ORDER BY 3 DESC, 1, 2"
        ).fetchall()
    finally:
        con.close()
    return {
        "cd19_unreadable": [{"source_id": a, "descriptor": b, "n": c} for a, b, c in cd19],
        "em_unmapped": [{"term": a, "n_mentions": b, "n_reports": c} for a, b, c in em],
        "response_discordance": [{"reported": a, "derived": b, "n": c} for a, b, c in discordant],
    }


def top_failing_checks(dq: pl.DataFrame, limit: int = 15) -> pl.DataFrame:
    """Checks whose status is `error` or `failed`, errors first, then by violating rows.

    A check that found violating rows but stayed within its threshold has passed (DQD
    semantics) and is not listed here; the report counts such checks beside the table.
    """
    status_rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    return (
        dq.filter(pl.col("status").is_in(["error", "failed"]))
        .with_columns(pl.col("status").replace_strict(status_rank, default=9).alias("_rank"))
        .sort(["_rank", "rows_failed", "check_id"], descending=[False, True, False])
        .drop("_rank")
        .head(limit)
    )


def render_steward_html(**context: Any) -> str:
    """The steward report page; every value is HTML-escaped (file names, messages, terms)."""
    return template_env().get_template("steward_report.html.j2").render(**context)


def _not_collected_listing(result: Any) -> list[dict[str, Any]]:
    """Fields a site's mapping declares not collected: one row per site, table and field."""
    frame = getattr(result, "not_collected", None)
    if frame is None or frame.height == 0:
        return []
    return _records(
        frame.group_by("site", "table_name", "field_name")
        .agg(
            pl.col("source_id").unique().sort().str.join(", ").alias("source_ids"),
            pl.col("rows_delivered").sum(),
        )
        .sort("site", "table_name", "field_name")
    )


def _site_sections(rt: Any, out: Path) -> list[dict[str, Any]]:
    """Per-site figures with the bar widths of the small charts and the workbook's path
    relative to the report (the workbook itself lives in the restricted zone)."""
    import os

    sites = []
    for site in rt.sites:
        read = max(site["rows_read"], 1)
        most = max([*site["ages"].values(), 1])
        link = None
        if site["workbook"]:
            link = os.path.relpath(site["workbook"], out)
        sites.append(
            {
                **site,
                "loaded_pct": 100.0 * site["rows_loaded"] / read,
                "quarantined_pct": 100.0 * site["rows_quarantined"] / read,
                "age_pct": {b: 100.0 * n / most for b, n in site["ages"].items()},
                "workbook_link": link,
            }
        )
    return sites


def write_run_report(
    cfg: Any,
    result: Any,
    timings: dict[str, float],
    gx_summary: dict[str, Any] | None = None,
    gate: dict[str, Any] | None = None,
    wait_gx: Callable[[], dict[str, Any] | None] | None = None,
) -> Path:
    """Write the run's report folder: manifest, DQ results, queries, snapshot and index.html.

    `gate` is the publish gate's outcome; when it refused publication, nothing is read from the
    analytics database (it is the previous run's) and no snapshot is written. `wait_gx`, when
    given, returns the Great Expectations summary (`gx_summary` is then ignored): it is called
    after the queries and the snapshot are written, so a checkpoint running in another process
    (`reports.gx.GxWorker`) overlaps them.
    """
    import duckdb

    from blinaetl.reports.queries import write_queries
    from blinaetl.reports.roundtrip import advance_queries

    out = cfg.report_dir
    out.mkdir(parents=True, exist_ok=True)
    rt = advance_queries(cfg, result)
    listing = rt.listing
    write_queries(listing, out)
    published = gate is None or bool(gate.get("published", True))
    changes = None
    if published:
        con = duckdb.connect(str(cfg.analytics_path), read_only=True)
        try:
            snapshot = con.sql("SELECT * FROM curated.patients ORDER BY patient_key").pl()
        finally:
            con.close()
        snapshot.write_parquet(out / SNAPSHOT)
        changes = changes_since_previous(cfg.reports, cfg.run_id, snapshot)
    if wait_gx is not None:
        gx_summary = wait_gx()
    manifest = build_manifest(cfg, result, timings)
    manifest["great_expectations"] = gx_summary
    manifest["published"] = published
    manifest["publish_gate"] = gate
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    dq = result.dq_results.sort(["table_name", "check_id"])
    (out / "dq_results.json").write_text(
        json.dumps(_records(dq), indent=2) + "\n", encoding="utf-8"
    )
    top_failing = top_failing_checks(dq)
    html = render_steward_html(
        manifest=manifest,
        kahn_groups=_summarise_checks(dq),
        checks=_records(dq),
        top_failing=_records(top_failing),
        passed_with_violations=dq.filter(
            (pl.col("status") == "passed") & (pl.col("rows_failed") > 0)
        ).height,
        status_order=STATUS_ORDER,
        queries={s: int((listing["status"] == s).sum()) for s in QUERY_STATUSES},
        sites=_site_sections(rt, out),
        not_collected=_not_collected_listing(result),
        reply_problems=_records(rt.problems),
        changes=changes,
        listings=_steward_listings(cfg),
        disappeared=result.disappeared.height,
        has_data_docs=(out / "data_docs" / "index.html").exists(),
        has_study_report=getattr(cfg, "study_report", True),  # written by the study child
        gx=gx_summary,
    )
    (out / "index.html").write_text(html, encoding="utf-8")
    return out
