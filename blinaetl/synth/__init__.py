"""Synthetic cohort generator: realistic site extracts plus their ground truth.

`generate(out, n_patients, seed)` writes `out/landing/` (two clinical sites, two flow
laboratories, imaging reports of both sites) and `out/truth/` (`patients.csv` with the columns
of `curated.patients`, `defects.csv`, `derivation_queries.csv`, `identifiers.txt`,
`perturbations.json`). Deterministic for a seed; vectorized with numpy and polars.

`generate` is imported on first use, so that `blinaetl.synth.hardcases` (the hard cases' names
and rates, which the CLI's help lists) can be read without loading numpy and polars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blinaetl.synth.generator import generate

__all__ = ["generate"]


def __getattr__(name: str) -> Any:
    if name == "generate":
        from blinaetl.synth.generator import generate

        return generate
    raise AttributeError(f"module 'blinaetl.synth' has no attribute {name!r}")
