"""Seconds per table of the Fisher rows of `endpoints.model_results`: scipy beside ours.

    .venv/bin/python benchmarks/fisher_benchmark.py --db ANALYTICS.duckdb [--db ...]
        [--table a,b,c,d ...] [--scipy N | --scipy-all] [--repeat R] [--json OUT]

Reads the 2x2 tables `statistics.fisher_rows` fits from each published analytics database
(opened read-only; `curated.patients`, the same counting as `fisher_rows`), plus any `--table`
given on the command line, and times per table:

- ours: `blinaetl.warehouse.exact.conditional_odds_ratio` (estimate and 95% interval), best of
  `--repeat` runs;
- the p-value: scipy's `fisher_exact` (two-sided), best of `--repeat` runs; `fisher_rows` keeps
  it;
- scipy's `odds_ratio(kind="conditional")` with `.confidence_interval(0.95)`, what `fisher_rows`
  used before, run once and only on the `--scipy N` tables of each database with the smallest
  support (default 1; `--scipy-all` for every table): at 300,000 patients it takes 7-485 s per
  table. For those the largest relative difference of the three numbers is printed too.

Timings on a shared machine are noisy: give `cat /proc/loadavg` with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from blinaetl.warehouse import statistics
from blinaetl.warehouse.exact import conditional_odds_ratio


def _tables(db: Path) -> tuple[int, list[tuple[str, list[list[int]]]]]:
    """(patients, [(outcome/factor, table)]) of every fisher_rows table with both rows filled."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        patients = statistics._patients(con)
    finally:
        con.close()
    out = []
    for outcome, _population, factors in statistics.FISHER_SETS:
        for factor in factors:
            d = patients[[factor, outcome]].dropna()
            f, o = d[factor].astype(bool), d[outcome].astype(bool)
            a, b = int((f & o).sum()), int((f & ~o).sum())
            c, e = int((~f & o).sum()), int((~f & ~o).sum())
            if min(a + b, c + e) > 0:
                out.append((f"{outcome}/{factor}", [[a, b], [c, e]]))
    return len(patients), out


def _best(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, value = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = run()
        best = min(best, time.perf_counter() - t0)
    return best, value


def _support(table: list[list[int]]) -> int:
    (a, b), (c, d) = table
    return min(b, c) + min(a, d) + 1


def _rel(x: float, y: float) -> float:
    if x == y or (math.isnan(x) and math.isnan(y)):
        return 0.0
    return abs(x - y) / abs(y) if y and math.isfinite(y) else math.inf


def measure(label: str, table: list[list[int]], repeat: int, with_scipy: bool) -> dict[str, Any]:
    from scipy.stats import fisher_exact
    from scipy.stats.contingency import odds_ratio

    arr = np.array(table)
    ours_s, ours = _best(lambda: conditional_odds_ratio(arr), repeat)
    p_s, _ = _best(lambda: fisher_exact(arr, alternative="two-sided"), repeat)
    row: dict[str, Any] = {
        "table": label,
        "counts": table,
        "support": _support(table),
        "ours_s": ours_s,
        "p_value_s": p_s,
        "ours": [ours.estimate, ours.low, ours.high],
        "scipy_s": None,
        "max_rel_diff": None,
    }
    if with_scipy:
        t0 = time.perf_counter()
        result = odds_ratio(arr, kind="conditional")
        ci = result.confidence_interval(confidence_level=0.95)
        row["scipy_s"] = time.perf_counter() - t0
        theirs = [float(result.statistic), float(ci.low), float(ci.high)]
        row["scipy"] = theirs
        row["max_rel_diff"] = max(_rel(x, y) for x, y in zip(row["ours"], theirs, strict=True))
    return row


def _print(row: dict[str, Any]) -> None:
    scipy_s = "-" if row["scipy_s"] is None else f"{row['scipy_s']:.2f}"
    diff = "-" if row["max_rel_diff"] is None else f"{row['max_rel_diff']:.1e}"
    est, low, high = row["ours"]
    print(
        f"  {row['table']:<42} {row['counts']!s:<34} {row['support']:>7} "
        f"{row['ours_s']:>8.3f} {row['p_value_s']:>8.3f} {scipy_s:>9} {diff:>8}   "
        f"OR {est:.6g} ({low:.6g}-{high:.6g})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, action="append", default=[], help="analytics file")
    parser.add_argument("--table", action="append", default=[], help="a,b,c,d: one 2x2 table")
    parser.add_argument("--scipy", type=int, default=1, help="scipy on N tables per source")
    parser.add_argument("--scipy-all", action="store_true", help="scipy on every table")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours and of the p-value")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    sources: list[tuple[str, list[tuple[str, list[list[int]]]]]] = []
    for db in args.db:
        if not db.exists():
            parser.error(f"--db {db}: no such file (a published analytics .duckdb is expected)")
        patients, tables = _tables(db)
        sources.append((f"{db} ({patients:,} patients)", tables))
    given = []
    for text in args.table:
        try:
            a, b, c, d = (int(v) for v in text.split(","))
            if min(a, b, c, d) < 0:
                raise ValueError(text)
        except ValueError:
            parser.error(f"--table {text!r}: four non-negative integers a,b,c,d were expected")
        given.append((text, [[a, b], [c, d]]))
    if given:
        sources.append(("--table", given))
    if not sources:
        parser.error("nothing to measure: give --db ANALYTICS.duckdb and/or --table a,b,c,d")
    with open("/proc/loadavg") as f:
        print(f"load average at start: {f.read().split()[:3]}")
    report = []
    for name, tables in sources:
        chosen = sorted(range(len(tables)), key=lambda i: _support(tables[i][1]))
        with_scipy = set(chosen if args.scipy_all else chosen[: args.scipy])
        print(f"{name}:")
        print(
            f"  {'outcome/factor':<42} {'[[a, b], [c, d]]':<34} {'support':>7} "
            f"{'ours_s':>8} {'p_s':>8} {'scipy_s':>9} {'rel_diff':>8}"
        )
        rows = []
        for i, (label, table) in enumerate(tables):
            rows.append(measure(label, table, args.repeat, i in with_scipy))
            _print(rows[-1])
        ours = sum(r["ours_s"] for r in rows)
        timed = [r for r in rows if r["scipy_s"] is not None]
        line = f"  total ours {ours:.2f} s for {len(rows)} tables"
        if timed:
            line += (
                f"; on the {len(timed)} run with scipy: scipy {sum(r['scipy_s'] for r in timed):.1f}"
                f" s, ours {sum(r['ours_s'] for r in timed):.3f} s"
            )
        print(line)
        report.append({"source": name, "rows": rows})
    with open("/proc/loadavg") as f:
        print(f"load average at end: {f.read().split()[:3]}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
