"""Report work in a child process: started with the run, its slow imports (great_expectations,
matplotlib) overlap ingest to publish; asked for its one job once the database is published.

`ReportChild(module, what)` runs `python -m <module> worker`; that module's `__main__` calls
`serve(preload, run)`. The job (a JSON object) goes to the child's stdin, the result (a JSON
object) comes back as one marked line on its stdout. Output goes to temporary files, not
pipes, so a chatty child never blocks on a full pipe while the run writes its other reports.
A child never asked (a refused or failed run) is ended by `close`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import IO, Any

RESULT_MARK = "blinaetl-report-child-result "


class ReportChildError(RuntimeError):
    """A report child process failed or returned no result."""


class ReportChild:
    def __init__(self, module: str, what: str) -> None:
        self.what = what
        # closed by `close`: they outlive this call, so no `with`
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-m", module, "worker"],
            stdin=subprocess.PIPE,
            stdout=self._out,
            stderr=self._err,
        )
        self._submitted = False

    def submit(self, **job: str) -> None:
        """Send the job; paths are read relative to this process's current folder."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write((json.dumps({"cwd": os.getcwd(), **job}) + "\n").encode())
            self._proc.stdin.close()
        except BrokenPipeError:
            pass  # the child died early: `result` reports why
        self._submitted = True

    def result(self) -> dict[str, Any]:
        """Wait for the child; its result, or `ReportChildError` with its last error line."""
        if not self._submitted:
            raise ReportChildError(f"no job was submitted to the {self.what} child process")
        code = self._proc.wait()
        out, err = self._read(self._out), self._read(self._err)
        lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)]
        if code != 0 or not lines:
            last = err.strip().splitlines()[-1:] or ["no error output"]
            raise ReportChildError(
                f"the {self.what} failed in its child process (exit status {code}): {last[0]}"
            )
        result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
        return result

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        self._out.close()
        self._err.close()

    @staticmethod
    def _read(handle: IO[bytes]) -> str:
        handle.seek(0)
        return handle.read().decode("utf-8", "replace")


def serve(preload: Callable[[], None], run: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """The child's side: `preload` (the slow imports), wait for the job, print its result."""
    preload()
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # closed unused: the run was refused or failed before publishing
    job = json.loads(line)
    os.chdir(job.pop("cwd"))
    result = run(job)
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0
