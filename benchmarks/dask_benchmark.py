"""The Dask path at consortium scale: the Prefect flow on a Dask LocalCluster against the same
flow without Dask and the plain pipeline, on one generated cohort.

    .venv/bin/python benchmarks/dask_benchmark.py                        # 300,000 patients
    .venv/bin/python benchmarks/dask_benchmark.py --patients 2000 --modes dask prefect
    .venv/bin/python benchmarks/dask_benchmark.py --workdir /tmp/blinaetl-dask-bench  # (default)

The cohort (`blinaetl synth --patients N --seed S`) is generated once into the work folder and
reused by later runs (generating 300,000 patients takes minutes). A Prefect server is started on
loopback for the flow runs (and stopped at the end) unless `PREFECT_API_URL` is set: without one
every Dask worker would start a temporary server of its own (stack-notes.md). Each mode runs in
a fresh child process:

- `core`: `run_pipeline` as plain functions (no Prefect), as `pipeline_benchmark.py` runs it;
- `prefect`: the Prefect flow (`flows/pipeline.py`) with its default task runner (threads);
- `dask`: the same flow on a `distributed.LocalCluster` of `--workers` worker processes (one
  thread each: what `blinaetl run --dask-workers 2` builds), reached by its address as
  `--dask-address` / `BLINAETL_DASK_ADDRESS` reach a multi-node cluster. The files are read and
  mapped on the workers (`read-file` tasks); the rest of the run is in the driver.

Printed per mode: wall time per stage (the pipeline's own timings), the flow call's total, the
cluster's start, and peak RSS: the driver's (`ru_maxrss`), each Dask worker's (`VmHWM` read
in the worker at the end of the run), the nannies' (sampled), and the largest sum of the driver
and all its child processes sampled every 0.2 s (what the machine had to hold at once). Great
Expectations is off in every mode (`gx=False`, as `pipeline_benchmark.py`), so the report
stage is the steward and study reports. The statistical models of the publish stage
(`endpoints.model_results`) are not fitted unless `--with-models` is given: the fit is the same
work in every mode, runs in the driver, and alone took 1,035 s at 100,000 patients under load
(docs/performance.md), longer than everything Dask spreads. The load average is printed with
every run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from pipeline_benchmark import _child  # noqa: E402

GIB = 1024**3

CHILD = r"""
import functools, json, os, resource, sys, threading, time
from pathlib import Path
import psutil

mode, landing, work, workers = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
if sys.argv[5] != "models":  # the same fit in every mode, in the driver, and the longest stage
    from blinaetl.warehouse import statistics
    statistics.model_rows = lambda con, cache=None: []  # endpoints.model_results left empty
me = psutil.Process()
peak = {"all": 0, "nannies": 0}
worker_pids: set[int] = set()
stop = threading.Event()

def sample():
    while not stop.is_set():
        try:
            kids = me.children(recursive=True)
            rss = {p.pid: p.memory_info().rss for p in kids if p.is_running()}
        except psutil.Error:
            rss = {}
        total = me.memory_info().rss + sum(rss.values())
        peak["all"] = max(peak["all"], total)
        nannies = sum(v for pid, v in rss.items() if pid not in worker_pids)
        peak["nannies"] = max(peak["nannies"], nannies)
        stop.wait(0.2)

threading.Thread(target=sample, daemon=True).start()
out = {"mode": mode, "load_start": os.getloadavg()}
t0 = time.perf_counter()
if mode == "core":
    from blinaetl.pipeline import RunConfig, run_pipeline
    cfg = RunConfig(landing=landing, warehouse=work / "warehouse", reports=work / "reports",
                    demo=True, gx=False)
    summary = run_pipeline(cfg)[0].as_dict()
else:
    import blinaetl.pipeline as core
    core.RunConfig = functools.partial(core.RunConfig, gx=False)  # GX off, as in mode core
    from flows.pipeline import with_task_runner
    client = cluster = None
    if mode == "dask":
        from distributed import Client, LocalCluster
        c0 = time.perf_counter()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        worker_pids.update(client.run(os.getpid).values())
        out["cluster_start_s"] = time.perf_counter() - c0
        flow = with_task_runner(dask_address=cluster.scheduler_address)
    else:
        flow = with_task_runner()
    f0 = time.perf_counter()
    summary = flow(landing=str(landing), warehouse=str(work / "warehouse"),
                   reports=str(work / "reports"), demo=True)
    out["flow_s"] = time.perf_counter() - f0
    if client is not None:
        # VmHWM, the worker's own peak (its ru_maxrss starts at the driver's RSS at the fork)
        peaks = client.run(lambda: 1024 * int(next(
            line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]))
        out["worker_peak_rss_bytes"] = sorted(peaks.values())
        client.close()
        cluster.close()
