"""Incremental runs: reuse the last build when nothing the SQL models read has changed.

After ingest, a run computes its build key: a SHA-256 over the staged rows as they are about to
be loaded (every staging table, `not_collected`, the date imputations and the column labels,
row order included) and over everything else the load, the text reader and the SQL models
depend on (`schemas/` and `sql/` as files, the contract and mapping folders of the run, the
definitions in force, date-shift mode, an identity of the pseudonymisation key, the code of
`blinaetl/` and the versions of the libraries, DuckDB among them). The staged rows are hashed
without two lineage columns that change on every run and that no SQL model reads: `_run_id`
and `_file_sha256` (a file with one copy of a row appended has new bytes; its staged rows are
otherwise the same).

When the key equals the one recorded in the restricted database (`meta.build_key`, written by
the transform that built it) and beside the live analytics file (`<file>.build_key`, written
after the swap), the run keeps the restricted database's staging, harmonized and reference
tables (setting `_run_id` and `_file_sha256` to this run's), rewrites the quarantine and meta
tables as a full run does, drops what later stages write (the query tables of the report), and
publishes a copy of the live analytics file instead of running the harmonized, curated and
endpoint models again: the SQL models are deterministic (design principle 5), so their output
on the same input is the one they gave. Any difference is another key and a full build.
`--full` never reuses. `tests/test_incremental.py` compares both databases with a full run's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from blinaetl.config import RunConfig

FORMAT = 1
# lineage columns that change on every run (or with the file's bytes) and no SQL model reads;
# `excluded_columns` checks the second half of that sentence on every run
VOLATILE = ("_run_id", "_file_sha256")
KEY_TABLE = "meta.build_key"
# what a run keeps of the restricted database when it reuses the build; every other schema
# (quarantine, meta, queries, ...) is dropped and written again by this run's stages
KEPT_SCHEMAS = ("main", "staging", "harmonized", "ref", "curated")

log = logging.getLogger("blinaetl")


def excluded_columns() -> tuple[str, ...]:
    """The volatile lineage columns no SQL model names (all of them, unless a model is edited
    to read one; then that column is hashed too and its change means a full build)."""
    from blinaetl.resources import sql_dir

    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(sql_dir().rglob("*.sql")))
    return tuple(c for c in VOLATILE if c not in text)


def build_key(cfg: RunConfig, result: Any) -> str:
    """The run's build key (see the module): staged rows and everything the models read."""
    from importlib import metadata

    from blinaetl.ingest.cache import code_fingerprint, folder_hashes, frame_digest, key_identity
    from blinaetl.resources import schemas_dir, sql_dir
    from blinaetl.warehouse.models import load_definitions

    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            [
                FORMAT,
                code_fingerprint(),
                metadata.version("duckdb"),
                key_identity(cfg.secret()),
                cfg.date_shift,
                load_definitions(overrides=cfg.definitions),
                folder_hashes([schemas_dir()]),
                folder_hashes([sql_dir()]),
                folder_hashes([cfg.contracts_dir]),
                folder_hashes([cfg.sources_dir]),
            ],
            sort_keys=True,
            default=str,
        ).encode()
    )
    skip = excluded_columns()
    for name, frame in sorted(result.tables.items()):
        frame_digest(digest, f"staging.{name}", frame, skip)
    frame_digest(digest, "not_collected", result.not_collected, skip)
    frame_digest(digest, "date_imputations", result.date_imputations, skip)
    frame_digest(digest, "column_labels", result.column_labels, skip)
    return digest.hexdigest()


def published_key_path(analytics_path: Path) -> Path:
    """Beside the live analytics file: the build key of the run that published it."""
    return analytics_path.with_name(analytics_path.name + ".build_key")


def recorded_keys(cfg: RunConfig) -> tuple[str | None, str | None]:
    """(key of the restricted database's build, key of the live analytics file), or None."""
    restricted = None
    if cfg.restricted_path.exists():
        con = duckdb.connect(str(cfg.restricted_path), read_only=True)
        try:
            restricted = con.execute(f"SELECT max(key) FROM {KEY_TABLE}").fetchall()[0][0]
        except duckdb.Error:
            restricted = None
        finally:
            con.close()
    sidecar = published_key_path(cfg.analytics_path)
    published = None
    if cfg.analytics_path.exists() and sidecar.is_file():
        published = sidecar.read_text(encoding="utf-8").strip() or None
    return restricted, published


def can_reuse(cfg: RunConfig, key: str) -> bool:
    """Whether the last build is this run's: same key in the restricted database and beside
    the live analytics file (never on `--full`)."""
    if cfg.full:
        return False
    restricted, published = recorded_keys(cfg)
    return restricted == key and published == key


def record_key(con: duckdb.DuckDBPyConnection, key: str) -> None:
    """`meta.build_key` of the restricted database (a full run and a reusing one write it)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS meta")
    con.execute(f"CREATE OR REPLACE TABLE {KEY_TABLE} (key VARCHAR)")
    con.execute(f"INSERT INTO {KEY_TABLE} VALUES (?)", [key])


def keep_restricted(
    con: duckdb.DuckDBPyConnection, run_id: str, files: pl.DataFrame, tables: list[str]
) -> None:
    """Prepare a reused restricted database for this run's load: drop every schema a full
    run's load would not find (it starts from an empty file), and give the staged rows this
    run's `_run_id` and each file's `_file_sha256`."""
    schemas = con.execute(
        "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database() "
        "AND NOT internal"
    ).fetchall()
    for (schema,) in schemas:
        if schema not in KEPT_SCHEMAS:
            con.execute(f'DROP SCHEMA "{schema}" CASCADE')
    shas = files.select(pl.col("path").alias("_path"), pl.col("sha256").alias("_sha"))
    con.register("_file_shas", shas.to_arrow())
    try:
        for table in tables:
            con.execute(f"UPDATE staging.{table} SET _run_id = ?", [run_id])
            con.execute(
                f"UPDATE staging.{table} SET _file_sha256 = f._sha FROM _file_shas f "
                f"WHERE staging.{table}._source_file = f._path "
                f"AND staging.{table}._file_sha256 IS DISTINCT FROM f._sha"
            )
    finally:
        con.unregister("_file_shas")


def copy_live_build(analytics_path: Path, building: Path) -> None:
    """The run's new analytics file as a copy of the live one (built from the same key)."""
    for stale in analytics_path.parent.glob(f".{analytics_path.name}.*.building*"):
        stale.unlink(missing_ok=True)
    shutil.copyfile(analytics_path, building)
