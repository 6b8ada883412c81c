"""Analyst access to the published analytics database: read-only, polars frames of the views.

    >>> from blinaetl import analytics
    >>> con = analytics.connect()                       # warehouse/blina.duckdb, read-only
    >>> analytics.km_summary(con, param="OS")           # polars DataFrame
    >>> analytics.model_results(con, analysis="logrank")

Every helper returns exactly the rows of a published view or table (the same rows the study
report prints), optionally filtered by equality on its columns. `docs/analysis.md` answers the
first questions an analyst asks with these helpers and with plain SQL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from blinaetl.config import RunConfig

VIEWS: tuple[str, ...] = (
    "curated.patients",
    "endpoints.time_to_event",
    "endpoints.km",
    "endpoints.km_summary",
    "endpoints.km_at_risk",
    "endpoints.cumulative_incidence",
    "endpoints.follow_up",
    "endpoints.response_rates",
    "endpoints.table_one",
    "endpoints.failure_patterns",
    "endpoints.hct_landmark_status",
    "endpoints.hct_landmark",
    "endpoints.hct_landmark_summary",
    "endpoints.hct_counting_process",
    "endpoints.model_results",
)


def default_path() -> Path:
    """`$BLINAETL_ANALYTICS_DB`, else the run's default `warehouse/blina.duckdb`."""
    env = os.environ.get("BLINAETL_ANALYTICS_DB")
    return Path(env) if env else RunConfig(landing=Path("landing")).analytics_path


def connect(path: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the analytics database (many readers may share the file)."""
    db = Path(path) if path is not None else default_path()
    if not db.exists():
        raise FileNotFoundError(
            f"no analytics database at {db}; run `make run` (or `blinaetl run`) first, or pass "
            "the path of a published blina.duckdb"
        )
    return duckdb.connect(str(db), read_only=True)


def read(con: duckdb.DuckDBPyConnection, name: str, **where: Any) -> pl.DataFrame:
    """Rows of a published view or table, filtered by `column=value` equalities."""
    if name not in VIEWS:
        raise ValueError(f"unknown view {name!r}; the published ones are: {', '.join(VIEWS)}")
    columns = {r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()}
    unknown = sorted(set(where) - columns)
    if unknown:
        raise ValueError(
            f"{name} has no column {', '.join(unknown)}; it has {', '.join(sorted(columns))}"
        )
    sql = f"SELECT * FROM {name}"
    if where:
        sql += " WHERE " + " AND ".join(f'"{c}" IS NOT DISTINCT FROM ?' for c in where)
    return con.sql(sql, params=list(where.values())).pl()


def patients(con: duckdb.DuckDBPyConnection, **where: Any) -> pl.DataFrame:
    """`curated.patients`: one analysis-ready row per patient."""
    return read(con, "curated.patients", **where)


def km(con: duckdb.DuckDBPyConnection, **where: Any) -> pl.DataFrame:
    """`endpoints.km`: Kaplan-Meier steps with Greenwood SE and log-log CI per stratum."""
    return read(con, "endpoints.km", **where)


def km_summary(con: duckdb.DuckDBPyConnection, **where: Any) -> pl.DataFrame:
    """`endpoints.km_summary`: n, events, median with CI, survival at 6/12/24 months."""
    return read(con, "endpoints.km_summary", **where)


def km_at_risk(con: duckdb.DuckDBPyConnection, **where: Any) -> pl.DataFrame:
    """`endpoints.km_at_risk`: numbers at risk, events and censored at fixed times."""
    return read(con, "endpoints.km_at_risk", **where)


def cumulative_incidence(con: duckdb.DuckDBPyConnection, **where: Any) -> pl.DataFrame:
    """`endpoints.cumulative_incidence`: Aalen-Johansen relapse incidence with variance."""
    return read(con, "endpoints.cumulative_incidence", **where)


def follow_up(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`endpoints.follow_up`: median follow-up by reverse Kaplan-Meier."""
    return read(con, "endpoints.follow_up")


def response_rates(con: duckdb.DuckDBPyConnection, **where: Any) -> pl.DataFrame:
    """`endpoints.response_rates`: response overall and by predictor with Wilson CIs."""
    return read(con, "endpoints.response_rates", **where)


def failure_patterns(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`endpoints.failure_patterns`: EM and CD19 at failure among refractory and relapsed."""
    return read(con, "endpoints.failure_patterns")


def hct_landmark(con: duckdb.DuckDBPyConnection, **where: Any) -> pl.DataFrame:
    """`endpoints.hct_landmark`: landmark sets by HCT in CR, time from the landmark."""
    return read(con, "endpoints.hct_landmark", **where)


def model_results(con: duckdb.DuckDBPyConnection, **where: Any) -> pl.DataFrame:
    """`endpoints.model_results`: log-rank, Cox, logistic and Fisher results of the run."""
    return read(con, "endpoints.model_results", **where)