out["wall_s"] = time.perf_counter() - t0
stop.set()
out["stages_s"] = summary["timings_s"]
out["driver_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out["sampled_peak_all_bytes"] = peak["all"]
out["nannies_peak_bytes"] = peak["nannies"] if mode == "dask" else 0
out["load_end"] = os.getloadavg()
print(json.dumps(out))
"""


def ensure_cohort(workdir: Path, patients: int, seed: int) -> tuple[Path, float | None]:
    """The cohort's landing folder, generated unless an earlier run left it complete (a
    generation is written beside and renamed when done); returns it and the seconds taken."""
    cohort = workdir / f"cohort_{patients}_s{seed}"
    if (cohort / "landing").is_dir():
        return cohort / "landing", None
    partial = workdir / f".{cohort.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "blinaetl.cli", "synth", "--patients", str(patients),
         "--seed", str(seed), "--out", str(partial)],
        check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    partial.rename(cohort)
    return cohort / "landing", time.perf_counter() - t0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_prefect_server(home: Path) -> tuple[subprocess.Popen | None, str]:
    """(the server process we started, or None when PREFECT_API_URL is set; the API URL)."""
    if os.environ.get("PREFECT_API_URL"):
        return None, os.environ["PREFECT_API_URL"]
    port = _free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    prefect = Path(sys.executable).with_name("prefect")
    proc = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(1)
    stop_server(proc)
    raise SystemExit("the Prefect server did not answer /api/health within 180 s")


def stop_server(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers only
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def run_mode(
    mode: str, landing: Path, work: Path, workers: int, env: dict[str, str], models: bool = False
) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    fit = "models" if models else "no-models"
    try:
        return _child(CHILD, mode, str(landing), str(work), str(workers), fit, env=env, cwd=ROOT)
    except RuntimeError as exc:
        raise SystemExit(f"{mode} run failed:\n{exc}") from None


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GIB:.2f}"


def print_table(results: list[dict], patients: int) -> None:
    stages = list(results[0]["stages_s"])
    print(f"\n{patients:,} patients; peak RSS in GiB; seconds; load = 1-min load average")
    head = ["mode", *stages, "flow/run", "cluster", "driver", "workers", "nannies", "all@once"]
    print(" | ".join(f"{h:>12}" for h in [*head, "load"]))
    for r in results:
        workers = r.get("worker_peak_rss_bytes")
        cells = [
            r["mode"],
            *(f"{r['stages_s'][s]:.1f}" for s in stages),
            f"{r.get('flow_s', r['wall_s']):.1f}",
            f"{r['cluster_start_s']:.1f}" if "cluster_start_s" in r else "-",
            _gib(r["driver_peak_rss_bytes"]),
            "-" if not workers else "+".join(_gib(w) for w in workers) + f"={_gib(sum(workers))}",
            _gib(r["nannies_peak_bytes"]) if r["mode"] == "dask" else "-",
            _gib(r["sampled_peak_all_bytes"]),
            f"{r['load_start'][0]:.1f}-{r['load_end'][0]:.1f}",
        ]
        print(" | ".join(f"{c:>12}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--patients", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    ap.add_argument("--modes", nargs="+", default=["dask", "prefect", "core"],
                    choices=["dask", "prefect", "core"])  # fmt: skip
    ap.add_argument("--repeat", type=int, default=1, help="runs per mode, interleaved")
    ap.add_argument(
        "--with-models",
        action="store_true",
        help="fit endpoints.model_results in the publish stage (skipped by default)",
    )
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/blinaetl-dask-bench"))
    ap.add_argument("--out", type=Path, default=HERE / "out" / "dask_benchmark.json")
    args = ap.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    landing, synth_s = ensure_cohort(args.workdir, args.patients, args.seed)
    if synth_s is not None:
        print(f"generated {args.patients:,} patients in {synth_s:.0f} s", file=sys.stderr)
    server = None
    try:
        if {"dask", "prefect"} & set(args.modes):
            server, url = start_prefect_server(args.workdir / "prefect_home")
        else:
            url = ""
        env = {**os.environ, "BLINAETL_HOME": str(ROOT), "PYTHONWARNINGS": "ignore"}
        if url:
            env |= {"PREFECT_API_URL": url, "PREFECT_HOME": str(args.workdir / "prefect_home")}
        results = []
        for i in range(args.repeat):
            for mode in args.modes:
                work = args.workdir / f"run_{args.patients}_{mode}"
                r = run_mode(mode, landing, work, args.workers, env, args.with_models)
                r["repeat"] = i
                results.append(r)
                print(f"... {mode} done in {r['wall_s']:.0f} s", file=sys.stderr)
    finally:
        stop_server(server)
    print_table(results, args.patients)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"patients": args.patients, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
