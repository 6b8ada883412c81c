"""The text stage (`extract_text`) on synthetic imaging reports: this code beside a past revision.

    .venv/bin/python benchmarks/text_stage_benchmark.py                      # 10,000 and 20,000
    .venv/bin/python benchmarks/text_stage_benchmark.py --sizes 10000 --repeat 9
    .venv/bin/python benchmarks/text_stage_benchmark.py --baseline-rev 62a65e3^ --baseline-rev main

For each cohort size the imaging reports of a synthetic cohort (the generator's patients,
mentions and report sentences, built in memory, seed 2017) are written once to a Parquet file.
Then each reader runs in a fresh child process on the same file, `--repeat` times, in
`--rounds` rounds that take the readers in turn (so a busy spell of the shared machine falls on
every reader alike), and the fastest run of each counts (the least disturbed one):

- `read`: `blinaetl.text.read_em_text(reports)` (sentence split, the engine on each distinct
  wording, joined back to every sentence, unmapped candidate terms);
- `write`: writing the mentions and unmapped terms to a DuckDB database file, as the stage does;
- `stage` = read + write.

Readers: `current` (this checkout) and each `--baseline-rev` (the `blinaetl/` and `schemas/`
of that git revision, exported to a temporary folder, so the revision reads its own vocabulary).
The default baseline `62a65e3^` is the reader before the ConText engine: the round-1 text stage
whose 100,000-patient figure (0.6 s, quiet machine) is the issue's reference. The ratio
current / baseline at each size, times that reference, is the 100,000-patient equivalent printed
last; the text stage grows with the number of reports (the engine with the number of distinct
wordings), so the ratio is read at the largest size. Prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_100K_S = 0.6  # round-1 extract_text at 100,000 patients (docs/performance.md)
DEFAULT_BASELINE = "62a65e3^"

BUILD = r"""
import sys
import numpy as np
import polars as pl
from blinaetl.synth import events, render
from blinaetl.synth.cohort import simulate_patients
n, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(seed)
p = simulate_patients(n, rng, np.random.default_rng([seed, 16]))
men = events.build_mentions(p, rng)
rep = render.assemble_reports(render.render_sentences(men, rng))
rep.with_row_index("_source_row", offset=2).select(
    pl.col("pid").cast(pl.Utf8).alias("patient_key"),
    pl.lit("SITE01").alias("site"),
    pl.lit("imaging/SITE01/reports.csv").alias("_source_file"),
    pl.col("_source_row").cast(pl.Int64),
    (pl.date(2020, 1, 1) + pl.duration(days=pl.col("day"))).alias("report_date"),
    "modality",
    "report_text",
).write_parquet(out)
print(rep.height)
"""

RUN = r"""
import json, sys, tempfile, time
from pathlib import Path
import duckdb
import polars as pl
from blinaetl.text import read_em_text
reports = pl.read_parquet(sys.argv[1])
repeat = int(sys.argv[2])
read_em_text(reports.head(50))  # vocabularies and patterns cached, as in a pipeline run
best = {"read": float("inf"), "write": float("inf"), "stage": float("inf")}
for _ in range(repeat):
    t0 = time.perf_counter()
    mentions, unmapped = read_em_text(reports)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "w.duckdb"))
        con.execute("CREATE SCHEMA harmonized")
        con.register("m", mentions.to_arrow())
        con.register("u", unmapped.to_arrow())
        con.execute("CREATE TABLE harmonized.em_mentions AS SELECT * FROM m")
        con.execute("CREATE TABLE harmonized.em_unmapped_terms AS SELECT * FROM u")
        con.close()
    t2 = time.perf_counter()
    for k, v in (("read", t1 - t0), ("write", t2 - t1), ("stage", t2 - t0)):
        best[k] = min(best[k], v)
print(json.dumps({**best, "mentions": mentions.height, "reports": reports.height}))
"""


def _python() -> str:
    return str(ROOT / ".venv" / "bin" / "python")


def export_revision(rev: str, dest: Path) -> Path:
    """`blinaetl/` and `schemas/` of git revision `rev` under `dest` (an importable root)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "blinaetl", "schemas"],
        capture_output=True,
        check=True,
    ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_reader(root: Path, reports: Path, repeat: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [_python(), "-c", RUN, str(reports), str(repeat)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(root),
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"reader at {root} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=2017)
    ap.add_argument("--baseline-rev", action="append", default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    baselines = args.baseline_rev or [DEFAULT_BASELINE]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        roots = {"current": ROOT}
        for rev in baselines:
            roots[rev] = export_revision(rev, Path(tmp) / f"rev{len(roots)}")
        for n in args.sizes:
            reports = Path(tmp) / f"reports_{n}.parquet"
            subprocess.run(
                [_python(), "-c", BUILD, str(n), str(args.seed), str(reports)],
                check=True,
                capture_output=True,
                cwd=str(ROOT),
            )
            best: dict[str, dict] = {}
            for _ in range(args.rounds):
                for name, root in roots.items():
                    r = run_reader(root, reports, args.repeat)
                    if name not in best:
                        best[name] = r
                    else:
                        best[name] = {
                            k: min(v, r[k]) if k in ("read", "write", "stage") else v
                            for k, v in best[name].items()
                        }
            for name, r in best.items():
                results.append({"patients": n, "reader": name, **r})
                print(
                    f"{n:>7,} patients  {r['reports']:>7,} reports  {name:>10s}: "
                    f"read {r['read']:.3f} s  write {r['write']:.3f} s  stage {r['stage']:.3f} s"
                    f"  ({r['mentions']:,} mentions)",
                    flush=True,
                )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    largest = max(args.sizes)
    at = {r["reader"]: r for r in results if r["patients"] == largest}
    base = baselines[0]
    print(
        f"\nat {largest:,} patients: current / {base} = "
        f"{at['current']['stage'] / at[base]['stage']:.2f} on the whole stage "
        f"(read {at['current']['read'] / at[base]['read']:.2f})"
    )
    if len(set(args.sizes)) >= 2:
        # each reader's stage as a + b * patients through the two largest sizes, at 100,000
        n1, n2 = sorted(set(args.sizes))[-2:]
        fit = {}
        for name in at:
            s1, s2 = (
                next(r["stage"] for r in results if r["patients"] == n and r["reader"] == name)
                for n in (n1, n2)
            )
            fit[name] = s1 + (s2 - s1) / (n2 - n1) * (100_000 - n1)
        ratio = fit["current"] / fit[base]
        print(
            "straight line through "
            f"{n1:,} and {n2:,} patients, at 100,000: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in fit.items())
            + f"; current / {base} = {ratio:.2f}, i.e. {ratio * REFERENCE_100K_S:.2f} s against "
            f"the {REFERENCE_100K_S} s reference"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
