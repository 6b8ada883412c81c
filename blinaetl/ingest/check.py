"""`blinaetl check-mapping`: validate one source mapping and preview what it makes of the files.

Without a landing folder, only the mapping is checked (every key, against the contracts). With
one, each file entry's newest matching file is read, shaped, mapped and validated exactly as a
run would (rows read = loaded + quarantined), nothing is written, and the first records are
shown. Identifier fields (MRN, name, birth date, accession) are masked unless asked for.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from blinaetl.ingest.landing import (
    FileJob,
    Plan,
    _extract_date,
    discover,
    read_file,
    validate_files,
)
from blinaetl.ingest.sources import SourceMapping, load_source
from blinaetl.validate.contracts import load_contracts

MASK = "***"


@dataclass
class MappingCheck:
    source: SourceMapping
    files: pl.DataFrame | None = None  # the file listing a run would give, if a landing was read
    previews: dict[str, pl.DataFrame] = field(default_factory=dict)  # file -> first records
    failures: pl.DataFrame | None = None  # check id, message, rows, per file
    unmatched_entries: list[str] = field(default_factory=list)  # globs no landing file matched

    @property
    def needs_attention(self) -> bool:
        if self.files is None:
            return False
        bad = self.files.filter(pl.col("status").is_in(["rejected", "quarantined"])).height
        return bool(bad or self.files["rows_quarantined"].sum() or self.unmatched_entries)


def check_mapping(
    path: Path,
    landing: Path | None = None,
    rows: int = 5,
    show_identifiers: bool = False,
    contracts_dir: Path | None = None,
) -> MappingCheck:
    """Load the mapping (MappingError names the file and key) and, with a landing, dry-run it."""
    contracts = load_contracts(contracts_dir)
    source = load_source(path, contracts)
    result = MappingCheck(source)
    if landing is None:
        return result
    if not landing.is_dir():
        raise FileNotFoundError(f"landing folder {landing} does not exist")
    import fnmatch

    found = discover(landing)
    jobs: list[FileJob] = []
    for index, fm in enumerate(source.files):
        hits = [(p, rel) for p, rel in found if fnmatch.fnmatchcase(rel, fm.glob)]
        if not hits:
            result.unmatched_entries.append(fm.glob)
            continue
        # the newest extract, as a run loads it
        p, rel = max(hits, key=lambda h: (_extract_date(h[1]) or dt.date.min, h[1]))
        part = fm.redcap["instrument"] if fm.redcap else ""
        if part and sum(1 for e in source.files if e.redcap and e.redcap["instrument"] == part) > 1:
            part = f"{part}.{index}"
        jobs.append(FileJob(p, rel, source.source, index, part))
    plan = Plan(jobs, [], [source], contracts)
    outcomes = [read_file(job, plan, "check-mapping") for job in jobs]
    ingest = validate_files(plan, outcomes, secrets.token_bytes(32))
    result.files = ingest.files.select(
        "path",
        "table_name",
        "rows_read",
        "rows_loaded",
        "rows_quarantined",
        "status",
        "error",
        "fix",
    )
    counts = ingest.quarantine.failure_counts()
    result.failures = (
        counts.sort("_source_file", "rows", descending=[False, True]) if counts.height else None
    )
    for job in jobs:
        fm = source.files[job.index]
        contract = contracts[fm.table]
        table = ingest.tables[fm.table].filter(pl.col("_source_file") == job.name)
        preview = (
            table.sort("_source_row")
            .head(rows)
            .select("_source_row", "site", *contract.field_names)
        )
        if not show_identifiers:
            preview = preview.with_columns(
                [
                    pl.when(pl.col(f).is_not_null()).then(pl.lit(MASK)).otherwise(None).alias(f)
                    for f in contract.identifier_fields
                ]
            )
        result.previews[job.name] = preview
    return result


def render(check: MappingCheck) -> str:
    """The check as text for a terminal."""
    s = check.source
    lines = [
        f"mapping {s.path} is valid: source {s.source} ({s.kind}), "
        + (
            f"site {s.site}"
            if s.site
            else "site from a column"
            if s.kind != "flow"
            else f"lab {s.lab}"
        ),
    ]
    for i, fm in enumerate(s.files):
        extras = [
            k
            for k, v in (
                ("where", fm.where),
                ("unpivot", fm.unpivot),
                ("pivot", fm.pivot),
                ("site_from", fm.site_from),
                ("derived_dates", fm.derived_dates),
                ("not_collected", fm.not_collected),
            )
            if v
        ]
        lines.append(
            f"  files[{i}]: {fm.table} <- {fm.glob} ({fm.format})"
            + (f"; {', '.join(extras)}" if extras else "")
            + (f"; not collected: {', '.join(fm.not_collected)}" if fm.not_collected else "")
        )
    if check.files is None:
        lines.append("no landing folder given (--landing DIR): the files were not read")
        return "\n".join(lines)
    for glob in check.unmatched_entries:
        lines.append(f"no landing file matches '{glob}'")
    with pl.Config(tbl_rows=50, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
        for f in check.files.iter_rows(named=True):
            lines.append("")
            lines.append(
                f"{f['path']}: {f['status']}, {f['rows_read']} rows read = {f['rows_loaded']} "
                f"loaded + {f['rows_quarantined']} quarantined"
            )
            if f["error"]:
                lines.append(f"  {f['error']}")
            if f["fix"]:
                lines.append(f"  fix: {f['fix']}")
            if check.failures is not None:
                for _, cid, msg, n in check.failures.filter(
                    pl.col("_source_file") == f["path"]
                ).iter_rows():
                    lines.append(f"  {n} row(s) fail {cid}: {msg}")
            if f["path"] in check.previews and check.previews[f["path"]].height:
                lines.append(f"  first records loaded ({f['table_name']}):")
                lines.append(str(check.previews[f["path"]]))
    return "\n".join(lines)
