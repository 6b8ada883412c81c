"""The chunks of the tables the ingest validates: every column cut where `_source_row`'s end.

A mapped file's columns share their chunks, but its constant columns (`site`, the lineage)
are scalar columns without chunks, and a column computed over a table has chunks of its own.
polars copies every column a query reads to align chunks that differ (0.69 GiB for the 1.8
million assessments rows at 300,000 patients), so the ingest's combined tables
(`ingest.landing.combine_frames`) and the validator's added columns (`validate.executor`)
are both cut here, in the chunks of the rows' `_source_row`. Polars only: the ingest combines
its tables before the validator (and pandera) is imported.
"""

from __future__ import annotations

import polars as pl


def row_chunk_lengths(frame: pl.DataFrame) -> list[int]:
    """The lengths of the chunks of the frame's `_source_row` (its height when it has none)."""
    if "_source_row" not in frame.columns or frame.height == 0:
        return [frame.height]
    return [len(c) for c in frame.get_column("_source_row").get_chunks()]


def in_chunks(frame: pl.DataFrame, lengths: list[int]) -> list[pl.DataFrame]:
    """`frame` cut into consecutive pieces of `lengths` rows, each column of a piece one chunk
    (a slice of one chunk, not a copy; a scalar column materialized)."""
    pieces, start = [], 0
    for n in lengths:
        piece = frame.slice(start, n)
        pieces.append(pl.DataFrame([piece.get_column(c).rechunk() for c in piece.columns]))
        start += n
    return pieces
