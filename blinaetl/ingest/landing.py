"""Ingest a landing folder: discover files, read them by their mapping, map to the contracts.

Every file is read as text first (no reader guesses types), rows keep the number a person sees
when opening the file, values are renamed, recoded, parsed and unit-converted by the source
mapping, and the row as delivered is kept for the quarantine. A file that cannot be read gets a
file-level status and a message saying what is wrong and how to fix it; the other files go on.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import fnmatch
import io
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from blinaetl.ingest import readers, rootcause
from blinaetl.ingest.limits import (
    LimitExceeded,
    Limits,
    check_file_size,
    check_shape,
    check_workbook,
    file_sha256,
    limits,
)
from blinaetl.ingest.redcap import RedcapProblem, apply_redcap
from blinaetl.ingest.shape import ShapeProblem, shape
from blinaetl.ingest.sources import FileMapping, SourceMapping, load_sources, match
from blinaetl.privacy import PatientKeys, patient_keys
from blinaetl.validate.chunks import in_chunks, row_chunk_lengths
from blinaetl.validate.context import Context
from blinaetl.validate.contracts import (
    FAILURE_COLUMNS,
    LINEAGE_COLUMNS,
    POLARS_TYPES,
    Contract,
    FieldSpec,
    in_validation_order,
    load_contracts,
)
from blinaetl.warehouse.quarantine import CopySegment, Quarantine

if TYPE_CHECKING:
    from blinaetl.ingest.cache import FileCache, GroupEntry
    from blinaetl.validate.executor import ValidationOutcome

RAW_PREFIX = "__raw__"
TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}
EXTRACT_DATE_RE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")
# part K of N of a split extract, just before the extension: `treatments_20260901_part2of3.xlsx`
EXTRACT_PART_RE = re.compile(r"_part(\d+)of(\d+)(?=\.[^.]*$)")


class FileProblem(Exception):
    """A whole file cannot be loaded: `status` and a message with the fix."""

    def __init__(self, status: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.status, self.message, self.fix = status, message, fix


@dataclass
class MappedFile:
    path: str
    sha256: str
    source: SourceMapping
    mapping: FileMapping
    frame: pl.DataFrame  # canonical typed + raw columns + lineage (no patient_key yet)
    raw: pl.DataFrame  # the delivered columns as read (text) and `_source_row`, for the quarantine
    note: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # field -> label the file gave its column
    # exact copies of an earlier row of a streamed file, not held as rows: `_source_row` and
    # `_content_hash` (the first row with that hash is in `frame`); None for files read whole
    copies: pl.DataFrame | None = None


# --- reading --------------------------------------------------------------------------------


# byte-order marks, longest first (the UTF-32 LE mark begins with the UTF-16 LE one)
BOMS: tuple[tuple[bytes, str, str], ...] = (
    (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32 BE"),
    (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32 LE"),
    (b"\xef\xbb\xbf", "utf-8", "UTF-8"),
    (b"\xfe\xff", "utf-16-be", "UTF-16 BE"),
    (b"\xff\xfe", "utf-16-le", "UTF-16 LE"),
)
# first bytes of files that are never delimited text
BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or an Office document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls/.doc)"),
    (b"PAR1", "a Parquet file"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)
WIDE_ENCODINGS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")


def _norm_encoding(name: str) -> str:
    return (
        name.strip()
        .lower()
        .replace("_", "-")
        .replace("utf8", "utf-8")
        .replace("utf16", "utf-16")
        .replace("utf32", "utf-32")
    )


def bom_encoding(data: bytes) -> tuple[str, str, int] | None:
    """(codec, name, BOM length) of the byte-order mark the data starts with, if any."""
    for bom, codec, name in BOMS:
        if data.startswith(bom):
            return codec, name, len(bom)
    return None


def _binary_kind(data: bytes) -> str | None:
    """What a file without a byte-order mark is when it is not text (None when it is text).

    Known signatures (images, archives, workbooks, Parquet) are binary. NUL bytes on more than
    one line and more than a tenth of the lines of the first 8,000 bytes mean binary content or
    UTF-16/32 text without a byte-order mark (named when the NULs alternate like UTF-16's); a NUL
    on a single line is a defect of that line, which is quarantined (`_nul_line`).
    """
    for magic, kind in BINARY_MAGIC:
        if data.startswith(magic):
            return kind
    head = data[:8000]
    if b"\x00" not in head:
        return None
    lines = head.split(b"\n")
    with_nul = sum(b"\x00" in line for line in lines)
    if with_nul <= max(1, len(lines) // 10):
        return None
    even, odd = head[0::2].count(0), head[1::2].count(0)
    half = len(head) // 2
    if odd > 0.4 * half and even < 0.05 * half:
        return "UTF-16 LE text without a byte-order mark (set 'encoding: utf-16-le')"
    if even > 0.4 * half and odd < 0.05 * half:
        return "UTF-16 BE text without a byte-order mark (set 'encoding: utf-16-be')"
    return "binary content"


def _guess_encoding(data: bytes) -> str:
    """A plain-words guess at what an undecodable file is, for the message."""
    try:
        data.decode("utf-8")
        return "the bytes are valid UTF-8"
    except UnicodeDecodeError:
        pass
    if any(0x80 <= b <= 0x9F for b in data):
        return "the bytes look like cp1252 (Windows) text"
    return "the bytes look like latin-1 (ISO-8859-1) or another 8-bit encoding"


def _decode(data: bytes, encoding: str, rel: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        if encoding in WIDE_ENCODINGS:
            line = data[: exc.start].decode(encoding, errors="replace").count("\n") + 1
        else:
            line = data[: exc.start].count(b"\n") + 1
        raise FileProblem(
            "rejected",
            f"{rel}: line {line} has bytes that are not valid {encoding} ({_guess_encoding(data)})",
            f"save the file as {encoding}, or set 'encoding' in the source mapping to the "
            "file's real encoding (e.g. latin-1 or cp1252)",
        ) from exc


def decode_text(data: bytes, declared: str, rel: str) -> tuple[str, str]:
    """(text, note): the file decoded by its byte-order mark, else by the mapping's encoding.

    A byte-order mark (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE) wins over the declared encoding and is
    noted when they disagree; without one, the declared encoding is used. Content that is not
    text is rejected naming what it looks like.
    """
    declared_n = _norm_encoding(declared)
    found = bom_encoding(data)
    if found:
        codec, name, size = found
        text = _decode(data[size:], codec, rel)
        family = declared_n.replace("-le", "").replace("-be", "").replace("-sig", "")
        note = ""
        if not codec.startswith(family) and not (codec == "utf-8" and declared_n == "utf-8"):
            note = (
                f"the file starts with a {name} byte-order mark and was read as {name}, not as "
                f"{declared} as the mapping says; set 'encoding' in the mapping to match"
            )
        return text, note
    if declared_n not in WIDE_ENCODINGS:
        kind = _binary_kind(data)
        if kind:
            raise FileProblem(
                "rejected",
                f"{rel}: is not a text file in {declared} ({kind} in a .{rel.rsplit('.', 1)[-1]} file)",
                "export the table again as delimited text, set 'encoding' in the source mapping "
                "to the file's real encoding, or fix the format in the source mapping",
            )
    return _decode(data, declared_n, rel), ""


def _read_text_table(
    data: bytes, fm: FileMapping, rel: str, lim: Limits | None = None
) -> pl.DataFrame:
    """A delimited text file held whole: every column as text, `_source_row` (the record's
    number as a person opening the file counts it), `_nul_line`, `_read_note`, `_truncated`."""
    lim = lim or limits()
    text, encoding_note, nul_lines = _decode_table_text(data, fm, rel, lim)
    start = _header_offset(text, fm, rel)
    # utf-8 without a byte-order mark and nothing to skip: the bytes are parsed as delivered
    untouched = (
        start == 0
        and _norm_encoding(fm.encoding) == "utf-8"
        and not nul_lines
        and bom_encoding(data) is None
    )
    frame = _parse_delimited(data if untouched else text[start:].encode(), text, fm, rel)
    frame = frame.with_columns(
        (pl.int_range(pl.len()) + fm.header_row + 1).cast(pl.Int64).alias("_source_row")
    )
    frame = frame.with_columns(
        pl.col("_source_row").is_in(nul_lines).alias("_nul_line"),
        pl.lit(encoding_note or None, pl.Utf8).alias("_read_note"),
    )
    # a truncated last line: fewer fields than the header and no closing newline
    if frame.height and not text.endswith(("\n", "\r")):
        n_fields = _field_count(text[text.rfind("\n") + 1 :], fm.delimiter)
        if n_fields < len([c for c in frame.columns if not c.startswith("_")]):
            frame = frame.with_columns(
                (pl.int_range(pl.len()) == frame.height - 1).alias("_truncated")
            )
    return frame


def _decode_table_text(
    data: bytes, fm: FileMapping, rel: str, lim: Limits
) -> tuple[str, str, list[int]]:
    """(text, encoding note, numbers of the lines holding NUL characters) of a delimited file,
    after the row and column limits are checked; NULs are replaced so the rest can be read."""
    text, encoding_note = decode_text(data, fm.encoding, rel)
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    header = text[: text.find("\n")] if "\n" in text else text
    check_shape(max(0, lines - fm.header_row), header.count(fm.delimiter) + 1, rel, lim)
    if text.startswith("\ufeff"):
        text = text[1:]
    # NUL characters: the lines holding them are quarantined (line numbers kept), the rest read
    nul_lines: list[int] = []
    if "\x00" in text:
        pos = text.find("\x00")
        while pos >= 0:
            line = text.count("\n", 0, pos) + 1
            if not nul_lines or nul_lines[-1] != line:
                nul_lines.append(line)
            pos = text.find("\x00", pos + 1)
        text = text.replace("\x00", "\ufffd")
    return text, encoding_note, nul_lines


def _header_offset(text: str, fm: FileMapping, rel: str) -> int:
    """Where the header line (`header_row`) starts; the lines above it are skipped."""
    start = 0
    for _ in range(fm.header_row - 1):
        newline = text.find("\n", start)
        start = len(text) if newline < 0 else newline + 1
    first_end = text.find("\n", start)
    if not text[start : len(text) if first_end < 0 else first_end].strip():
        raise FileProblem(
            "rejected",
            f"{rel}: is empty (no header on line {fm.header_row})",
            "send the extract again with its header row and data",
        )
    return start


def _parse_delimited(body: bytes, text: str, fm: FileMapping, rel: str) -> pl.DataFrame:
    """Every column of the body as text; a parse failure names the header line when the
    mapping's `header_row` looks wrong, else the delimiter and quoting."""
    try:
        return pl.read_csv(
            io.BytesIO(body),
            separator=fm.delimiter,
            infer_schema=False,
            has_header=True,
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError as exc:
        header_line = _find_header_line(text.split("\n", 30)[:30], fm)
        if header_line is not None and header_line != fm.header_row:
            raise FileProblem(
                "rejected",
                f"{rel}: the column names are on line {header_line}, not on line {fm.header_row} "
                "where the mapping expects them",
                f"set 'header_row: {header_line}' in the source mapping, or remove the lines above the header",
            ) from exc
        raise FileProblem(
            "rejected",
            f"{rel}: cannot be parsed as {fm.format.upper()} with delimiter {fm.delimiter!r} "
            f"({str(exc).splitlines()[0][:160]})",
            "check the delimiter and quoting in the source mapping, or re-export the file",
        ) from exc


def _field_count(line: str, sep: str) -> int:
    """Fields on one delimited line (quotes respected)."""
    rows = pl.read_csv(
        io.BytesIO(line.encode()), has_header=False, separator=sep, infer_schema=False
    ).iter_rows()
    return len(next(iter(rows), ()))


def _find_header_line(lines: list[str], fm: FileMapping) -> int | None:
    """1-based number of the first line holding most of the mapped column names."""
    wanted = set(fm.columns.values())
    for number, line in enumerate(lines, start=1):
        cells = {c.strip().strip('"') for c in line.split(fm.delimiter)}
        if wanted and len(cells & wanted) >= max(1, len(wanted) // 2):
            return number
    return None


def _read_xlsx(path: Path, fm: FileMapping, rel: str, lim: Limits | None = None) -> pl.DataFrame:
    lim = lim or limits()
    import fastexcel

    try:
        reader = fastexcel.read_excel(str(path))
    except Exception as exc:  # fastexcel raises its own error types for unreadable workbooks
        raise FileProblem(
            "rejected",
            f"{rel}: is not a readable Excel workbook ({type(exc).__name__})",
            "open it in Excel and save it again as .xlsx, or fix the format in the source mapping",
        ) from exc
    sheets = reader.sheet_names
    if fm.sheet is None and len(sheets) > 1:
        raise FileProblem(
            "rejected",
            f"{rel}: has {len(sheets)} sheets ({', '.join(sheets)}) and the mapping does not say which to read",
            "set 'sheet' in the source mapping to the sheet holding the data",
        )
    sheet = fm.sheet or sheets[0]
    if sheet not in sheets:
        raise FileProblem(
            "rejected",
            f"{rel}: has no sheet named '{sheet}' (sheets: {', '.join(sheets)})",
            "correct 'sheet' in the source mapping or the sheet name in the workbook",
        )
    try:
        loaded = reader.load_sheet(
            sheet, header_row=fm.header_row - 1, dtypes="string", n_rows=lim.max_rows + 1
        )
    except Exception as exc:
        raise FileProblem(
            "rejected",
            f"{rel}: sheet '{sheet}' cannot be read from row {fm.header_row} ({type(exc).__name__})",
            "check 'header_row' in the source mapping",
        ) from exc
    frame = loaded.to_polars()
    check_shape(frame.height, frame.width, rel, lim, at_least=frame.height > lim.max_rows)
    frame = frame.with_columns([pl.col(c).cast(pl.Utf8) for c in frame.columns])
    return frame.with_columns(
        (pl.int_range(pl.len()) + fm.header_row + 1).cast(pl.Int64).alias("_source_row")
    )


def _read_parquet(path: Path, rel: str) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several error types for corrupt files
        raise FileProblem(
            "rejected",
            f"{rel}: is not a readable Parquet file ({type(exc).__name__})",
            "export the file again, or fix the format in the source mapping",
        ) from exc
    frame = frame.with_columns([pl.col(c).cast(pl.Utf8) for c in frame.columns])
    return frame.with_columns((pl.int_range(pl.len()) + 1).cast(pl.Int64).alias("_source_row"))


def read_raw(path: Path, fm: FileMapping, rel: str, labels: dict | None = None) -> pl.DataFrame:
    """All delivered columns as text (empty -> null) plus `_source_row`.

    `labels`, when given, receives the variable labels a SAS, SPSS, Stata or Dataset-JSON file
    carries (column -> label). The limits of `blinaetl/ingest/limits.py` (file size,
    decompressed workbook size, rows, columns) are checked before the file is parsed.
    """
    try:
        return _read_raw(path, fm, rel, limits(), labels)
    except LimitExceeded as over:
        raise FileProblem("rejected", over.message, over.fix) from over


def _read_raw(
    path: Path, fm: FileMapping, rel: str, lim: Limits, labels: dict | None
) -> pl.DataFrame:
    check_file_size(path, rel, lim)
    if fm.format == "xlsx":
        check_workbook(path, rel, lim)
    elif fm.format == "parquet":
        try:
            width = len(pl.read_parquet_schema(path))
            height = pl.scan_parquet(path).select(pl.len()).collect().item()
        except Exception:  # unreadable: _read_parquet says so with its own message
            width = height = 0
        check_shape(height, width, rel, lim)
    data = path.read_bytes()
    if not data.strip():
        raise FileProblem("rejected", f"{rel}: is empty (0 data bytes)", "send the extract again")
    if fm.format in readers.STAT_FORMATS or fm.format in readers.JSON_FORMATS:
        try:
            table = (
                readers.read_dataset_json(path, rel, fm.date_format)
                if fm.format in readers.JSON_FORMATS
                else readers.read_statistical(
                    path, fm.format, rel, fm.date_format, fm.encoding if fm.encoding_set else None
                )
            )
        except readers.ReaderError as problem:
            raise FileProblem("rejected", problem.message, problem.fix) from problem
        frame = table.frame
        check_shape(frame.height, frame.width, rel, lim)
        if labels is not None:
            labels.update(table.labels)
    elif fm.format in ("csv", "tsv"):
        frame = _read_text_table(data, fm, rel, lim)
    elif fm.format == "xlsx":
        frame = _read_xlsx(path, fm, rel, lim)
    else:
        frame = _read_parquet(path, rel)
    data_cols = [c for c in frame.columns if not c.startswith("_")]
    return frame.with_columns(
        [pl.col(c).str.strip_chars().replace("", None).alias(c) for c in data_cols]
    )


# --- mapping --------------------------------------------------------------------------------


def _norm(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_chars().str.to_lowercase().str.replace_all(r"\s+", " ")


def map_frame(
    raw: pl.DataFrame,
    source: SourceMapping,
    fm: FileMapping,
    contract: Contract,
    rel: str,
    partial_dates: str = "first",
) -> tuple[pl.DataFrame, str]:
    """Canonical typed columns + `__raw__<field>` text + `_content_hash`; returns (frame, note).

    `_content_hash` hashes the delivered cells of the row (duplicate rows, stable query ids).
    """
    raw, fm, used = _compose_columns(raw, fm, source, rel)
    delivered = [c for c in raw.columns if not c.startswith("_")]
    mapped_sources = _mapped_source_columns(fm, used)
    check_required_columns(delivered, mapped_sources, source, fm, contract, rel)
    notes = describe_unmapped_columns(delivered, mapped_sources, fm)
    check_derived_date_columns(delivered, source, fm, rel)
    frame = raw.with_columns(_raw_text_exprs(delivered, source, fm, contract))
    frame = frame.with_columns(
        [
            *(_typed_expr(f, fm, partial_dates) for f in contract.fields),
            pl.concat_str([pl.col(c).fill_null("\x00") for c in delivered], separator="\x1f")
            .hash(7)
            .alias("_content_hash"),
            # ",field,field," of the fields the site did not collect (read by the completeness checks)
            pl.lit(
                "," + ",".join(fm.not_collected) + "," if fm.not_collected else None, pl.Utf8
            ).alias("_not_collected"),
        ]
    )
    return frame, "; ".join(notes)


def _derived_date_sources(fm: FileMapping) -> set[str]:
    """The day-count and anchor columns the mapping's `derived_dates` read."""
    return {
        c
        for d in fm.derived_dates.values()
        for c in (d["days"], d["anchor"], d.get("date"))
        if c is not None
    }


def _mapped_source_columns(fm: FileMapping, used: set[str]) -> set[str]:
    """Every delivered column the mapping reads (mapped, composed, derived-date, site, and the
    columns its `where`, `lookup` and `recode` read)."""
    mapped_sources = set(fm.columns.values()) | used
    mapped_sources |= _derived_date_sources(fm)
    mapped_sources |= {c for c, _, _ in fm.where} | set(fm.recode)
    mapped_sources |= {c for spec in fm.lookup for c in spec["by"]}
    if fm.site_from:
        mapped_sources.add(fm.site_from["column"])
    return mapped_sources


def check_required_columns(
    delivered: list[str],
    mapped_sources: set[str],
    source: SourceMapping,
    fm: FileMapping,
    contract: Contract,
    rel: str,
) -> None:
    """Reject the file when a required field's mapped column is not delivered."""
    missing = [
        f.name
        for f in contract.fields
        if f.name in fm.columns and fm.columns[f.name] not in delivered and f.required
    ]
    if not missing:
        return
    expected = ", ".join(f"'{fm.columns[m]}'" for m in missing)
    hint = ""
    if len(set(delivered) & mapped_sources) == 0:
        hint = (
            f" None of the mapped columns is on row {fm.header_row}: if the header is on "
            "another row, set 'header_row' in the source mapping."
        )
    raise FileProblem(
        "rejected",
        f"{rel}: required column(s) {expected} not found (for {', '.join(missing)}).{hint}",
        "add the columns to the extract, or correct 'columns' in the source mapping "
        f"({source.path.name})",
    )


def describe_unmapped_columns(
    delivered: list[str], mapped_sources: set[str], fm: FileMapping
) -> list[str]:
    """Notes on delivered columns the mapping ignores and mapped columns not delivered."""
    notes = []
    extra = sorted(set(delivered) - mapped_sources)
    if extra:
        notes.append(
            f"{len(extra)} column(s) not in the mapping were ignored: {', '.join(extra)}; add them "
            "to the mapping if they are needed"
        )
    absent_optional = [f for f, c in fm.columns.items() if c not in delivered]
    if absent_optional:
        notes.append(f"optional column(s) not delivered: {', '.join(absent_optional)}")
    return notes


def check_derived_date_columns(
    delivered: list[str], source: SourceMapping, fm: FileMapping, rel: str
) -> None:
    """Reject the file when a column named in `derived_dates` is not delivered."""
    derived_missing = sorted(_derived_date_sources(fm) - set(delivered))
    if derived_missing:
        raise FileProblem(
            "rejected",
            f"{rel}: column(s) {', '.join(repr(c) for c in derived_missing)} named in "
            "'derived_dates' are not in the file",
            f"correct 'derived_dates' in the source mapping ({source.path.name}) or the header",
        )


def _raw_text_exprs(
    delivered: list[str], source: SourceMapping, fm: FileMapping, contract: Contract
) -> list[pl.Expr]:
    """Per contract field, its delivered text (code lists applied) as `__raw__<field>`."""
    exprs: list[pl.Expr] = []
    for f in contract.fields:
        src = fm.columns.get(f.name)
        if f.name in fm.not_collected:
            text = pl.lit(None, pl.Utf8)  # the site never collected it: NULL, declared
        elif f.name in fm.derived_dates:
            text = _derived_date_text(fm.derived_dates[f.name], fm.date_format)
        elif src is not None and src in delivered:
            text = pl.col(src)
        elif f.name in fm.constants:
            text = pl.lit(str(fm.constants[f.name]))
        elif f.name == "patient_site" and source.site:
            text = pl.lit(source.site)
        else:
            text = pl.lit(None, pl.Utf8)
        codes = {k.strip().lower(): v for k, v in fm.codes.get(f.name, {}).items()}
        if f.allowed:
            codes = {**{a.lower(): a for a in f.allowed}, **codes}
        if codes:
            text = _norm(text).replace_strict(codes, default=text, return_dtype=pl.Utf8)
        exprs.append(text.alias(RAW_PREFIX + f.name))
    return exprs


def _typed_expr(f: FieldSpec, fm: FileMapping, partial_dates: str) -> pl.Expr:
    """A field's typed value parsed from its `__raw__<field>` text."""
    col = pl.col(RAW_PREFIX + f.name)
    if f.type == "string":
        value = col
    elif f.name in fm.derived_dates:
        value = _derived_date(fm.derived_dates[f.name], fm.date_format, partial_dates)
    elif f.type == "date" and fm.date_format == ISO8601:
        value = iso8601_date(col, partial_dates)
    elif f.type == "date":
        value = col.str.strptime(pl.Date, fm.date_format, strict=False)
    elif f.type == "int":
        num = col.str.replace_all(",", "").cast(pl.Float64, strict=False)
        # whole and within BIGINT ("inf" and 1e30 parse as floats but are no whole number)
        whole = num.is_finite() & (num == num.round(0)) & (num.abs() < 2.0**62)
        value = pl.when(whole).then(num).otherwise(None).cast(pl.Int64)
    elif f.type == "float":
        value = col.str.replace_all(",", "").cast(pl.Float64, strict=False)
        if f.name in fm.units:
            value = value * fm.units[f.name]
    else:
        low = _norm(col)
        value = (
            pl.when(low.is_in(TRUE_WORDS))
            .then(True)
            .when(low.is_in(FALSE_WORDS))
            .then(False)
            .otherwise(None)
        )
    return value.cast(POLARS_TYPES[f.type]).alias(f.name)


ISO8601 = "iso8601"
PARTIAL_RE = r"^\d{4}(-\d{2})?$"
PARTIAL_RULES = ("first", "middle", "last", "none")


def iso8601_date(col: pl.Expr, rule: str) -> pl.Expr:
    """An ISO 8601 date or datetime (as SDTM --DTC): the date part; a partial date (YYYY-MM,
    YYYY) imputed by `rule` (definition partial_date_imputation): first day of the missing
    period, its middle (the 15th; 1 July), its last day, or none (left unreadable)."""
    full = col.str.extract(r"^(\d{4}-\d{2}-\d{2})(?:T[\d:.]*)?$", 1).str.strptime(
        pl.Date, "%Y-%m-%d", strict=False
    )
    month = col.str.extract(r"^(\d{4}-\d{2})$", 1)
    year = col.str.extract(r"^(\d{4})$", 1)
    if rule == "none":
        return full
    day = {"first": "01", "middle": "15", "last": "01"}[rule]
    in_year = {"first": "-01-01", "middle": "-07-01", "last": "-12-31"}[rule]
    by_month = (month + "-" + day).str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    if rule == "last":
        by_month = by_month.dt.month_end()
    by_year = (year + in_year).str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    return pl.coalesce(full, by_month, by_year)


TEMPLATE_RE = re.compile(r"\{([^{}]+)\}")


def _compose_columns(
    raw: pl.DataFrame, fm: FileMapping, source: SourceMapping, rel: str
) -> tuple[pl.DataFrame, FileMapping, set[str]]:
    """`columns` values with {COLUMN} in them are composed from the row's columns, e.g.
    `accession: "{USUBJID}-{TUSEQ}"`; a row missing any of them gets no value, except a part
    written `{COLUMN?}` (optional: empty when missing, the spaces around it closed up)."""
    templated = {f: c for f, c in fm.columns.items() if TEMPLATE_RE.search(c)}
    if not templated:
        return raw, fm, set()
    used: set[str] = set()
    exprs, columns = [], dict(fm.columns)
    for name, template in templated.items():
        parts = TEMPLATE_RE.findall(template)
        refs = [c.removesuffix("?") for c in parts]
        missing = [c for c in refs if c not in raw.columns]
        if missing:
            raise FileProblem(
                "rejected",
                f"{rel}: column(s) {', '.join(repr(c) for c in missing)} named in "
                f"'columns.{name}' ({template}) are not in the file",
                f"correct 'columns' in the source mapping ({source.path.name}) or the header",
            )
        used.update(refs)
        pattern = TEMPLATE_RE.sub("{}", template.replace("{}", ""))
        composed = f"{name} (composed)"
        values = [
            pl.col(c).fill_null("") if part.endswith("?") else pl.col(c)
            for part, c in zip(parts, refs, strict=True)
        ]
        expr = pl.format(pattern, *values)
        if any(part.endswith("?") for part in parts):
            expr = expr.str.replace_all(r" {2,}", " ").str.replace_all(r" ([.,;:])", "$1")
            expr = expr.str.strip_chars(" ")
        exprs.append(expr.alias(composed))
        columns[name] = composed
    return raw.with_columns(exprs), dataclasses.replace(fm, columns=columns), used


def _study_day_date(spec: dict, date_format: str) -> pl.Expr:
    """anchor date + day offset; with `day_one` (SDTM study days) day 1 is the anchor, no day 0."""
    fmt = spec["anchor_format"] or date_format
    anchor = (
        iso8601_date(pl.col(spec["anchor"]), "none")  # an anchor is never imputed
        if fmt == ISO8601
        else pl.col(spec["anchor"]).str.strptime(pl.Date, fmt, strict=False)
    )
    num = pl.col(spec["days"]).str.replace_all(",", "").cast(pl.Float64, strict=False)
    whole = num.is_finite() & (num == num.round(0)) & (num.abs() < 1e6)
    days = pl.when(whole).then(num).otherwise(None).cast(pl.Int64)
    if spec["day_one"]:
        days = pl.when(days > 0).then(days - 1).when(days < 0).then(days).otherwise(None)
    return anchor + pl.duration(days=days)


def _complete_date(col: pl.Expr, date_format: str) -> pl.Expr:
    """A delivered date that is complete (an ISO 8601 partial date is not)."""
    if date_format == ISO8601:
        return iso8601_date(col, "none")
    return col.str.strptime(pl.Date, date_format, strict=False)


def _derived_date(spec: dict, date_format: str, partial_dates: str = "first") -> pl.Expr:
    """The study-day date; with `date` (e.g. SDTM --DTC beside --DY) the delivered date where it
    is complete, the study-day date where it is missing or partial, and last the partial date
    completed by the rule of partial_date_imputation (recorded in date_imputations)."""
    derived = _study_day_date(spec, date_format)
    if not spec.get("date"):
        return derived
    delivered = pl.col(spec["date"])
    parts = [_complete_date(delivered, date_format), derived]
    if date_format == ISO8601:
        parts.append(iso8601_date(delivered, partial_dates))
    return pl.coalesce(parts)


def _derived_date_text(spec: dict, date_format: str) -> pl.Expr:
    """What a derived date shows as delivered: the day offset, or with `date` the delivered date
    unless the study day was used (then `DAYS=value`, never mistaken for a partial date)."""
    days = pl.col(spec["days"])
    if not spec.get("date"):
        return days
    delivered = pl.col(spec["date"])
    return (
        pl.when(_complete_date(delivered, date_format).is_not_null())
        .then(delivered)
        .when(_study_day_date(spec, date_format).is_not_null())
        .then(pl.lit(f"{spec['days']}=") + days)
        .otherwise(pl.coalesce(delivered, days))
    )


def _read_lookups(
    path: Path, rel: str, fm: FileMapping, source: SourceMapping
) -> list[tuple[str, pl.DataFrame]]:
    """The files an entry's `lookup` names: the newest match of each glob in the landing."""
    if not fm.lookup:
        return []
    from blinaetl.ingest.redcap import _newest

    real_rel = rel.split("#", 1)[0]
    landing = Path(str(path)[: -len(real_rel)]) if str(path).endswith(real_rel) else path.parent
    out = []
    for i, spec in enumerate(fm.lookup):
        found = _newest(landing, spec["file"])
        if found is None:
            raise FileProblem(
                "rejected",
                f"{rel}: no landing file matches 'lookup[{i}].file' ({spec['file']})",
                f"deliver that file too, or correct 'lookup' in {source.path.name}",
            )
        other = FileMapping(
            table=fm.table,
            glob=spec["file"],
            format=spec["format"],
            encoding=spec["encoding"],
            delimiter=spec["delimiter"],
            date_format=fm.date_format,
        )
        out.append((found[1], read_raw(found[0], other, found[1])))
    return out


def _site_expr(frame: pl.DataFrame, source: SourceMapping, fm: FileMapping, rel: str) -> pl.Expr:
    """The rows' site: from the mapping's `site`, or from a column through `site_from.codes`."""
    if fm.site_from is None:
        return pl.col("patient_site") if source.kind == "flow" else pl.lit(source.site)
    column, codes = fm.site_from["column"], fm.site_from["codes"]
    fix = f"correct 'site_from' in the source mapping ({source.path.name})"
    if column not in frame.columns:
        raise FileProblem(
            "rejected", f"{rel}: column '{column}' named in 'site_from' is not in the file", fix
        )
    site = pl.col(column)
    if fm.site_from.get("pattern"):
        site = site.str.extract(fm.site_from["pattern"], 1)
    values = frame.select(site.alias("_site"))["_site"]
    if values.null_count():
        rows = frame.filter(values.is_null())["_source_row"].head(5).to_list()
        raise FileProblem(
            "rejected",
            f"{rel}: {values.null_count()} row(s) have no site in '{column}'"
            + (" matching 'site_from.pattern'" if fm.site_from.get("pattern") else "")
            + " (rows "
            f"{', '.join(map(str, rows))})",
            "fill the site code in the extract, or leave those rows out with 'where' in "
            f"{source.path.name}",
        )
    if codes is None:
        return site
    unknown = sorted(set(values.unique().to_list()) - set(codes))
    if unknown:
        raise FileProblem(
            "rejected",
            f"{rel}: site code(s) {', '.join(unknown[:10])} in '{column}' are not in "
            "'site_from.codes'",
            f"add them to 'site_from.codes' in {source.path.name} (or leave their rows out "
            "with 'where')",
        )
    return site.replace_strict(codes, return_dtype=pl.Utf8)


def _extract_date(rel: str):
    m = EXTRACT_DATE_RE.search(Path(rel).name)
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def read_and_map(
    path: Path,
    rel: str,
    source: SourceMapping,
    fm: FileMapping,
    contract: Contract,
    run_id: str,
    partial_dates: str = "first",
) -> MappedFile:
    streamed = _read_streamed(path, rel, source, fm, contract, run_id, partial_dates)
    if streamed is not None:
        return streamed
    sha = file_sha256(path)
    labels: dict[str, str] = {}
    raw = read_raw(path, fm, rel, labels)
    shape_notes: list[str] = []
    delivered_view = raw
    if fm.redcap:
        real_rel = rel.split("#", 1)[0]
        landing = Path(str(path)[: -len(real_rel)]) if str(path).endswith(real_rel) else path.parent
        try:
            raw, delivered_view, shape_notes = apply_redcap(raw, fm, source, landing, rel)
        except RedcapProblem as problem:
            raise FileProblem("rejected", problem.message, problem.fix) from problem
    if fm.shaped:
        try:
            shaped = shape(raw, fm, source, rel, _read_lookups(path, rel, fm, source))
        except ShapeProblem as problem:
            raise FileProblem("rejected", problem.message, problem.fix) from problem
        raw, shape_notes = shaped.frame, [*shape_notes, *shaped.notes]
        if not fm.redcap:
            delivered_view = shaped.raw
    frame, note = map_frame(raw, source, fm, contract, rel, partial_dates)
    note = "; ".join([*shape_notes, *([note] if note else [])])
    frame = _with_lineage(frame, source, fm, rel, sha, run_id)
    if "_read_note" in raw.columns and raw.height and raw["_read_note"][0]:
        note = f"{raw['_read_note'][0]}; {note}" if note else raw["_read_note"][0]
    delivered = [c for c in delivered_view.columns if not c.startswith("_")]
    return MappedFile(
        rel,
        sha,
        source,
        fm,
        frame.select(_kept_columns(contract)),
        delivered_view.select(*delivered, "_source_row"),
        note,
        {f: labels[c] for f, c in fm.columns.items() if c in labels},
    )


def _with_lineage(
    frame: pl.DataFrame, source: SourceMapping, fm: FileMapping, rel: str, sha: str, run_id: str
) -> pl.DataFrame:
    """The mapped frame with its site and the lineage of every row (source, file, hash, dates)."""
    site_expr = _site_expr(frame, source, fm, rel)
    frame = frame.with_columns(
        site_expr.cast(pl.Utf8).alias("site"),
        pl.lit(source.source).alias("_source_id"),
        pl.lit(rel).alias("_source_file"),
        pl.lit(sha).alias("_file_sha256"),
        pl.lit(_extract_date(rel), pl.Date).alias("_extract_date"),
        pl.lit(run_id).alias("_run_id"),
    )
    if "_truncated" not in frame.columns:
        frame = frame.with_columns(pl.lit(False).alias("_truncated"))
    if "_nul_line" not in frame.columns:
        frame = frame.with_columns(pl.lit(False).alias("_nul_line"))
    return frame


def _kept_columns(contract: Contract) -> list[str]:
    """The columns of a mapped file's frame: typed fields, their delivered text, lineage."""
    return [
        *contract.field_names,
        *[RAW_PREFIX + f for f in contract.field_names],
        "site",
        "_source_id",
        "_source_file",
        "_source_row",
        "_file_sha256",
        "_extract_date",
        "_run_id",
        "_content_hash",
        "_truncated",
        "_not_collected",
        "_nul_line",
    ]


# --- streaming: delimited text read in chunks, exact copies kept as row numbers -------------

SCAN_BLOCK = 8 * 1024 * 1024  # bytes read at a time by the pre-pass over a text file
TAIL_BYTES = 1024 * 1024  # the end of the file kept to look at its last line


@dataclass(frozen=True)
class TextScan:
    """What the pre-pass over a plain UTF-8 delimited file found (one block in memory at a time)."""

    truncated_fields: int | None  # fields on the last line when it has no closing newline


def scan_plain_text(path: Path, fm: FileMapping, rel: str, lim: Limits) -> TextScan | None:
    """Check a delimited text file block by block, as `_read_text_table` checks it whole.

    Returns None when the file needs the whole-file reader, which handles (and words the
    message for) everything but the plain case: a byte-order mark, an encoding other than
    UTF-8, bytes that are not valid UTF-8, NUL bytes, a header row other than 1, an empty or
    binary file, a REDCap export, a shaped entry. Raises `LimitExceeded` over the row or column
    limit, before anything is parsed.
    """
    plain = fm.format in ("csv", "tsv") and fm.header_row == 1
    plain = plain and _norm_encoding(fm.encoding) == "utf-8"
    if not plain or fm.redcap or fm.shaped or fm.lookup:
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines, first, tail, size = 0, b"", b"", 0
    try:
        with open(path, "rb") as handle:
            while block := handle.read(SCAN_BLOCK):
                if not size:
                    if bom_encoding(block) or _binary_kind(block) or b"\n" not in block:
                        return None
                    first = block[: block.find(b"\n")]
                if b"\x00" in block:
                    return None
                decoder.decode(block)
                newlines += block.count(b"\n")
                tail = (tail + block)[-TAIL_BYTES:]
                size += len(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    if not first.strip():
        return None
    lines = newlines + (0 if tail.endswith(b"\n") else 1)
    check_shape(max(0, lines - 1), first.decode().count(fm.delimiter) + 1, rel, lim)
    truncated = None
    if not tail.endswith((b"\n", b"\r")):
        if b"\n" not in tail:
            return None  # a last line longer than the tail: read whole
        truncated = _field_count(tail[tail.rfind(b"\n") + 1 :].decode(), fm.delimiter)
    return TextScan(truncated)


def _read_streamed(
    path: Path,
    rel: str,
    source: SourceMapping,
    fm: FileMapping,
    contract: Contract,
    run_id: str,
    partial_dates: str,
) -> MappedFile | None:
    """A plain delimited text file read and mapped `chunk_rows` rows at a time, or None.

    Exact copies of an earlier row of the file (same `_content_hash`, which is what the
    duplicate-row check calls a copy) are not kept as rows: only their row number and hash go
    to `MappedFile.copies`, and `validate_files` gives each the outcome of its first row plus
    the duplicate-row failure. Memory therefore follows the chunk and the distinct rows, not the
    file (a delivery of one file repeated costs its distinct rows once). None when the file is
    not plain (`scan_plain_text`) or when anything in it is wrong: the whole-file reader then
    reads it and words the problem exactly as it always has.
    """
    lim = limits()
    try:
        check_file_size(path, rel, lim)
        scan = scan_plain_text(path, fm, rel, lim)
    except LimitExceeded as over:
        raise FileProblem("rejected", over.message, over.fix) from over
    if scan is None:
        return None
    try:
        return _map_chunks(path, rel, source, fm, contract, run_id, partial_dates, scan, lim)
    except (FileProblem, pl.exceptions.PolarsError):
        return None


def _map_chunks(
    path: Path,
    rel: str,
    source: SourceMapping,
    fm: FileMapping,
    contract: Contract,
    run_id: str,
    partial_dates: str,
    scan: TextScan,
    lim: Limits,
) -> MappedFile | None:
    """The chunk loop of `_read_streamed`: map each chunk, keep its new distinct rows."""
    lazy = pl.scan_csv(
        path,
        separator=fm.delimiter,
        infer_schema=False,
        has_header=True,
        raise_if_empty=False,
        glob=False,
    ).with_row_index("_pos")
    sha = file_sha256(path)
    seen = pl.Series("_content_hash", [], pl.UInt64)
    frames, raws, copies, note = [], [], [], ""
    chunks = iter(lazy.collect_batches(chunk_size=max(1, lim.chunk_rows)))
    chunk = next(chunks, None)
    if chunk is None:
        return None  # no rows at all: the whole-file reader builds the empty frame
    while chunk is not None:
        following = next(chunks, None)
        data_cols = [c for c in chunk.columns if not c.startswith("_")]
        last = following is None and scan.truncated_fields is not None
        raw = chunk.select(
            *(pl.col(c).str.strip_chars().replace("", None).alias(c) for c in data_cols),
            (pl.col("_pos").cast(pl.Int64) + 2).alias("_source_row"),
            (
                (pl.int_range(pl.len()) == pl.len() - 1)
                & pl.lit(last and (scan.truncated_fields or 0) < len(data_cols))
            ).alias("_truncated"),
        ).rechunk()
        # one chunk per column: the reader's batch comes in several while `_truncated` is one,
        # and a query of columns whose chunks differ copies every column it reads to align
        # them, so each `__raw__` column would be a copy of its delivered text, not the text
        frame, note = map_frame(raw, source, fm, contract, rel, partial_dates)
        hashes = frame["_content_hash"]
        first = hashes.is_first_distinct() & ~hashes.is_in(seen)
        keep = first | frame["_truncated"]
        seen = pl.concat([seen, hashes.filter(first)])
        copies.append(frame.filter(~keep).select("_source_row", "_content_hash"))
        if not keep.all():
            # the kept rows mapped again from their delivered text, not the frame filtered:
            # a filter copies each column on its own, so the delivered text, the `__raw__`
            # columns and the typed text fields would become three copies of one text
            raw = raw.filter(keep)
            frame, note = map_frame(raw, source, fm, contract, rel, partial_dates)
        # unfiltered, the `__raw__` columns (and a text field's typed column) are the delivered
        # text's own buffers: held once, not once per column that names it (0.35 GiB at
        # 300,000 patients' assessments)
        frames.append(
            _with_lineage(frame, source, fm, rel, sha, run_id).select(_kept_columns(contract))
        )
        raws.append(raw.select(*data_cols, "_source_row"))
        chunk = following
    return MappedFile(
        rel,
        sha,
        source,
        fm,
        pl.concat(frames),
        pl.concat(raws),
        note,
        copies=pl.concat(copies),
    )


LINK_FIX = (
    "put the file itself in the landing folder (links that leave the landing folder, and links "
    "to folders, are never followed)"
)


def landing_path(landing: Path, rel: str) -> Path:
    """The file `rel` of the landing folder, resolved; a `FileProblem` when it leaves the folder.

    A path with `..` or an absolute path, a symbolic link (at any depth) whose target lies outside
    the landing folder, a link to a folder and a link to nothing are refused before a byte is
    read. Links that stay inside the landing folder are read.
    """
    parts = Path(rel).parts
    if Path(rel).is_absolute() or ".." in parts:
        raise FileProblem(
            "rejected",
            f"{rel}: the path leaves the landing folder ('..' or an absolute path); not read",
            LINK_FIX,
        )
    full = landing / rel
    root = landing.resolve()
    target = full.resolve()
    if not target.is_relative_to(root):
        raise FileProblem(
            "rejected",
            f"{rel}: is a symbolic link to a file outside the landing folder; not read",
            LINK_FIX,
        )
    if target.is_dir():
        raise FileProblem(
            "rejected", f"{rel}: is a symbolic link to a folder; not followed", LINK_FIX
        )
    if not target.is_file():
        raise FileProblem(
            "rejected",
            f"{rel}: is a symbolic link to nothing (or to something that is not a file); not read",
            LINK_FIX,
        )
    return target


REPLIES_DIR = "queries"  # landing/queries/<SITE>/: query workbooks sites send back, not extracts


def discover(landing: Path) -> list[tuple[Path, str]]:
    """Every entry of the landing folder to account for: files, and links (to files or folders).

    Folders are walked without following links; `landing_path` decides whether a link is read.
    The returned query workbooks of `queries/` are not extracts (`reports.replies` reads them).
    """
    found = []
    for folder, dirs, names in os.walk(landing, followlinks=False):
        base = Path(folder)
        if base == landing:
            dirs[:] = [d for d in dirs if d != REPLIES_DIR]
        links = [d for d in dirs if (base / d).is_symlink()]
        dirs[:] = sorted(d for d in dirs if d not in links)
        for name in [*names, *links]:
            p = base / name
            if name.startswith(".") or not (p.is_symlink() or p.is_file()):
                continue
            found.append((p, p.relative_to(landing).as_posix()))
    return sorted(found, key=lambda item: item[1])


def _refused_row(rel: str, problem: FileProblem) -> dict:
    return {
        "path": rel,
        "sha256": None,
        "source_id": None,
        "table_name": None,
        "rows_read": 0,
        "rows_loaded": 0,
        "rows_quarantined": 0,
        "status": problem.status,
        "error": problem.message,
        "fix": problem.fix,
    }


@dataclass
class IngestResult:
    tables: dict[str, pl.DataFrame]
    # the quarantine, copies of streamed files compact (`warehouse/quarantine.py`): the
    # restricted database's quarantine tables are expanded from it at load
    quarantine: Quarantine
    files: pl.DataFrame
    dq_results: pl.DataFrame
    disappeared: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=DISAPPEARED_SCHEMA)
    )
    mappings: list[dict] = field(default_factory=list)  # each mapping file's source, path, hash
    source_sites: dict[str, str] = field(default_factory=dict)  # clinical source -> its site
    not_collected: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=NOT_COLLECTED_SCHEMA)
    )
    column_labels: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=LABELS_SCHEMA))
    date_imputations: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=IMPUTATIONS_SCHEMA)
    )

    @property
    def delivered_sites(self) -> set[str]:
        """Sites of the clinical sources that delivered a file read in this run."""
        read = self.files.filter(~pl.col("status").is_in(["superseded", "unmatched"]))
        return {
            self.source_sites[s] for s in read["source_id"].drop_nulls() if s in self.source_sites
        }

    replies: Any = None  # the site replies read back this run (`reports.replies.Replies`)
    reused: list[str] = field(default_factory=list)  # files taken from the per-file cache
    # tables whose validated group was taken from the file cache (`validate_by_table`)
    validated_reused: list[str] = field(default_factory=list)
    build_key: str | None = None  # `blinaetl/ingest/reuse.py`, set by the load stage
    build_reused: bool = False  # the last build is this run's (load, text and models skipped)

    @property
    def needs_attention(self) -> bool:
        bad_files = self.files.filter(pl.col("status").is_in(["rejected", "unmatched"])).height
        bad_checks = self.dq_results.filter(pl.col("status").is_in(["failed", "error"])).height
        return bool(bad_files or bad_checks or self.quarantine.row_count)

    @property
    def quarantine_rows(self) -> pl.DataFrame:
        """Every quarantined row as `quarantine.rows` holds it, copies expanded (materialized
        on each call: for tests and small deliveries; the run reads `quarantine`)."""
        return self.quarantine.rows()

    @property
    def quarantine_failures(self) -> pl.DataFrame:
        """Every failure as `quarantine.failures` holds it, copies expanded (materialized on
        each call, as `quarantine_rows`)."""
        return self.quarantine.failures()


