"""Reuse a running local Prefect server instead of starting a temporary one.

With no API URL configured, a plain flow run starts Prefect's temporary server (about 10 s to
start and 3 s to stop on this machine; findings.md). `make serve` keeps a server on
127.0.0.1:4200 (or `PREFECT_PORT`); when one answers there, the run uses it, and its flow runs
show in that server's UI. Configured servers win: nothing changes when `PREFECT_API_URL` is
set in the environment or in the active Prefect profile. Imports nothing from Prefect, so it
can run before `prefect` is imported (Prefect reads its settings at import).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import MutableMapping
from pathlib import Path


def configured_api_url(env: MutableMapping[str, str]) -> str | None:
    """The API URL set in the environment or in the active profile of PREFECT_HOME, if any."""
    if env.get("PREFECT_API_URL"):
        return env["PREFECT_API_URL"]
    home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles_path = Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(profiles_path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = env.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    url = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return str(url) if url else None


def answering_local_server(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> str | None:
    """`http://host:port/api` when a Prefect server answers its health check there."""
    api = f"http://{host}:{port}/api"
    return api if answering(api, timeout) else None


def use_running_local_server(env: MutableMapping[str, str] | None = None) -> str | None:
    """Set PREFECT_API_URL to a local server that answers when none is configured; returns the
    URL set, or None (a configured server, or none answering: Prefect's own behaviour)."""
    env = os.environ if env is None else env
    if env.get("BLINAETL_PREFECT_REUSE", "1") == "0" or configured_api_url(env):
        return None
    try:
        port = int(env.get("PREFECT_PORT") or 4200)
    except ValueError:
        return None
    api = answering_local_server(port)
    if api:
        env["PREFECT_API_URL"] = api
    return api


# --- Prefect's temporary server, started before Prefect is imported ----------------------------

# What Prefect's own temporary server runs (prefect.server.api.server.SubprocessASGIServer in
# Prefect 3.8): uvicorn on the API app factory, UI off, in ephemeral mode.
_SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM when the run's process dies, even by SIGKILL."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _server_command(fd: int) -> list[str]:
    import importlib.util

    spec = importlib.util.find_spec("prefect")  # finds the package without importing it
    if spec is None or spec.origin is None:
        raise RuntimeError("the prefect package is not installed in this environment")
    app_dir = str(Path(spec.origin).resolve().parent.parent)
    return [
        *(sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory"),
        "prefect.server.api.server:create_app",
        *("--fd", str(fd), "--log-level", "error", "--lifespan", "on"),
    ]


class TemporaryServer:
    """Prefect's temporary API server, started by a run before it imports Prefect.

    With no server configured and none answering, a flow run makes Prefect start its temporary
    server when the flow is called, after the run has imported Prefect and the pipeline: the
    server's own start (about 5-6 s of CPU in its process, most of it importing
    `prefect.server`) then follows those imports. Started here first, on a loopback socket this
    process binds (no port race), it starts on the other core while the run imports; the run
    waits for its health check (`wait_ready`) just before calling the flow. The same server as
    Prefect's (uvicorn on `prefect.server.api.server:create_app`, UI off, ephemeral mode, the
    database under PREFECT_HOME), stopped when this process exits (and, on Linux, when it dies).
    `PREFECT_API_URL` is set in `env` to its address, so Prefect, imported later, uses it.
    """

    def __init__(self, env: MutableMapping[str, str], command: list[str] | None = None) -> None:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            port = sock.getsockname()[1]
            self.api = f"http://127.0.0.1:{port}/api"
            self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by `stop`
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                command or _server_command(sock.fileno()),
                env={**env, **_SERVER_ENV},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._err,
                pass_fds=(sock.fileno(),),
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            sock.close()  # the child has its own copy of the listening socket
        env["PREFECT_API_URL"] = self.api
        self.startup_timeout = _startup_timeout(env)
        atexit.register(self.stop)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the server answers its health check; a clear error if it exits first
        or does not answer within `timeout` seconds (by default Prefect's own setting for its
        temporary server, `startup_timeout`)."""
        timeout = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None, "the temporary server was stopped"
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"Prefect's temporary server exited with status {code} while starting "
                    f"({self._last_error_line()}); set PREFECT_API_URL to a running server, "
                    "or BLINAETL_PREFECT_EARLY=0 to let Prefect start its own"
                )
            if answering(self.api):
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"Prefect's temporary server did not answer on {self.api} within {timeout:.0f} s "
            "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)"
        )

    def _last_error_line(self) -> str:
        self._err.seek(0)
        lines = self._err.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "no error output"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s, as Prefect stops its own; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._err.close()


def _startup_timeout(env: MutableMapping[str, str]) -> float:
    """PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, Prefect's wait for its temporary
    server (default 20 s)."""
    try:
        return float(env.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or 20)
    except ValueError:
        return 20.0


def answering(api: str, timeout: float = 0.5) -> bool:
    """Whether a Prefect server answers its health check at `api` (`http://host:port/api`)."""
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=timeout) as resp:
            return bool(resp.status == 200 and resp.read().strip() == b"true")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_temporary_server(env: MutableMapping[str, str] | None = None) -> TemporaryServer | None:
    """Start Prefect's temporary server now when a flow run would have Prefect start it later:
    no API URL configured (environment or active profile) and no local server answering
    (`use_running_local_server`, which is tried first). None otherwise, or with
    `BLINAETL_PREFECT_EARLY=0` (Prefect then starts its own, as before)."""
    env = os.environ if env is None else env
    if env.get("BLINAETL_PREFECT_EARLY", "1") == "0" or configured_api_url(env):
        return None
    if use_running_local_server(env):
        return None
    return TemporaryServer(env)
