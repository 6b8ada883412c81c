"""Peak memory on a duplicate-heavy delivery: one site's assessments file repeated to N MB.

    .venv/bin/python benchmarks/duplicate_memory_benchmark.py              # 21 MB and 100 MB
    .venv/bin/python benchmarks/duplicate_memory_benchmark.py --sizes-mb 5

The demo cohort (65 patients, seed 2017) is generated once; for each size a copy of its landing
folder gets SITE01's assessments CSV with its data rows repeated until the file reaches the size,
so nearly every row is an exact duplicate of an earlier one and is quarantined (the case in
findings.md, "Memory on large deliveries"). The pipeline (no Prefect, no GX, no study report) runs on it in a fresh
child process; the figure is the child's peak RSS (`VmHWM`, peak_rss.py), with the peak reached by the end
of each stage, each stage's seconds, the rows quarantined and the wall time (unreliable on a
loaded machine; the load average is printed). Targets (issue 20): 21 MB <= 1 GiB, 100 MB <=
1.5 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peak_rss

GIB = 1024**3
TARGETS = {21: 1.0 * GIB, 100: 1.5 * GIB}  # issue 20's targets by file size in MB

CHILD = (
    peak_rss.SOURCE
    + r"""
import json, resource, sys, time
from pathlib import Path
from blinaetl import pipeline
from blinaetl.pipeline import RunConfig, run_pipeline
landing, work = Path(sys.argv[1]), Path(sys.argv[2])
peaks, counts, seconds = {}, {}, {}
def wrap(name, fn):
    def staged(*args):
        t = time.perf_counter()
        out = fn(*args)
        seconds[name] = time.perf_counter() - t
        if name == "ingest":
            q = getattr(out, "quarantine", None)  # revisions before the compact quarantine
            counts["quarantined"] = q.row_count if q else out.quarantine_rows.height
            counts["failures"] = q.failure_count if q else out.quarantine_failures.height
        peaks[name] = peak_rss_bytes()
        return out
    return staged
stages = {name: wrap(name, fn) for name, fn in pipeline.STAGES.items()}
t0 = time.perf_counter()
cfg = RunConfig(landing=landing, warehouse=work / "warehouse", reports=work / "reports",
                demo=True, gx=False, study_report=False)
error = None
try:
    summary, result = run_pipeline(cfg, stages=stages)
except Exception as exc:  # the figure is memory; a refused publish still counts
    error = f"{type(exc).__name__}: {str(exc)[:200]}"
wall = time.perf_counter() - t0
rss = peak_rss_bytes()
print(json.dumps({"wall_s": wall, "peak_rss_bytes": rss, "peak_by_stage": peaks,
                  "seconds_by_stage": seconds,
                  **counts, "error": error}))
"""
)


def make_duplicate_landing(demo_landing: Path, out: Path, size_mb: float) -> tuple[Path, int]:
    """A copy of the landing folder whose SITE01 assessments CSV is repeated to `size_mb` MB;
    returns (the folder, the number of data rows in that file)."""
    shutil.copytree(demo_landing, out)
    target = next(out.glob("clinical/SITE01/assessments_*.csv"))
    header, *body = target.read_bytes().splitlines(keepends=True)
    block = b"".join(body)
    want = int(size_mb * 1_000_000)
    repeats = max(1, -(-(want - len(header)) // len(block)))
    with target.open("wb") as fh:
        fh.write(header)
        for _ in range(repeats):
            fh.write(block)
    return out, repeats * len(body)


def run_child(landing: Path, work: Path) -> dict:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(landing), str(work)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "BLINAETL_HOME": str(root)},
    )
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes-mb", type=float, nargs="+", default=[21, 100])
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    results = []
    with tempfile.TemporaryDirectory(prefix="blinaetl-dupbench-") as tmp:
        tmpd = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "blinaetl.cli", "synth", "--patients", "65", "--seed", "2017",
             "--out", str(tmpd / "demo")],
            check=True, capture_output=True, cwd=root,
        )  # fmt: skip
        for size in args.sizes_mb:
            landing, rows = make_duplicate_landing(
                tmpd / "demo" / "landing", tmpd / f"dup{size:g}" / "landing", size
            )
            mb = sum(f.stat().st_size for f in landing.rglob("*") if f.is_file()) / 1e6
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            fig = run_child(landing, tmpd / f"dup{size:g}" / "work")
            fig.update(size_mb=size, landing_mb=mb, rows_in_file=rows, load_1min=load)
            fig["elapsed_s"] = time.perf_counter() - t0
            target = TARGETS.get(round(size))
            fig["target_bytes"] = target
            fig["verdict"] = (
                None if target is None else ("met" if fig["peak_rss_bytes"] <= target else "MISSED")
            )
            results.append(fig)
            shutil.rmtree(tmpd / f"dup{size:g}")
    print(f"{'file MB':>8} {'rows':>10} {'quarantined':>11} {'peak RSS':>10} {'target':>8} "
          f"{'verdict':>8} {'wall s':>7} {'load':>5}")  # fmt: skip
    for r in results:
        tgt = "-" if r["target_bytes"] is None else f"{r['target_bytes'] / GIB:.1f} GiB"
        print(
            f"{r['size_mb']:>8g} {r['rows_in_file']:>10,} {r.get('quarantined', 0):>11,} "
            f"{r['peak_rss_bytes'] / GIB:>6.2f} GiB {tgt:>8} {r['verdict'] or '-':>8} "
            f"{r['wall_s']:>7.1f} {r['load_1min']:>5.1f}"
        )
        stages = ", ".join(f"{k} {v / GIB:.2f}" for k, v in r["peak_by_stage"].items())
        print(f"{'':>8} peak GiB by the end of each stage: {stages}")
        secs = ", ".join(f"{k} {v:.1f}" for k, v in r["seconds_by_stage"].items())
        print(f"{'':>8} seconds per stage: {secs}")
        if r["error"]:
            print(f"{'':>8} run ended with {r['error']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["verdict"] != "MISSED" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