DISAPPEARED_SCHEMA: dict[str, Any] = {
    "table_name": pl.Utf8,
    "source_id": pl.Utf8,
    "site": pl.Utf8,
    "patient_key": pl.Utf8,
    "record_key": pl.Utf8,
    "previous_file": pl.Utf8,
    "current_file": pl.Utf8,
}

IMPUTATIONS_SCHEMA: dict[str, Any] = {
    "source_id": pl.Utf8,
    "source_file": pl.Utf8,
    "source_row": pl.Int64,
    "table_name": pl.Utf8,
    "field_name": pl.Utf8,
    "delivered": pl.Utf8,
    "rule": pl.Utf8,
    "imputed_date": pl.Date,
}

LABELS_SCHEMA: dict[str, Any] = {
    "source_id": pl.Utf8,
    "source_file": pl.Utf8,
    "table_name": pl.Utf8,
    "field_name": pl.Utf8,
    "delivered_column": pl.Utf8,
    "label": pl.Utf8,
}

NOT_COLLECTED_SCHEMA: dict[str, Any] = {
    "source_id": pl.Utf8,
    "site": pl.Utf8,
    "table_name": pl.Utf8,
    "field_name": pl.Utf8,
    "source_file": pl.Utf8,
    "rows_delivered": pl.Int64,
}

