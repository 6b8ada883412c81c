"""Incremental runs: one row appended to one file, against the full run, stage by stage.

    .venv/bin/python benchmarks/incremental_benchmark.py --patients 10000 100000 [--repeat 2]
        [--change appended-copy|removed-row]

Per size, a cohort is generated once; each repeat runs the pipeline (no Prefect server, no
Great Expectations, each run in a fresh child process, as `pipeline_benchmark.py`) in a fresh
warehouse (the full run, which also fills the per-file cache), changes one outcomes file, runs
again in the same warehouse (the incremental run: the other eleven files come from the cache)
and puts the file back. The change (`--change`): `appended-copy` (the default) appends a copy of
the file's last row, which is quarantined as a duplicate, so no staged row changes and the last
build is reused (`blinaetl/ingest/reuse.py`); `removed-row` removes the last row, a change that reaches
the staged rows, so the models run again. The fastest run of each kind counts. Prints
the core (ingest to publish) and every stage of both, the share, the core's CPU seconds (the
run's process, threads included) and their share, and the load average; writes
`benchmarks/out/incremental_benchmark.json`. `issue20_report.py` measures the same figure
once (`--changed-patients`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pipeline_benchmark as pipe  # noqa: E402

STAGES = ("ingest", "load", "extract_text", "transform", "gate", "publish")


def measure(
    n: int,
    work: Path,
    repeat: int,
    seed: int,
    given: Path | None = None,
    change: str = "appended-copy",
) -> dict:
    """One size; `given`: a generated cohort's landing folder to copy instead of generating;
    `change`: what is done to the outcomes file (see the module)."""
    from blinaetl.synth import generate

    cohort = work / f"cohort_{n}"
    if given is not None:
        shutil.copytree(given, cohort / "landing")
    else:
        generate(cohort, n_patients=n, seed=seed)
    landing = cohort / "landing"
    target = sorted(landing.glob("clinical/*/outcomes_*.csv"))[0]
    original = target.read_bytes()
    lines = original.decode("latin-1").splitlines(keepends=True)
    if change == "removed-row":
        changed = "".join(lines[:-1]).encode("latin-1")
    else:
        last = lines[-1] if lines[-1].endswith("\n") else "\n"
        changed = original + last.encode("latin-1")
    fulls, increments, loads = [], [], []
    for i in range(repeat):
        run = work / f"run_{n}_{i}"
        target.write_bytes(original)
        loads.append(os.getloadavg()[0])
        fulls.append(pipe._child(pipe.CORE_CHILD, str(landing), str(run)))
        target.write_bytes(changed)
        increments.append(pipe._child(pipe.CORE_CHILD, str(landing), str(run)))
        shutil.rmtree(run, ignore_errors=True)
    target.write_bytes(original)
    shutil.rmtree(cohort, ignore_errors=True)
    full = min(fulls, key=lambda r: r["total_s"])
    inc = min(increments, key=lambda r: r["total_s"])
    return {
        "patients": n,
        "change": change,
        "full": full,
        "incremental": inc,
        "share": inc["total_s"] / full["total_s"],
        # CPU seconds of each counted run's process, ingest to publish (its threads included):
        # less disturbed by the machine's load than the wall seconds
        "cpu_share": inc["core_cpu_s"] / full["core_cpu_s"],
        "full_runs_s": [r["total_s"] for r in fulls],
        "incremental_runs_s": [r["total_s"] for r in increments],
        "load_average": loads,
    }


def render(results: list[dict]) -> str:
    head = ["patients", "run", *STAGES, "core", "share", "core CPU", "CPU share"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in results:
        for kind in ("full", "incremental"):
            stages = r[kind]["stages_s"]
            share = f"**{r['share']:.0%}**" if kind == "incremental" else ""
            cpu_share = f"{r['cpu_share']:.0%}" if kind == "incremental" else ""
            cells = [
                f"{r['patients']:,}",
                kind,
                *(f"{stages.get(s, 0):.2f}" for s in STAGES),
                f"**{r[kind]['total_s']:.2f} s**",
                share,
                f"{r[kind]['core_cpu_s']:.2f} s",
                cpu_share,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--patients", type=int, nargs="+", default=[10_000])
    ap.add_argument("--repeat", type=int, default=2, help="pairs of runs per size; fastest counts")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument(
        "--landing",
        type=Path,
        help="a generated cohort's landing folder (of --patients, one size) to copy, not generate",
    )
    ap.add_argument(
        "--change",
        choices=("appended-copy", "removed-row"),
        default="appended-copy",
        help="appended-copy: one copy of the last row appended (no staged row changes); "
        "removed-row: the last row removed (a staged row changes)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "out" / "incremental_benchmark.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="blinaetl-incremental-") as tmp:
        results = [
            measure(n, Path(tmp), args.repeat, args.seed, args.landing, args.change)
            for n in args.patients
        ]
    print(render(results))
    for r in results:
        print(
            f"{r['patients']:,} patients: full runs {r['full_runs_s']}, incremental runs "
            f"{r['incremental_runs_s']}, load average at each pair {r['load_average']}; "
            f"change {r['change']}, build reused: {r['incremental'].get('build_reused')}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
