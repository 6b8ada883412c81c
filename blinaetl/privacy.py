"""Pseudonymous patient keys from a secret: keyed HMAC-SHA256 of (site, MRN).

The secret comes from `BLINAETL_SECRET_KEY`. Demo mode (synthetic data only) falls back to a
constant key that says it is not secret; outside demo mode a missing secret stops the run
before any file is read (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import os

import polars as pl

SECRET_ENV = "BLINAETL_SECRET_KEY"
DEMO_KEY = b"DEMO_KEY_NOT_SECRET--synthetic-data-only--blinaetl"
SEPARATOR = "\x1f"


class MissingSecretError(RuntimeError):
    """No secret key outside demo mode."""


def resolve_secret(demo: bool) -> bytes:
    """The pseudonymisation key: from the environment, else the demo key in demo mode."""
    value = os.environ.get(SECRET_ENV, "")
    if value:
        if len(value) < 16:
            raise MissingSecretError(
                f"{SECRET_ENV} is shorter than 16 characters; use at least 32 random bytes, e.g. "
                'python -c "import secrets; print(secrets.token_hex(32))"'
            )
        return value.encode("utf-8")
    if demo:
        return DEMO_KEY
    raise MissingSecretError(
        f"no pseudonymisation key: set {SECRET_ENV} (at least 32 random bytes, e.g. "
        'python -c "import secrets; print(secrets.token_hex(32))") or run with --demo on '
        "synthetic data only. Nothing was read or written."
    )


def hmac_key(secret: bytes, site: str, mrn: str) -> str:
    return hmac.new(secret, f"{site}{SEPARATOR}{mrn}".encode(), hashlib.sha256).hexdigest()


def patient_keys(site: pl.Series, mrn: pl.Series, secret: bytes) -> pl.Series:
    """Hex HMAC-SHA256 of site + 0x1F + MRN, computed once per distinct pair (null if either is)."""
    frame = pl.DataFrame({"site": site.cast(pl.Utf8), "mrn": mrn.cast(pl.Utf8)})
    pairs = frame.unique().drop_nulls()
    keys = pairs.with_columns(
        pl.Series(
            "patient_key",
            [hmac_key(secret, s, m) for s, m in pairs.iter_rows()],
            dtype=pl.Utf8,
        )
    )
    joined = frame.join(
        keys, on=["site", "mrn"], how="left", maintain_order="left", nulls_equal=False
    )
    return joined["patient_key"].alias("patient_key")
