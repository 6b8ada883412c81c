"""Orchestration engines the CLI can hand a run to, found by entry point, never by import.

The engine (`blinaetl/`) must not depend on orchestration (`flows/`). An orchestrator registers
itself under the entry-point group `blinaetl.engines` (see `pyproject.toml`): the name maps to a
callable `(dask_address, dask_workers) -> flow`, where `flow(**run_settings)` runs the pipeline
and returns the run summary as a dict. `blinaetl run --engine NAME` looks the name up here.

An engine may also register, under `blinaetl.engine_prestart` and the same name, a callable
that the CLI calls before it loads the engine (so before the engine's imports): it returns
None, or an object whose `wait_ready()` the CLI calls just before the flow (the Prefect
engine starts its temporary server there: `flows/local_server.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

GROUP = "blinaetl.engines"
PRESTART_GROUP = "blinaetl.engine_prestart"


class EngineNotFoundError(LookupError):
    """No orchestration engine of that name is installed."""


def available_engines() -> list[str]:
    """Names of the installed orchestration engines, sorted."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_engine(name: str) -> Callable[..., Any]:
    """The registered factory of engine `name`; an unknown name names the installed ones."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        installed = ", ".join(available_engines()) or "none"
        raise EngineNotFoundError(
            f"no orchestration engine named {name!r} is installed (installed: {installed}); "
            "reinstall blinaetl with its flows (make .venv/.synced) or use --engine local"
        )
    factory: Callable[..., Any] = found[0].load()
    return factory


def prestart_engine(name: str) -> Any:
    """Call engine `name`'s prestart hook, if it registered one; what it returns, or None."""
    found = [ep for ep in entry_points(group=PRESTART_GROUP) if ep.name == name]
    return found[0].load()() if found else None
