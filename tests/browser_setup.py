"""Chromium for the browser tests: installed with apt-get when the machine has none.

On a fresh machine (CI) the install takes 60-100 s, mostly download and unpacking, little CPU.
The browser fixture (tests/test_browser.py) used to do it when the first browser test ran, and
its worker waited for it. `start_background_install` (called by tests/conftest.py when the
session starts and the browser tests are part of it) starts the same install in a background
process instead, so it overlaps the other tests; the fixture then waits on the install lock
and finds Chromium installed, or installs it itself if the background install failed.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Under pytest-xdist each worker that runs a browser test sets the fixture up; two concurrent
# `apt-get install` runs fail on dpkg's lock (exit 100), so the install is serialized by a lock
# file and a later one finds Chromium installed once it gets the lock.
INSTALL_LOCK = Path(tempfile.gettempdir()) / "blinaetl-chromium-install.lock"
# Debian's package, as the environment notes say; the machine runs as root
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
APT_UPDATE = ["apt-get", "update", "-qq"]
APT_INSTALL = ["apt-get", "install", "-y", "-qq", "chromium"]


def install_chromium() -> str | None:
    """Install Chromium in this process (the caller holds the install lock); its path."""
    subprocess.run(APT_UPDATE, check=True, capture_output=True, timeout=600, env=APT_ENV)
    subprocess.run(APT_INSTALL, check=True, capture_output=True, timeout=900, env=APT_ENV)
    return shutil.which("chromium")


def chromium_path() -> str | None:
    """Chromium's path, installing it under the lock if the machine has none (a background
    install holding the lock is waited for)."""
    found = shutil.which("chromium")
    if not found:
        with open(INSTALL_LOCK, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                found = shutil.which("chromium") or install_chromium()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return found


def start_background_install() -> subprocess.Popen[bytes] | None:
    """Start `chromium_path` in a background process if the machine has no Chromium; the
    process, else None. The process takes the install lock itself (apt-get and the daemons a
    package may start inherit no lock), so a fixture that gets the lock first installs, and the
    background process then finds Chromium installed."""
    if shutil.which("chromium") or not shutil.which("apt-get"):
        return None
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":
    sys.exit(0 if chromium_path() else 1)
