"""Run the declarative parts in DuckDB: definitions, vocabularies and the SQL model layers.

SQL models live in `sql/<layer>/<NN>_<model>.sql`, one model per file, executed per layer in
file-name order. Named definitions (`schemas/definitions.yaml`, overridable per run) are
published as `curated.definitions` and read in SQL through the macros `def_num(name)` and
`def_text(name)`; vocabularies (`schemas/vocab/*.csv`) become `ref.<file stem>` tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from blinaetl.resources import schemas_dir, sql_dir, vocab_dir
from blinaetl.validate.contracts import Contract, read_yaml, staging_ddl
from blinaetl.warehouse.frames import write_frame

# layer folder under sql/ -> the schema its models write (date_shift runs only in date-shift mode)
LAYER_SCHEMAS = {
    "harmonized": "harmonized",
    "curated": "curated",
    "date_shift": "curated",
    "endpoints": "endpoints",
}
LAYERS = tuple(LAYER_SCHEMAS)


class SqlModelError(RuntimeError):
    """A SQL model failed; the message names the model file."""


def load_definitions(
    path: Path | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Named definitions with their values and descriptions, defaults first, then overrides.

    An override must name a known definition: a typo must not silently keep the default.
    """
    src = path or schemas_dir() / "definitions.yaml"
    doc = read_yaml(src)["definitions"]
    defs = {name: {"value": d["value"], "description": d["description"]} for name, d in doc.items()}
    for name, value in (overrides or {}).items():
        if name not in defs:
            known = ", ".join(sorted(defs))
            raise KeyError(f"unknown definition {name!r} in the run's overrides; known: {known}")
        defs[name] = {**defs[name], "value": value}
    return defs


def install_definitions(con: duckdb.DuckDBPyConnection, defs: dict[str, dict[str, Any]]) -> None:
    """Write `curated.definitions` and (re)create the `def_num` / `def_text` macros."""
    con.execute("CREATE SCHEMA IF NOT EXISTS curated")
    con.execute(
        "CREATE OR REPLACE TABLE curated.definitions "
        "(name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, description VARCHAR NOT NULL)"
    )
    rows = [(n, str(d["value"]), d["description"]) for n, d in sorted(defs.items())]
    con.executemany("INSERT INTO curated.definitions VALUES (?, ?, ?)", rows)
    con.execute(
        "COMMENT ON TABLE curated.definitions IS "
        "'Named definitions (rules, windows, cut-offs) in force for this build, with their values.'"
    )
    for col, text in (
        ("name", "Definition name, as in schemas/definitions.yaml."),
        ("value", "Value used by this build (text; numbers as written)."),
        ("description", "What the definition means and where it is used."),
    ):
        con.execute(f"COMMENT ON COLUMN curated.definitions.{col} IS '{text}'")
    install_macros(con)


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE OR REPLACE MACRO def_num(n) AS "
        "(SELECT CAST(value AS DOUBLE) FROM curated.definitions WHERE name = n)"
    )
    con.execute(
        "CREATE OR REPLACE MACRO def_text(n) AS "
        "(SELECT value FROM curated.definitions WHERE name = n)"
    )


def load_vocab(con: duckdb.DuckDBPyConnection, folder: Path | None = None) -> list[str]:
    """Load every `*.csv` of the vocabulary folder as `ref.<stem>`; returns the table names."""

    src = folder or vocab_dir()
    con.execute("CREATE SCHEMA IF NOT EXISTS ref")
    names = []
    for path in sorted(src.glob("*.csv")):
        name = path.stem
        write_frame(con, f"ref.{name}", pl.read_csv(path, infer_schema_length=None), replace=True)
        names.append(name)
    return names


def create_staging(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract]) -> None:
    """Empty staging tables, one per contract."""
    con.execute("CREATE SCHEMA IF NOT EXISTS staging")
    for contract in contracts.values():
        con.execute(staging_ddl(contract))


def model_files(layer: str, root: Path | None = None) -> list[Path]:
    if layer not in LAYERS:
        raise ValueError(f"unknown SQL layer {layer!r}; layers are {', '.join(LAYERS)}")
    return sorted(((root or sql_dir()) / layer).glob("*.sql"))


def run_layer(con: duckdb.DuckDBPyConnection, layer: str, root: Path | None = None) -> list[str]:
    """Execute the models of one layer in order; returns the model file names run."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {LAYER_SCHEMAS[layer]}")
    ran = []
    for path in model_files(layer, root):
        try:
            con.execute(path.read_text(encoding="utf-8"))
        except duckdb.Error as exc:
            raise SqlModelError(f"SQL model {layer}/{path.name} failed: {exc}") from exc
        ran.append(path.name)
    return ran
