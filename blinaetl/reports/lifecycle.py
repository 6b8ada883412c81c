"""A query's life across runs, with the sites' replies.

States (kept in the audit file's `query_state`):

- `open`: the discrepancy was delivered and nobody has answered (listed as `new` in the run
  that opened it);
- `corrected`: the site said it corrected the record; the query stays open until a delivery
  no longer has the discrepancy (`resolved`) or still has it (`miscorrected`);
- `miscorrected`: a delivery after a `corrected` reply still fails the same check on the same
  record (same content, or the same patient, check and column with changed content);
- `resolved`: the discrepancy is no longer delivered;
- `closed_confirmed`: the site confirmed the value as delivered; the row is loaded with the
  check as a warning from then on;
- `closed_unresolvable`: the site cannot resolve it.

A resolved query whose discrepancy is delivered again is `reopened` (back to `open`). Events
(`opened`, `answered`, `closed`, `resolved`, `reopened`, `miscorrected`) are appended to the
audit trail with the run id, the time and the reply. The rules are set operations on two small
frames (this run's discrepancies and the previous state); nothing here reads data rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from blinaetl.reports.audit import CLOSED, EVENT_SCHEMA, LIVE, SNAPSHOT_SCHEMA, STATE_SCHEMA

REPLY_STATUS = {
    "corrected": "corrected",
    "confirmed_as_is": "closed_confirmed",
    "cannot_resolve": "closed_unresolvable",
}
# the same patient, check and column of the same source: a changed record of the same defect
LOCATOR = ["source_id", "table_name", "rule_id", "field", "patient_key"]
SNAP = list(SNAPSHOT_SCHEMA)


@dataclass
class Advance:
    state: pl.DataFrame  # one row per query after this run
    events: pl.DataFrame  # this run's events, in order


def _events(frame: pl.DataFrame, event: str, run_id: str, at: dt.datetime, **lits) -> pl.DataFrame:
    cols = {
        "run_id": pl.lit(run_id),
        "at": pl.lit(at, EVENT_SCHEMA["at"]),
        "event": pl.lit(event),
    }
    for name in EVENT_SCHEMA:
        if name in cols:
            continue
        if name in lits:
            cols[name] = pl.lit(lits[name], EVENT_SCHEMA[name])
        elif name in frame.columns:
            cols[name] = pl.col(name)
        else:
            cols[name] = pl.lit(None, EVENT_SCHEMA[name])
    return frame.select(**cols).select(list(EVENT_SCHEMA)).cast(pl.Schema(EVENT_SCHEMA))


def apply_replies(
    state: pl.DataFrame, replies: pl.DataFrame, run_id: str, at: dt.datetime
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Step 1: each accepted reply sets its query's status; `answered` and `closed` events."""
    replies = replies.select("query_id", "reply", pl.col("site_comment").cast(pl.Utf8))
    answered = state.drop("site_comment").join(replies, on="query_id", how="inner")
    events = [
        _events(
            answered.with_columns(
                pl.col("reply").replace_strict(REPLY_STATUS, return_dtype=pl.Utf8).alias("status")
            ),
            "answered",
            run_id,
            at,
        )
    ]
    closing = answered.filter(pl.col("reply") != "corrected").with_columns(
        pl.col("reply").replace_strict(REPLY_STATUS, return_dtype=pl.Utf8).alias("status")
    )
    events.append(_events(closing, "closed", run_id, at))
    state = (
        state.join(replies.rename({"site_comment": "_comment"}), on="query_id", how="left")
        .with_columns(
            pl.when(pl.col("reply").is_not_null())
            .then(pl.col("reply").replace_strict(REPLY_STATUS, return_dtype=pl.Utf8, default=None))
            .otherwise(pl.col("status"))
            .alias("status"),
            pl.when(pl.col("reply") == "corrected")
            .then(pl.col("file_sha256"))
            .otherwise(pl.col("corrected_sha"))
            .alias("corrected_sha"),
            pl.when(pl.col("reply").is_in(["confirmed_as_is", "cannot_resolve"]))
            .then(pl.col("reply"))
            .otherwise(pl.col("resolution"))
            .alias("resolution"),
            pl.coalesce("_comment", "site_comment").alias("site_comment"),
            pl.when(pl.col("reply").is_not_null())
            .then(pl.lit(run_id))
            .otherwise(pl.col("last_event_run"))
            .alias("last_event_run"),
        )
        .drop("reply", "_comment")
    )
    return state, events


