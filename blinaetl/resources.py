"""Where the declarative parts of blinaetl live: `schemas/` and `sql/`.

From a checkout they are the top-level folders beside the package; in an installed wheel they
travel inside the package as `blinaetl/_resources/` (see pyproject's force-include).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def resource_root() -> Path:
    """Folder holding `schemas/` and `sql/` (packaged copy first, then the checkout)."""
    packaged = _PACKAGE_DIR / "_resources"
    if (packaged / "schemas").is_dir():
        return packaged
    checkout = _PACKAGE_DIR.parent
    if (checkout / "schemas").is_dir():
        return checkout
    raise FileNotFoundError(
        "blinaetl cannot find its schemas/ and sql/ folders: neither "
        f"{packaged} nor {checkout} holds them. Reinstall the package."
    )


def schemas_dir() -> Path:
    return resource_root() / "schemas"


def contracts_dir() -> Path:
    return schemas_dir() / "contracts"


def sources_dir() -> Path:
    return schemas_dir() / "sources"


def templates_dir() -> Path:
    """Bundled mapping templates to copy and adjust (e.g. `sdtm.yaml`); never loaded by default."""
    return schemas_dir() / "templates"


def vocab_dir() -> Path:
    return schemas_dir() / "vocab"


def sql_dir() -> Path:
    return resource_root() / "sql"
