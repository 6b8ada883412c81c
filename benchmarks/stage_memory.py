"""Peak RSS per stage and per ingest step of one pipeline run, to find what holds the memory.

    .venv/bin/python benchmarks/stage_memory.py --landing DIR [--workdir DIR] [--with-models]
    .venv/bin/python benchmarks/stage_memory.py --patients 10000

Runs the pipeline (no Prefect, no GX, no study report: their child processes are not
this process's memory; the statistical models of the publish stage not fitted
unless `--with-models`) in a fresh child process, with a thread sampling the child's VmRSS
every 20 ms. The run is cut into phases at the start and end of each stage and of the ingest
steps (reading each group of tables, combining, validating, the compact quarantine, releasing
the group's files, root causes, accounting) and of each SQL layer; per phase it prints the peak RSS reached in it, the RSS at its end and its
seconds. Memory figures do not depend on the machine's load; the seconds do.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peak_rss

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pipeline_benchmark import _child  # noqa: E402

CHILD = (
    peak_rss.SOURCE
    + r"""
import functools, json, os, resource, sys, threading, time
from pathlib import Path

landing, work, with_models = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "models"
from blinaetl import pipeline
from blinaetl.ingest import landing as ingest
from blinaetl.validate import executor
from blinaetl.warehouse import database, models, statistics

if not with_models:
    statistics.model_rows = lambda con, cache=None: []  # endpoints.model_results left empty

def rss():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmRSS:"))

state = {"phase": "start", "peak": 0, "t0": time.perf_counter()}
phases, lock = [], threading.Lock()

def mark(name):
    with lock:
        now = rss()
        phases.append({"phase": state["phase"], "peak_bytes": max(state["peak"], now),
                       "end_bytes": now, "s": time.perf_counter() - state["t0"]})
        state.update(phase=name, peak=now, t0=time.perf_counter())

def sample():
    while True:
        r = rss()
        with lock:
            state["peak"] = max(state["peak"], r)
        time.sleep(0.02)

threading.Thread(target=sample, daemon=True).start()

def wrap(module, name, label):
    f = getattr(module, name)
    @functools.wraps(f)
    def inner(*a, **k):
        mark(label)
        try:
            return f(*a, **k)
        finally:
            mark("between steps")
    setattr(module, name, inner)

for name in ("plan_files", "combine_frames", "compact_copies", "release_frames",
             "attribute_root_causes", "account_files"):
    wrap(ingest, name, f"ingest: {name}")
wrap(ingest._GroupReader, "__call__", "ingest: read a table group")
wrap(executor, "validate_tables", "ingest: validate_tables")
wrap(database, "load_staging", "load: load_staging")
wrap(models, "run_layer", "SQL layer")
for stage, f in list(pipeline.STAGES.items()):
    pipeline.STAGES[stage] = functools.partial(
        lambda f, stage, *a, **k: (mark(f"stage {stage}"), f(*a, **k))[1], f, stage)

cfg = pipeline.RunConfig(landing=landing, warehouse=work / "warehouse",
                         reports=work / "reports", demo=True, gx=False,
                         study_report=False)
load0 = os.getloadavg()
summary, result = pipeline.run_pipeline(cfg)
mark("end")
print(json.dumps({"phases": phases, "timings_s": summary.timings,
                  "peak_rss_bytes": peak_rss_bytes(),
                  "load_start": load0, "load_end": os.getloadavg()}))
"""
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--landing", type=Path, help="landing folder (default: a synthetic cohort)")
    ap.add_argument("--patients", type=int, default=1000, help="size of the synthetic cohort")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workdir", type=Path, help="keep the warehouse here (default: temporary)")
    ap.add_argument("--with-models", action="store_true", help="fit endpoints.model_results")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="blinaetl-stage-memory-"))
    landing = args.landing
    if landing is None:
        from blinaetl.synth import generate

        generate(work / "cohort", n_patients=args.patients, seed=args.seed)
        landing = work / "cohort" / "landing"
    fit = "models" if args.with_models else "no-models"
    r = _child(CHILD, str(landing.resolve()), str(work / "run"), fit)
    gib = 2**30
    print(f"{'phase':32} {'peak GiB':>9} {'end GiB':>8} {'s':>8}")
    for p in r["phases"]:
        if p["phase"] == "between steps" and p["s"] < 0.05:
            continue
        print(
            f"{p['phase']:32} {p['peak_bytes'] / gib:9.3f} {p['end_bytes'] / gib:8.3f} {p['s']:8.2f}"
        )
    print(f"peak RSS (VmHWM) {r['peak_rss_bytes'] / gib:.3f} GiB")
    print("stages s: " + ", ".join(f"{k} {v:.2f}" for k, v in r["timings_s"].items()))
    print(f"load average: start {r['load_start'][0]:.1f}, end {r['load_end'][0]:.1f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