def advance_redelivered(
    present: pl.DataFrame, current: pl.DataFrame, run_id: str, at: dt.datetime
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Step 2: queries whose discrepancy is delivered again with the same content.

    A corrected query still delivered unchanged in a new delivery becomes `miscorrected`; a
    resolved one is `reopened`. Every such query takes this run's snapshot columns.
    """
    fresh = present.drop([c for c in SNAP if c != "discrepancy_id"]).join(
        current, on="discrepancy_id", how="left"
    )
    again = (pl.col("status") == "corrected") & (pl.col("file_sha256") != pl.col("corrected_sha"))
    reopen = pl.col("status") == "resolved"
    events = [
        _events(
            fresh.filter(again).with_columns(status=pl.lit("miscorrected")),
            "miscorrected",
            run_id,
            at,
            note="the delivery after the correction still fails this check on the same record",
        ),
        _events(fresh.filter(reopen).with_columns(status=pl.lit("open")), "reopened", run_id, at),
    ]
    fresh = fresh.with_columns(
        pl.when(again)
        .then(pl.lit("miscorrected"))
        .when(reopen)
        .then(pl.lit("open"))
        .otherwise(pl.col("status"))
        .alias("status"),
        pl.when(again | reopen)
        .then(pl.lit(run_id))
        .otherwise(pl.col("last_event_run"))
        .alias("last_event_run"),
        pl.lit(run_id).alias("last_seen_run"),
    )
    return fresh, events


def match_changed_records(waiting: pl.DataFrame, unclaimed: pl.DataFrame) -> pl.DataFrame:
    """Pairs of a waiting (corrected or miscorrected) query and an unclaimed discrepancy on
    the same locator (source, table, check, field, patient): at most one pair per query and
    per discrepancy, preferring the same source row, then the lowest row and id."""
    return (
        waiting.select("query_id", *LOCATOR, pl.col("source_row").alias("_old_row"))
        .join(unclaimed, on=LOCATOR, how="inner", nulls_equal=True)
        .with_columns((pl.col("source_row") != pl.col("_old_row")).alias("_moved"))
        .sort("query_id", "_moved", "source_row", "discrepancy_id")
        .unique("query_id", keep="first", maintain_order=True)
        .unique("discrepancy_id", keep="first", maintain_order=True)
        .drop("_old_row", "_moved")
    )


def advance_absent(
    absent: pl.DataFrame,
    unclaimed: pl.DataFrame,
    run_id: str,
    at: dt.datetime,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, list[pl.DataFrame]]:
    """Step 3: live queries whose discrepancy is gone.

    Resolved, or miscorrected when a corrected record still fails the same check (its content
    changed, so its discrepancy id did). Returns the matched pairs (`candidates`), the queries
    taken over by a changed record (`taken`), the resolved ones (`gone`), those already
    resolved or closed and not delivered (`kept`), and the events.
    """
    waiting = absent.filter(pl.col("status").is_in(["corrected", "miscorrected"]))
    candidates = match_changed_records(waiting, unclaimed)
    taken = (
        waiting.drop(SNAP)
        .join(candidates, on="query_id", how="inner")
        .with_columns(
            pl.lit("miscorrected").alias("status"),
            pl.lit(run_id).alias("last_event_run"),
            pl.lit(run_id).alias("last_seen_run"),
        )
    )
    gone = absent.filter(pl.col("status").is_in(LIVE)).join(
        taken.select("query_id"), on="query_id", how="anti"
    )
    gone = gone.with_columns(
        pl.lit("resolved").alias("status"), pl.lit(run_id).alias("last_event_run")
    )
    events = [
        _events(
            taken,
            "miscorrected",
            run_id,
            at,
            note="the corrected record was delivered again and still fails this check",
        ),
        _events(gone, "resolved", run_id, at),
    ]
    kept = absent.filter(~pl.col("status").is_in(LIVE))
    return candidates, taken, gone, kept, events


def open_new_queries(unclaimed: pl.DataFrame, run_id: str, at: dt.datetime) -> pl.DataFrame:
    """Step 4: discrepancies no query holds become new open queries (id = discrepancy id)."""
    return unclaimed.with_columns(
        pl.col("discrepancy_id").alias("query_id"),
        pl.lit("open").alias("status"),
        pl.lit(run_id).alias("opened_run"),
        pl.lit(at, STATE_SCHEMA["opened_at"]).alias("opened_at"),
        pl.lit(None, pl.Utf8).alias("corrected_sha"),
        pl.lit(run_id).alias("last_seen_run"),
        pl.lit(run_id).alias("last_event_run"),
        pl.lit(None, pl.Utf8).alias("resolution"),
        pl.lit(None, pl.Utf8).alias("site_comment"),
    )


def advance(
    current: pl.DataFrame,
    previous: pl.DataFrame,
    replies: pl.DataFrame,
    run_id: str,
    at: dt.datetime,
) -> Advance:
    """The state after this run and the events that led there.

    `current`: this run's discrepancies (`SNAPSHOT_SCHEMA`, `discrepancy_id` unique);
    `previous`: the state before the run (`STATE_SCHEMA`); `replies`: accepted replies
    (`query_id`, `reply`, `site_comment`), one per query, each for a live query.
    """
    current = (
        current.select(SNAP).cast(pl.Schema(SNAPSHOT_SCHEMA)).unique("discrepancy_id", keep="first")
    )
    state = previous.select(list(STATE_SCHEMA)).cast(pl.Schema(STATE_SCHEMA))
    state, events = apply_replies(state, replies, run_id, at)

    present = state.join(current.select("discrepancy_id"), on="discrepancy_id", how="semi")
    absent = state.join(current.select("discrepancy_id"), on="discrepancy_id", how="anti")
    fresh, redelivered_events = advance_redelivered(present, current, run_id, at)
    events += redelivered_events

    unclaimed = current.join(present.select("discrepancy_id"), on="discrepancy_id", how="anti")
    candidates, taken, gone, kept, absent_events = advance_absent(absent, unclaimed, run_id, at)
    events += absent_events

    new = open_new_queries(
        unclaimed.join(candidates.select("discrepancy_id"), on="discrepancy_id", how="anti"),
        run_id,
        at,
    )
    events.append(_events(new, "opened", run_id, at))

    out = pl.concat(
        [
            f.select(list(STATE_SCHEMA)).cast(pl.Schema(STATE_SCHEMA))
            for f in (fresh, taken, gone, kept, new)
        ]
    ).sort("query_id")
    return Advance(out, pl.concat(events))


LIVE_LISTED = ("new", "reopened", "open", "corrected", "miscorrected")  # listing statuses
LISTING_STATUS = ("new", "reopened", "open", "corrected", "miscorrected", "resolved", "closed")


def listing(state: pl.DataFrame, run_id: str) -> pl.DataFrame:
    """The run's query listing: every live query, and those resolved or closed in this run.

    Status `new` for a query opened in this run, `reopened` for one whose resolved discrepancy
    came back in this run; `closed` (with `resolution`) for one closed.
    """
    shown = state.filter(
        pl.col("status").is_in(LIVE)
        | (pl.col("status").is_in(["resolved", *CLOSED]) & (pl.col("last_event_run") == run_id))
    )
    status = (
        pl.when((pl.col("status") == "open") & (pl.col("opened_run") == run_id))
        .then(pl.lit("new"))
        .when((pl.col("status") == "open") & (pl.col("last_event_run") == run_id))
        .then(pl.lit("reopened"))
        .when(pl.col("status").is_in(CLOSED))
        .then(pl.lit("closed"))
        .otherwise(pl.col("status"))
    )
    order = status.replace_strict(
        {s: i for i, s in enumerate(LISTING_STATUS)}, return_dtype=pl.Int8
    )
    return shown.with_columns(status.alias("status")).sort(
        [order, "source_file", "source_row", "rule_id"], nulls_last=True
    )
