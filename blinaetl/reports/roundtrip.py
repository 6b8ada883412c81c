"""One run of the steward-to-site round trip: replies in, lifecycle, audit trail, outboxes out.

Called by the report stage after the restricted database is loaded. It reads this run's
discrepancies, the previous state from the audit file and the replies read at ingest
(`result.replies`), advances every query, appends the events to the audit trail, copies the
trail into the restricted database (`queries.events`, `queries.state`), writes one workbook per
site and laboratory into the restricted outbox and returns the pseudonymous figures the
steward report shows per site.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from blinaetl.ingest.sources import load_sources
from blinaetl.reports import lifecycle
from blinaetl.reports.audit import CLOSED, EVENT_SCHEMA, LIVE, QueryAudit
from blinaetl.reports.lifecycle import LIVE_LISTED
from blinaetl.reports.outbox import (
    delivered_details,
    outbox_root,
    sender_of,
    with_senders,
    write_outboxes,
)
from blinaetl.reports.queries import current_discrepancies, derivation_discrepancies
from blinaetl.reports.replies import Replies
from blinaetl.validate.contracts import load_contracts

AGE_BUCKETS = ("1 run", "2-3 runs", "4+ runs")
# a workbook sheet lists at most this many queries (a spreadsheet holds about a million rows,
# and a site acts on the first causes first); the cover says how many more are open
MAX_ROWS_PER_SHEET = 20_000
SITE_STATUSES = ("new", "reopened", "open", "corrected", "miscorrected", "resolved", "closed")


@dataclass
class QueryRun:
    listing: pl.DataFrame  # this run's listing (pseudonymous; written to reports/)
    events: pl.DataFrame  # this run's audit events
    problems: pl.DataFrame  # replies reported, not applied
    workbooks: dict[str, Path]  # sender -> outbox workbook
    sites: list[dict[str, Any]] = field(default_factory=list)  # per-site figures for the report


def cap_rows(live: pl.DataFrame, limit: int) -> pl.DataFrame:
    """The first `limit` queries per site and table, by file, row and rule."""
    return live.sort("source_file", "source_row", "rule_id", "query_id", nulls_last=True).filter(
        pl.int_range(pl.len()).over("sender", "table_name") < limit
    )


def _bucket(age_runs: pl.Expr) -> pl.Expr:
    return (
        pl.when(age_runs <= 1)
        .then(pl.lit(AGE_BUCKETS[0]))
        .when(age_runs <= 3)
        .then(pl.lit(AGE_BUCKETS[1]))
        .otherwise(pl.lit(AGE_BUCKETS[2]))
    )


def _with_age(listing: pl.DataFrame, runs: list[str], at: dt.datetime) -> pl.DataFrame:
    ordered = pl.DataFrame({"_run": sorted(runs)}, schema={"_run": pl.Utf8})
    counts = (
        listing.select("query_id", "opened_run")
        .join(ordered, how="cross")
        .filter(pl.col("_run") >= pl.col("opened_run"))
        .group_by("query_id")
        .agg(pl.len().cast(pl.Int64).alias("age_runs"))
    )
    return listing.join(counts, on="query_id", how="left", maintain_order="left").with_columns(
        pl.col("age_runs").fill_null(1),
        ((pl.lit(at, pl.Datetime("us", "UTC")) - pl.col("opened_at")).dt.total_days())
        .cast(pl.Int64)
        .alias("age_days"),
        pl.col("opened_at").dt.strftime("%Y-%m-%d").alias("opened_on"),
    )


def _rejected_events(problems: pl.DataFrame, run_id: str, at: dt.datetime) -> pl.DataFrame:
    return (
        problems.select(
            pl.lit(run_id).alias("run_id"),
            pl.lit(at, EVENT_SCHEMA["at"]).alias("at"),
            "query_id",
            pl.lit("reply_rejected").alias("event"),
            pl.lit(None, pl.Utf8).alias("status"),
            pl.lit(None, pl.Utf8).alias("reply"),
            pl.lit(None, pl.Utf8).alias("site_comment"),
            (
                pl.col("reply_file")
                + pl.lit(" ")
                + pl.col("sheet").fill_null("")
                + pl.lit(" row ")
                + pl.col("row").cast(pl.Utf8).fill_null("-")
                + pl.lit(": ")
                + pl.col("problem")
            ).alias("note"),
            "sender",
        )
        .with_columns(
            [
                pl.lit(None, t).alias(c)
                for c, t in EVENT_SCHEMA.items()
                if c
                not in (
                    "run_id",
                    "at",
                    "query_id",
                    "event",
                    "status",
                    "reply",
                    "site_comment",
                    "note",
                    "sender",
                )
            ]
        )
        .select(list(EVENT_SCHEMA))
        .cast(pl.Schema(EVENT_SCHEMA))
    )


def copy_into_restricted(restricted_path: Path, audit: QueryAudit) -> None:
    """The audit trail and the state in the restricted database too (`queries.*`), read-only
    copies of the audit file for stewards who query the restricted database."""
    from blinaetl.warehouse.database import connect_restricted
    from blinaetl.warehouse.frames import write_frame

    events, state = audit.events(), audit.state()
    con = connect_restricted(restricted_path)
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS queries")
        write_frame(con, "queries.events", events, replace=True)
        write_frame(con, "queries.state", state, replace=True)
    finally:
        con.close()


def advance_queries(cfg: Any, result: Any, at: dt.datetime | None = None) -> QueryRun:
    """Advance every query for this run and write the outboxes (see the module docstring)."""
    at = at or dt.datetime.now(dt.UTC)
    contracts = load_contracts(cfg.contracts_dir)
    sources = load_sources(cfg.sources_dir, contracts)
    derived = derivation_discrepancies(cfg.restricted_path)
    current = with_senders(current_discrepancies(result, derived), result.files, sources)
    audit = QueryAudit.of(cfg.restricted_path)
    previous = audit.state()
    replies: Replies = getattr(result, "replies", None) or Replies()
    step = lifecycle.advance(current, previous, replies.applied, cfg.run_id, at)
    events = pl.concat([step.events, _rejected_events(replies.problems, cfg.run_id, at)])
    runs = [r for r, _ in audit.runs()] + [cfg.run_id]
    listing = _with_age(lifecycle.listing(step.state, cfg.run_id), runs, at)
    live = listing.filter(pl.col("status").is_in(LIVE_LISTED))
    shown = cap_rows(live, MAX_ROWS_PER_SHEET)
    not_listed = dict(
        live.join(shown.select("query_id"), on="query_id", how="anti")
        .group_by("sender")
        .len()
        .iter_rows()
    )
    details = delivered_details(cfg.restricted_path, shown, contracts, sources, result.files)
    by_id = {s.source: s for s in sources}
    senders = sorted(
        {
            s
            for sid, path in result.files.select("source_id", "path").iter_rows()
            if (s := sender_of(by_id.get(sid), path))
        }
    )
    workbooks = write_outboxes(cfg.restricted_path, cfg.run_id, shown, details, senders, not_listed)
    audit.record(cfg.run_id, at, events, step.state, replies.files)
    copy_into_restricted(cfg.restricted_path, audit)
    sites = site_figures(result.files, sources, listing, step.state, replies, workbooks)
    return QueryRun(listing, events, replies.problems, workbooks, sites)


def site_figures(
    files: pl.DataFrame,
    sources: list,
    listing: pl.DataFrame,
    state: pl.DataFrame,
    replies: Replies,
    workbooks: dict[str, Path],
) -> list[dict[str, Any]]:
    """Per site or laboratory: rows delivered/loaded/quarantined, queries by status and age."""
    by_id = {s.source: s for s in sources}
    f = files.with_columns(
        pl.struct("source_id", "path")
        .map_elements(
            lambda r: sender_of(by_id.get(r["source_id"]), r["path"]), return_dtype=pl.Utf8
        )
        .alias("sender")
    )
    out = []
    for sender in sorted(set(f["sender"].drop_nulls()) | set(workbooks)):
        mine = f.filter(pl.col("sender") == sender)
        q = listing.filter(pl.col("sender") == sender)
        live = q.filter(pl.col("status").is_in(LIVE_LISTED))
        st = state.filter(pl.col("sender") == sender)
        ages = live.with_columns(_bucket(pl.col("age_runs")).alias("b"))["b"].to_list()
        problems = (
            live.group_by("source_file", "rule_id")
            .agg(pl.len().alias("n"), pl.col("message").first())
            .sort("source_file", "n", "rule_id", descending=[False, True, False])
        )
        per_file = []
        for r in mine.sort("path").iter_rows(named=True):
            issues = [
                {
                    "rule_id": p["rule_id"],
                    "n": p["n"],
                    "message": p["message"],
                    "knock_on": (p["rule_id"] or "").endswith("_KNOWN_PATIENT"),
                }
                for p in problems.filter(pl.col("source_file") == r["path"]).iter_rows(named=True)
            ]
            per_file.append({**r, "issues": issues})
        out.append(
            {
                "sender": sender,
                "files": mine.height,
                "rows_read": int(mine["rows_read"].sum()),
                "rows_loaded": int(mine["rows_loaded"].sum()),
                "rows_quarantined": int(mine["rows_quarantined"].sum()),
                "bad_files": int(mine["status"].is_in(["rejected", "unmatched"]).sum()),
                "status": {s: int((q["status"] == s).sum()) for s in SITE_STATUSES},
                "open_total": live.height,
                "ages": {b: ages.count(b) for b in AGE_BUCKETS},
                "oldest_days": int(live["age_days"].fill_null(0).max() or 0) if live.height else 0,  # type: ignore[arg-type]
                "closed_confirmed": int((st["status"] == "closed_confirmed").sum()),
                "closed_unresolvable": int((st["status"] == "closed_unresolvable").sum()),
                "resolved_total": int((st["status"] == "resolved").sum()),
                "replies_applied": int((replies.applied["sender"] == sender).sum()),
                "replies_rejected": int((replies.problems["sender"] == sender).sum()),
                "workbook": str(workbooks[sender]) if sender in workbooks else None,
                "per_file": per_file,
            }
        )
    return out


__all__ = ["CLOSED", "LIVE", "QueryRun", "advance_queries", "outbox_root"]


def listing_counts(report_dir: Path) -> dict[str, Any]:
    """Query counts of a run as its `queries.csv` states them: by status, and open by sender."""
    path = report_dir / "queries.csv"
    if not path.exists():
        return {"status": {}, "open_by_sender": {}}
    listing = pl.read_csv(path, infer_schema=False)
    status = {s: int((listing["status"] == s).sum()) for s in SITE_STATUSES}
    live = listing.filter(pl.col("status").is_in(LIVE_LISTED))
    by_sender = dict(live.group_by("sender").len().sort("sender").iter_rows())
    return {"status": status, "open_by_sender": {k or "?": int(v) for k, v in by_sender.items()}}


def open_queries_text(
    reports: Path, site: str | None = None, run_id: str | None = None, as_json: bool = False
) -> tuple[str, int]:
    """The open queries of a run, by site, as terminal text (or JSON); returns (text, count).

    Read from the run's `queries.csv` (pseudonymous by construction: file, row, rule, column,
    pseudonymous key; never a delivered value or a site comment).
    """
    import json

    runs = sorted(p for p in reports.glob("*/queries.csv")) if reports.is_dir() else []
    if run_id:
        runs = [p for p in runs if p.parent.name == run_id]
    if not runs:
        raise FileNotFoundError(
            f"no query listing under {reports}"
            + (f" for run {run_id}" if run_id else "")
            + "; run the pipeline first (make run)"
        )
    path = runs[-1]
    listing = pl.read_csv(path, infer_schema=False)
    live = listing.filter(pl.col("status").is_in(LIVE_LISTED))
    if site:
        live = live.filter(pl.col("sender") == site)
    live = live.with_columns(pl.col("source_row").cast(pl.Int64, strict=False)).sort(
        "sender", "source_file", "source_row", "rule_id", nulls_last=True
    )
    cols = ["query_id", "status", "age_runs", "source_file", "source_row", "rule_id", "field"]
    if as_json:
        by_site: dict[str, list[dict[str, Any]]] = {}
        for r in live.select("sender", *cols).iter_rows(named=True):
            by_site.setdefault(r.pop("sender") or "?", []).append(r)
        doc = {"run_id": path.parent.name, "open": live.height, "sites": by_site}
        return json.dumps(doc, indent=2), live.height
    lines = [
        f"run {path.parent.name}: {live.height} open queries" + (f" at {site}" if site else "")
    ]
    for (sender,), part in live.group_by(["sender"], maintain_order=True):
        counts = ", ".join(
            f"{n} {s}" for s in LIVE_LISTED if (n := int((part["status"] == s).sum()))
        )
        lines += ["", f"{sender or '?'}: {part.height} open ({counts})"]
        for r in part.select(cols).iter_rows(named=True):
            where = f"{r['source_file']}:{r['source_row']}" if r["source_row"] else r["source_file"]
            lines.append(
                f"  {r['query_id']:<14} {r['status']:<12} {r['age_runs'] or '':>3} run(s)  "
                f"{r['rule_id']:<28} {r['field'] or '':<18} {where}"
            )
    return "\n".join(lines), live.height
