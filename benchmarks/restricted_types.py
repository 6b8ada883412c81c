"""Physical types of the restricted database: what an ENUM patient key or a file id would save.

    .venv/bin/python benchmarks/restricted_types.py --patients 100000 [--workdir DIR]
    .venv/bin/python benchmarks/restricted_types.py --landing path/to/landing --repeat 1

Issue 20, Deliver 3 (docs/performance.md): of the text the load and the transform persist, half
is `patient_key` (64-character hex) and much of the rest per-file lineage constants. This runs
ingest, load and the text stage once (the restricted database as the transform finds it), then,
each in a fresh child process, measures CPU seconds (user + system, all threads) and wall
seconds, with the load average, of:

- the staging append of `load_staging` (every staging table, two cursors) four ways: as now
  (`varchar`); `patient_key` as one ENUM type of the run whose dictionary is the sorted keys
  (`enum_key`: values, order and comparisons as the strings); the key and the four per-file
  constants as ENUMs (`enum_lineage`); the per-file constants dropped for a `USMALLINT` file id
  (`file_id`, the constants once per file in a small table);
- the harmonized and curated models (as `stage_transform`, `transform_storage.py`'s `file`)
  on the restricted database as it is (`varchar`), with `patient_key` converted to the ENUM
  in every staging and harmonized table (`enum_key`), and with each staging table a view that
  joins the file id to the constants (`file_id_views`, so a query sees the same columns);
- one join on `patient_key` (staging.assessments to harmonized.patient_timeline, in memory)
  with both sides VARCHAR, both the ENUM, and ENUM against VARCHAR (the cross-type join).

For `enum_key` and `file_id_views` it also checks that every curated table holds the same
values as with VARCHAR keys and lineage (`curated_values_equal`: rows as text, as multisets), so
a cost difference is not a different result.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import transform_storage  # noqa: E402

CONSTANTS = ("_source_id", "_source_file", "_file_sha256", "_extract_date", "_run_id")

COMMON = r"""
import json, os, re, resource, sys, time
import duckdb
import polars as pl

CONSTANTS = ("_source_id", "_source_file", "_file_sha256", "_extract_date", "_run_id")

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def columns(con, schema, table):
    return [c for (c,) in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
        "ORDER BY column_index", [schema, table]).fetchall()]
"""

APPEND = (
    COMMON
    + r"""
from blinaetl.validate.contracts import load_contracts, staging_ddl
from blinaetl.warehouse import frames
variant, prepared, target = sys.argv[1], sys.argv[2], sys.argv[3]
contracts = load_contracts()
src = duckdb.connect(prepared, read_only=True)
tables = {n: src.sql(f"SELECT * FROM staging.{n}").pl() for n in contracts}
src.close()
enums = {"varchar": [], "file_id": [], "enum_key": ["patient_key"],
         "enum_lineage": ["patient_key", "_source_id", "_source_file", "_file_sha256", "_run_id"]}
t0, c0 = time.perf_counter(), cpu()
con = duckdb.connect(target)
con.execute("CREATE SCHEMA staging")
ddls = {n: staging_ddl(c) for n, c in contracts.items()}
for col in enums[variant]:
    values = (pl.concat([t.select(pl.col(col)) for t in tables.values()]).unique()
              .drop_nulls().sort(col)[col].to_list())
    con.execute(f"CREATE TYPE staging.t{col} AS ENUM (SELECT unnest(?::VARCHAR[]))", [values])
    ddls = {n: d.replace(f'"{col}" VARCHAR', f'"{col}" staging.t{col}') for n, d in ddls.items()}
if variant == "file_id":
    files = (pl.concat([t.select(CONSTANTS).unique() for t in tables.values()]).unique()
             .sort("_source_file").with_row_index("_file_id")
             .with_columns(pl.col("_file_id").cast(pl.UInt16)))
    con.execute("CREATE SCHEMA meta")
    frames.write_frame(con, "meta.file_lineage", files, replace=True)
    ids = files.select("_source_file", "_file_id")
    # in the pipeline each file's frame would get its id as a literal when it is read
    tables = {n: t.join(ids, on="_source_file", how="left", maintain_order="left").drop(CONSTANTS)
              for n, t in tables.items()}
    for col in CONSTANTS:
        ddls = {n: re.sub(rf',\n  "{col}" [A-Z]+', "", d) for n, d in ddls.items()}
    ddls = {n: d[:-2] + ',\n  "_file_id" USMALLINT\n)' for n, d in ddls.items()}
