"""Where the transform stage's time goes: the SQL work, or writing its results to disk.

    .venv/bin/python benchmarks/transform_storage.py --patients 100000 [--workdir DIR]
    .venv/bin/python benchmarks/transform_storage.py --landing path/to/landing

Runs ingest, load and the text stage once (the restricted database as the transform stage
finds it), then, each in a fresh child process on its own copy of that database, the
harmonized and curated models three ways, and prints wall and CPU seconds (user + system, all
threads) of each, with the load average:

- `file`: as `stage_transform` does: the harmonized tables written in the restricted file,
  the curated tables in a new analytics file;
- `memory_build`: the harmonized models in an attached in-memory database (DuckDB does not
  compress in-memory tables), the curated tables from there into the analytics file, then
  every harmonized table copied into the restricted file (what has to persist, persisted once);
- `all_memory`: everything in one in-memory database and nothing written: the cost of the SQL
  work alone, the least any build layout can reach while the same tables persist.

CPU seconds are the figure to compare on a shared machine; wall seconds move with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PREPARE = r"""
import sys
from pathlib import Path
from blinaetl.pipeline import RunConfig, stage_extract_text, stage_ingest, stage_load
landing, work = Path(sys.argv[1]), Path(sys.argv[2])
cfg = RunConfig(landing=landing, warehouse=work / "warehouse", reports=work / "reports",
                demo=True, gx=False)
result = stage_ingest(cfg)
stage_load(cfg, result)
stage_extract_text(cfg, result)
print(cfg.restricted_path)
"""

VARIANT = r"""
import json, resource, sys, time
from pathlib import Path
import duckdb
from blinaetl.warehouse import models

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

variant, db, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
defs = models.load_definitions()
t0, c0 = time.perf_counter(), cpu()
if variant == "all_memory":
    con = duckdb.connect()
    con.execute(f"ATTACH '{db}' AS r (READ_ONLY)")
    con.execute("COPY FROM DATABASE r TO memory")
    con.execute("DETACH r")
    t0, c0 = time.perf_counter(), cpu()  # the copy into memory is not the models' work
    models.install_definitions(con, defs)
    models.load_vocab(con)
    models.run_layer(con, "harmonized")
    models.run_layer(con, "curated")
else:
    con = duckdb.connect(str(db))
    home = db.stem
    models.install_definitions(con, defs)
    models.load_vocab(con)
    reads = f"{home}.staging,{home}.harmonized,{home}.ref"
    if variant == "memory_build":
        con.execute("ATTACH ':memory:' AS build")
        con.execute("USE build")
        models.install_definitions(con, defs)
        con.execute("CREATE SCHEMA harmonized")
        con.execute(f"SET search_path = 'build.main,build.harmonized,{reads}'")
        reads = f"build.harmonized,{reads}"
    models.run_layer(con, "harmonized")
    con.execute(f"ATTACH '{out}' AS analytics_build")
    con.execute("USE analytics_build")
    con.execute("CREATE SCHEMA curated")
    con.execute(f"SET search_path = 'analytics_build.main,analytics_build.curated,{reads}'")
    models.install_definitions(con, defs)
    models.run_layer(con, "curated")
    con.execute("RESET search_path")
    con.execute(f"USE {home}")
    con.execute("DETACH analytics_build")
    if variant == "memory_build":
        made = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'build' "
            "AND schema_name = 'harmonized'"
        ).fetchall()
        for (table,) in made:
            con.execute(
                f"CREATE OR REPLACE TABLE {home}.harmonized.{table} AS FROM build.harmonized.{table}"
            )
con.close()
print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0}))
"""

VARIANTS = ("file", "memory_build", "all_memory")


def child(code: str, *args: str, json_line: bool = False) -> str:
    """Run `code` in a fresh interpreter; its last line of output (with `json_line`, its last
    line that is a JSON object: DuckDB may draw a progress bar on stdout during a long query)."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{out.stderr[-3000:]}")
    lines = out.stdout.strip().splitlines()
    if json_line:
        lines = [line for line in lines if line.startswith("{")]
    return lines[-1]


def cohort_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options of a benchmark on one cohort: its size and seed or a landing folder, the
    work folder and the runs per variant (this script's and restricted_types.py's)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--landing", type=Path, help="use this landing folder instead")
    ap.add_argument("--workdir", type=Path, help="keep the cohort and databases here")
    ap.add_argument("--repeat", type=int, default=2, help="runs per variant, interleaved")
    return ap


def cohort_landing(args: argparse.Namespace, prefix: str) -> tuple[Path, Path]:
    """The work folder (`--workdir`, else a new temporary one) and the landing folder
    (`--landing`, else the cohort of `--patients` and `--seed`, generated once into it)."""
    work = args.workdir or Path(tempfile.mkdtemp(prefix=prefix))
    landing = args.landing
    if landing is None:
        landing = work / f"cohort_{args.patients}" / "landing"
        if not landing.is_dir():
            from blinaetl.synth import generate

            generate(landing.parent, n_patients=args.patients, seed=args.seed)
    return work, landing


def main(argv: list[str] | None = None) -> int:
    args = cohort_parser(__doc__).parse_args(argv)
    work, landing = cohort_landing(args, "blinaetl-transform-")
    loaded = Path(child(PREPARE, str(landing), str(work / "prepared")))
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeat):
        for variant in VARIANTS:
            run = work / f"run_{variant}"
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir(mode=0o700, parents=True)
            db = run / "restricted.duckdb"
            shutil.copy(loaded, db)
            measured = json.loads(
                child(VARIANT, variant, str(db), str(run / "analytics.duckdb"), json_line=True)
            )
            measured["load"] = os.getloadavg()[0]
            results[variant].append(measured)
            shutil.rmtree(run)
    print(
        f"{'variant':>14} | {'cpu_s (min)':>11} | {'wall_s (min)':>12} | runs (cpu_s / wall_s / load)"
    )
    for variant, runs in results.items():
        cells = ", ".join(f"{r['cpu_s']:.2f}/{r['wall_s']:.2f}/{r['load']:.1f}" for r in runs)
        best_cpu = min(r["cpu_s"] for r in runs)
        best_wall = min(r["wall_s"] for r in runs)
        print(f"{variant:>14} | {best_cpu:>11.2f} | {best_wall:>12.2f} | {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