FILE_SCHEMA = {
    "path": pl.Utf8,
    "sha256": pl.Utf8,
    "source_id": pl.Utf8,
    "table_name": pl.Utf8,
    "rows_read": pl.Int64,
    "rows_loaded": pl.Int64,
    "rows_quarantined": pl.Int64,
    "status": pl.Utf8,
    "error": pl.Utf8,
    "fix": pl.Utf8,
}


class ConservationError(AssertionError):
    """Rows read != rows loaded + rows quarantined for a file: a bug, never tolerated."""


@dataclass(frozen=True)
class FileJob:
    """One landing file matched to its source mapping entry."""

    path: Path
    rel: str
    source_id: str
    index: int  # position of the file entry in the source mapping
    part: str = ""  # the instrument, when one REDCap export feeds several entries

    @property
    def name(self) -> str:
        """The file as its records name it: `path#instrument` for a part of a REDCap export."""
        return f"{self.rel}#{self.part}" if self.part else self.rel


@dataclass
class Plan:
    jobs: list[FileJob]
    unmatched: list[dict]
    sources: list[SourceMapping]
    contracts: dict[str, Contract]
    landing: Path | None = None  # when set, each file's path is checked again before reading
    partial_dates: str = "first"  # definition partial_date_imputation: rule for ISO 8601 partials