for ddl in ddls.values():
    con.execute(ddl)
frames.write_frames(con, [(f"staging.{n}", t) for n, t in tables.items()])
con.close()
print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0,
                  "file_mib": os.path.getsize(target) / 2**20}))
"""
)

CONVERT = (
    COMMON
    + r"""
variant, db = sys.argv[1], sys.argv[2]
con = duckdb.connect(db)
tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                     "WHERE schema_name IN ('staging', 'harmonized') ORDER BY ALL").fetchall()
if variant == "enum_key":
    keyed = [(s, t) for s, t in tables if "patient_key" in columns(con, s, t)]
    union = " UNION ALL ".join(f"SELECT patient_key FROM {s}.{t}" for s, t in keyed)
    con.execute("CREATE TYPE staging.tpatient_key AS ENUM (SELECT DISTINCT patient_key FROM "
                f"({union}) WHERE patient_key IS NOT NULL ORDER BY 1)")
    for s, t in keyed:
        con.execute(f"CREATE OR REPLACE TABLE {s}.{t} AS SELECT * REPLACE "
                    f"(patient_key::staging.tpatient_key AS patient_key) FROM {s}.{t}")
elif variant == "file_id_views":
    lined = [(t, columns(con, s, t)) for s, t in tables if s == "staging"]
    lined = [(t, cols) for t, cols in lined if all(c in cols for c in CONSTANTS)]
    union = " UNION ".join(f"SELECT DISTINCT {', '.join(CONSTANTS)} FROM staging.{t}"
                           for t, _ in lined)
    con.execute("CREATE TABLE meta.file_lineage AS SELECT (row_number() OVER "
                f"(ORDER BY _source_file) - 1)::USMALLINT AS _file_id, * FROM ({union})")
    con.execute("CREATE SCHEMA staging_rows")
    for t, cols in lined:
        con.execute(f"CREATE TABLE staging_rows.{t} AS SELECT s.* EXCLUDE ({', '.join(CONSTANTS)}), "
                    f"f._file_id FROM staging.{t} AS s JOIN meta.file_lineage AS f USING "
                    "(_source_file) ORDER BY s._source_file, s._source_row")
        con.execute(f"DROP TABLE staging.{t}")
        shown = ", ".join(f"f.{c}" if c in CONSTANTS else f"r.{c}" for c in cols)
        con.execute(f"CREATE VIEW staging.{t} AS SELECT {shown} FROM staging_rows.{t} AS r "
                    "JOIN meta.file_lineage AS f USING (_file_id)")
con.execute("CHECKPOINT")
con.close()
print("{}")
"""
)

JOIN = (
    COMMON
    + r"""
prepared = sys.argv[1]
con = duckdb.connect()
con.execute(f"ATTACH '{prepared}' AS r (READ_ONLY)")
con.execute("CREATE TABLE a AS SELECT * FROM r.staging.assessments")
con.execute("CREATE TABLE t AS SELECT * FROM r.harmonized.patient_timeline")
con.execute("CREATE TYPE k AS ENUM (SELECT DISTINCT patient_key FROM (SELECT patient_key FROM a "
            "UNION ALL SELECT patient_key FROM t) WHERE patient_key IS NOT NULL ORDER BY 1)")
con.execute("CREATE TABLE ae AS SELECT * REPLACE (patient_key::k AS patient_key) FROM a")
con.execute("CREATE TABLE te AS SELECT * REPLACE (patient_key::k AS patient_key) FROM t")
out = {}
for name, left, right in (("varchar=varchar", "a", "t"), ("enum=enum", "ae", "te"),
                          ("enum=varchar", "ae", "t")):
    best = None
    for _ in range(3):
        c0 = cpu()
        con.execute(f"CREATE OR REPLACE TEMP TABLE j AS SELECT x.patient_key, x.assessment_date, "
                    f"y.day0_date FROM {left} AS x JOIN {right} AS y USING (patient_key)")
        used = cpu() - c0
        best = used if best is None else min(best, used)
    out[name] = best
print(json.dumps(out))
"""
)

EQUAL = r"""
import json, sys
import duckdb
a, b = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE "
          "database_name = 'a' AND schema_name = 'curated' ORDER BY 1").fetchall()]
