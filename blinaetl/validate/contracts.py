"""Canonical extract contracts: loaded from `schemas/contracts/*.yaml`.

A contract declares a table's fields and its checks, each check once, with its Kahn category,
severity and threshold. Checks implied by the field declarations (required, type, allowed
values) and the exact-duplicate-row check are generated here, so they too are declared once.
This module only reads declarations; `blinaetl.validate` executes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from blinaetl.resources import contracts_dir

# libyaml's loader when PyYAML has it (about 8x faster than the pure-Python one), same documents
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    """The YAML document of a file, with the safe loader (no Python objects)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)


FIELD_TYPES = {"string", "date", "int", "float", "bool"}
# the tables in validation order (the executor's; here, so the ingest can order its groups of
# tables without importing the validator, which imports pandera)
ORDER = ("patients", "treatments", "outcomes", "assessments", "flow_results", "imaging_reports")


def in_validation_order(tables: Iterable[str]) -> list[str]:
    """`tables` in validation order: those of `ORDER` first, in its order, then the others as
    given (the one ordering of the executor, the ingest's table groups and its quarantine)."""
    given = list(tables)
    return [t for t in ORDER if t in given] + [t for t in given if t not in ORDER]


POLARS_TYPES = {
    "string": pl.Utf8,
    "date": pl.Date,
    "int": pl.Int64,
    "float": pl.Float64,
    "bool": pl.Boolean,
}
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "date": "DATE",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
}
# Kahn 2016 categories, in the order reports list them
KAHN_CATEGORIES = (
    "conformance.value",
    "conformance.relational",
    "conformance.computational",
    "completeness",
    "plausibility.uniqueness",
    "plausibility.atemporal",
    "plausibility.temporal",
)
SEVERITIES = {"error", "warning"}

# Lineage and bookkeeping columns every staged row carries, with their DuckDB types.
# One row per failing row and check, as validation lists it (`executor.list_failures`) and as the
# streamed reader expands copies of a row (`ingest.landing`): located by source, file and row.
FAILURE_COLUMNS = (
    "_source_id",
    "_source_file",
    "_source_row",
    "site",
    "patient_key",
    "row_hash",
    "table_name",
    "check_id",
    "column_name",
    "kahn",
    "severity",
    "message",
)

LINEAGE_COLUMNS: dict[str, str] = {
    "site": "VARCHAR",
    "patient_key": "VARCHAR",
    "_source_id": "VARCHAR",
    "_source_file": "VARCHAR",
    "_source_row": "BIGINT",
    "_file_sha256": "VARCHAR",
    "_extract_date": "DATE",
    "_run_id": "VARCHAR",
    "_warnings": "VARCHAR[]",
}
# the lineage text constant per file that the validated tables hold as categoricals
# (`validate.executor.split_rows`); `site` and `_source_file` stay text, joined against text
PER_FILE_LINEAGE = ("_source_id", "_file_sha256", "_run_id")