def plan_files(
    landing: Path,
    sources_dir: Path | None = None,
    contracts_dir: Path | None = None,
    definitions: dict | None = None,
) -> Plan:
    """Match every landing file to a source mapping; unmatched files become file rows.

    `definitions` are the run's overrides; the ingest reads `partial_date_imputation`.
    """
    from blinaetl.warehouse.models import load_definitions

    partial = str(load_definitions(overrides=definitions)["partial_date_imputation"]["value"])
    contracts = load_contracts(contracts_dir)
    sources = load_sources(sources_dir, contracts)
    jobs: list[FileJob] = []
    unmatched: list[dict] = []
    for path, rel in discover(landing):
        try:
            path = landing_path(landing, rel)
        except FileProblem as problem:
            unmatched.append(_refused_row(rel, problem))
            continue
        hit = match(rel, sources)
        if hit is None:
            unmatched.append(_not_an_extract_row(path, rel, sources))
            continue
        jobs.extend(_jobs_of(path, rel, *hit))
    return Plan(jobs, unmatched, sources, contracts, landing, partial)


def _helper_file_of(rel: str, sources: list[SourceMapping]) -> tuple[SourceMapping, str] | None:
    """(source, role) when the file is a REDCap data dictionary or a lookup file an entry reads."""
    for src in sources:
        for fm in src.files:
            if fm.redcap and fnmatch.fnmatchcase(rel, fm.redcap["dictionary"]):
                return src, "dictionary"
    for src in sources:
        for fm in src.files:
            if any(fnmatch.fnmatchcase(rel, spec["file"]) for spec in fm.lookup):
                return src, "lookup"
    return None


def _not_an_extract_row(path: Path, rel: str, sources: list[SourceMapping]) -> dict:
    """The file row of a file that matches no entry: a helper file (dictionary, lookup) of a
    source, or unmatched with the fix."""
    row = {
        "path": rel,
        "sha256": file_sha256(path),
        "source_id": None,
        "table_name": None,
        "rows_read": 0,
        "rows_loaded": 0,
        "rows_quarantined": 0,
        "status": "unmatched",
        "error": f"{rel}: matches no source mapping, so it was not read",
        "fix": "add or correct a 'glob' in schemas/sources/, or move the file to its site's folder",
    }
    helper = _helper_file_of(rel, sources)
    if helper is not None:
        src, role = helper
        row |= {"source_id": src.source, "status": role, "error": None, "fix": None}
    return row


def _jobs_of(path: Path, rel: str, source: SourceMapping, fm: FileMapping) -> list[FileJob]:
    """The jobs of a matched file: one, or one per instrument entry of a REDCap export."""
    if not fm.redcap:
        return [FileJob(path, rel, source.source, source.files.index(fm))]
    parts = [
        (i, e.redcap["instrument"])
        for i, e in enumerate(source.files)
        if e.redcap and fnmatch.fnmatchcase(rel, e.glob)
    ]
    jobs = []
    for i, instrument in parts:
        part = instrument
        if sum(1 for _, other in parts if other == instrument) > 1:
            part = f"{part}.{i}"
        jobs.append(FileJob(path, rel, source.source, i, part))
    return jobs


def read_file(job: FileJob, plan: Plan, run_id: str) -> MappedFile | dict:
    """Read and map one file: a MappedFile, or the file row of a file-level problem.

    Independent of every other file, so it can run in parallel (the flow maps it over a task runner).
    """
    source = next(s for s in plan.sources if s.source == job.source_id)
    fm = source.files[job.index]
    if plan.landing is not None:
        try:  # again at reading time: the folder may have changed since it was planned
            landing_path(plan.landing, job.rel)
        except FileProblem as problem:
            return _refused_row(job.rel, problem) | {
                "source_id": source.source,
                "table_name": fm.table,
            }
    try:
        return read_and_map(
            job.path, job.name, source, fm, plan.contracts[fm.table], run_id, plan.partial_dates
        )
    except FileProblem as problem:
        return {
            "path": job.name,
            "sha256": file_sha256(job.path),
            "source_id": source.source,
            "table_name": fm.table,
            "rows_read": 0,
            "rows_loaded": 0,
            "rows_quarantined": 0,
            "status": problem.status,
            "error": problem.message,
            "fix": problem.fix,
        }


def preload_validation() -> None:
    """Import the validator (pandera and pandas, about half a second) on a background thread.

    Called before the files are read: the readers parse outside the GIL, so the import overlaps
    with them instead of following them. `validate_files` imports the same module, which waits
    for this import to finish if it is still running.
    """
    import sys
    import threading

    if "blinaetl.validate.executor" not in sys.modules:
        threading.Thread(
            target=__import__,
            args=("blinaetl.validate.executor",),
            name="import-validator",
            daemon=True,
        ).start()


def open_file_cache(
    plan: Plan,
    root: Path,
    secret: bytes,
    definitions: dict | None = None,
    full: bool = False,
) -> FileCache:
    """The per-file cache of incremental runs (`blinaetl/ingest/cache.py`) for `plan`.

    `root` lies in the restricted folder (`RunConfig.file_cache_dir`); `definitions` are the
    run's overrides; `full` reads nothing from the cache (its entries are written afresh).
    """
    from blinaetl.ingest.cache import FileCache, run_context
    from blinaetl.warehouse.models import load_definitions

    context = run_context(
        plan.contracts,
        plan.sources,
        plan.partial_dates,
        secret,
        load_definitions(overrides=definitions),
    )
    return FileCache.open(root, context, full)


def _cacheable(job: FileJob, plan: Plan) -> bool:
    """Whether a job's output depends on its own file alone: REDCap exports and entries with a
    `lookup` (or an anchor from another file) read other landing files, so are never cached."""
    fm = next(s for s in plan.sources if s.source == job.source_id).files[job.index]
    return not (fm.redcap or fm.lookup)


def _cached(job: FileJob, plan: Plan, cache: FileCache, run_id: str) -> MappedFile | None:
    """The job's `MappedFile` from the cache (its rows stamped with this run's id), or None."""
    if not _cacheable(job, plan):
        return None
    try:
        if plan.landing is not None:
            landing_path(plan.landing, job.rel)
        sha = file_sha256(job.path)
    except (FileProblem, OSError):
        return None  # the reader says what is wrong with the file
    entry = cache.load(cache.key(job.name, job.source_id, job.index, sha), job.name, sha)
    if entry is None:
        return None
    source = next(s for s in plan.sources if s.source == job.source_id)
    from blinaetl.ingest.cache import with_run_id

    frame = with_run_id(entry.frame, run_id)
    return MappedFile(
        entry.path,
        entry.sha256,
        source,
        source.files[job.index],
        frame,
        entry.raw,
        entry.note,
        entry.labels,
        entry.copies,
    )


def cached_outcomes(plan: Plan, cache: FileCache | None, run_id: str) -> list[MappedFile | None]:
    """Per job of the plan, its `MappedFile` from the per-file cache, or None (to be read)."""
    from concurrent.futures import ThreadPoolExecutor

    if cache is None:
        return [None] * len(plan.jobs)
    workers = max(1, min(len(plan.jobs), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: _cached(job, plan, cache, run_id), plan.jobs))


def store_outcomes(
    plan: Plan, outcomes: list[MappedFile | dict], cache: FileCache | None, prune: bool = True
) -> None:
    """Write the files read this run (not taken from the cache) to the cache, then drop the
    entries of files this run did not key (removed, changed or no longer matched).

    `prune=False` leaves the dropping to the caller (`FileCache.prune`), for a run that
    stores its files table by table: only once every file of the run is keyed."""
    from concurrent.futures import ThreadPoolExecutor

    from blinaetl.ingest.cache import Entry

    if cache is None:
        return
    reused = set(cache.reused)
    todo = [
        (cache.keys[out.path][0], out)
        for out in outcomes
        if isinstance(out, MappedFile)
        and out.path in cache.keys
        and out.path not in reused
        and out.sha256 == cache.keys[out.path][1]  # the file did not change while it was read
    ]

    def save(item: tuple[str, MappedFile]) -> None:
        m = item[1]
        try:
            text_of = {c: src for f, src in m.mapping.columns.items() for c in (RAW_PREFIX + f, f)}
            entry = Entry(m.path, m.sha256, m.frame, m.raw, m.note, m.labels, m.copies, text_of)
            cache.save(item[0], entry)
        except OSError as exc:  # the run goes on; the file is read again next run
            logging.getLogger("blinaetl").warning(
                "file cache: %s not kept for the next run (%s)", m.path, type(exc).__name__
            )

    with ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1))) as pool:
        list(pool.map(save, todo))
    if prune:
        cache.prune()


