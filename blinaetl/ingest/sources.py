"""Source mappings: how one site's or laboratory's files map onto the canonical contracts.

One YAML file per source in `schemas/sources/` (format in docs/architecture.md). Onboarding a
site is writing such a file; no Python. Loading checks every key, so a typo in a mapping stops
the run with a message naming the mapping file and the key instead of silently loading nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blinaetl.resources import sources_dir
from blinaetl.validate.contracts import Contract, load_contracts, read_yaml

FORMATS = {"csv", "tsv", "xlsx", "parquet"}
ENCODINGS = {"utf-8", "utf8", "latin-1", "latin1", "iso-8859-1", "cp1252"}
FILE_KEYS = {
    "table",
    "glob",
    "format",
    "sheet",
    "header_row",
    "encoding",
    "delimiter",
    "date_format",
    "columns",
    "units",
    "codes",
    "constants",
}
SOURCE_KEYS = {"source", "kind", "site", "lab", "files"}


class MappingError(ValueError):
    """A source mapping is malformed; the message names the mapping file and the key."""


@dataclass(frozen=True)
class FileMapping:
    table: str
    glob: str
    format: str
    sheet: str | None = None
    header_row: int = 1
    encoding: str = "utf-8"
    delimiter: str = ","
    date_format: str = "%Y-%m-%d"
    columns: dict[str, str] = field(default_factory=dict)
    units: dict[str, float] = field(default_factory=dict)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceMapping:
    source: str
    kind: str
    site: str | None
    lab: str | None
    files: tuple[FileMapping, ...]
    path: Path
    sha256: str = ""


def _file_mapping(raw: dict, where: str, contracts: dict[str, Contract]) -> FileMapping:
    unknown = set(raw) - FILE_KEYS
    if unknown:
        raise MappingError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(FILE_KEYS))}"
        )
    for key in ("table", "glob", "format"):
        if key not in raw:
            raise MappingError(f"{where}: missing key '{key}'")
    table = raw["table"]
    if table not in contracts:
        raise MappingError(
            f"{where}: table '{table}' is not a contract; known: {', '.join(sorted(contracts))}"
        )
    fmt = str(raw["format"]).lower()
    if fmt not in FORMATS:
        raise MappingError(f"{where}: format '{fmt}' is not one of {', '.join(sorted(FORMATS))}")
    encoding = str(raw.get("encoding", "utf-8")).lower()
    if encoding not in ENCODINGS:
        raise MappingError(
            f"{where}: encoding '{encoding}' is not one of {', '.join(sorted(ENCODINGS))}"
        )
    contract = contracts[table]
    names = set(contract.field_names)
    for key in ("columns", "units", "codes", "constants"):
        bad = set(raw.get(key) or {}) - names
        if bad:
            raise MappingError(
                f"{where}: '{key}' names field(s) {', '.join(sorted(bad))} that table '{table}' does not have"
            )
    columns = {str(k): str(v) for k, v in (raw.get("columns") or {}).items()}
    constants = dict(raw.get("constants") or {})
    header_row = int(raw.get("header_row", 1))
    if header_row < 1:
        raise MappingError(f"{where}: header_row must be 1 or more")
    delimiter = raw.get("delimiter", "\t" if fmt == "tsv" else ",")
    return FileMapping(
        table=table,
        glob=str(raw["glob"]),
        format=fmt,
        sheet=raw.get("sheet"),
        header_row=header_row,
        encoding=encoding,
        delimiter=delimiter,
        date_format=str(raw.get("date_format", "%Y-%m-%d")),
        columns=columns,
        units={k: float(v) for k, v in (raw.get("units") or {}).items()},
        codes={
            k: {str(a): str(b) for a, b in v.items()} for k, v in (raw.get("codes") or {}).items()
        },
        constants=constants,
    )


def load_source(path: Path, contracts: dict[str, Contract] | None = None) -> SourceMapping:
    contracts = contracts or load_contracts()
    where = f"source mapping {path.name}"
    try:
        raw = read_yaml(path)
    except FileNotFoundError as exc:
        raise MappingError(f"{where}: the file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise MappingError(f"{where}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise MappingError(
            f"{where}: expected a mapping with keys {', '.join(sorted(SOURCE_KEYS))}"
        )
    unknown = set(raw) - SOURCE_KEYS
    if unknown:
        raise MappingError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("source", "kind", "files"):
        if key not in raw:
            raise MappingError(f"{where}: missing key '{key}'")
    if raw["kind"] not in ("clinical", "flow", "imaging"):
        raise MappingError(f"{where}: kind must be clinical, flow or imaging")
    files = tuple(
        _file_mapping(f, f"{where}, files[{i}]", contracts)
        for i, f in enumerate(raw["files"] or [])
    )
    for i, fm in enumerate(files):
        contract = contracts[fm.table]
        given = set(fm.columns) | set(fm.constants)
        if raw.get("site"):
            given.add("patient_site")
        missing = [f.name for f in contract.fields if f.required and f.name not in given]
        if missing:
            raise MappingError(
                f"{where}, files[{i}]: required field(s) {', '.join(missing)} of '{fm.table}' "
                "are neither mapped in 'columns' nor set in 'constants'"
            )
    if raw["kind"] != "flow" and not raw.get("site"):
        raise MappingError(
            f"{where}: a {raw['kind']} source needs 'site' (the patients' site code)"
        )
    return SourceMapping(
        source=str(raw["source"]),
        kind=raw["kind"],
        site=raw.get("site"),
        lab=raw.get("lab"),
        files=files,
        path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


SOURCES_ENV = "BLINAETL_SOURCES"


def resolve_sources_dir(directory: Path | str | None = None) -> Path:
    """The mapping folder of a run: the one given (--sources, run config), else $BLINAETL_SOURCES,
    else the bundled `schemas/sources/`. A folder that is named but missing or empty is an error.
    """
    if directory:
        folder, said = (
            Path(directory),
            "the mapping folder given (--sources or 'sources' in the run config)",
        )
    elif os.environ.get(SOURCES_ENV):
        folder, said = Path(os.environ[SOURCES_ENV]), f"${SOURCES_ENV}"
    else:
        return sources_dir()
    if not folder.is_dir():
        raise MappingError(
            f"{said} is {folder}, which is not a folder (cwd: {Path.cwd()}); point it at the "
            "folder holding the site's mapping files (*.yaml), or unset it to use the bundled ones"
        )
    if not any(folder.glob("*.yaml")):
        raise MappingError(
            f"{said} is {folder}, which holds no mapping file (*.yaml); put the site's mappings "
            "there (docs/onboarding.md), or unset it to use the bundled ones"
        )
    return folder


def load_sources(
    directory: Path | None = None, contracts: dict[str, Contract] | None = None
) -> list[SourceMapping]:
    folder = resolve_sources_dir(directory)
    sources = [load_source(p, contracts) for p in sorted(folder.glob("*.yaml"))]
    ids = [s.source for s in sources]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise MappingError(
            f"source ids used by more than one mapping in {folder}: {', '.join(sorted(dupes))}"
        )
    return sources


def match(rel_path: str, sources: list[SourceMapping]) -> tuple[SourceMapping, FileMapping] | None:
    """The first mapping whose glob matches the landing-relative path."""
    for s in sources:
        for fm in s.files:
            if fnmatch.fnmatchcase(rel_path, fm.glob):
                return s, fm
    return None
