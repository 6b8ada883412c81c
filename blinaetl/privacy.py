"""Pseudonymous patient keys from a secret: keyed HMAC-SHA256 of (site, MRN).

The secret comes from `BLINAETL_SECRET_KEY` or, when a run names one, from a Prefect Secret
block (`secret_block` in the run config). Demo mode (synthetic data only) falls back to a
constant key that says it is not secret; outside demo mode a missing secret stops the run
before any file is read (fail closed).

The optional date-shift mode moves every calendar date of a patient by the same number of days,
derived from a second keyed hash of the patient key (`date_shift_days`): without the secret the
shift cannot be recomputed from the published key, and intervals between a patient's dates are
kept exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from typing import cast

import polars as pl

SECRET_ENV = "BLINAETL_SECRET_KEY"
DEMO_KEY = b"DEMO_KEY_NOT_SECRET--synthetic-data-only--blinaetl"
SEPARATOR = "\x1f"


class MissingSecretError(RuntimeError):
    """No secret key outside demo mode."""


MIN_SECRET_BYTES = 32  # the key as used (UTF-8 bytes); the message below says the same
GENERATE_HINT = 'python -c "import secrets; print(secrets.token_hex(32))"'


def _checked(value: str, where: str) -> bytes:
    key = value.encode("utf-8")
    if len(key) < MIN_SECRET_BYTES:
        raise MissingSecretError(
            f"{where} is {len(key)} bytes long, shorter than {MIN_SECRET_BYTES} bytes; use a key "
            f"of at least {MIN_SECRET_BYTES} random bytes, e.g. {GENERATE_HINT} (64 characters)"
        )
    return key


def secret_from_block(name: str) -> str:
    """The value of a Prefect Secret block (needs the Prefect API the run talks to)."""
    try:
        from prefect.blocks.system import Secret

        # prefect's sync_compatible stubs type `load` as "block or coroutine"; called outside an
        # event loop, as here, it returns the block
        value = cast(Secret, Secret.load(name)).get()
    except Exception as exc:  # block missing, API unreachable, wrong block type
        raise MissingSecretError(
            f"could not read the Prefect Secret block {name!r} ({type(exc).__name__}); create it "
            f"with `prefect block create secret` or Secret(value=...).save({name!r}), check "
            "PREFECT_API_URL, or set BLINAETL_SECRET_KEY instead. Nothing was read or written."
        ) from None
    if not isinstance(value, str) or not value:
        raise MissingSecretError(
            f"the Prefect Secret block {name!r} holds no text value; store the key as a string"
        )
    return value


def resolve_secret(demo: bool, secret_block: str | None = None) -> bytes:
    """The pseudonymisation key, first found of: the environment variable, the named Prefect
    Secret block, the demo key (demo mode only). Otherwise the run stops (fail closed)."""
    value = os.environ.get(SECRET_ENV, "")
    if value:
        return _checked(value, SECRET_ENV)
    if secret_block:
        return _checked(secret_from_block(secret_block), f"Prefect Secret block {secret_block!r}")
    if demo:
        return DEMO_KEY
    raise MissingSecretError(
        f"no pseudonymisation key: set {SECRET_ENV} (at least 32 random bytes, e.g. "
        f"{GENERATE_HINT}), name a Prefect Secret block (secret_block in the run config, "
        "--secret-block), or run with --demo on synthetic data only. Nothing was read or written."
    )


def hmac_sha256_hex(secret: bytes, messages: Iterable[bytes]) -> list[str]:
    """Hex HMAC-SHA256 (RFC 2104) of each message, the same digests as `hmac.new`.

    The key's inner and outer pads are hashed once and copied per message, instead of building
    an HMAC object per message (0.28 s instead of 0.45 s for 200,000 keys).
    """
    block = hashlib.sha256().block_size
    key = hashlib.sha256(secret).digest() if len(secret) > block else secret
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    out = []
    for message in messages:
        i = inner.copy()
        i.update(message)
        o = outer.copy()
        o.update(i.digest())
        out.append(o.hexdigest())
    return out


def patient_keys(site: pl.Series, mrn: pl.Series, secret: bytes) -> pl.Series:
    """Hex HMAC-SHA256 of site + 0x1F + MRN, computed once per distinct pair (null if either is)."""
    frame = pl.DataFrame({"site": site.cast(pl.Utf8), "mrn": mrn.cast(pl.Utf8)})
    pairs = frame.unique().drop_nulls()
    keys = pairs.with_columns(
        pl.Series(
            "patient_key",
            hmac_sha256_hex(secret, (f"{s}{SEPARATOR}{m}".encode() for s, m in pairs.iter_rows())),
            dtype=pl.Utf8,
        )
    )
    joined = frame.join(
        keys, on=["site", "mrn"], how="left", maintain_order="left", nulls_equal=False
    )
    return joined["patient_key"].alias("patient_key")


PAIR_SCHEMA = {"site": pl.Utf8, "mrn": pl.Utf8, "patient_key": pl.Utf8}


class PatientKeys:
    """`patient_keys` for one run, each (site, MRN) pair hashed once however often it is asked
    for: a run keys its files table group by group (`landing.validate_by_table`), and the same
    patients recur in every group (the patients, then their assessments, flow results and
    reports), so hashing each group's pairs anew hashed every patient four times (1.7-1.9 s of
    the 100,000-patient run, one Python loop per message).

    The keys live beside the MRNs they are made from, inside the restricted zone
    (docs/privacy.md): in memory, and between runs in the per-file cache of the restricted
    folder (`ingest.cache.FileCache.known_keys`, under the run context, which names the key's
    identity), so an incremental run hashes only the pairs that are new. `known`: the keys of
    an earlier run with the same key."""

    def __init__(self, secret: bytes, known: pl.DataFrame | None = None) -> None:
        self.secret = secret
        self.known = pl.DataFrame(schema=PAIR_SCHEMA) if known is None else known
        # the distinct pairs asked for so far, each once (a frame per group held them once
        # per group to the end of the ingest: every patient four times)
        self._asked = pl.DataFrame(schema={"site": pl.Utf8, "mrn": pl.Utf8})

    @classmethod
    def given(cls, secret: bytes | PatientKeys) -> PatientKeys:
        """The run's `PatientKeys` when given, else new ones for the key."""
        return secret if isinstance(secret, PatientKeys) else cls(secret)

    def of(self, pairs: pl.DataFrame) -> pl.DataFrame:
        """`pairs` (distinct `site`, `mrn`, neither null) with their `patient_key`, in order."""
        pairs = pairs.select(pl.col("site").cast(pl.Utf8), pl.col("mrn").cast(pl.Utf8))
        self._asked = pl.concat([self._asked, pairs]).unique()
        new = pairs.join(self.known, on=["site", "mrn"], how="anti")
        if new.height:
            hashed = new.with_columns(patient_keys(new["site"], new["mrn"], self.secret))
            self.known = pl.concat([self.known, hashed])
        return pairs.join(self.known, on=["site", "mrn"], how="left", maintain_order="left")

    def asked(self) -> pl.DataFrame:
        """The keys of the pairs asked for so far (those of this run: what the next run keeps)."""
        return self.known.join(self._asked, on=["site", "mrn"], how="semi")


DATE_SHIFT_CONTEXT = "date-shift"


def date_shift_days(secret: bytes, patient_key: str, max_days: int) -> int:
    """Per-patient date shift in days: in [-max_days, -1] or [1, max_days], never 0.

    A keyed hash of the patient key (not the key itself), so analysts who hold the published key
    but not the secret cannot undo the shift.
    """
    if max_days < 1:
        raise ValueError(f"date_shift_max_days must be at least 1, got {max_days}")
    digest = hmac.new(
        secret, f"{DATE_SHIFT_CONTEXT}{SEPARATOR}{patient_key}".encode(), hashlib.sha256
    ).digest()
    magnitude = int.from_bytes(digest[:8], "big") % max_days + 1
    return magnitude if digest[8] & 1 else -magnitude


def date_shifts(patient_keys: pl.Series, secret: bytes, max_days: int) -> pl.DataFrame:
    """`patient_key, shift_days` for each distinct non-null key."""
    keys = patient_keys.drop_nulls().unique().sort()
    return pl.DataFrame(
        {
            "patient_key": keys,
            "shift_days": pl.Series(
                [date_shift_days(secret, k, max_days) for k in keys], dtype=pl.Int32
            ),
        }
    )
