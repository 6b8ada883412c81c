"""The patient facts the cross-record checks of the other tables read (`executor._context`).

Its own module, without the validator's imports (pandera, about half a second): an incremental
run that takes a validated group from the file cache (`ingest.cache.FileCache.load_group`)
sets the facts again without importing the validator.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass
class Context:
    """Patient facts other tables are checked against, keyed by (site, mrn)."""

    facts: pl.DataFrame  # site, mrn (unique), _known, _dx, _birth, _death, _b0
