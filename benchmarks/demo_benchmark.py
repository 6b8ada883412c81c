"""Demo path benchmark: `make run` on the 65-patient demo cohort, and the pipeline core alone.

    .venv/bin/python benchmarks/demo_benchmark.py            # from the repository root
    .venv/bin/python benchmarks/demo_benchmark.py --repeat 5

`make run` is timed warm: it is run once first (that run installs nothing new once the
environment exists, generates `demo/landing` if it is absent and starts Prefect's temporary local
server, as every `make run` does), then timed `--repeat` times; the minimum and the median are
reported. The core (ingest to publish, no Prefect server, no GX) is timed the same way as in
`pipeline_benchmark.py`, in a fresh child process per repeat, module imports included.
Targets (issue #10): `make run` warm at most 30 s, the core at most 3 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from pipeline_benchmark import CORE_CHILD, _child  # noqa: E402

TARGETS = {"make_run_warm_s": 30.0, "core_s": 3.0}


def time_make_run(env: dict[str, str] | None = None) -> float:
    """Seconds of one `make run` in the repository root (`env`: its environment, default ours)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        ["make", "run"], cwd=ROOT, capture_output=True, text=True, check=False, env=env
    )
    took = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"make run failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "demo_benchmark.json")
    args = ap.parse_args(argv)

    time_make_run()  # warm-up: demo cohort generated, bytecode and Prefect home in place
    make_runs = [time_make_run() for _ in range(args.repeat)]
    landing = ROOT / "demo" / "landing"
    cores = []
    with tempfile.TemporaryDirectory(prefix="blinaetl-demo-bench-") as tmp:
        for i in range(args.repeat):
            cores.append(_child(CORE_CHILD, str(landing), str(Path(tmp) / f"run{i}"))["total_s"])
    measured = {"make_run_warm_s": make_runs, "core_s": cores}
    print(f"{'what':>16} | {'min':>6} | {'median':>6} | {'target':>6} | met")
    doc = {"date": time.strftime("%Y-%m-%d"), "repeat": args.repeat, "results": {}}
    for name, values in measured.items():
        best, median = min(values), statistics.median(values)
        met = median <= TARGETS[name]
        print(f"{name:>16} | {best:6.2f} | {median:6.2f} | {TARGETS[name]:6.1f} | {met}")
        doc["results"][name] = {
            "runs_s": values,
            "min_s": best,
            "median_s": median,
            "target_s": TARGETS[name],
            "met": met,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
