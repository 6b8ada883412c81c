"""`flows.local_server`: a run reuses a local Prefect server that answers, never overrides a
configured one, and leaves Prefect's temporary server to Prefect when nothing answers."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from flows.local_server import configured_api_url, use_running_local_server


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
