"""Reuse a running local Prefect server instead of starting a temporary one.

With no API URL configured, a plain flow run starts Prefect's temporary server (about 10 s to
start and 3 s to stop on this machine; findings.md). `make serve` keeps a server on
127.0.0.1:4200 (or `PREFECT_PORT`); when one answers there, the run uses it, and its flow runs
show in that server's UI. Configured servers win: nothing changes when `PREFECT_API_URL` is
set in the environment or in the active Prefect profile. Imports nothing from Prefect, so it
can run before `prefect` is imported (Prefect reads its settings at import).
"""

from __future__ import annotations

import os
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
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=timeout) as resp:
            return api if resp.status == 200 and resp.read().strip() == b"true" else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


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
