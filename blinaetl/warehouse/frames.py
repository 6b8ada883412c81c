"""Writing polars frames into DuckDB tables (one table, or several side by side)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

import duckdb
import polars as pl

SLICE_ROWS = 250_000  # rows handed to DuckDB per INSERT


def write_frame(
    con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, replace: bool = False
) -> None:
    """Write a polars frame to `table`: `CREATE OR REPLACE TABLE` (replace) or `INSERT BY NAME`.

    The frame is handed to DuckDB as Arrow, which DuckDB scans on all its threads; a polars
    frame handed over as such is converted and scanned on one (about 2.5x slower at 600,000 rows).
    Appends go in slices of `SLICE_ROWS` rows, in order, each its own statement: DuckDB holds an
    uncommitted append in memory, so one INSERT of 1.7 million quarantined rows (a 100 MB
    delivery of copies) cost 1.6 GiB; in slices, 0.4 GiB.
    """
    if not replace and frame.height == 0:
        return
    if replace:
        _run(con, f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _frame", frame)
        return
    for start in range(0, frame.height, SLICE_ROWS):
        # one chunk per slice: the validated tables keep their files' chunks (about 100,000
        # rows); handed slices of several, the load peaked 2.29 GiB at 300,000 patients, 2.03
        # with one (the copy is of one slice at a time)
        piece = frame.slice(start, SLICE_ROWS)
        if piece.n_chunks() > 1:
            piece = piece.rechunk()
        _run(con, f"INSERT INTO {table} BY NAME SELECT * FROM _frame", piece)


def _run(con: duckdb.DuckDBPyConnection, sql: str, frame: pl.DataFrame) -> None:
    # Arrow at polars' newest compatibility level keeps text as string views, as polars holds
    # it, so handing a frame over copies no string; the default level rebuilds every text
    # column as offsets and bytes (0.37 CPU s for the staging tables of 100,000 patients, the
    # tables DuckDB makes from either are the same)
    con.register("_frame", frame.to_arrow(compat_level=pl.CompatLevel.newest()))
    try:
        con.execute(sql)
    finally:
        con.unregister("_frame")


class TableAppend(Protocol):
    """An append that is not one frame (e.g. `warehouse.quarantine.QuarantineAppend`)."""

    def estimated_size(self) -> int: ...

    def append_to(self, con: duckdb.DuckDBPyConnection, table: str) -> None: ...


def write_frames(
    con: duckdb.DuckDBPyConnection,
    writes: list[tuple[str, pl.DataFrame | TableAppend]],
    written: Callable[[str], None] | None = None,
) -> None:
    """Append each frame (or `TableAppend`) to its (existing) table, several tables at once.

    DuckDB compresses and writes one append mostly on one thread, so appends to different
    tables run side by side, each on its own cursor (one per core, the largest first): 1.7-1.8 s
    instead of 2.5 s for the staging tables of 100,000 patients on two cores. Each table's rows
    keep their order.

    `writes` is consumed: each item is taken off the list when its append starts, and
    `written(table)` is called once it is done, so a caller that lets go of its own reference
    there (the load stage releasing a validated table once staged) frees that frame while the
    other appends go on.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    writes.sort(key=lambda w: w[1].estimated_size())  # largest last: popped first
    lock = threading.Lock()

    def append_next() -> None:
        while True:
            with lock:
                if not writes:
                    return
                table, what = writes.pop()
            cursor = con.cursor()
            try:
                if isinstance(what, pl.DataFrame):
                    write_frame(cursor, table, what)
                else:
                    what.append_to(cursor, table)
            finally:
                cursor.close()
            del what
            if written is not None:
                written(table)

    workers = max(1, min(len(writes), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done in [pool.submit(append_next) for _ in range(workers)]:
            done.result()
