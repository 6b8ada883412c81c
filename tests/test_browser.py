"""The steward report in a real browser: headless Chromium renders it without console errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.browser_setup import chromium_path

pytestmark = pytest.mark.browser

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=1",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    # installed under a lock if missing; a background install started with the session
    # (tests/conftest.py, tests/browser_setup.py) is waited for
    found = chromium_path()
    assert found, "Chromium could not be installed (apt-get install chromium)"
    return found


def _open(chromium: str, page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _console_errors(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)
    ]


def test_console_check_detects_an_error(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!doctype html><html><body><p>x</p><script>throw new Error('boom')</script></body></html>"
    )
    out = _open(chromium, bad, tmp_path, "--dump-dom")
    assert _console_errors(out.stderr), "the check would not see a console error"


def test_steward_report_renders_without_console_errors(chromium, tmp_path, demo_run):
    _, _, (summary, _) = demo_run
    page = summary.report_dir / "index.html"
    dom = _open(chromium, page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not _console_errors(dom.stderr), _console_errors(dom.stderr)
    for section in (
        "files",
        "queries",
        "kahn",
        "top-failing",
        "gx",
        "changes",
        "vocabulary",
        "all-checks",
    ):
        assert f'id="{section}"' in dom.stdout, section
    assert "rows read" in dom.stdout
    shot = summary.report_dir / "screenshot.png"
    out = _open(
        chromium,
        page,
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1280,1800",
        "--hide-scrollbars",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert shot.stat().st_size > 20_000, "a real screenshot, not a blank page"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_study_report_renders_in_a_browser(chromium, tmp_path, demo_run):
    _, _, (summary, _) = demo_run
    page = summary.report_dir / "study_report.html"
    dom = _open(chromium, page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not _console_errors(dom.stderr), _console_errors(dom.stderr)
    for section in (
        "seed",
        "table1",
        "response",
        "km",
        "landmark",
        "incidence",
        "multiple-testing",
    ):
        assert f'id="{section}"' in dom.stdout, section
    shot = summary.report_dir / "study_screenshot.png"
    out = _open(
        chromium,
        page,
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1280,4200",
        "--hide-scrollbars",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert shot.stat().st_size > 100_000, "a page with its figures, not a blank page"