# read (given the positions of the plan's jobs of one group of tables) -> the outcomes of those
# jobs, in their order, and what to call before their frames are released
ReadGroup = Callable[[list[int]], tuple[list["MappedFile | dict"], Callable[[], None]]]

# the tables whose facts the cross-record checks of the others read (validate.executor._context)
CONTEXT_TABLES = ("patients", "outcomes", "treatments")


def table_groups(contracts: dict[str, Contract]) -> list[list[str]]:
    """The run's tables in the groups they are read, validated and released in: the context
    tables together first (the patients, then the outcomes and treatments are checked against
    them, and the other tables against all three), then each other table alone, in validation
    order."""
    tables = in_validation_order(contracts)
    first = [t for t in tables if t in CONTEXT_TABLES]
    return ([first] if first else []) + [[t] for t in tables if t not in CONTEXT_TABLES]


def ingest_landing(
    landing: Path,
    run_id: str,
    secret: bytes,
    sources_dir: Path | None = None,
    contracts_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    definitions: dict | None = None,
    accepted: pl.DataFrame | Callable[[], pl.DataFrame] | None = None,
    cache_dir: Path | None = None,
    full: bool = False,
) -> IngestResult:
    """Read, map and validate every file of the landing folder.

    `accepted`: failures the sites confirmed as delivered (see `validate_tables`), or a
    function giving them, called once, just before the first validation.

    The files are read, validated and released table by table (`validate_by_table`): the
    patients, outcomes and treatments files first, then each other table's files, so the run
    holds the mapped files of one table at a time beside the validated tables, not every
    mapped file of the run. A group's files are read on a small thread pool (polars and
    fastexcel parse outside the GIL); the outcomes keep the plan's order, so the result does
    not depend on which file finished first.

    `cache_dir` (in the restricted folder) turns on incremental runs: a file whose bytes and
    run context are unchanged is taken from the per-file cache (`blinaetl/ingest/cache.py`)
    instead of being read and mapped again; validation then runs over every file as always.
    `full` reads every file (the cache is written afresh). `IngestResult.reused` names the
    files taken from the cache.
    """
    preload_validation()
    plan = plan_files(landing, sources_dir, contracts_dir, definitions)
    cache = None
    if cache_dir is not None:
        cache = open_file_cache(plan, cache_dir, secret, definitions, full)
    reader = _GroupReader(plan, cache, run_id, progress or (lambda _m: None))
    keys = PatientKeys(secret, cache.known_keys(secret) if cache is not None else None)
    try:
        result = validate_by_table(plan, reader, keys, accepted, cache, run_id)
    finally:
        for writer in reader.writers:
            writer.join()
        if cache is not None:
            cache.join_writers()
    if reader.failed:
        raise reader.failed[0]
    keep_for_next_run(cache, keys)  # every file of the run is keyed: the others' are dropped
    result.reused = sorted(cache.reused) if cache else []
    return result


