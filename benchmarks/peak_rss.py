"""Peak RSS of a benchmark's child process, its own.

Not `ru_maxrss`: on Linux a child started by fork and exec reports at least the RSS its parent
had at the fork (execve keeps the old address space's high-water mark in the process's
maxrss). A benchmark whose parent had generated a 300,000-patient cohort in process (about
2.8 GiB) so reported 2.84 GiB for a 21 MB delivery whose run peaked at 0.86 GiB
(`issue20_report.py`, 2026-12-02 15:05 UTC). `VmHWM` of /proc/self/status is the peak of the
current address space, which exec starts afresh. The children are code strings run with
`python -c`: they take the function as source (`SOURCE`).
"""

from __future__ import annotations

import inspect


def peak_rss_bytes() -> int:
    """This process's own peak RSS: VmHWM (ru_maxrss where there is no /proc/self/status)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


SOURCE = inspect.getsource(peak_rss_bytes)
