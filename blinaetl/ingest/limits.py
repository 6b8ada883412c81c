"""Limits on what one landing file may hold, against resource exhaustion (design principle 10).

One place for every limit: a file over a limit is rejected with a message naming the limit, the
file's figure and the fix, before it is parsed (or, for workbooks, before it is decompressed), so
a zip bomb or a runaway export cannot exhaust memory or disk. The defaults fit a registry extract
with room to spare; each can be changed for a run with an environment variable of the same name
in upper case, prefixed `BLINAETL_` (e.g. `BLINAETL_MAX_ROWS=10000000`).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

GIB = 1024**3


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 2 * GIB  # a landing file as delivered
    max_xlsx_uncompressed_bytes: int = 1 * GIB  # all parts of a workbook, decompressed
    max_xlsx_compression_ratio: int = 200  # decompressed / compressed size of the workbook
    max_rows: int = 5_000_000  # data rows of one file
    max_columns: int = 1_000  # columns of one file
    # not a limit: rows of a delimited text file read, mapped and de-duplicated at a time
    # (`landing._read_streamed`), so reading holds one chunk, not the whole file
    chunk_rows: int = 100_000

    @classmethod
    def from_env(cls) -> Limits:
        values = {}
        for f in fields(cls):
            raw = os.environ.get(f"BLINAETL_{f.name.upper()}")
            if raw:
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ValueError(
                        f"BLINAETL_{f.name.upper()}={raw!r} is not a whole number"
                    ) from None
        return cls(**values)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file read in chunks, so hashing a huge file does not hold it in memory."""
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def limits() -> Limits:
    """The limits in force (defaults, or the BLINAETL_MAX_* environment variables)."""
    return Limits.from_env()


class LimitExceeded(Exception):
    """A file is over a limit: the message says which, by how much, and the fix."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


def _fix(name: str) -> str:
    return (
        "split the extract into smaller files (e.g. by year), or, if the file is genuine, raise "
        f"the limit for the run with BLINAETL_{name.upper()} (blinaetl/ingest/limits.py)"
    )


def check_file_size(path: Path, rel: str, lim: Limits) -> None:
    size = path.stat().st_size
    if size > lim.max_file_bytes:
        raise LimitExceeded(
            f"{rel}: is {size:,} bytes, more than the limit of {lim.max_file_bytes:,} bytes "
            "(max_file_bytes); not read",
            _fix("max_file_bytes"),
        )


def check_workbook(path: Path, rel: str, lim: Limits) -> None:
    """Refuse a workbook whose parts decompress beyond the limits (zip bombs), before reading.

    The sizes are the ones the archive declares; a part that decompresses to more than it
    declares fails its check in the reader instead.
    """
    try:
        with zipfile.ZipFile(path) as book:
            infos = book.infolist()
    except (zipfile.BadZipFile, OSError):
        return  # not a zip at all: the workbook reader says so with its own message
    unpacked = sum(i.file_size for i in infos)
    packed = max(1, sum(i.compress_size for i in infos))
    if unpacked > lim.max_xlsx_uncompressed_bytes:
        raise LimitExceeded(
            f"{rel}: the workbook decompresses to {unpacked:,} bytes, more than the limit of "
            f"{lim.max_xlsx_uncompressed_bytes:,} bytes (max_xlsx_uncompressed_bytes); not read",
            _fix("max_xlsx_uncompressed_bytes"),
        )
    if unpacked / packed > lim.max_xlsx_compression_ratio:
        raise LimitExceeded(
            f"{rel}: the workbook decompresses {unpacked / packed:,.0f} times its size, more "
            f"than the limit of {lim.max_xlsx_compression_ratio} (max_xlsx_compression_ratio; "
            "a real workbook compresses 5-20 times); not read",
            "open the workbook in Excel and save it again, or export the sheet as CSV; "
            + _fix("max_xlsx_compression_ratio"),
        )


def check_shape(rows: int, columns: int, rel: str, lim: Limits, at_least: bool = False) -> None:
    """Refuse a table with more rows or columns than the limits (`at_least`: rows counted up to
    the limit plus one, so the message says 'more than')."""
    if columns > lim.max_columns:
        raise LimitExceeded(
            f"{rel}: has {columns:,} columns, more than the limit of {lim.max_columns:,} "
            "(max_columns); not read",
            _fix("max_columns"),
        )
    if rows > lim.max_rows:
        figure = (
            "more than the limit of" if at_least else f"{rows:,} data rows, more than the limit of"
        )
        raise LimitExceeded(
            f"{rel}: has {figure} {lim.max_rows:,} data rows (max_rows); not read",
            _fix("max_rows"),
        )