@dataclass
class _GroupReader:
    """`ReadGroup` of `ingest_landing`: a group's files from the per-file cache or read on a
    small thread pool; the files read are written to the cache on a thread while their table
    is validated (the frames are only read by both), waited for before they are released."""

    plan: Plan
    cache: FileCache | None
    run_id: str
    say: Callable[[str], None]
    writers: list[threading.Thread] = field(default_factory=list)
    failed: list[BaseException] = field(default_factory=list)

    def __call__(self, at: list[int]) -> tuple[list[MappedFile | dict], Callable[[], None]]:
        from concurrent.futures import ThreadPoolExecutor

        plan = self.plan
        sub = dataclasses.replace(plan, jobs=[plan.jobs[i] for i in at], unmatched=[])
        found = cached_outcomes(sub, self.cache, self.run_id)
        todo = [job for job, hit in zip(sub.jobs, found, strict=True) if hit is None]
        tables = ", ".join(dict.fromkeys(contracts_table(plan, job) for job in sub.jobs))
        self.say(
            f"reading {len(todo)} files"
            + (f" ({len(sub.jobs) - len(todo)} unchanged)" if self.cache else "")
            + (f" of {tables}" if tables else "")
        )
        workers = max(1, min(len(todo), os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            done = iter(list(pool.map(lambda job: read_file(job, plan, self.run_id), todo)))
        outcomes: list[MappedFile | dict] = [h if h is not None else next(done) for h in found]
        writer = threading.Thread(
            target=self._write, args=(sub, outcomes), name="file-cache-writer"
        )
        self.writers.append(writer)
        writer.start()
        self.say("validating")
        return outcomes, writer.join

    def _write(self, sub: Plan, outcomes: list[MappedFile | dict]) -> None:
        try:
            store_outcomes(sub, outcomes, self.cache, prune=False)
        except BaseException as exc:  # raised in the run's own thread by `ingest_landing`
            self.failed.append(exc)


def validate_files(
    plan: Plan,
    outcomes: list[MappedFile | dict],
    secret: bytes | PatientKeys,
    accepted: pl.DataFrame | None = None,
    before_release: Callable[[], None] | None = None,
    store: FileCache | None = None,
    run_id: str = "",
) -> IngestResult:
    """`validate_by_table` of outcomes read before (one per job of the plan, in its order:
    the flow's read tasks, `check-mapping`); `store` and `run_id` as there (the validated
    groups kept in the file cache; `keep_for_next_run` once the writers are joined).

    Each table's mapped files of `outcomes` are released in place once validated
    (`release_frames`); `before_release` is called first (every time; the per-file cache
    writer, which reads the frames, is waited for there); `outcomes` is not to be read again
    afterwards.
    """

    def given(at: list[int]) -> tuple[list[MappedFile | dict], Callable[[], None]]:
        return [outcomes[i] for i in at], before_release or (lambda: None)

    return validate_by_table(plan, given, secret, accepted, store, run_id)


def keep_for_next_run(cache: FileCache | None, keys: PatientKeys) -> None:
    """Once every file of the run is keyed and validated (its group writers joined): keep the
    run's patient keys, and drop the entries of the files and groups the run did not use."""
    if cache is None:
        return
    cache.save_keys(keys.asked())
    cache.prune()


def validate_by_table(
    plan: Plan,
    read: ReadGroup,
    secret: bytes | PatientKeys,
    accepted: pl.DataFrame | Callable[[], pl.DataFrame] | None = None,
    store: FileCache | None = None,
    run_id: str = "",
) -> IngestResult:
    """Per group of tables (`table_groups`): read its files (`read`), choose the newest
    readable extract per source entry, validate, and release the mapped files; then account
    per file over the whole run.

    `store`: the run's file cache, which keeps each validated group for the next run
    (`FileCache.load_group`): a group none of whose inputs changed (its files, the contracts
    and code, the failures the sites confirmed, the patient facts it is checked against) is
    taken from it instead of being keyed, validated and compacted again, its `_run_id` this
    run's (`run_id`). What is read from the mapped files themselves (date imputations, fields
    not collected, disappeared records, the accounting) is taken from them as always.

    Once a group is validated, its mapped files are released in place (`release_frames`):
    their rows live on as the validated tables and the quarantine, and holding the delivered
    text and the typed columns of every file besides them set the ingest stage's peak. What
    is read from the mapped frames themselves (date imputations, fields not collected,
    disappeared records, the copies' quarantine, `raw_json`) is taken before. The patient
    facts the other tables' cross-record checks read come from the first group (patients,
    outcomes, treatments); the root causes and the accounting run once every group is done.

    The result is the one of validating every file at once, in the same order
    (`_ByTable.result`). `accepted` may be a function giving the confirmed failures, called
    once, after the first group's files are read. `secret`: the key, or the run's
    `PatientKeys` (each pair hashed once in the run, not once per group).
    """
    contracts = plan.contracts
    run = _ByTable.of(plan)
    keys = PatientKeys.given(secret)
    secret = keys.secret
    confirmed = None if callable(accepted) else accepted
    for group in table_groups(contracts):
        at = [i for i, job in enumerate(plan.jobs) if contracts_table(plan, job) in group]
        outcomes, before_release = read(at)
        ranks, mapped, previous = run.choose(at, outcomes)
        if callable(accepted):
            confirmed, accepted = accepted(), None
        mapped = _confirmed_copies(mapped, contracts, confirmed)
        key, hit = _validated_group(store, group, mapped, confirmed, run.context, run_id)
        if hit is not None:
            keys.of(hit.pairs)  # the pairs are this run's too (the keys kept for the next)
            run.keep_file_facts(ranks, mapped, previous, secret)
            before_release()
            release_frames([*outcomes, *mapped])
            del outcomes, previous
            run.keep_cached(group, hit)
            continue
        pairs = delivered_pairs(mapped)
        combined = combine_frames(mapped, {t: contracts[t] for t in group}, keys, pairs)
        run.keep_file_facts(ranks, mapped, previous, secret)
        # imported here, after the work that does not need it: the import started on a thread
        # at the start of the run (`preload_validation`), and a run that takes most files from
        # the cache reaches this point before it is done (0.6 s of CPU, 1-3 s under load)
        from blinaetl.validate.executor import validate_tables

        checked = _raw_releaser([*outcomes, *mapped], combined, before_release)
        outcome = validate_tables(combined, contracts, confirmed, run.context, checked)
        run.context = outcome.context
        quarantine, dq_results = compact_copies(outcome, mapped, combined, contracts)
        del combined, previous
        before_release()
        release_frames([*outcomes, *mapped])
        del outcomes
        run.keep_validated(group, outcome.tables, quarantine, dq_results)
        if store is not None and key:
            from blinaetl.ingest.cache import GroupEntry

            given = run.context.facts if "patients" in group and run.context else None
            entry = GroupEntry(dict(outcome.tables), quarantine, dq_results, pairs, given)
            store.save_group_later(key, group, entry)
        del outcome, quarantine, dq_results, pairs
    return run.result()


def _validated_group(
    store: FileCache | None,
    group: list[str],
    mapped: list[MappedFile],
    confirmed: pl.DataFrame | None,
    context: Context | None,
    run_id: str,
) -> tuple[str | None, GroupEntry | None]:
    """(the group's key in the file cache, or None; what validating it gave last run, or
    None): `FileCache.group_key` of its files, confirmed failures and patient facts, and of
    the run's date when a file's name gives no extract date."""
    if store is None:
        return None, None
    facts = context.facts if context is not None else None
    # a file whose name carries no extract date is checked against the run's date
    # (`not_after_extract`), so that date is an input of its group
    undated = any(_extract_date(m.path) is None for m in mapped)
    as_of = dt.date.today().isoformat() if undated else None
    files = [(m.path, m.sha256) for m in mapped]
    key = store.group_key(group, files, confirmed, facts, as_of)
    return key, store.load_group(key, group, run_id) if key else None


@dataclass
class _ByTable:
    """What `validate_by_table` keeps of each group, put together in the order of validating
    every file at once by `result`: the quarantine, DQD results and tables in validation
    order (`validate.contracts.in_validation_order`); the file rows, imputations, labels and disappeared
    records in the order of the source entries (each entry's first file in the plan)."""

    plan: Plan
    order: list[str]  # the tables in validation order
    entry_rank: dict[tuple[str, int], int]  # per source entry, its first file's place in the plan
    context: Context | None = None
    entry_rows: list[tuple[int, list[dict]]] = field(default_factory=list)
    ranked: list[tuple[int, MappedFile]] = field(default_factory=list)
    imputed: list[tuple[int, pl.DataFrame]] = field(default_factory=list)
    not_collected: list[tuple[int, pl.DataFrame]] = field(default_factory=list)
    gone: list[tuple[int, pl.DataFrame]] = field(default_factory=list)
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    rows_base: dict[str, pl.DataFrame] = field(default_factory=dict)
    failures_base: dict[str, pl.DataFrame] = field(default_factory=dict)
    dq: dict[str, pl.DataFrame] = field(default_factory=dict)
    segments: list[CopySegment] = field(default_factory=list)
    validated_reused: list[str] = field(default_factory=list)  # tables of the groups kept

    @classmethod
    def of(cls, plan: Plan) -> _ByTable:
        order = in_validation_order(plan.contracts)
        rank: dict[tuple[str, int], int] = {}
        for job in plan.jobs:
            rank.setdefault((job.source_id, job.index), len(rank))
        return cls(plan, order, rank)

    def choose(
        self, at: list[int], outcomes: list[MappedFile | dict]
    ) -> tuple[list[int], list[MappedFile], dict[tuple[str, int], list[MappedFile]]]:
        """`choose_extracts` per source entry of a group: (each file to load's entry rank, the
        files to load, the previous extracts); the others' file rows are kept."""
        by_entry: dict[tuple[str, int], tuple[list[FileJob], list[MappedFile | dict]]] = {}
        for i, out in zip(at, outcomes, strict=True):
            job = self.plan.jobs[i]
            jobs, outs = by_entry.setdefault((job.source_id, job.index), ([], []))
            jobs.append(job)
            outs.append(out)
        ranks: list[int] = []
        mapped: list[MappedFile] = []
        previous: dict[tuple[str, int], list[MappedFile]] = {}
        for key, (jobs, outs) in by_entry.items():
            entry = dataclasses.replace(self.plan, jobs=jobs, unmatched=[])
            chosen, rows, before = choose_extracts(entry, outs)
            self.entry_rows.append((self.entry_rank[key], rows))
            ranks.extend(self.entry_rank[key] for _ in chosen)
            mapped.extend(chosen)
            previous.update(before)
        return ranks, mapped, previous

    def keep_file_facts(
        self,
        ranks: list[int],
        mapped: list[MappedFile],
        previous: dict[tuple[str, int], list[MappedFile]],
        secret: bytes,
    ) -> None:
        """What is read from a group's mapped frames: date imputations, fields not collected,
        disappeared records (the files themselves are kept for the accounting)."""
        contracts = self.plan.contracts
        for rank, m in zip(ranks, mapped, strict=True):
            self.ranked.append((rank, m))
            parts = _imputation_parts(m, contracts, self.plan.partial_dates)
            self.imputed.extend((rank, part) for part in parts)
            nc = _not_collected_part(m)
            if nc is not None:
                self.not_collected.append((rank, nc))
        for key, old in previous.items():
            frame = _disappeared(mapped, {key: old}, contracts, secret)
            if frame.height:
                self.gone.append((self.entry_rank[key], frame))

    def keep_validated(
        self,
        group: list[str],
        tables: dict[str, pl.DataFrame],
        quarantine: Quarantine,
        dq_results: pl.DataFrame,
    ) -> None:
        self.tables.update(tables)
        for t in group:
            is_t = pl.col("table_name") == t
            self.rows_base[t] = quarantine.rows_base.filter(is_t)
            self.failures_base[t] = quarantine.failures_base.filter(is_t)
            self.dq[t] = dq_results.filter(is_t)
        self.segments.extend(quarantine.segments)

    def keep_cached(self, group: list[str], hit: GroupEntry) -> None:
        """`keep_validated` of a group taken from the file cache, and its patient facts."""
        if hit.facts is not None:
            self.context = Context(hit.facts)
        self.keep_validated(group, hit.tables, hit.quarantine, hit.dq)
        self.validated_reused.extend(group)

    def quarantine(self, mapped: list[MappedFile]) -> Quarantine:
        """The run's quarantine (`compact_copies` over every file at once)."""
        position = {m.path: i for i, m in enumerate(mapped)}
        tables = self.order
        return Quarantine(
            rows_base=pl.concat([self.rows_base[t] for t in tables], how="vertical_relaxed"),
            failures_base=pl.concat(
                [self.failures_base[t] for t in tables], how="vertical_relaxed"
            ),
            segments=sorted(self.segments, key=lambda seg: position[seg.path]),
            rank=_file_ranks(mapped, tables),
        )

    def result(self) -> IngestResult:
        plan, contracts = self.plan, self.plan.contracts
        mapped = [m for _, m in sorted(self.ranked, key=lambda rm: rm[0])]  # stable
        file_rows: list[dict] = list(plan.unmatched)
        for _, rows in sorted(self.entry_rows, key=lambda er: er[0]):
            file_rows.extend(rows)
        tables = {t: self.tables[t] for t in self.order}  # the patients first (`ORDER`)
        not_collected = _in_rank_order(self.not_collected, NOT_COLLECTED_SCHEMA)
        if not_collected.height:
            not_collected = not_collected.sort("table_name", "site", "field_name", "source_file")
        source_sites = {s.source: s.site for s in plan.sources if s.kind == "clinical" and s.site}
        quarantine, caused_by = attribute_root_causes(
            self.quarantine(mapped), tables, file_rows, contracts, source_sites
        )
        file_rows.extend(account_files(mapped, quarantine, tables, caused_by))
        return IngestResult(
            validated_reused=list(self.validated_reused),
            date_imputations=_in_rank_order(self.imputed, IMPUTATIONS_SCHEMA),
            column_labels=list_column_labels(mapped),
            not_collected=not_collected,
            dq_results=pl.concat(
                [
                    *(self.dq[t] for t in self.order),
                    _not_collected_dq(not_collected, contracts),
                ],
                how="vertical_relaxed",
            ),
            mappings=[
                {"source_id": s.source, "path": str(s.path.resolve()), "sha256": s.sha256}
                for s in plan.sources
            ],
            source_sites=source_sites,
            disappeared=_in_rank_order(self.gone, DISAPPEARED_SCHEMA, relaxed=False),
            tables=tables,
            quarantine=quarantine,
            files=pl.DataFrame(file_rows, schema=FILE_SCHEMA).sort("path"),
        )


def _in_rank_order(
    parts: list[tuple[int, pl.DataFrame]], schema: dict, relaxed: bool = True
) -> pl.DataFrame:
    """The frames concatenated in their ranks' order (stable), or an empty frame of `schema`."""
    if not parts:
        return pl.DataFrame(schema=schema)
    frames = [f for _, f in sorted(parts, key=lambda rf: rf[0])]
    return pl.concat(frames, how="vertical_relaxed") if relaxed else pl.concat(frames)


def _raw_releaser(
    files: list[MappedFile | dict], combined: dict[str, pl.DataFrame], wait: Callable[[], None]
) -> Callable[[str, pl.DataFrame], None]:
    """`checked` of `validate_tables`: once a table's checks have run, nothing reads its
    delivered text per field again, so its files' and its combined frame's `__raw__` columns
    are dropped (in place) before its loaded rows are copied, and its files' delivered text
    is cut to the rows whose `raw_json` is still to be written (`_raw_still_read`); `wait`
    first (the per-file cache writer reads the frames)."""

    def checked(table: str, quarantined: pl.DataFrame) -> None:
        wait()
        for m in files:
            if isinstance(m, MappedFile) and m.mapping.table == table:
                m.frame = _without_raw(m.frame)
                m.raw = _raw_still_read(m, quarantined)
        combined[table] = _without_raw(combined[table])

    return checked


def _raw_still_read(m: MappedFile, quarantined: pl.DataFrame) -> pl.DataFrame:
    """The file's delivered text (`MappedFile.raw`) of the rows whose `raw_json` is written
    after validation: its quarantined rows (`with_raw_json`) and, in a streamed file, the first
    row of each copy (a copy's quarantine row carries its first row's text, `_copy_row_info`).

    The rest is never read again; held to the end of the group, it was the largest buffer
    beside the copy of the loaded rows (0.36 GiB of the 300,000-patient assessments' 1.8
    million rows, a 16-byte string view per field and row)."""
    rows = quarantined.filter(pl.col("_source_file") == m.path)["_source_row"]
    if m.copies is not None and m.copies.height:
        hashes = m.copies["_content_hash"].implode()
        firsts = m.frame.select("_source_row", "_content_hash").filter(
            pl.col("_content_hash").is_in(hashes)
        )
        rows = pl.concat([rows, firsts["_source_row"]])
    return m.raw.filter(pl.col("_source_row").is_in(rows.implode()))


def _without_raw(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame without the delivered text per field (the `__raw__` columns)."""
    return frame.drop(c for c in frame.columns if c.startswith(RAW_PREFIX))


def release_frames(outcomes: list[MappedFile | dict]) -> None:
    """Keep of each mapped file only what is read after validation (`account_files`: its row
    count, and its copies): the frame is cut to `_source_row`, the delivered text emptied.

    In place, so every holder of the objects (the caller's list of outcomes) lets go of the
    frames too."""
    for m in outcomes:
        if isinstance(m, MappedFile):
            m.frame = m.frame.select("_source_row")
            m.raw = m.raw.clear()


def _copy_rows(m: MappedFile, columns: list[str]) -> pl.DataFrame:
    """The copies of a streamed file with `columns` of the first row they copy (row order)."""
    assert m.copies is not None
    wanted = [c for c in columns if c not in ("_source_row", "_content_hash")]
    originals = m.frame.select("_content_hash", *wanted).unique(
        "_content_hash", keep="first", maintain_order=True
    )
    return m.copies.join(originals, on="_content_hash", how="left", maintain_order="left")


def _all_rows(m: MappedFile, columns: list[str]) -> pl.DataFrame:
    """`columns` of every row of the file, copies included, in row order (`_source_row` among
    them)."""
    if m.copies is None or m.copies.height == 0:
        return m.frame.select(columns)
    return pl.concat([m.frame.select(columns), _copy_rows(m, columns).select(columns)]).sort(
        "_source_row", maintain_order=True
    )


def restore_copies(m: MappedFile) -> MappedFile:
    """The file with its copies held as rows again (as a whole-file read holds them)."""
    if m.copies is None:
        return m
    frame = _all_rows(m, m.frame.columns)
    delivered = [c for c in m.raw.columns if c != "_source_row"]
    originals = m.frame.select("_content_hash", "_source_row").unique(
        "_content_hash", keep="first", maintain_order=True
    )
    copied = (
        m.copies.join(originals, on="_content_hash", how="left", suffix="_first")
        .join(m.raw, left_on="_source_row_first", right_on="_source_row", how="left")
        .select(*delivered, "_source_row")
    )
    raw = pl.concat([m.raw, copied]).sort("_source_row", maintain_order=True)
    return dataclasses.replace(m, frame=frame, raw=raw, copies=None)


def _confirmed_copies(
    mapped: list[MappedFile], contracts: dict[str, Contract], accepted: pl.DataFrame | None
) -> list[MappedFile]:
    """Streamed files hold copies as row numbers, right while every copy is quarantined; a file
    whose site confirmed a duplicate row as delivered (such a copy loads) gets them back as rows."""
    if accepted is None or accepted.height == 0:
        return mapped
    confirmed = set(accepted.select("_source_id", "check_id").iter_rows())
    out = []
    for m in mapped:
        dup_ids = {c.id for c in contracts[m.mapping.table].checks if c.check == "duplicate_row"}
        if m.copies is not None and any((m.source.source, c) in confirmed for c in dup_ids):
            m = restore_copies(m)
        out.append(m)
    return out


def _copy_spine(
    m: MappedFile, table_frame: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(first rows, copies, spine) of a streamed file: per distinct content its first row with
    the ids validation gave it; each copy with its first row; every row of the file in row
    order with its first row and whether it is a copy."""
    assert m.copies is not None
    # lazily, so only the selected columns are filtered: filtering the table's wide frame
    # copied every column of the file's rows (+0.5 GiB at 300,000 patients)
    info = (
        table_frame.lazy()
        .filter(pl.col("_source_file") == m.path)
        .select(
            pl.col("_source_row").alias("_first_row"),
            "_content_hash",
            "_source_id",
            "site",
            "patient_key",
            pl.col("_content_hash").cast(pl.Utf8).alias("row_hash"),
        )
        .collect()
    )
    firsts = info.unique("_content_hash", keep="first", maintain_order=True)
    copies = m.copies.join(
        firsts.select("_content_hash", "_first_row"), on="_content_hash", how="left"
    )
    # which first rows have copies (`_copy_templates` builds templates for those alone)
    firsts = firsts.with_columns(
        pl.col("_first_row").is_in(copies["_first_row"].implode()).alias("_copies")
    )
    spine = pl.concat(
        [
            info.select("_first_row", pl.col("_first_row").alias("_source_row"), _copy=False),
            copies.select("_first_row", "_source_row", _copy=True),
        ]
    ).sort("_source_row")
    return firsts, copies, spine


def _copy_templates(own: pl.DataFrame, firsts: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """Per first row that has copies (`firsts` is every first row of the file), the failures
    each of its copies has, in check-id order: the first row's own, but for the checks that
    look at copies, and every duplicate-row check.

    Only the first rows with copies: the templates of a copy are joined to the spine's copies
    alone (`CopySegment`), so a template row per distinct row of the file (306,834 at 100,000
    patients, for 2,933 copies) was built, sorted and numbered for nothing (0.3 s of CPU per
    assessments file)."""
    firsts = firsts.filter(pl.col("_copies"))
    same = [c.id for c in contract.checks if c.check not in ("duplicate_row", "unique")]
    own = own.filter(pl.col("_source_row").is_in(firsts["_first_row"].implode()))
    template = [
        own.filter(pl.col("check_id").is_in(same)).select(
            pl.col("_source_row").alias("_first_row"), *FAILURE_COLUMNS[7:]
        ),
        *(
            firsts.select(
                "_first_row",
                pl.lit(c.id).alias("check_id"),
                pl.lit(c.column, pl.Utf8).alias("column_name"),
                pl.lit(c.kahn).alias("kahn"),
                pl.lit(c.severity).alias("severity"),
                pl.lit(c.message).alias("message"),
            )
            for c in contract.checks
            if c.check == "duplicate_row"
        ),
    ]
    per_copy = pl.concat(template, how="vertical_relaxed").sort("_first_row", "check_id")
    return per_copy.join(
        firsts.select("_first_row", "_source_id", "site", "patient_key", "row_hash"),
        on="_first_row",
        how="left",
        maintain_order="left",
    ).with_columns(_copy=True)


def _copy_segment(
    m: MappedFile,
    table_frame: pl.DataFrame,
    rows: pl.DataFrame,
    failures: pl.DataFrame,
    contract: Contract,
) -> tuple[CopySegment, pl.DataFrame]:
    """(the quarantine of one streamed file with its copies compact, failures of the copies
    per check for the DQD counts).

    A copy has the delivered content of its first row, so every check reads the same values
    and gives the same result, except the two that look at copies: it fails each duplicate-row
    check (an error, so it is quarantined) and passes each uniqueness check (copies are left
    out of them). The segment keeps each row's first row (a copy's, or the row itself) and per
    first row the failures of the row itself and those of a copy, in check-id order
    (`warehouse/quarantine.py` expands them, in row order, never by sorting the large outputs).
    """
    firsts, copies, spine = _copy_spine(m, table_frame)
    own = failures.filter(pl.col("_source_file") == m.path)
    per_copy = _copy_templates(own, firsts, contract)
    per_row = own.select(
        pl.col("_source_row").alias("_first_row"),
        "_source_id",
        *FAILURE_COLUMNS[3:6],
        *FAILURE_COLUMNS[7:],
        _copy=pl.lit(False),
    )
    templates = pl.concat(
        [per_row, per_copy.select(per_row.columns)], how="vertical_relaxed"
    ).with_columns(pl.int_range(pl.len()).over("_first_row", "_copy").alias("_k"))
    quarantined = rows.filter(pl.col("_source_file") == m.path)["_source_row"]
    spine = spine.with_columns(
        (pl.col("_copy") | pl.col("_source_row").is_in(quarantined.implode())).alias("_quarantined")
    ).filter(pl.col("_quarantined") | pl.col("_source_row").is_in(own["_source_row"].implode()))
    segment = CopySegment(
        path=m.path,
        table=contract.table,
        spine=spine.select("_source_row", "_first_row", "_copy", "_quarantined"),
        row_info=_copy_row_info(m, spine, firsts),
        templates=templates,
    )
    counted = (
        copies.group_by("_first_row")
        .agg(pl.len().alias("n"))
        .join(per_copy.select("_first_row", "check_id"), on="_first_row")
        .group_by("check_id")
        .agg(pl.col("n").sum().alias("_more"))
        .with_columns(pl.lit(contract.table).alias("table_name"))
    )
    return segment, counted


def _copy_row_info(m: MappedFile, spine: pl.DataFrame, firsts: pl.DataFrame) -> pl.DataFrame:
    """Per first row of a quarantined row: its ids and `raw_json`, the row as delivered (a
    copy's quarantine row carries its first row's text, encoded once for all its copies)."""
    wanted = spine.filter(pl.col("_quarantined")).select("_first_row").unique(maintain_order=True)
    delivered = [c for c in m.raw.columns if c != "_source_row"]
    texts = m.raw.join(
        wanted.select(_source_row="_first_row"), on="_source_row", how="semi"
    ).select(
        pl.col("_source_row").alias("_first_row"),
        pl.struct(delivered).struct.json_encode().cast(pl.Utf8).alias("raw_json"),
    )
    return wanted.join(
        firsts.select("_first_row", "_source_id", "site", "patient_key"),
        on="_first_row",
        how="left",
        maintain_order="left",
    ).join(texts, on="_first_row", how="left", maintain_order="left")


def compact_copies(
    outcome: ValidationOutcome,
    mapped: list[MappedFile],
    combined: dict[str, pl.DataFrame],
    contracts: dict[str, Contract],
) -> tuple[Quarantine, pl.DataFrame]:
    """(the quarantine of the run, DQD results), the copies of streamed files put back: the
    quarantine as validating every row would give it, each streamed file's copies compact
    (`CopySegment`), and the DQD counts with the copies counted. The quarantined rows of the
    files read whole get their `raw_json` here."""
    rank = _file_ranks(mapped, in_validation_order(combined))
    streamed = [m for m in mapped if m.copies is not None and m.copies.height]
    qrows, failures = outcome.quarantine_rows, outcome.quarantine_failures
    segments, counts = [], []
    for m in streamed:
        contract = contracts[m.mapping.table]
        seg, n = _copy_segment(m, combined[m.mapping.table], qrows, failures, contract)
        segments.append(seg)
        counts.append(n)
    whole = ~pl.col("_source_file").is_in([m.path for m in streamed])
    quarantine = Quarantine(
        rows_base=with_raw_json(qrows.filter(whole), mapped),
        failures_base=failures.filter(whole),
        segments=segments,
        rank=rank,
    )
    if not streamed:
        return quarantine, outcome.dq_results
    copies_per_table: dict[str, int] = {}
    for m in streamed:
        assert m.copies is not None
        copies_per_table[m.mapping.table] = (
            copies_per_table.get(m.mapping.table, 0) + m.copies.height
        )
    return quarantine, _recount_dq(outcome.dq_results, pl.concat(counts), copies_per_table)


def _file_ranks(mapped: list[MappedFile], tables: list[str]) -> dict[str, int]:
    """Each file's place in the quarantine (`Quarantine.rank`): by its table's place in
    `tables` (validation order), then its own in `mapped`."""
    order = sorted(range(len(mapped)), key=lambda i: (tables.index(mapped[i].mapping.table), i))
    return {mapped[i].path: r for r, i in enumerate(order)}


def _recount_dq(
    dq: pl.DataFrame, added: pl.DataFrame, copies_per_table: dict[str, int]
) -> pl.DataFrame:
    """DQD results with the copies counted: rows checked, rows failed, percent and status
    (the executor's rules: `error` stays, `failed` above the threshold, else `passed`).
    `added`: table_name, check_id, _more (failures of the copies)."""
    more = added.group_by("table_name", "check_id").agg(pl.col("_more").sum())
    extra_rows = pl.col("table_name").replace_strict(
        copies_per_table, default=0, return_dtype=pl.Int64
    )
    out = (
        dq.join(more, on=["table_name", "check_id"], how="left", maintain_order="left")
        .with_columns(
            (pl.col("rows_failed") + pl.col("_more").fill_null(0))
            .cast(pl.Int64)
            .alias("rows_failed"),
            (pl.col("rows_checked") + extra_rows).cast(pl.Int64).alias("rows_checked"),
        )
        .drop("_more")
    )
    touched = pl.col("table_name").is_in(list(copies_per_table))
    pct = (
        pl.when(pl.col("rows_checked") > 0)
        .then(100.0 * pl.col("rows_failed") / pl.col("rows_checked"))
        .otherwise(None)
    )
    status = (
        pl.when(pl.col("status") == "error")
        .then(pl.lit("error"))
        .when(pl.col("rows_checked") == 0)
        .then(pl.lit("not_applicable"))
        .when(pl.col("pct_failed") > pl.col("threshold"))
        .then(pl.lit("failed"))
        .otherwise(pl.lit("passed"))
    )
    out = out.with_columns(
        pl.when(touched).then(pct).otherwise(pl.col("pct_failed")).alias("pct_failed")
    )
    return out.with_columns(
        pl.when(touched).then(status).otherwise(pl.col("status")).alias("status")
    )


def extract_part(rel: str) -> tuple[int, int] | None:
    """(K, N) for part K of a split extract of N parts (`patients_20260901_part2of3.xlsx`: a
    site cuts an extract too big for one file into numbered files), else None."""
    m = EXTRACT_PART_RE.search(Path(rel).name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _delivery(rel: str) -> str:
    """The extract a file belongs to: its name without a part number (`extract_part`)."""
    folder, _, name = rel.rpartition("/")
    whole = EXTRACT_PART_RE.sub("", name, count=1)
    return f"{folder}/{whole}" if folder else whole


def _missing_parts(items: list[tuple[FileJob, MappedFile | dict]]) -> str | None:
    """Why the files of one delivery are not a complete set of parts 1..N, or None."""
    found = [extract_part(job.rel) for job, _ in items]
    if found == [None]:
        return None
    parts = [p for p in found if p is not None]
    if len(parts) < len(found):
        return "the same extract is delivered both whole and in parts"
    totals = {n for _, n in parts if n}
    numbers = sorted(k for k, _ in parts if k)
    if len(totals) != 1 or len(numbers) != len(parts):
        return "its parts do not agree on how many parts there are"
    n = totals.pop()
    if numbers != list(range(1, n + 1)):
        have = ", ".join(str(k) for k in numbers)
        return f"it has parts {have} of {n}"
    return None


def choose_extracts(
    plan: Plan, outcomes: list[MappedFile | dict]
) -> tuple[list[MappedFile], list[dict], dict[tuple[str, int], list[MappedFile]]]:
    """Per source entry, the newest readable extract to load (cumulative refreshes).

    An extract is one file, or the parts 1..N of a split extract (`extract_part`), loaded
    together: all or none, so an incomplete or partly unreadable split extract is rejected and
    the next older extract is loaded instead. Returns the files to load, the file rows of the
    others (unmatched, undated beside dated ones, unreadable, incomplete, superseded) and per
    entry the files of the newest superseded extract that was read (the previous delivery,
    for records that disappeared).
    """
    file_rows: list[dict] = list(plan.unmatched)
    mapped: list[MappedFile] = []
    previous: dict[tuple[str, int], list[MappedFile]] = {}
    by_entry: dict[tuple[str, int], list[tuple[FileJob, MappedFile | dict]]] = {}
    for job, outcome in zip(plan.jobs, outcomes, strict=True):
        by_entry.setdefault((job.source_id, job.index), []).append((job, outcome))
    for key, items in by_entry.items():
        # an undated extract beside others cannot be ordered: a file-level error, never a
        # silent "superseded"; a sole undated extract is loaded (checked against the run date)
        undated = [it for it in items if _extract_date(it[0].rel) is None]
        if len(items) > 1 and undated:
            others = ", ".join(it[0].rel for it in items if it not in undated)
            for job, outcome in undated:
                sha = outcome.sha256 if isinstance(outcome, MappedFile) else outcome["sha256"]
                file_rows.append(_undated_row(job, sha, contracts_table(plan, job), others))
            items = [it for it in items if it not in undated]
            if not items:
                continue
        # cumulative refreshes: the newest readable extract is loaded, older ones superseded
        deliveries: dict[str, list[tuple[FileJob, MappedFile | dict]]] = {}
        for it in items:
            deliveries.setdefault(_delivery(it[0].rel), []).append(it)
        ordered = sorted(
            deliveries.items(),
            key=lambda d: (_extract_date(d[1][0][0].rel) or dt.date.min, d[0]),
            reverse=True,
        )
        active: list[MappedFile] = []
        for _, files in ordered:
            files.sort(key=lambda it: (extract_part(it[0].rel) or (0, 0))[0])
            read = [o for _, o in files if isinstance(o, MappedFile)]
            whole = _missing_parts(files) is None and len(read) == len(files)
            if not active:
                if whole:
                    active = read
                    mapped.extend(read)
                else:
                    file_rows.extend(_unloadable_parts(plan, files))
                continue
            for job, outcome in files:
                sha = outcome.sha256 if isinstance(outcome, MappedFile) else outcome["sha256"]
                file_rows.append(
                    _superseded_row(
                        job.name, sha, job.source_id, contracts_table(plan, job), active[0].path
                    )
                )
            if key not in previous and whole:
                previous[key] = read
    return mapped, file_rows, previous


def _unloadable_parts(plan: Plan, files: list[tuple[FileJob, MappedFile | dict]]) -> list[dict]:
    """The file rows of a newest extract that cannot be loaded: an unreadable file's own row;
    for a split extract, incomplete or with a part unreadable, every readable part rejected."""
    missing = _missing_parts(files)
    unreadable = [job.rel for job, o in files if not isinstance(o, MappedFile)]
    why = missing or f"part {', '.join(unreadable)} cannot be read"
    rows = []
    for job, outcome in files:
        if not isinstance(outcome, MappedFile):
            rows.append(outcome)
            continue
        rows.append(
            {
                "path": job.rel,
                "sha256": outcome.sha256,
                "source_id": job.source_id,
                "table_name": contracts_table(plan, job),
                "rows_read": 0,
                "rows_loaded": 0,
                "rows_quarantined": 0,
                "status": "rejected",
                "error": (
                    f"{job.rel}: is part of a split extract that cannot be loaded whole "
                    f"({why}); none of its parts is loaded"
                ),
                "fix": (
                    "deliver every part 1..N of the extract, named <name>_partKofN, each "
                    "readable, or remove its parts to load the previous extract"
                ),
            }
        )
    return rows


def delivered_pairs(mapped: list[MappedFile]) -> pl.DataFrame:
    """The distinct (site, MRN) pairs of the files, neither null (what `combine_frames` keys)."""
    delivered = [m.frame.select("site", "mrn") for m in mapped]
    if not delivered:
        return pl.DataFrame(schema={"site": pl.Utf8, "mrn": pl.Utf8})
    return pl.concat(delivered).unique().drop_nulls()


def combine_frames(
    mapped: list[MappedFile],
    contracts: dict[str, Contract],
    secret: bytes | PatientKeys,
    pairs: pl.DataFrame | None = None,
) -> dict[str, pl.DataFrame]:
    """One frame per contract table (empty when no file delivered it), with `patient_key`,
    whose columns all have the same chunks (`_aligned_pieces`). `secret`: the key, or the
    run's `PatientKeys` (each pair hashed once across the run's calls); `pairs`: the files'
    `delivered_pairs`, when the caller has them."""
    frames: dict[str, list[pl.DataFrame]] = {t: [] for t in contracts}
    for m in mapped:
        frames[m.mapping.table].append(m.frame)
    # one keyed hash per distinct (site, MRN) of the tables, looked up by a join of the
    # (site, mrn) columns alone and set beside the frame: joining the wide frame would copy
    # every column of every file (1.6 GiB at 300,000 patients), while the concatenated frames
    # share the mapped files' buffers
    if pairs is None:
        pairs = delivered_pairs([m for m in mapped if m.mapping.table in contracts])
    keys = PatientKeys.given(secret).of(pairs)
    out = {}
    for t, fs in frames.items():
        if not fs:
            empty = _empty_mapped(contracts[t])
            out[t] = empty.with_columns(pl.lit(None, pl.Utf8).alias("patient_key"))
            continue
        pieces = []
        for f in fs:
            key = f.select("site", "mrn").join(
                keys, on=["site", "mrn"], how="left", maintain_order="left"
            )
            pieces.extend(_aligned_pieces(f.hstack(key.select("patient_key").rechunk())))
        out[t] = pl.concat(pieces, how="vertical_relaxed", rechunk=False)
    return out


def _aligned_pieces(frame: pl.DataFrame) -> list[pl.DataFrame]:
    """A mapped file's frame cut where the chunks of its `_source_row` end (`validate.chunks`),
    so the table concatenated from the pieces has the same chunks in every column: its constant
    columns, concatenated as they are, would make polars copy every column a query of the
    table reads to align them, the largest part of validation's peak."""
    return in_chunks(frame, row_chunk_lengths(frame))


def attribute_root_causes(
    quarantine: Quarantine,
    tables: dict[str, pl.DataFrame],
    file_rows: list[dict],
    contracts: dict[str, Contract],
    source_sites: dict[str, str],
) -> tuple[Quarantine, dict[str, str]]:
    """The quarantine with each failure's root cause, and per file the rejected file that
    caused its rows' quarantine. A rejected file's row in `file_rows` gets the count of rows
    waiting for it.

    The attribution runs on the failures of the files read whole and the templates of the
    streamed files' segments, a copy's template standing in for each of its copies (every
    copy of a row has the same site, patient and checks, so the same cause and message);
    the copies' own rows are given where the attribution lists or counts rows."""
    stand_in = _attributable(quarantine)
    patient_copies = [s.copy_rows() for s in quarantine.segments if s.table == "patients"]
    failures, root_notes = rootcause.attribute(
        stand_in,
        file_rows,
        tables.get("patients", pl.DataFrame(schema={"site": pl.Utf8})),
        contracts,
        source_sites,
        copy_rows=pl.concat(patient_copies) if patient_copies else None,
        copy_counts=(
            pl.concat([s.copy_counts() for s in quarantine.segments])
            if quarantine.segments
            else None
        ),
    )
    if failures.height != stand_in.height:  # never: the attribution keeps every row
        raise ConservationError("root-cause attribution changed the failures; a bug")
    for row in file_rows:  # a rejected file's one query counts the rows waiting for it
        if row["path"] in root_notes:
            row["error"] = f"{row['error'].rstrip('.')}; {root_notes[row['path']]}"
    caused = (
        failures.filter(pl.col(rootcause.ROOT_CAUSE).is_not_null())
        .group_by("_source_file")
        .agg(pl.col(rootcause.ROOT_CAUSE).first())
    )
    return _attributed(quarantine, failures), dict(caused.iter_rows())


def _attributable(quarantine: Quarantine) -> pl.DataFrame:
    """The failures of the files read whole, then per segment its templates (a row's own
    failures, in row order, then a copy's per first row), as failure rows marked `_copy`,
    with `_first_row` and `_k`; a copy's stand-in has no `_source_row`."""
    base = quarantine.failures_base.with_columns(
        pl.lit(False).alias("_copy"),
        pl.col("_source_row").alias("_first_row"),
        pl.lit(None, pl.Int64).alias("_k"),
    )
    parts = [base]
    for seg in quarantine.segments:
        t = seg.templates.sort("_copy", maintain_order=True)  # own failures first
        parts.append(
            t.with_columns(
                pl.lit(seg.path).alias("_source_file"),
                pl.when(pl.col("_copy")).then(None).otherwise(pl.col("_first_row"))
                .alias("_source_row"),
                pl.lit(seg.table).alias("table_name"),
            ).select(base.columns)
        )  # fmt: skip
    return pl.concat(parts, how="vertical_relaxed")


def _attributed(quarantine: Quarantine, failures: pl.DataFrame) -> Quarantine:
    """The quarantine with the attributed failures of `_attributable`'s layout put back."""
    extra = ["_copy", "_first_row", "_k"]
    n = quarantine.failures_base.height
    at, segments = n, []
    for seg in quarantine.segments:
        t = failures.slice(at, seg.templates.height)
        at += seg.templates.height
        templates = t.select(*seg.templates.columns, rootcause.ROOT_CAUSE).with_columns(
            pl.col("_first_row").cast(seg.templates["_first_row"].dtype),
            pl.col("_k").cast(seg.templates["_k"].dtype),
        )
        segments.append(
            dataclasses.replace(seg, templates=templates.sort("_first_row", "_copy", "_k"))
        )
    return dataclasses.replace(
        quarantine, failures_base=failures.slice(0, n).drop(extra), segments=segments
    )


def _count_per_file(frames: list[pl.DataFrame]) -> dict[str, int]:
    if not frames:
        return {}
    counted = pl.concat([f.select("_source_file") for f in frames], how="vertical_relaxed")
    return dict(counted.group_by("_source_file").agg(pl.len()).iter_rows())


def account_files(
    mapped: list[MappedFile],
    quarantine: Quarantine,
    tables: dict[str, pl.DataFrame],
    caused_by: dict[str, str],
) -> list[dict]:
    """One file row per loaded file: rows read, loaded and quarantined, and its status.

    Raises ConservationError when rows read differ from rows loaded + quarantined.
    """
    q = quarantine.rows_per_file()
    ld = _count_per_file(list(tables.values()))
    w = _count_per_file([t.filter(pl.col("_warnings").list.len() > 0) for t in tables.values()])
    rows = []
    for m in mapped:
        read = m.frame.height + (m.copies.height if m.copies is not None else 0)
        loaded, quarantined = ld.get(m.path, 0), q.get(m.path, 0)
        if read != loaded + quarantined:
            raise ConservationError(
                f"{m.path}: {read} rows read but {loaded} loaded + {quarantined} quarantined; "
                "this is a bug in blinaetl, please report it"
            )
        status, note = "loaded", m.note
        if quarantined and not loaded:
            status = "all_quarantined"
            if m.path in caused_by:
                cause = (
                    f"every row quarantined because {caused_by[m.path]} was rejected "
                    "(fix that file first)"
                )
                note = f"{cause}; {note}" if note else cause
        elif quarantined:
            status = "partially_quarantined"
        elif w.get(m.path) or note:
            status = "loaded_with_warnings"
        rows.append(
            {
                "path": m.path,
                "sha256": m.sha256,
                "source_id": m.source.source,
                "table_name": m.mapping.table,
                "rows_read": read,
                "rows_loaded": loaded,
                "rows_quarantined": quarantined,
                "status": status,
                "error": note or None,
                "fix": None,
            }
        )
    return rows


def list_column_labels(mapped: list[MappedFile]) -> pl.DataFrame:
    """The variable labels files delivered (SAS, SPSS, Stata, Dataset-JSON), per field."""
    labels = [
        {
            "source_id": m.source.source,
            "source_file": m.path,
            "table_name": m.mapping.table,
            "field_name": f,
            "delivered_column": m.mapping.columns[f],
            "label": label,
        }
        for m in mapped
        for f, label in m.labels.items()
    ]
    return pl.DataFrame(labels, schema=LABELS_SCHEMA)


def _imputation_parts(
    m: MappedFile, contracts: dict[str, Contract], rule: str
) -> list[pl.DataFrame]:
    """One file's rows of `_imputations`, per date field."""
    parts: list[pl.DataFrame] = []
    if m.mapping.date_format != ISO8601:
        return parts
    for f in contracts[m.mapping.table].fields:
        derived = m.mapping.derived_dates.get(f.name)
        if f.type != "date" or (derived is not None and not derived.get("date")):
            continue  # a study-day date is never imputed (unless its delivered date was)
        raw = pl.col(RAW_PREFIX + f.name)
        rows = _all_rows(m, [RAW_PREFIX + f.name, f.name, "_source_row"])
        parts.append(
            rows.filter(raw.str.contains(PARTIAL_RE) & pl.col(f.name).is_not_null()).select(
                pl.lit(m.source.source).alias("source_id"),
                pl.lit(m.path).alias("source_file"),
                pl.col("_source_row").alias("source_row"),
                pl.lit(m.mapping.table).alias("table_name"),
                pl.lit(f.name).alias("field_name"),
                raw.alias("delivered"),
                pl.lit(rule).alias("rule"),
                pl.col(f.name).alias("imputed_date"),
            )
        )
    return parts


def _not_collected_part(m: MappedFile) -> pl.DataFrame | None:
    """One file's rows of `_not_collected` (None when it declares none or has no rows)."""
    if not (m.mapping.not_collected and m.frame.height):
        return None
    return (
        _all_rows(m, ["site", "_source_row"])
        .group_by("site")
        .agg(pl.len().alias("rows_delivered"))
        .join(pl.DataFrame({"field_name": list(m.mapping.not_collected)}), how="cross")
        .select(
            pl.lit(m.source.source).alias("source_id"),
            "site",
            pl.lit(m.mapping.table).alias("table_name"),
            "field_name",
            pl.lit(m.path).alias("source_file"),
            pl.col("rows_delivered").cast(pl.Int64),
        )
    )


def _not_collected_dq(not_collected: pl.DataFrame, contracts: dict[str, Contract]) -> pl.DataFrame:
    """DQD results for required fields a site did not collect: `<check>@<site>`, not applicable."""
    rows = []
    per_site = not_collected.group_by("table_name", "site", "field_name", maintain_order=True).agg(
        pl.col("rows_delivered").sum()
    )
    for table, site, field_name, n in per_site.iter_rows():
        check = next(
            (
                c
                for c in contracts[table].checks
                if c.check == "not_null" and c.column == field_name
            ),
            None,
        )
        if check is None:  # an optional field: no completeness check to report
            continue
        rows.append(
            {
                "check_id": f"{check.id}@{site}",
                "table_name": table,
                "column_name": field_name,
                "check_type": "not_collected",
                "kahn": check.kahn,
                "severity": check.severity,
                "threshold": float(check.threshold),
                "rows_checked": int(n),
                "rows_failed": 0,
                "pct_failed": None,
                "status": "not_applicable",
            }
        )
    schema = {
        "check_id": pl.Utf8,
        "table_name": pl.Utf8,
        "column_name": pl.Utf8,
        "check_type": pl.Utf8,
        "kahn": pl.Utf8,
        "severity": pl.Utf8,
        "threshold": pl.Float64,
        "rows_checked": pl.Int64,
        "rows_failed": pl.Int64,
        "pct_failed": pl.Float64,
        "status": pl.Utf8,
    }
    return pl.DataFrame(rows, schema=schema)


def with_raw_json(quarantine_rows: pl.DataFrame, mapped: list[MappedFile]) -> pl.DataFrame:
    """`raw_json`: each quarantined row as delivered (its file's own columns, as text).

    Built for the quarantined rows only, file by file, since each file has its own columns
    (the copies of streamed files get theirs in `_copy_row_info`). Each file's quarantined rows are contiguous (validation keeps the files' order),
    so the column is put together segment by segment, in the rows' order, without joining the
    whole frame.
    """
    by_path = {m.path: m for m in mapped}
    segments = (
        quarantine_rows.with_row_index("_at")
        .group_by("_source_file", maintain_order=True)
        .agg(pl.col("_at").min().alias("start"), pl.len().alias("n"))
    )
    if segments["n"].sum() != quarantine_rows.height or segments.height != len(
        set(segments["_source_file"])
    ):  # never when the rows come from validation, which keeps each file's rows together
        raise ConservationError("quarantine rows of one file are not contiguous; a bug")
    pieces, at = [], 0
    for path, start, n in segments.iter_rows():
        if start != at:  # never: as above
            raise ConservationError(f"quarantine rows of {path} are not contiguous; a bug")
        rows = quarantine_rows.slice(start, n).select("_source_row")
        m = by_path.get(path)
        pieces.append(
            _delivered_json(m, rows) if m is not None else pl.Series("raw_json", [None] * n)
        )
        at = start + n
    column = pl.concat(pieces).cast(pl.Utf8) if pieces else pl.Series("raw_json", [], pl.Utf8)
    return quarantine_rows.with_columns(column.alias("raw_json"))


def _delivered_json(m: MappedFile, rows: pl.DataFrame) -> pl.Series:
    """`raw_json` of the given rows (`_source_row`) of one file, in their order."""
    delivered = [c for c in m.raw.columns if c != "_source_row"]
    texts = m.raw.join(rows.unique(), on="_source_row", how="semi").select(
        "_source_row", pl.struct(delivered).struct.json_encode().alias("raw_json")
    )
    return rows.join(texts, on="_source_row", how="left", maintain_order="left")["raw_json"]


def contracts_table(plan: Plan, job: FileJob) -> str:
    source = next(s for s in plan.sources if s.source == job.source_id)
    return source.files[job.index].table


def _undated_row(job: FileJob, sha: str, table: str, others: str) -> dict:
    return {
        "path": job.rel,
        "sha256": sha,
        "source_id": job.source_id,
        "table_name": table,
        "rows_read": 0,
        "rows_loaded": 0,
        "rows_quarantined": 0,
        "status": "rejected",
        "error": (
            f"{job.rel}: has no extract date in its name, so it cannot be ordered against the "
            f"other extracts of the same source ({others or 'other undated files'}); not loaded"
        ),
        "fix": (
            "put the extract date in the file name as YYYYMMDD or YYYY-MM-DD (e.g. "
            "patients_20260901.csv), or remove the file if an extract of the same source "
            "replaces it"
        ),
    }


def _superseded_row(rel: str, sha: str, source_id: str, table: str, newer: str) -> dict:
    return {
        "path": rel,
        "sha256": sha,
        "source_id": source_id,
        "table_name": table,
        "rows_read": 0,
        "rows_loaded": 0,
        "rows_quarantined": 0,
        "status": "superseded",
        "error": f"{rel}: replaced by the newer extract {newer} of the same source (cumulative refresh); not loaded",
        "fix": None,
    }


def _disappeared(
    mapped: list[MappedFile],
    previous: dict[tuple[str, int], list[MappedFile]],
    contracts: dict[str, Contract],
    secret: bytes,
) -> pl.DataFrame:
    """Records of the previous extract of a source whose key is missing from the newest one.

    An extract split into parts (`extract_part`) is compared as a whole: a record moved to
    another part has not disappeared. `previous_file` is the part the record was in,
    `current_file` the newest extract (its first part).
    """
    frames = []
    by_file: dict[tuple[str, int], list[MappedFile]] = {}
    for m in mapped:
        by_file.setdefault((m.source.source, m.source.files.index(m.mapping)), []).append(m)
    for key, olds in previous.items():
        news = by_file.get(key)
        if not news:
            continue
        new = news[0]
        contract = contracts[new.mapping.table]
        cols = ["site", *contract.key]
        # identifying key parts (MRN, accession numbers) never leave in record_key
        shown = [c for c in contract.key if not contract.field(c).identifier]
        record = (
            pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("") for c in shown], separator="|")
            if shown
            else pl.lit("")
        )
        current = pl.concat([m.frame.select(cols) for m in news])
        gone = pl.concat(
            [
                old.frame.select(cols)
                .unique(maintain_order=True)  # in the previous file's row order, every run
                .with_columns(pl.lit(old.path).alias("previous_file"))
                for old in olds
            ]
        )
        if len(olds) > 1:  # a record in two parts of the previous extract is listed once
            gone = gone.unique(cols, keep="first", maintain_order=True)
        gone = gone.join(
            current.unique(),
            on=cols,
            how="anti",
            nulls_equal=True,
        )
        if gone.height == 0:
            continue
        gone = (
            gone.with_columns(patient_keys(gone["site"], gone["mrn"], secret))
            if "mrn" in cols
            else gone.with_columns(pl.lit(None, pl.Utf8).alias("patient_key"))
        )
        frames.append(
            gone.select(
                pl.lit(contract.table).alias("table_name"),
                pl.lit(new.source.source).alias("source_id"),
                "site",
                "patient_key",
                record.alias("record_key"),
                "previous_file",
                pl.lit(new.path).alias("current_file"),
            )
        )
    return pl.concat(frames) if frames else pl.DataFrame(schema=DISAPPEARED_SCHEMA)


def _empty_mapped(contract: Contract) -> pl.DataFrame:
    schema: dict[str, type[pl.DataType] | pl.DataType] = {
        f.name: POLARS_TYPES[f.type] for f in contract.fields
    }
    schema |= {RAW_PREFIX + f.name: pl.Utf8 for f in contract.fields}
    schema |= {
        "site": pl.Utf8,
        "_source_id": pl.Utf8,
        "_source_file": pl.Utf8,
        "_source_row": pl.Int64,
        "_file_sha256": pl.Utf8,
        "_extract_date": pl.Date,
        "_run_id": pl.Utf8,
        "_content_hash": pl.UInt64,
        "_truncated": pl.Boolean,
        "_not_collected": pl.Utf8,
        "_nul_line": pl.Boolean,
    }
    return pl.DataFrame(schema=schema)


__all__ = ["LINEAGE_COLUMNS", "IngestResult", "ingest_landing"]
