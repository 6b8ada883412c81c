"""Shared fixtures: cohorts generated once per session and run through the pipeline.

`make test` runs the suite on two pytest-xdist workers with `--dist loadgroup`. Two things
here keep that fast without changing what any test checks:

- every test that uses an expensive fixture (a pipeline run, a Prefect server) is put in one
  xdist group with the other tests using it, so the fixture is built once in the session, not
  once on each worker (`_SHARED`);
- the collection is ordered longest work first (`_RUN_FIRST`), so neither worker is left with
  a long group at the end while the other is idle. The tests of one group, and of one file
  outside the groups, keep their order and stay together.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest

from blinaetl.pipeline import RunConfig, run_pipeline
from blinaetl.synth import generate

# tests never borrow a Prefect server someone else runs on this machine (flows/local_server.py)
os.environ.setdefault("BLINAETL_PREFECT_REUSE", "0")

# Under pytest-xdist (`make test` runs two workers) each worker gets a Prefect home of its own, so
# two temporary Prefect servers never share one SQLite database.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and os.environ.get("PREFECT_HOME"):
    _home = Path(os.environ["PREFECT_HOME"]) / f"xdist-{_WORKER}"
    _home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(_home)

# Expensive fixtures and the xdist group of the tests that use them: session fixtures by name,
# module fixtures as "<test file>::<fixture>" (their names are local to the file). A test that
# uses two of them joins both groups into one. A parametrized module fixture is built once per
# parameter, so each parameter is a group of its own.
_SHARED = {
    "demo_run": "demo_run",  # the 65-patient demo cohort through the pipeline
    "large_run": "large_run",  # 10,000 patients through the pipeline
    "prefect_server": "prefect_server",  # a real Prefect server on loopback
    "test_gate.py::published": "gate_published",
    "test_privacy.py::shifted_run": "date_shift_run",
    "test_query_lifecycle.py::five_runs": "five_runs",
    "test_report.py::two_runs": "two_runs",
    "test_roundtrip.py::trip": "roundtrip",
    "test_survival_views.py::db": "survival_db",
    "test_vignettes.py::vignette_run": "vignette_run",
    "test_model_results.py::results": "model_results",
    "test_synth.py::big": "synth_2000",
}

# Scheduling hint, longest unit first: groups by name and whole test files, from the durations
# of a full run (`pytest --durations`). xdist hands out work in collection order, one group or
# one test at a time, to whichever worker is free; what is listed here is collected first, in
# this order, the rest keeps its order (many short tests last fill the gaps). A wrong or missing
# entry costs balance only, never a result.
_RUN_FIRST = (
    "prefect_server",  # the served deployment, Dask workers, Secret block, gate run states
    "tests/test_benchmarks.py",  # two benchmark scripts in child processes
    "five_runs",
    "roundtrip",
    "tests/test_publish_crash.py",
    "tests/test_orchestration.py",  # killed runs: one child process and two runs each
    "tests/test_incremental.py",  # several runs each, compared with fresh full runs
    "survival_db",
    "demo_run",
    "large_run",
    "gate_published",
    "two_runs",
    "tests/test_serve_ops.py",
    "date_shift_run",
    "vignette_run",
    "tests/test_reported_response.py",
    "tests/test_survival_views.py",
)


def pytest_configure(config: pytest.Config) -> None:
    # xdist's loadscope/loadgroup scheduler re-sorts the work units by their number of tests
    # (`--loadscope-reorder`, on by default), which throws `_RUN_FIRST` away: in the full run
    # of 2026-12-02 07:05 UTC the demo-run and vignette groups (many short tests) went first and
    # the Prefect server group started at 364 s. The collection order is the schedule.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def _runs_browser_tests(config: pytest.Config) -> bool:
    """Whether this session runs tests/test_browser.py (by its arguments; no -k, no -m that
    leaves the browser tests out, not a collection only)."""
    if config.option.collectonly or config.option.keyword:
        return False
    if re.search(r"\bnot\s+browser\b", config.option.markexpr or ""):
        return False
    browser = (config.rootpath / "tests" / "test_browser.py").resolve()
    here = config.invocation_params.dir
    for arg in config.args:
        path = (here / arg.split("::", 1)[0]).resolve()
        if path == browser or path in browser.parents:
            return True
    return False


def pytest_sessionstart(session: pytest.Session) -> None:
    # Chromium, where the machine has none (a fresh CI machine: 60-100 s of apt-get), is
    # installed in the background from the start of the session instead of by the browser
    # fixture, whose worker used to wait for it (tests/browser_setup.py). The controller only;
    # the process is left to finish on its own (killing apt-get could break dpkg's state).
    if _WORKER is None and _runs_browser_tests(session.config):
        from tests.browser_setup import start_background_install

        start_background_install()


class _Groups:
    """Union-find over group names: tests sharing any expensive fixture share one group."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        self.parent.setdefault(name, name)
        while self.parent[name] != name:
            name = self.parent[name]
        return name

    def join(self, names: list[str]) -> str:
        roots = sorted({self.find(n) for n in names}, key=_rank)
        for other in roots[1:]:
            self.parent[other] = roots[0]
        return roots[0]


