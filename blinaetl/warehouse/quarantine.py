"""A run's quarantine with the exact copies of streamed files kept compact, and its load.

A streamed file (`ingest/landing.py`, `_read_streamed`) holds each distinct row once; a later
exact copy of a row is known by its row number and the row it copies (its first row). Every
copy is quarantined with the failures of its first row (but the uniqueness checks) and every
duplicate-row check. Held as frames, one row per quarantined copy and one per failure, a 100 MB
delivery of copies cost about 0.9 GiB (1.7 million rows and 1.8 million failures).

`Quarantine` keeps, per streamed file, a `CopySegment`: the row numbers with their first row
(the spine) and, per first row, the failures a copy has and those the row itself has (the
templates, a few per distinct row). The restricted database's `quarantine.rows` and
`quarantine.failures` are filled at load by joining the spine to the templates inside DuckDB,
slice by slice of the spine, in file row order (check order within a row), so they hold the
same rows in the same order as the whole-file reader gives. `rows()` and `failures()` expand
the same way in polars, for tests and small deliveries; the pipeline never calls them.

Order of both tables: the files in validation order (`rank`), each file's rows together in row
order, a row's failures in the executor's order (check id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from blinaetl.warehouse.frames import SLICE_ROWS, write_frame

# spine: every row of a streamed file that has a failure or is quarantined, in row order
SPINE_COLUMNS = ("_source_row", "_first_row", "_copy", "_quarantined")
# row_info: per first row of a quarantined row, what its quarantine row carries
ROW_INFO_COLUMNS = ("_first_row", "_source_id", "site", "patient_key", "raw_json")
# templates: per (first row, copy or not) the failures, `_k` their order within the key
TEMPLATE_KEYS = ("_first_row", "_copy")
PER_FILE = ("_source_file", "_source_row", "table_name")  # filled per file and per spine row


@dataclass
class CopySegment:
    """The quarantine of one streamed file, copies as row numbers (see the module)."""

    path: str
    table: str
    spine: pl.DataFrame
    row_info: pl.DataFrame
    templates: pl.DataFrame

    @property
    def row_count(self) -> int:
        return int(self.spine["_quarantined"].sum())

    def rows(self, columns: list[str]) -> pl.DataFrame:
        """The file's quarantine rows (`columns`), in row order."""
        return (
            self.spine.filter(pl.col("_quarantined"))
            .select("_source_row", "_first_row")
            .join(self.row_info, on="_first_row", how="left", maintain_order="left")
            .with_columns(self._constants())
            .select(columns)
        )

    def failures(self, columns: list[str], first_copies: bool = False) -> pl.DataFrame:
        """The file's failures (`columns`) in row order, check order within a row.

        `first_copies`: of the copies of one first row only the first (in row order); each
        later copy has the same failures with the same query ids (`reports/queries.py`)."""
        spine = self.spine.select("_source_row", "_first_row", "_copy")
        if first_copies:
            spine = pl.concat(
                [
                    spine.filter(~pl.col("_copy")),
                    spine.filter(pl.col("_copy")).unique(
                        "_first_row", keep="first", maintain_order=True
                    ),
                ]
            ).sort("_source_row")
        return (
            spine.join(
                self.templates, on=list(TEMPLATE_KEYS), how="inner", maintain_order="left_right"
            )
            .with_columns(self._constants())
            .select(columns)
        )

    def copy_counts(self) -> pl.DataFrame:
        """`_source_file, _first_row, n`: how many copies each first row has."""
        return (
            self.spine.filter(pl.col("_copy"))
            .group_by("_first_row")
            .agg(pl.len().alias("n"))
            .select(pl.lit(self.path).alias("_source_file"), "_first_row", "n")
        )

    def copy_rows(self) -> pl.DataFrame:
        """`site, patient_key, _source_file, _source_row` of every copy, in row order."""
        return (
            self.spine.filter(pl.col("_copy"))
            .select("_source_row", "_first_row")
            .join(
                self.row_info.select("_first_row", "site", "patient_key"),
                on="_first_row",
                how="left",
                maintain_order="left",
            )
            .select("site", "patient_key", pl.lit(self.path).alias("_source_file"), "_source_row")
        )

    def failure_counts(self) -> pl.DataFrame:
        """`_source_file, check_id, message, rows`: failures per check and message."""
        per_key = self.spine.group_by(*TEMPLATE_KEYS).agg(pl.len().alias("n"))
        return (
            self.templates.select(*TEMPLATE_KEYS, "check_id", "message")
            .join(per_key, on=list(TEMPLATE_KEYS))
            .group_by("check_id", "message")
            .agg(pl.col("n").sum().cast(pl.UInt32).alias("rows"))
            .select(pl.lit(self.path).alias("_source_file"), "check_id", "message", "rows")
        )

    def _constants(self) -> list[pl.Expr]:
        return [pl.lit(self.path).alias("_source_file"), pl.lit(self.table).alias("table_name")]

    # --- load: the expansion inside DuckDB ----------------------------------------------

    def append_rows(self, con: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> None:
        """Append the file's quarantine rows to `table`, expanded in DuckDB, in row order."""
        select = ", ".join(self._sql_column(c, "i") for c in columns)
        sql = (
            f"INSERT INTO {table} BY NAME SELECT {select} FROM _spine AS s "
            "LEFT JOIN _info AS i ON s._first_row = i._first_row ORDER BY s._source_row"
        )
        spine = self.spine.filter(pl.col("_quarantined")).select("_source_row", "_first_row")
        self._append(con, sql, spine, "_info", self.row_info)

    def append_failures(
        self, con: duckdb.DuckDBPyConnection, table: str, columns: list[str]
    ) -> None:
        """Append the file's failures to `table`, expanded in DuckDB, in the order of
        `failures()`: row order, and within a row the templates' order (`_k`)."""
        select = ", ".join(self._sql_column(c, "t") for c in columns)
        sql = (
            f"INSERT INTO {table} BY NAME SELECT {select} FROM _spine AS s "
            "JOIN _templates AS t ON s._first_row = t._first_row AND s._copy = t._copy "
            "ORDER BY s._source_row, t._k"
        )
        spine = self.spine.select("_source_row", "_first_row", "_copy")
        self._append(con, sql, spine, "_templates", self.templates)

    def _sql_column(self, name: str, side: str) -> str:
        if name == "_source_file":
            return "$path AS _source_file"
        if name == "table_name":
            return "$table AS table_name"
        if name == "_source_row":
            return "s._source_row"
        return f'{side}."{name}"'

    def _append(
        self,
        con: duckdb.DuckDBPyConnection,
        sql: str,
        spine: pl.DataFrame,
        name: str,
        lookup: pl.DataFrame,
    ) -> None:
        """Run `sql` once per slice of `SLICE_ROWS` spine rows (each its own statement, so
        DuckDB never holds the whole uncommitted append), with `lookup` registered as `name`."""
        con.register(name, lookup.to_arrow())
        try:
            for start in range(0, spine.height, SLICE_ROWS):
                con.register("_spine", spine.slice(start, SLICE_ROWS).to_arrow())
                try:
                    con.execute(sql, {"path": self.path, "table": self.table})
                finally:
                    con.unregister("_spine")
        finally:
            con.unregister(name)


@dataclass
class Quarantine:
    """The quarantine of a run: the rows and failures of the files read whole (`rows_base`,
    `failures_base`, in order) and one `CopySegment` per streamed file with copies. `rank`:
    each file's place in the order of the outcome (validation order)."""

    rows_base: pl.DataFrame
    failures_base: pl.DataFrame
    segments: list[CopySegment] = field(default_factory=list)
    rank: dict[str, int] = field(default_factory=dict)

    @property
    def row_count(self) -> int:
        return self.rows_base.height + sum(s.row_count for s in self.segments)

    @property
    def failure_count(self) -> int:
        total = self.failures_base.height
        for s in self.segments:
            rows = s.spine.group_by(*TEMPLATE_KEYS).agg(pl.len().alias("n"))
            fails = s.templates.group_by(*TEMPLATE_KEYS).agg(pl.len().alias("m"))
            both = rows.join(fails, on=list(TEMPLATE_KEYS))
            total += int((both["n"].cast(pl.Int64) * both["m"]).sum())
        return total

    def rows(self) -> pl.DataFrame:
        """Every quarantine row, copies included (materialized: tests and small deliveries)."""
        cols = self.rows_base.columns
        return self._expand(self.rows_base, lambda s: s.rows(cols))

    def failures(self, first_copies: bool = False) -> pl.DataFrame:
        """Every failure, copies included (materialized). `first_copies`: of each first row's
        copies only the first (what the query listing keeps, `CopySegment.failures`)."""
        cols = self.failures_base.columns
        return self._expand(self.failures_base, lambda s: s.failures(cols, first_copies))

    def rows_per_file(self) -> dict[str, int]:
        counted = self.rows_base.group_by("_source_file").agg(pl.len())
        out = {path: int(n) for path, n in counted.iter_rows()}
        for s in self.segments:
            out[s.path] = out.get(s.path, 0) + s.row_count
        return out

    def failure_counts(self) -> pl.DataFrame:
        """`_source_file, check_id, message, rows`: failures per file, check and message."""
        base = self.failures_base.group_by("_source_file", "check_id", "message").agg(
            pl.len().alias("rows")
        )
        return pl.concat([base, *(s.failure_counts() for s in self.segments)])

    def _positions(self, base: pl.DataFrame) -> list[tuple[int, CopySegment]]:
        """Where each segment goes in `base`: after the rows of the files before it."""
        if not self.segments:
            return []
        ranks = base["_source_file"].replace_strict(self.rank, default=None, return_dtype=pl.Int64)
        if ranks.null_count() or not ranks.is_sorted():  # never: validation keeps the order
            raise AssertionError("quarantine rows are not in file order; a bug in blinaetl")
        placed = [(int((ranks < self.rank[s.path]).sum()), self.rank[s.path], s)
                  for s in self.segments]  # fmt: skip
        return [(at, s) for at, _, s in sorted(placed, key=lambda p: (p[0], p[1]))]

    def _parts(self, base: pl.DataFrame) -> list[pl.DataFrame | CopySegment]:
        parts: list[pl.DataFrame | CopySegment] = []
        at = 0
        for pos, seg in self._positions(base):
            parts += [base.slice(at, pos - at), seg]
            at = pos
        return [*parts, base.slice(at)]

    def _expand(self, base: pl.DataFrame, expand: Any) -> pl.DataFrame:
        if not self.segments:
            return base
        frames = [p if isinstance(p, pl.DataFrame) else expand(p) for p in self._parts(base)]
        return pl.concat(frames, how="vertical_relaxed", rechunk=False)

    # --- load ---------------------------------------------------------------------------

    def rows_writer(self) -> QuarantineAppend:
        """Appends `quarantine.rows` in order (for `frames.write_frames`)."""
        return QuarantineAppend(self, rows=True)

    def failures_writer(self) -> QuarantineAppend:
        """Appends `quarantine.failures` in order (for `frames.write_frames`)."""
        return QuarantineAppend(self, rows=False)


@dataclass
class QuarantineAppend:
    """One quarantine table's append: the frames of the files read whole and the segments
    expanded in DuckDB, in order, on one connection (`frames.TableAppend`)."""

    quarantine: Quarantine
    rows: bool

    def estimated_size(self) -> int:
        q = self.quarantine
        base = q.rows_base if self.rows else q.failures_base
        # a copy's row or failure costs about what a row of the base frame does
        per_row = base.estimated_size() / base.height if base.height else 100
        n = q.row_count if self.rows else q.failure_count
        return int(per_row * n)

    def append_to(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        q = self.quarantine
        base = q.rows_base if self.rows else q.failures_base
        for part in q._parts(base):
            if isinstance(part, pl.DataFrame):
                write_frame(con, table, part)
            elif self.rows:
                part.append_rows(con, table, base.columns)
            else:
                part.append_failures(con, table, base.columns)
