"""Cox and log-rank fits of `endpoints.model_results`: seconds per fit, lifelines against
`blinaetl.warehouse.survival_fit`, on a published analytics database.

    .venv/bin/python benchmarks/cox_benchmark.py --db /tmp/stat300k.duckdb [--repeat 3]
        [--lifelines largest|all|none]

Reads the model inputs (`statistics.INPUTS`) once from the database (opened read-only), then
times every fit of `statistics.cox_rows` (the landmark fits and the time-dependent fits) and
every log-rank test of `statistics.logrank_rows` with `survival_fit` (`--repeat` times, the
fastest counts), and the two families end to end through `cox_rows` / `logrank_rows` (queries
included). lifelines takes minutes on a 300,000-patient cohort (its time-dependent fit 7-11
minutes for one model at load 11-16), so by default it is run once on the largest fit of each kind
(`--lifelines largest`); `all` runs it on every fit, `none` skips it. Each lifelines figure is
printed beside survival_fit's, with the difference of the coefficients in standard errors
(lifelines' default stopping leaves up to about 5e-4 se; survival_fit iterates to the maximum).
Prints the load average before and after; writes `benchmarks/out/cox_benchmark.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from blinaetl.warehouse import statistics
from blinaetl.warehouse.survival_fit import cox_fit, logrank_test

OUT = Path(__file__).resolve().parent / "out" / "cox_benchmark.json"


def _fastest(fn: Any, repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def _lifelines(kind: str, g: Any) -> tuple[float, float, float]:
    from lifelines import CoxPHFitter, CoxTimeVaryingFitter

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "landmark":
            fit = CoxPHFitter().fit(
                g[["days_from_landmark", "event", "hct"]],
                duration_col="days_from_landmark",
                event_col="event",
            )
        else:
            fit = CoxTimeVaryingFitter().fit(
                g[["patient_key", "start_day", "stop_day", "event", "hct"]],
                id_col="patient_key",
                start_col="start_day",
                stop_col="stop_day",
                event_col="event",
            )
    s = fit.summary.loc["hct"]
    return time.perf_counter() - t, float(s["coef"]), float(s["se(coef)"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/stat300k.duckdb"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lifelines", choices=("largest", "all", "none"), default="largest")
    args = parser.parse_args()
    if not args.db.exists():
        raise SystemExit(f"{args.db}: no such analytics database (give one with --db)")
    load_before = os.getloadavg()
    con = duckdb.connect(str(args.db), read_only=True)
    lm = con.sql(statistics.INPUTS["hct_landmark"]).df()
    cp = con.sql(statistics.INPUTS["hct_counting_process"]).df()
    km = statistics.Inputs(con).km_rows().to_pandas()  # the rows the log-rank tests read
    days = [d for (d,) in con.sql(statistics.INPUTS["hct_landmark_summary"]).fetchall()]

    fits: list[dict[str, Any]] = []
    for day in days:
        for param in ("OS", "EFS", "RFS"):
            g = lm[(lm.landmark_day == day) & (lm.param == param)]
            if g["hct"].nunique() == 2 and g["event"].sum() > 0:
                fits.append({"kind": "landmark", "model": f"{param} day {day}", "frame": g})
    for param in ("OS", "EFS", "RFS"):
        g = cp[cp.param == param]
        if g["hct"].nunique() == 2 and g["event"].sum() > 0:
            fits.append({"kind": "time_dependent", "model": param, "frame": g})
    largest = {
        kind: max((f for f in fits if f["kind"] == kind), key=lambda f: len(f["frame"]))["model"]
        for kind in ("landmark", "time_dependent")
        if any(f["kind"] == kind for f in fits)
    }

    print(f"{args.db}: load {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"{'fit':<34} {'rows':>8} {'survival_fit s':>15} {'lifelines s':>12} {'d coef/se':>10}")
    results = []
    for f in fits:
        g = f["frame"]
        if f["kind"] == "landmark":
            sec, fit = _fastest(
                lambda g=g: cox_fit(g["days_from_landmark"], g["event"], g["hct"]), args.repeat
            )
        else:
            sec, fit = _fastest(
                lambda g=g: cox_fit(g["stop_day"], g["event"], g["hct"], start=g["start_day"]),
                args.repeat,
            )
        row: dict[str, Any] = {"kind": f["kind"], "model": f["model"], "rows": len(g)}
        row |= {"survival_fit_s": sec, "coef": float(fit.coef[0]), "se": float(fit.se[0])}
        if args.lifelines == "all" or (
            args.lifelines == "largest" and largest.get(f["kind"]) == f["model"]
        ):
            ll_sec, ll_coef, ll_se = _lifelines(f["kind"], g)
            row |= {"lifelines_s": ll_sec, "lifelines_coef": ll_coef, "lifelines_se": ll_se}
            row["coef_diff_in_se"] = abs(ll_coef - row["coef"]) / row["se"]
        results.append(row)
        ll = (
            f"{row['lifelines_s']:12.1f} {row['coef_diff_in_se']:10.1e}"
            if "lifelines_s" in row
            else ""
        )
        print(f"{f['kind'] + ' ' + f['model']:<34} {len(g):>8} {sec:15.2f} {ll}", flush=True)

    tests = []
    for (param, variable), g in km.groupby(["param", "stratum_variable"], sort=True):
        if g["stratum_value"].nunique() < 2 or g["event"].sum() == 0:
            continue
        codes = g["stratum_value"].rank(method="dense").to_numpy()
        sec, res = _fastest(
            lambda g=g, codes=codes: logrank_test(g["time_days"], g["event"], codes), args.repeat
        )
        tests.append({"test": f"{param} {variable}", "rows": len(g), "survival_fit_s": sec})
        tests[-1]["statistic"] = res.statistic
    lr = {"tests": len(tests), "survival_fit_s_total": sum(t["survival_fit_s"] for t in tests)}
    if args.lifelines != "none" and tests:
        from lifelines.statistics import multivariate_logrank_test

        key = max(tests, key=lambda t: t["rows"])["test"]
        for (param, variable), g in km.groupby(["param", "stratum_variable"], sort=True):
            if f"{param} {variable}" == key:
                t = time.perf_counter()
                ref = multivariate_logrank_test(g["time_days"], g["stratum_value"], g["event"])
                lr["lifelines_one_test"] = key
                lr["lifelines_one_test_s"] = time.perf_counter() - t
                mine = next(x for x in tests if x["test"] == key)["statistic"]
                lr["statistic_rel_diff"] = abs(mine / ref.test_statistic - 1)
    print(
        f"log-rank: {lr['tests']} tests, survival_fit {lr['survival_fit_s_total']:.2f} s in all"
        + (
            f"; lifelines on {lr['lifelines_one_test']}: {lr['lifelines_one_test_s']:.1f} s "
            f"(statistic rel. diff {lr['statistic_rel_diff']:.1e})"
            if "lifelines_one_test" in lr
            else ""
        )
    )
    cox_end, cox_rows = _fastest(lambda: statistics.cox_rows(con), 1)
    lr_end, lr_rows = _fastest(lambda: statistics.logrank_rows(con), 1)
    print(
        f"end to end (queries included): cox_rows {len(cox_rows)} rows {cox_end:.1f} s, "
        f"logrank_rows {len(lr_rows)} rows {lr_end:.1f} s"
    )
    load_after = os.getloadavg()
    print(f"load after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
                "numpy": np.__version__,
                "db": str(args.db),
                "load_before": load_before,
                "load_after": load_after,
                "cox": results,
                "logrank": lr | {"per_test": tests},
                "cox_rows_s": cox_end,
                "logrank_rows_s": lr_end,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