differ = []
for t in tables:
    cols = [c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE "
            "database_name = 'a' AND schema_name = 'curated' AND table_name = ? "
            "ORDER BY column_index", [t]).fetchall()]
    shown = ", ".join(f'"{c}"::VARCHAR' for c in cols)
    n = con.execute(f"SELECT count(*) FROM ((SELECT {shown} FROM a.curated.{t} EXCEPT ALL "
                    f"SELECT {shown} FROM b.curated.{t}) UNION ALL (SELECT {shown} FROM "
                    f"b.curated.{t} EXCEPT ALL SELECT {shown} FROM a.curated.{t}))").fetchall()[0][0]
    if n:
        differ.append(t)
print(json.dumps({"tables": len(tables), "differ": differ}))
"""

APPEND_VARIANTS = ("varchar", "enum_key", "enum_lineage", "file_id")
TRANSFORM_VARIANTS = ("varchar", "enum_key", "file_id_views")


def child(code: str, *args: str) -> dict:
    """The JSON object `code` prints last, run in a fresh interpreter."""
    return json.loads(transform_storage.child(code, *args, json_line=True))


def measure(work: Path, landing: Path, repeat: int) -> dict:
    """Every figure of the module docstring; each measured `repeat` times, interleaved."""
    prepared = Path(transform_storage.child(transform_storage.PREPARE, str(landing), str(work)))
    converted = {"varchar": prepared}
    for variant in TRANSFORM_VARIANTS[1:]:
        converted[variant] = work / f"{variant}.duckdb"
        shutil.copy(prepared, converted[variant])
        child(CONVERT, variant, str(converted[variant]))
    results: dict[str, dict[str, list[dict]]] = {"append": {}, "transform": {}}
    analytics: dict[str, Path] = {}
    for _ in range(repeat):
        for variant in APPEND_VARIANTS:
            target = work / "append.duckdb"
            target.unlink(missing_ok=True)
            got = child(APPEND, variant, str(prepared), str(target))
            target.unlink(missing_ok=True)
            results["append"].setdefault(variant, []).append(got | {"load": os.getloadavg()[0]})
        for variant in TRANSFORM_VARIANTS:
            run = work / f"run_{variant}"
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir(mode=0o700)
            shutil.copy(converted[variant], run / "restricted.duckdb")
            got = child(
                transform_storage.VARIANT,
                "file",
                str(run / "restricted.duckdb"),
                str(run / "analytics.duckdb"),
            )
            results["transform"].setdefault(variant, []).append(got | {"load": os.getloadavg()[0]})
            analytics[variant] = run / "analytics.duckdb"
    (work / "timings.json").write_text(
        json.dumps(results, indent=2) + "\n"
    )  # kept if a check fails
    # the restricted database after the models ran (it holds harmonized.patient_timeline)
    joins = child(JOIN, str(work / "run_varchar" / "restricted.duckdb"))
    equal = {
        variant: child(EQUAL, str(analytics["varchar"]), str(analytics[variant]))
        for variant in TRANSFORM_VARIANTS[1:]
    }
    return {"results": results, "join_cpu_s": joins, "curated_values_equal": equal}


def main(argv: list[str] | None = None) -> int:
    ap = transform_storage.cohort_parser(__doc__)
    ap.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    work, landing = transform_storage.cohort_landing(args, "blinaetl-types-")
    doc = measure(work / "prepared", landing, args.repeat)
    print(f"{'stage':>9} | {'variant':>13} | {'cpu_s (min)':>11} | runs (cpu_s / wall_s / load)")
    for stage, variants in doc["results"].items():
        for variant, runs in variants.items():
            cells = ", ".join(f"{r['cpu_s']:.2f}/{r['wall_s']:.2f}/{r['load']:.1f}" for r in runs)
            best = min(r["cpu_s"] for r in runs)
            print(f"{stage:>9} | {variant:>13} | {best:>11.2f} | {cells}")
    joins = ", ".join(f"{k} {v:.3f}" for k, v in doc["join_cpu_s"].items())
    print(f"join on patient_key, CPU s (best of 3): {joins}")
    for variant, eq in doc["curated_values_equal"].items():
        print(
            f"{variant}: curated tables with the same values as varchar: "
            f"{eq['tables'] - len(eq['differ'])} of {eq['tables']}"
            + (f" (differ: {', '.join(eq['differ'])})" if eq["differ"] else "")
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
