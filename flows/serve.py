"""Serve the scheduled deployment declared in prefect.yaml (what `make serve` runs).

    python -m flows.serve [--port 4200] [--deployment nightly] [--config FILE]

Starts a Prefect server on 127.0.0.1 (SQLite, under PREFECT_HOME) unless one already answers
on that port, points PREFECT_API_URL at it, and serves the deployment with its schedule and
parameters from prefect.yaml. Schedules stay active when this process stops
(pause_on_shutdown=False). A server this process started is stopped when it exits, on Ctrl-C
and on SIGTERM alike (SIGTERM is turned into the same clean stop).

On a port other than 4200 the UI needs to be told where the API is: the UI asks the server's
`/ui-settings` for its API URL, which is `PREFECT_SERVER_UI_API_URL` (default
http://127.0.0.1:4200/api). A server started here gets it set to its own address unless the
variable is already set (e.g. behind a proxy), and `PREFECT_UI_URL` is set for the links the
serving process prints.
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
    env.setdefault("PREFECT_SERVER_UI_API_URL", f"http://{host}:{port}/api")
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C so that the server this process started is stopped too."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def deployment_spec(name: str, path: Path = ROOT / "prefect.yaml") -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for spec in doc.get("deployments", []):
        if spec["name"] == name:
            return spec
    raise KeyError(f"{path.name} declares no deployment named {name!r}")


def _serve(spec: dict[str, Any], config: str | None) -> None:
    """Serve the deployment `spec` of prefect.yaml with its schedule until interrupted."""
    from flows.pipeline import pipeline_flow

    parameters = dict(spec.get("parameters") or {})
    if config:
        parameters["config"] = config
    schedule = spec["schedules"][0]
    print(
        f"serving {pipeline_flow.name}/{spec['name']} on cron {schedule['cron']!r} "
        f"({schedule.get('timezone', 'UTC')})",
        flush=True,
    )
    pipeline_flow.serve(
        name=spec["name"],
        cron=schedule["cron"],
        parameters=parameters,
        tags=spec.get("tags"),
        description=spec.get("description"),
        pause_on_shutdown=False,
    )


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
    # SIGTERM is Ctrl-C from here on, so a stop at any moment (while the server starts, while a
    # line is printed) still ends in the `finally` that stops the server this process started
    signal.signal(signal.SIGTERM, _on_sigterm)
    server = None
    try:
        if not healthy(api):
            print(f"starting a Prefect server on {api} ...", flush=True)
            server = start_server(args.host, args.port)
            print(f"server pid {server.pid}", flush=True)
        os.environ["PREFECT_API_URL"] = api
        os.environ.setdefault("PREFECT_UI_URL", f"http://{args.host}:{args.port}")
        os.environ.setdefault("BLINAETL_HOME", str(ROOT))
        os.chdir(os.environ["BLINAETL_HOME"])  # runs resolve the run config and data paths here
        _serve(spec, args.config)
    except KeyboardInterrupt as stop:
        why = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        print(f"stopped serving ({why}); the schedule stays active", flush=True)
    finally:
        if server is not None:
            print(f"stopping the Prefect server (pid {server.pid})", flush=True)
            stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
