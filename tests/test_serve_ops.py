"""`make serve` on another port: the UI is told the server's API address, SIGTERM stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from flows.serve import healthy
from tests.conftest import _free_port

pytestmark = pytest.mark.server


def test_serve_on_another_port_sets_the_ui_api_url_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    assert port != 4200
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    for var in ("PREFECT_API_URL", "PREFECT_SERVER_UI_API_URL", "PREFECT_UI_URL"):
        env.pop(var, None)
    serve = subprocess.Popen(
        [sys.executable, "-m", "flows.serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = serve.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("serving "):
                break
        assert any(x.startswith("serving ") for x in lines), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=10) as r:
            settings = json.load(r)
        assert settings["api_url"] == api, settings
        serve.send_signal(signal.SIGTERM)
        out, _ = serve.communicate(timeout=90)
    finally:
        if serve.poll() is None:
            serve.kill()
    text = "".join(lines) + out
    assert serve.returncode == 0, text[-3000:]
    assert "stopped serving (SIGTERM)" in text
    assert "stopping the Prefect server" in text
    deadline = time.monotonic() + 30
    while healthy(api) and time.monotonic() < deadline:
        time.sleep(1)
    assert not healthy(api), "the server serve started is stopped with it"
