"""Serve the scheduled deployment declared in prefect.yaml (what `make serve` runs).

    python -m flows.serve [--port 4200] [--deployment nightly] [--config FILE]

Starts a Prefect server on 127.0.0.1 (SQLite, under PREFECT_HOME) unless one already answers
on that port, points PREFECT_API_URL at it, and serves the deployment with its schedule and
parameters from prefect.yaml. Schedules stay active when this process stops
(pause_on_shutdown=False). A server this process started is stopped when it exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_server(
    host: str, port: int, wait_s: float = 120.0, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start `prefect server start` on loopback and wait until /api/health answers."""
    env = {**(env if env is not None else os.environ), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api = f"http://{host}:{port}/api"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the Prefect server exited with status {proc.returncode} while starting"
            )
        if healthy(api):
            return proc
        time.sleep(0.5)
    stop_server(proc)
    raise TimeoutError(f"the Prefect server did not answer on {api} within {wait_s:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def deployment_spec(name: str, path: Path = ROOT / "prefect.yaml") -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for spec in doc.get("deployments", []):
        if spec["name"] == name:
            return spec
    raise KeyError(f"{path.name} declares no deployment named {name!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4200)
    ap.add_argument("--deployment", default="nightly", help="deployment name in prefect.yaml")
    ap.add_argument("--config", help="run config replacing the deployment's `config` parameter")
    args = ap.parse_args(argv)

    spec = deployment_spec(args.deployment)
    api = f"http://{args.host}:{args.port}/api"
    server = None
    if not healthy(api):
        print(f"starting a Prefect server on {api} ...", flush=True)
        server = start_server(args.host, args.port)
        print(f"server pid {server.pid}", flush=True)
    os.environ["PREFECT_API_URL"] = api
    os.environ.setdefault("BLINAETL_HOME", str(ROOT))
    os.chdir(os.environ["BLINAETL_HOME"])  # runs resolve the run config and data paths here

    from flows.pipeline import pipeline_flow

    parameters = dict(spec.get("parameters") or {})
    if args.config:
        parameters["config"] = args.config
    schedule = spec["schedules"][0]
    print(
        f"serving {pipeline_flow.name}/{spec['name']} on cron {schedule['cron']!r} ({schedule.get('timezone', 'UTC')})",
        flush=True,
    )
    try:
        pipeline_flow.serve(
            name=spec["name"],
            cron=schedule["cron"],
            parameters=parameters,
            tags=spec.get("tags"),
            description=spec.get("description"),
            pause_on_shutdown=False,
        )
    finally:
        if server is not None:
            stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
