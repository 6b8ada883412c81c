"""Pipeline core benchmark: time per stage, peak memory and the DuckDB floor, per cohort size.

    .venv/bin/python benchmarks/pipeline_benchmark.py                 # 1,000 / 10,000 / 100,000
    .venv/bin/python benchmarks/pipeline_benchmark.py --sizes 1000 5000
    .venv/bin/python benchmarks/pipeline_benchmark.py --landing DIR    # an existing landing folder

For each size it generates a cohort (unless given), then in a fresh child process runs the
pipeline (no Prefect server, no GX) and measures each stage, the child's peak RSS and rows per
second. The core total is ingest to publish, as the issue defines it (the time from landing
files to a published analytics database, module imports included); the steward report written
after publishing is timed as its own column and added in `with_report_s`. The floor is DuckDB reading
every landing file once into a table, in another fresh process on the same files (XLSX through
fastexcel into DuckDB, as DuckDB's own Excel reader is an extension that cannot be downloaded
here). Prints a table and writes JSON with `ratio = core_total / floor` and the scaling exponent
between consecutive sizes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CORE_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from blinaetl.pipeline import RunConfig, run_pipeline
landing, work = Path(sys.argv[1]), Path(sys.argv[2])
t0 = time.perf_counter()
cfg = RunConfig(landing=landing, warehouse=work / "warehouse", reports=work / "reports", demo=True, gx=False)
summary, result = run_pipeline(cfg)
with_report = time.perf_counter() - t0
core = with_report - summary.timings["report"]  # landing files to published database
rows = int(result.files["rows_read"].sum())
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"total_s": core, "with_report_s": with_report, "stages_s": summary.timings,
                  "rows_read": rows, "peak_rss_bytes": rss}))
"""

FLOOR_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import duckdb
landing = Path(sys.argv[1])
con = duckdb.connect()
t0 = time.perf_counter()
rows = 0
for i, path in enumerate(sorted(p for p in landing.rglob("*") if p.is_file())):
    name, suffix = f"t{i}", path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        # latin-1 maps every byte, so the floor reads any text file without a decode error
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_csv(?, all_varchar=true, "
                    "ignore_errors=true, encoding='latin-1')", [str(path)])
    elif suffix == ".parquet":
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet(?)", [str(path)])
    elif suffix == ".xlsx":
        import fastexcel
        reader = fastexcel.read_excel(str(path))
        arrow = reader.load_sheet(0, header_row=None).to_arrow()
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM arrow")
    else:
        continue
    rows += con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
total = time.perf_counter() - t0
print(json.dumps({"floor_s": total, "rows": rows,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def _child(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_landing(landing: Path, work: Path) -> dict:
    floor = _child(FLOOR_CHILD, str(landing))
    core = _child(CORE_CHILD, str(landing), str(work))
    return {
        **core,
        "floor_s": floor["floor_s"],
        "ratio": core["total_s"] / floor["floor_s"],
        "rows_per_s": core["rows_read"] / core["total_s"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--landing", type=Path, help="benchmark this landing folder instead")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "pipeline_benchmark.json")
    ap.add_argument("--workdir", type=Path, help="keep cohorts and databases here")
    args = ap.parse_args(argv)

    work_root = args.workdir or Path(tempfile.mkdtemp(prefix="blinaetl-bench-"))
    results = []
    if args.landing:
        r = bench_landing(args.landing, work_root / "given")
        results.append({"patients": None, **r})
    else:
        from blinaetl.synth import generate

        for n in args.sizes:
            cohort = work_root / f"cohort_{n}"
            t0 = time.perf_counter()
            if not (cohort / "landing").is_dir():
                generate(cohort, n_patients=n, seed=args.seed)
            synth_s = time.perf_counter() - t0
            r = bench_landing(cohort / "landing", work_root / f"run_{n}")
            results.append({"patients": n, "synth_s": synth_s, **r})
            print(f"... {n} patients done", file=sys.stderr)

    for prev, cur in itertools.pairwise(results):
        if prev["patients"] and cur["patients"]:
            cur["scaling_exponent"] = math.log(cur["total_s"] / prev["total_s"]) / math.log(
                cur["patients"] / prev["patients"]
            )
    stages = list(results[0]["stages_s"])  # pipeline order
    header = ["patients", "rows", *stages, "core_s", "+report_s", "floor_s", "ratio", "rss_MiB"]
    header += ["rows/s", "exp"]
    print(" | ".join(f"{h:>12}" for h in header))
    for r in results:
        cells = [
            r["patients"],
            r["rows_read"],
            *[f"{r['stages_s'].get(s, 0):.2f}" for s in stages],
            f"{r['total_s']:.2f}",
            f"{r['with_report_s']:.2f}",
            f"{r['floor_s']:.2f}",
            f"{r['ratio']:.2f}",
            f"{r['peak_rss_bytes'] / 2**20:.0f}",
            f"{r['rows_per_s']:.0f}",
            f"{r.get('scaling_exponent', float('nan')):.2f}",
        ]
        print(" | ".join(f"{c!s:>12}" for c in cells))
    doc = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        },
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
        "peak_rss_parent_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
