"""`flows.local_server`: a run reuses a local Prefect server that answers, never overrides a
configured one, and, when nothing answers, starts Prefect's temporary server before Prefect is
imported (or leaves it to Prefect when declined)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.local_server import (
    TemporaryServer,
    answering,
    configured_api_url,
    start_temporary_server,
    use_running_local_server,
)


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/api/health"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"true" if ok else b"no")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_answering_local_server_is_used_when_none_is_configured(tmp_path, health_server):
    env = {"PREFECT_HOME": str(tmp_path), "PREFECT_PORT": str(health_server)}
    assert use_running_local_server(env) == f"http://127.0.0.1:{health_server}/api"
    assert env["PREFECT_API_URL"] == f"http://127.0.0.1:{health_server}/api"


def test_nothing_answering_leaves_prefect_its_temporary_server(tmp_path):
    env = {"PREFECT_HOME": str(tmp_path), "PREFECT_PORT": str(_free_port())}
    assert use_running_local_server(env) is None
    assert "PREFECT_API_URL" not in env


class _NotPrefect(_Health):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()


def test_another_service_on_the_port_is_not_taken_for_prefect(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotPrefect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"PREFECT_HOME": str(tmp_path), "PREFECT_PORT": str(server.server_address[1])}
        assert use_running_local_server(env) is None and "PREFECT_API_URL" not in env
    finally:
        server.shutdown()
        server.server_close()


def test_opting_out_keeps_prefects_own_behaviour(tmp_path, health_server):
    env = {"PREFECT_HOME": str(tmp_path), "PREFECT_PORT": str(health_server)}
    env["BLINAETL_PREFECT_REUSE"] = "0"
    assert use_running_local_server(env) is None and "PREFECT_API_URL" not in env


def test_configured_server_in_environment_wins(tmp_path, health_server):
    env = {
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_PORT": str(health_server),
        "PREFECT_API_URL": "http://prefect.example.org/api",
    }
    assert use_running_local_server(env) is None
    assert env["PREFECT_API_URL"] == "http://prefect.example.org/api"


def test_configured_server_in_active_profile_wins(tmp_path, health_server):
    (tmp_path / "profiles.toml").write_text(
        'active = "site"\n'
        "[profiles.site]\n"
        'PREFECT_API_URL = "http://10.0.0.5:4200/api"\n'
        "[profiles.other]\n"
    )
    env = {"PREFECT_HOME": str(tmp_path), "PREFECT_PORT": str(health_server)}
    assert configured_api_url(env) == "http://10.0.0.5:4200/api"
    assert use_running_local_server(env) is None and "PREFECT_API_URL" not in env
    # a profile without an API URL configures nothing: the local server is used
    env["PREFECT_PROFILE"] = "other"
    assert configured_api_url(env) is None
    assert use_running_local_server(env) == f"http://127.0.0.1:{health_server}/api"


# --- Prefect's temporary server started before Prefect is imported ---------------------------


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    """One PREFECT_HOME for this module's real temporary servers: the first creates its
    database, the next finds it migrated (as a second run on a machine does)."""
    return tmp_path_factory.mktemp("prefect_home")


def test_nothing_configured_or_answering_starts_the_temporary_server_before_prefect(
    tmp_path, prefect_home
):
    # in a fresh interpreter: the server is started without importing Prefect, answers its
    # health check, is the API URL Prefect will read, and is gone once stopped
    script = (
        "import json, os, sys\n"
        "from flows.local_server import answering, start_temporary_server\n"
        "server = start_temporary_server()\n"
        "imported = 'prefect' in sys.modules\n"
        "server.wait_ready(120)\n"
        "up = answering(server.api)\n"
        "server.stop()\n"
        "print(json.dumps({'api': server.api, 'env': os.environ['PREFECT_API_URL'],\n"
        "    'imported': imported, 'up': up, 'down_after_stop': not answering(server.api)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(prefect_home), "PREFECT_PORT": str(_free_port())}
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["api"].startswith("http://127.0.0.1:") and out["api"].endswith("/api")
    assert out["env"] == out["api"], "Prefect, imported later, reads this URL"
    assert out["imported"] is False, "the server starts before Prefect is imported"
    assert out["up"] is True and out["down_after_stop"] is True
    assert (prefect_home / "prefect.db").is_file(), "its database is under PREFECT_HOME"


def test_no_temporary_server_when_one_is_configured_answers_or_is_declined(tmp_path, health_server):
    configured = {"PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": "http://10.0.0.5:4200/api"}
    assert start_temporary_server(configured) is None
    assert configured["PREFECT_API_URL"] == "http://10.0.0.5:4200/api"
    answering_here = {"PREFECT_HOME": str(tmp_path), "PREFECT_PORT": str(health_server)}
    assert start_temporary_server(answering_here) is None
    assert answering_here["PREFECT_API_URL"] == f"http://127.0.0.1:{health_server}/api"
    declined = {
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_PORT": str(_free_port()),
        "BLINAETL_PREFECT_EARLY": "0",
    }
    assert start_temporary_server(declined) is None and "PREFECT_API_URL" not in declined


def test_a_server_that_exits_while_starting_is_a_clear_error(tmp_path):
    env = {"PREFECT_HOME": str(tmp_path)}
    fails = [
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('no database here\\n'); sys.exit(3)",
    ]
    server = TemporaryServer(env, command=fails)
    try:
        with pytest.raises(RuntimeError) as err:
            server.wait_ready(30)
        message = str(err.value)
        assert "exited with status 3 while starting (no database here)" in message
        assert "BLINAETL_PREFECT_EARLY=0" in message and "PREFECT_API_URL" in message
    finally:
        server.stop()
    server.stop()  # a second stop does nothing


def test_a_server_that_never_answers_times_out_and_is_ended(tmp_path):
    env = {"PREFECT_HOME": str(tmp_path)}
    server = TemporaryServer(env, command=[sys.executable, "-c", "import time; time.sleep(60)"])
    proc = server._proc
    assert proc is not None
    with pytest.raises(
        TimeoutError, match=r"did not answer on http://127\.0\.0\.1:\d+/api within 1 s"
    ):
        server.wait_ready(1.0)
    server.stop()
    assert proc.poll() is not None, "stop ends the server"


def test_the_server_ends_when_the_run_that_started_it_is_killed(tmp_path):
    # the run is SIGKILLed (no atexit, no finally): on Linux the server still gets SIGTERM
    script = (
        "import os, signal, sys\n"
        "from flows.local_server import TemporaryServer\n"
        "s = TemporaryServer({}, command=[sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(s._proc.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == -9
    pid = int(run.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid), "the server outlived the run that started it"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_blinaetl_run_with_no_server_uses_the_early_server_and_leaves_none(
    tmp_path, demo_cohort, prefect_home
):
    # the quickstart's path: `blinaetl run` (Prefect engine) where no server is configured or
    # answers, as on a fresh clone
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_PORT": str(_free_port()),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    run = subprocess.run(
        [
            *(
                sys.executable,
                "-m",
                "blinaetl.cli",
                "run",
                "--demo",
                "--no-gx",
                "--no-study-report",
            ),
            *("--landing", str(demo_cohort / "landing")),
            *("--warehouse", str(tmp_path / "wh"), "--reports", str(tmp_path / "rp")),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 3, run.stderr[-3000:]  # published; the demo's defects need a steward
    said = run.stdout + run.stderr  # the CLI's console writes to stderr
    lines = [ln for ln in said.splitlines() if ln.startswith("Prefect: temporary server")]
    assert len(lines) == 1, said[-3000:]
    line = lines[0]
    api = line.split(" on ", 1)[1].strip()
    assert api.startswith("http://127.0.0.1:") and api.endswith("/api")
    assert not answering(api), "the server was stopped with the run"
    assert (tmp_path / "wh" / "blina.duckdb").is_file()
    assert "Traceback" not in run.stderr
    # --no-gx and --no-study-report reached the flow: no checkpoint, no study report
    (report,) = (tmp_path / "rp").iterdir()
    index = (report / "index.html").read_text()
    assert "Not run for this report." in index and 'href="study_report.html"' not in index
    assert not (report / "study_report.html").exists() and not (report / "data_docs").exists()


def test_the_wait_for_the_server_is_prefects_own_setting(tmp_path):
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    env = {"PREFECT_HOME": str(tmp_path), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"}
    server = TemporaryServer(env, command=sleeper)
    try:
        assert server.startup_timeout == 1.0
        with pytest.raises(TimeoutError, match=r"within 1 s \(PREFECT_SERVER_EPHEMERAL_STARTUP"):
            server.wait_ready()
    finally:
        server.stop()
    for setting in ({}, {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "soon"}):
        other = TemporaryServer({"PREFECT_HOME": str(tmp_path), **setting}, command=sleeper)
        other.stop()
        assert other.startup_timeout == 20.0, setting  # Prefect's default
