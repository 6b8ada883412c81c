"""Seconds and memory of publish's model fit (`endpoints.model_results`) on a published database.

    .venv/bin/python benchmarks/model_fit_benchmark.py --db ANALYTICS.duckdb [--repeat R]
        [--json OUT]

Opens the analytics database read-only (a published `blina.duckdb`, or any file with the
`curated` and `endpoints` views the model inputs read) and times, each `--repeat` times with a
fresh `statistics.Inputs` so no query result is reused between repeats (the fastest counts):

- every `statistics.INPUTS` query, one by one (rows of each result);
- `inputs_key` on frames already read (hashing alone);
- each family of fits on frames already read: log-rank, Cox, logistic, Fisher;
- `model_rows` cold (a cache file that does not exist yet: queries, key, every fit, the store)
  and `model_rows` with that cache matching (queries and key only), as publish runs them.

The rows of the cold and the cached call must be equal (compared value by value; the script
exits 1 if they are not). Prints the load average before and after and the peak RSS of the
process; writes JSON to `--json` when given. Timings on a shared machine are noisy: compare
figures measured in one run, or CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import duckdb

from blinaetl.warehouse import statistics

FAMILIES: dict[str, Callable[[statistics.Inputs], list[dict[str, Any]]]] = {
    "logrank": statistics.logrank_rows,
    "cox": statistics.cox_rows,
    "logistic": statistics.logistic_rows,
    "fisher": statistics.fisher_rows,
}


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _read_all(inputs: statistics.Inputs) -> None:
    for name in statistics.INPUTS:
        inputs.frame(name)


def measure(db: Path, repeat: int) -> dict[str, Any]:
    """Fastest of `repeat` for every figure the module docstring lists."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        ((patients,),) = con.execute("SELECT count(*) FROM curated.patients").fetchall()
        best: dict[str, float] = {}
        rows_of: dict[str, int] = {}
        family_rows: dict[str, int] = {}

        def keep(name: str, seconds: float) -> None:
            best[name] = min(seconds, best.get(name, float("inf")))

        cold_rows: list[dict[str, Any]] = []
        cached_rows: list[dict[str, Any]] = []
        for _ in range(repeat):
            inputs = statistics.Inputs(con)
            for name in statistics.INPUTS:
                seconds, frame = _timed(partial(inputs.frame, name))
                keep(f"query {name}", seconds)
                rows_of[name] = frame.height
            key_s = _timed(partial(statistics.inputs_key, inputs))[0]
            keep("inputs_key (frames read)", key_s)
            for family, fit in FAMILIES.items():
                seconds, rows = _timed(partial(fit, inputs))
                keep(f"fit {family}", seconds)
                family_rows[family] = len(rows)
            with tempfile.TemporaryDirectory() as tmp:
                cache = Path(tmp) / "model_results.json"
                seconds, cold_rows = _timed(partial(statistics.model_rows, con, cache))
                keep("model_rows cold (no cache)", seconds)
                seconds, cached_rows = _timed(partial(statistics.model_rows, con, cache))
                keep("model_rows, cache matching", seconds)
        return {
            "db": str(db),
            "patients": patients,
            "repeat": repeat,
            "seconds": best,
            "input_rows": rows_of,
            "family_rows": family_rows,
            "model_rows": len(cold_rows),
            "cached_equal": json.dumps(cold_rows) == json.dumps(cached_rows),
        }
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a published analytics database")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each figure (fastest)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if not args.db.is_file():
        parser.error(f"--db {args.db}: no such file (give a published blina.duckdb)")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    load_before = os.getloadavg()
    try:
        result = measure(args.db, args.repeat)
    except duckdb.Error as exc:
        print(
            f"model_fit_benchmark: {args.db} cannot be read as a published analytics "
            f"database ({type(exc).__name__}: {str(exc).splitlines()[0]}); give a blina.duckdb "
            "written by `blinaetl run`",
            file=sys.stderr,
        )
        return 2
    result["load_average_before"] = list(load_before)
    result["load_average_after"] = list(os.getloadavg())
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"{result['patients']} patients, {result['model_rows']} model rows, "
        f"fastest of {args.repeat}; load average at start "
        f"{load_before[0]:.2f}, at end {result['load_average_after'][0]:.2f}"
    )
    for name, seconds in result["seconds"].items():
        extra = ""
        if name.startswith("query "):
            extra = f"  ({result['input_rows'][name.removeprefix('query ')]:,} rows)"
        elif name.startswith("fit "):
            extra = f"  ({result['family_rows'][name.removeprefix('fit ')]} rows)"
        print(f"  {name:<32} {seconds:9.3f} s{extra}")
    print(f"  peak RSS {result['peak_rss_bytes'] / 2**20:,.0f} MiB")
    print(f"  cached rows equal the fitted rows: {'yes' if result['cached_equal'] else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result["cached_equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