class ContractError(ValueError):
    """A contract file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    required: bool = False
    identifier: bool = False
    allowed: tuple[str, ...] | None = None
    unit: str | None = None
    description: str = ""

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    check: str
    kahn: str
    severity: str
    threshold: float
    message: str
    table: str
    column: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    implied: bool = False


@dataclass(frozen=True)
class Contract:
    table: str
    prefix: str
    kind: str
    description: str
    key: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    checks: tuple[CheckSpec, ...]
    path: Path

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.table} has no field {name!r}")

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def identifier_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.identifier)


def derive_row_checks(table: str, prefix: str) -> list[CheckSpec]:
    """The checks every table has on its rows: exact duplicate, cut-off line, NUL byte."""
    checks = [
        CheckSpec(
            id=f"{prefix}_DUPLICATE_ROW",
            check="duplicate_row",
            kahn="plausibility.uniqueness",
            severity="error",
            threshold=0,
            message=(
                "This row is an exact copy of an earlier row of the same file; the copy is "
                "quarantined and the first row is loaded. Remove the copy from the extract."
            ),
            table=table,
        )
    ]
    checks.append(
        CheckSpec(
            id=f"{prefix}_ROW_COMPLETE",
            check="row_complete",
            kahn="conformance.value",
            severity="error",
            threshold=0,
            message=(
                "The row has fewer fields than the header (the line looks cut off); send the "
                "extract again in full."
            ),
            table=table,
        )
    )
    checks.append(
        CheckSpec(
            id=f"{prefix}_ROW_TEXT",
            check="row_text",
            kahn="conformance.value",
            severity="error",
            threshold=0,
            message=(
                "The line holds a NUL byte (a control character that is not text, often from a "
                "damaged export); the line was not loaded. Remove the character or send the "
                "extract again."
            ),
            table=table,
        )
    )
    return checks


# what a value of each non-text type must look like, in the words of a parse failure
PARSE_WORDS = {
    "date": (
        "a date in the format the site's mapping declares in 'date_format' "
        "(ISO %Y-%m-%d, e.g. 2024-01-31, when it declares none); the delivered "
        "value is shown in the quarantined row (quarantine.rows.raw_json)"
    ),
    "int": "a whole number",
    "float": "a number",
    "bool": "yes/no (true/false, 1/0, Y/N)",
}


def derive_field_checks(table: str, prefix: str, f: FieldSpec) -> list[CheckSpec]:
    """The checks a field's declaration implies: required, parses as its type, a date not
    after the extract."""
    checks: list[CheckSpec] = []
    up = f.name.upper()
    if f.required:
        checks.append(
            CheckSpec(
                id=f"{prefix}_{up}_REQUIRED",
                check="not_null",
                kahn="completeness",
                severity="error",
                threshold=0,
                message=f"'{f.name}' is required and is empty; fill it in the extract.",
                table=table,
                column=f.name,
                implied=True,
            )
        )
    if f.type != "string":
        what = PARSE_WORDS[f.type]
        checks.append(
            CheckSpec(
                id=f"{prefix}_{up}_TYPE",
                check="parses",
                kahn="conformance.value",
                severity="error",
                threshold=0,
                message=(
                    f"'{f.name}' must be {what}; the delivered value cannot be read. "
                    + (
                        "Correct the value, or set 'date_format' in the site's mapping to "
                        "the format the site uses (e.g. '%d/%m/%Y')."
                        if f.type == "date"
                        else "Correct the value in the extract."
                    )
                ),
                table=table,
                column=f.name,
                implied=True,
            )
        )
    if f.type == "date":
        checks.append(
            CheckSpec(
                id=f"{prefix}_{up}_NOT_FUTURE",
                check="not_after_extract",
                kahn="plausibility.temporal",
                severity="error",
                threshold=0,
                message=(
                    f"'{f.name}' is later than the extract's date (the date in the file "
                    "name, or the run date when the name has none): a date cannot be "
                    "recorded before it happens. Correct the date in the extract."
                ),
                table=table,
                column=f.name,
                implied=True,
            )
        )
    return checks


def _implied_checks(table: str, prefix: str, fields: tuple[FieldSpec, ...]) -> list[CheckSpec]:
    checks = derive_row_checks(table, prefix)
    for f in fields:
        checks += derive_field_checks(table, prefix, f)
    return checks


def _load(path: Path) -> Contract:
    where = f"contract {path.name}"
    try:
        doc = read_yaml(path)
    except yaml.YAMLError as exc:
        raise ContractError(f"{where}: not valid YAML ({exc})") from exc
    try:
        table = doc["table"]
        prefix = doc["prefix"]
        fields = tuple(
            FieldSpec(
                name=f["name"],
                type=f["type"],
                required=bool(f.get("required", False)),
                identifier=bool(f.get("identifier", False)),
                allowed=tuple(f["allowed"]) if f.get("allowed") else None,
                unit=f.get("unit"),
                description=f.get("description", ""),
            )
            for f in doc["fields"]
        )
    except (KeyError, TypeError) as exc:
        raise ContractError(f"{where}: missing entry {exc}") from exc
    names = {f.name for f in fields}
    for f in fields:
        if f.type not in FIELD_TYPES:
            raise ContractError(f"{where}: field {f.name!r} has unknown type {f.type!r}")
    checks = _implied_checks(table, prefix, fields)
    seen = {c.id for c in checks}
    reserved = {"id", "check", "kahn", "severity", "threshold", "message", "column"}
    for raw in doc.get("checks", []):
        cid = raw.get("id", "?")
        if cid in seen:
            raise ContractError(f"{where}: check id {cid} is declared twice")
        seen.add(cid)
        for k in ("id", "check", "kahn", "severity", "threshold", "message"):
            if k not in raw:
                raise ContractError(f"{where}: check {cid} lacks '{k}'")
        if raw["kahn"] not in KAHN_CATEGORIES:
            raise ContractError(f"{where}: check {cid} has unknown Kahn category {raw['kahn']!r}")
        if raw["severity"] not in SEVERITIES:
            raise ContractError(f"{where}: check {cid} severity must be error or warning")
        col = raw.get("column")
        if col is not None and col not in names:
            raise ContractError(f"{where}: check {cid} names unknown column {col!r}")
        checks.append(
            CheckSpec(
                id=cid,
                check=raw["check"],
                kahn=raw["kahn"],
                severity=raw["severity"],
                threshold=float(raw["threshold"]),
                message=raw["message"],
                table=table,
                column=col,
                params={k: v for k, v in raw.items() if k not in reserved},
            )
        )
    return Contract(
        table=table,
        prefix=prefix,
        kind=doc.get("kind", ""),
        description=" ".join(str(doc.get("description", "")).split()),
        key=tuple(doc.get("key", [])),
        fields=fields,
        checks=tuple(checks),
        path=path,
    )


@cache
def load_contracts(directory: Path | None = None) -> dict[str, Contract]:
    """All contracts of a folder by table name (default: the packaged schemas/contracts)."""
    folder = directory or contracts_dir()
    contracts = {}
    for path in sorted(folder.glob("*.yaml")):
        c = _load(path)
        contracts[c.table] = c
    if not contracts:
        raise ContractError(f"no contract files (*.yaml) in {folder}")
    return contracts


def staging_ddl(contract: Contract, schema: str = "staging") -> str:
    """CREATE TABLE statement of a contract's staging table (canonical fields + lineage)."""
    cols = [f'"{f.name}" {f.duckdb_type}' for f in contract.fields]
    cols += [f'"{name}" {typ}' for name, typ in LINEAGE_COLUMNS.items()]
    return f"CREATE OR REPLACE TABLE {schema}.{contract.table} (\n  " + ",\n  ".join(cols) + "\n)"