def _rank(name: str) -> tuple[int, str]:
    return (_RUN_FIRST.index(name) if name in _RUN_FIRST else len(_RUN_FIRST), name)


def _shared_groups(item: pytest.Item) -> list[str]:
    names = getattr(item, "fixturenames", ())
    module = Path(str(item.fspath)).name
    callspec = getattr(item, "callspec", None)
    out = []
    for fixture in names:
        group = _SHARED.get(f"{module}::{fixture}") or _SHARED.get(fixture)
        if group is None:
            continue
        if callspec is not None and fixture in callspec.params:
            # one group per parameter; xdist reads the group after the last "@" and only when
            # it comes after the last "]", so the parameter's id is kept to plain characters
            param = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(callspec.params[fixture]))
            group = f"{group}-{param}"
        out.append(group)
    return out


def _suffix_group(config: pytest.Config, item: pytest.Item, group: str) -> None:
    """Put the group into the test's id as "<id>@<group>", which `--dist loadgroup` schedules by.

    xdist's worker hook does this by setting `item._nodeid`, which pytest 9.2 no longer reads
    (its ids are structured, `item._id`): every group was silently ignored and each worker built
    the shared fixtures again (pytest-xdist issue #1386, open). Here the structured id gets the
    suffix; with an older pytest (no `_id`) xdist's own suffix still works."""
    if not getattr(config.option, "loadgroup", False) or not hasattr(item, "_id"):
        return
    from _pytest.nodeid import NodeId

    item._id = NodeId.parse(f"{item.nodeid}@{group}")


# tryfirst: xdist's own hook (its worker plugin, registered before this file) reads the
# xdist_group marks; a conftest hook runs after it unless it asks to run first.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups = _Groups()
    wanted = {id(item): _shared_groups(item) for item in items}
    for names in wanted.values():
        if names:
            groups.join(names)
    unit: dict[int, str] = {}
    for item in items:
        if wanted[id(item)]:
            group = groups.find(wanted[id(item)][0])
            item.add_marker(pytest.mark.xdist_group(group))
            _suffix_group(config, item, group)
            unit[id(item)] = group
        else:
            unit[id(item)] = item.nodeid.split("::", 1)[0]

    def first(item: pytest.Item) -> int:
        name = unit[id(item)]
        base = re.sub(r"-[^-]*$", "", name)  # a parameter's group ranks with its fixture's
        for key in (name, base, item.nodeid.split("::", 1)[0]):
            if key in _RUN_FIRST:
                return _RUN_FIRST.index(key)
        return len(_RUN_FIRST)

    # stable: the tests of one unit keep their relative order
    items[:] = sorted(items, key=first)


def _run_cohort(root: Path, out: Path, gx: bool = True) -> tuple[Path, RunConfig, object]:
    cfg = RunConfig(
        landing=out / "landing",
        warehouse=root / f"wh_{out.name}",
        reports=root / f"rp_{out.name}",
        demo=True,
        gx=gx,
    )
    summary, result = run_pipeline(cfg)
    return out, cfg, (summary, result)


@pytest.fixture
def hashed(monkeypatch) -> list[bytes]:
    """Every (site, MRN) message the keyed patient hash is computed for, in order (the real
    hash runs; the list only records what it was given)."""
    from blinaetl import privacy

    seen: list[bytes] = []
    real = privacy.hmac_sha256_hex

    def counting(secret: bytes, messages) -> list[str]:
        messages = list(messages)
        seen.extend(messages)
        return real(secret, messages)

    monkeypatch.setattr(privacy, "hmac_sha256_hex", counting)
    return seen


@pytest.fixture(scope="session")
def demo_cohort(tmp_path_factory) -> Path:
    """The demo cohort as generated (65 patients, seed 2017), not run: for tests that need its
    landing folder or its truth only. Read-only; a test that changes files copies them first."""
    out = tmp_path_factory.mktemp("demo_cohort") / "cohort_65_2017"
    generate(out, n_patients=65, seed=2017)
    return out


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, demo_cohort):
    return _run_cohort(tmp_path_factory.mktemp("e2e"), demo_cohort)


@pytest.fixture(scope="session")
def large_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e_large")
    out = root / "cohort_10000_7"
    generate(out, n_patients=10_000, seed=7)
    # its test compares the published database with the truth; the Great Expectations
    # checkpoint (tested on the demo run, tests/test_gx.py) is off
    return _run_cohort(root, out, gx=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One real Prefect server on loopback for the tests that run flows against a server (the
    one Prefect harness of the session), with its own Prefect home: (API URL, environment for a
    child process that talks to it). Stopped, and checked stopped, at the end of the session."""
    from flows.serve import healthy, start_server, stop_server

    home = tmp_path_factory.mktemp("prefect_home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    server = start_server("127.0.0.1", port, env=env)
    api = f"http://127.0.0.1:{port}/api"
    yield api, {**env, "PREFECT_API_URL": api}
    stop_server(server)
    deadline = time.monotonic() + 30
    while healthy(api) and time.monotonic() < deadline:
        time.sleep(1)
    assert not healthy(api), "the server the test started is stopped"
