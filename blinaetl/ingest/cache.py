"""Per-file cache of read and mapped landing files, for incremental runs (restricted zone).

Reading and mapping a landing file (`landing.read_file`) depends on the file's bytes and on
nothing else of the landing folder, except for REDCap exports and entries with a `lookup`,
which read other landing files too and are therefore never cached. An incremental run takes
the `MappedFile` of an unchanged file from this cache instead of reading it again; everything
after reading (choosing the extracts, the keyed patient hash, every check, row-level and
cross-record, over the whole current data, the accounting per file) runs as in a full run, so
the results are those of a full run by construction.

An entry is found by a key that hashes the file's SHA-256 and path, the job (source entry and
REDCap instrument), and the run context: every contract and source mapping as loaded and as
files (SHA-256), the definitions in force, the file limits, an identity of the pseudonymisation
key (an HMAC of a constant under the key, never the key itself), the package's code (SHA-256 of
every module of `blinaetl/`) and the versions of the libraries that parse files. Any change is
a different key, so a miss and a full read of that file: the cache errs on the side of reading
again. A `--full` run reads nothing from the cache and writes every entry afresh.

The cache holds identifiable rows (MRNs, delivered text), so it lives beside the restricted
database, in the restricted folder (0700), its files 0600. After each run only the entries of
the files that run read are kept. An entry is a folder `<key>/` with `frame.arrow`,
`raw.arrow`, `copies.arrow` (streamed files) in Arrow IPC (lz4) and `meta.json` (file name,
SHA-256, note, labels, column names; no values). A column of the mapped frame equal to a
delivered column (a field's `__raw__` text, a text field's typed value: in memory one buffer,
`landing._map_chunks`) is written once, in `raw.arrow`, and set beside the frame again when
read (`Entry.text_of` names the candidates; only columns found equal are left out). An entry
that cannot be read (damaged, partial, of another format) is a miss: the run log says so, the
file is read in full and its entry written again.

Beside the cache folder, `patient_keys/<run context>.arrow` (0700 / 0600) holds the keyed hash
of each (site, MRN) pair of the last run (`privacy.PatientKeys`), so a run hashes only the pairs
that are new; its name is the run context, which names the key's identity and the code, so a
run under another key or code never reads it, and a file that cannot be read is hashed again.

Also beside it, `validated/<group key>/` (0700 / 0600): what validating one group of tables
(`landing.table_groups`) gave, so a group none of whose inputs changed is not validated again
(`FileCache.load_group`). Validating a group reads its mapped files (in order), the contracts,
the failures the sites confirmed as delivered for its tables, the patient facts of the first
group (for the others' cross-record checks) and the key; the group key hashes the file keys of
its files (which name the run context: code, contracts, mappings, definitions, key identity),
pandera's and polars' versions, the tables, the confirmed failures and the facts
(`frame_digest`), and the run's date when a file is named without an extract date (its events
are checked against that date), so any change to any of them is another key and the group is
validated again. A group with a file that is never cached (REDCap, lookups) or changed while
read has no key. An entry holds the validated tables, the group's quarantine (rows with
`raw_json`, failures, each streamed file's copy segment), its DQD results, the distinct (site,
MRN) pairs it keyed and, for the first group, the patient facts; `_run_id` is set to the
reading run's. After each run only the groups that run used or wrote are kept. A `--full` run
reads none and writes every group afresh.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from blinaetl.ingest.limits import file_sha256, limits
from blinaetl.privacy import patient_keys
from blinaetl.warehouse.quarantine import CopySegment, Quarantine

FORMAT = 2  # layout of an entry; a new layout is a new key
GROUP_FORMAT = 1  # layout of a validated group's entry (part of its key)
KEYS_FOLDER = "patient_keys"  # beside the cache: <run context>.arrow, the last run's keys
GROUPS_FOLDER = "validated"  # beside the cache: <group key>/, a validated group of tables
KEYS_SAMPLE = 32  # keys hashed again when the file is read, to check it is this key's
PARSING_LIBRARIES = ("polars", "fastexcel", "pyreadstat", "openpyxl")
VALIDATING_LIBRARIES = ("pandera", "polars")

log = logging.getLogger("blinaetl")


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """SHA-256 over every module of the `blinaetl` package and the parsing libraries' versions.

    Computed once per process (the file cache and the build key both read it on every run):
    the code a process runs is the code it loaded."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    versions = library_versions(PARSING_LIBRARIES)
    digest.update(json.dumps([versions, sys.version], sort_keys=True).encode())
    return digest.hexdigest()


def library_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Each installed distribution's version (None where it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def frame_digest(
    digest: Any,
    name: str,
    frame: pl.DataFrame | None,
    skip: tuple[str, ...] = (),
    ordered: bool = True,
) -> None:
    """Add a frame to `digest`: its name, height and schema, then two 64-bit hashes per row
    (128 bits a row), without the columns `skip`: in row order, or, with `ordered=False`, each
    seed's hashes sorted (the multiset of rows: the same rows in another order give the same
    digest; sorting integers, not the frame). None adds its name alone."""
    if frame is None:
        digest.update(json.dumps([name, None]).encode())
        return
    frame = frame.drop([c for c in skip if c in frame.columns])
    digest.update(json.dumps([name, frame.height, list(map(str, frame.schema.items()))]).encode())
    if frame.height and frame.width:
        for seed in (1, 2):
            hashes = frame.hash_rows(seed=seed)
            digest.update((hashes if ordered else hashes.sort()).to_numpy().tobytes())


@functools.cache
def _validator_versions() -> dict[str, str | None]:
    """The versions of the libraries validation runs on (a group key names them: the run
    context names the parsing libraries only)."""
    return library_versions(VALIDATING_LIBRARIES)


def key_identity(secret: bytes) -> str:
    """Which pseudonymisation key the run uses, without revealing it: HMAC of a constant."""
    return hmac.new(secret, b"blinaetl file cache key identity", hashlib.sha256).hexdigest()


def folder_hashes(folders: Iterable[Path | None]) -> list[tuple[str, str]]:
    """(absolute path, SHA-256) of every file under `folders`, sorted; a folder that is None
    or not a directory adds nothing. Shared by the file cache's run context and the build key
    (`reuse.build_key`)."""
    return [
        (str(p.resolve()), file_sha256(p))
        for folder in sorted({f for f in folders if f is not None and f.is_dir()})
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


def run_context(
    contracts: dict[str, Any],
    sources: list[Any],
    partial_dates: str,
    secret: bytes,
    definitions: dict[str, Any],
) -> str:
    """Digest of everything besides the file that determines a file's mapped output: the
    contracts and source mappings as loaded and as files, the partial-date rule and the other
    definitions, the limits, the key's identity, the code."""
    return _digest(
        FORMAT,
        code_fingerprint(),
        key_identity(secret),
        repr(sorted(contracts.items())),
        repr([(s.source, s) for s in sources]),
        folder_hashes({c.path.parent for c in contracts.values()}),
        folder_hashes({s.path.parent for s in sources}),
        definitions,
        partial_dates,
        repr(limits()),
    )


class _Unusable(ValueError):
    """An entry that reads but is not usable for its key (another format, another file)."""


@dataclass
class Entry:
    """What the cache keeps of a read and mapped file (`landing.MappedFile` without the
    mapping objects, which come from the run's plan)."""

    path: str  # the file as its records name it
    sha256: str
    frame: pl.DataFrame
    raw: pl.DataFrame
    note: str
    labels: dict[str, str]
    copies: pl.DataFrame | None
    # frame column -> the delivered column it may hold the same text as (written once if so)
    text_of: dict[str, str] = field(default_factory=dict)


@dataclass
class GroupEntry:
    """What validating one group of tables gave (`landing.validate_by_table`), as kept by the
    cache: the validated tables, the group's quarantine and DQD results, the (site, MRN) pairs
    it keyed, and the patient facts when the group holds the patients (else None)."""

    tables: dict[str, pl.DataFrame]
    quarantine: Quarantine
    dq: pl.DataFrame
    pairs: pl.DataFrame
    facts: pl.DataFrame | None = None


@dataclass
class FileCache:
    """The per-file cache of one run (see the module); `landing.cached_outcomes` looks files up
    before reading, `landing.store_outcomes` writes the files read."""

    root: Path
    context: str
    full: bool = False  # read nothing from the cache (entries are still written)
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # file name -> (key, sha256)
    reused: list[str] = field(default_factory=list)  # file names taken from the cache
    groups_kept: set[str] = field(default_factory=set)  # group keys read or written this run
    writers: list[threading.Thread] = field(default_factory=list, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, root: Path, context: str, full: bool = False) -> FileCache:
        """The cache folder `root` (created 0700, as is the restricted folder holding it)."""
        for folder in (root.parent, root):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.chmod(0o700)
        return cls(root, context, full)

    def key(self, name: str, source_id: str, index: int, sha256: str) -> str:
        """The key of a file job: the run context, the file's name, its entry and its bytes.
        Remembered for `store` and `prune`."""
        key = _digest(self.context, name, source_id, index, sha256)
        with self.lock:
            self.keys[name] = (key, sha256)
        return key

    def load(self, key: str, name: str, sha256: str) -> Entry | None:
        """The entry of `key`, or None (absent, damaged or not this file's: then removed)."""
        entry = self.root / key
        if self.full or not entry.is_dir():
            return None
        try:
            meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
            if meta["format"] != FORMAT:
                raise _Unusable(f"entry format {meta['format']!r}, this version writes {FORMAT}")
            if meta["path"] != name or meta["sha256"] != sha256:
                raise _Unusable("the entry is of another file or of other bytes")
            raw = pl.read_ipc(entry / "raw.arrow")
            frame = _with_shared(pl.read_ipc(entry / "frame.arrow"), raw, meta)
            found = Entry(
                name,
                sha256,
                frame,
                raw,
                str(meta["note"]),
                dict(meta["labels"]),
                pl.read_ipc(entry / "copies.arrow") if meta["copies"] else None,
            )
        except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError) as exc:
            # a damaged, partial or stale entry: read the file in full, write the entry afresh
            why = str(exc) if isinstance(exc, _Unusable) else f"damaged: {type(exc).__name__}"
            log.warning(
                "file cache: the entry of %s could not be used (%s); the file is read in full "
                "and its entry written again",
                name,
                why,
            )
            _remove(entry)
            return None
        with self.lock:
            self.reused.append(name)
        return found

    def save(self, key: str, item: Entry) -> None:
        """Write an entry (into a temporary folder first, then renamed: never half an entry)."""
        entry = self.root / key
        tmp = self.root / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        _remove(tmp)
        tmp.mkdir(mode=0o700)
        try:
            shared = _shared_columns(item)
            _write_frame(tmp / "frame.arrow", item.frame.drop(list(shared)))
            _write_frame(tmp / "raw.arrow", item.raw)
            if item.copies is not None:
                _write_frame(tmp / "copies.arrow", item.copies)
            meta = {
                "format": FORMAT,
                "path": item.path,
                "sha256": item.sha256,
                "note": item.note,
                "labels": item.labels,
                "copies": item.copies is not None,
                "columns": item.frame.columns,
                "shared": shared,
            }
            (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            (tmp / "meta.json").chmod(0o600)
            _remove(entry)
            os.replace(tmp, entry)
        finally:
            _remove(tmp)

    def group_key(
        self,
        tables: list[str],
        files: list[tuple[str, str]],
        confirmed: pl.DataFrame | None,
        facts: pl.DataFrame | None,
        as_of: str | None = None,
    ) -> str | None:
        """The key of validating a group (see the module): `files` its mapped files' (name,
        SHA-256) in order, `confirmed` the failures the sites confirmed, `facts` the patient
        facts it is checked against, `as_of` the run's date when a check reads it (a file
        named without an extract date). None when a file has no key of this run (never
        cached) or another SHA-256 (changed while read)."""
        parts = []
        with self.lock:
            for name, sha in files:
                known = self.keys.get(name)
                if known is None or known[1] != sha:
                    return None
                parts.append(known[0])
        if confirmed is not None and "table_name" in confirmed.columns:
            confirmed = confirmed.filter(pl.col("table_name").is_in(tables))
        digest = hashlib.sha256(
            json.dumps(
                [GROUP_FORMAT, self.context, _validator_versions(), tables, parts, as_of]
            ).encode()
        )
        # both are looked up by their keys, so their row order is no input (and the facts'
        # order varies from run to run: `executor._context` takes distinct rows)
        for name, frame in (("confirmed", confirmed), ("facts", facts)):
            frame_digest(
                digest, name, frame if frame is not None and frame.height else None, ordered=False
            )
        return digest.hexdigest()

    def load_group(self, key: str, tables: list[str], run_id: str) -> GroupEntry | None:
        """The validated group of `key`, its `_run_id` columns this run's, or None (absent,
        damaged or of another layout: then removed, and the group is validated again)."""
        folder = self._groups_root() / key
        if self.full or not folder.is_dir():
            return None
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            if meta["format"] != GROUP_FORMAT or meta["tables"] != tables:
                raise _Unusable("the entry is of another layout or group")

            def read(name: str) -> pl.DataFrame:
                return with_run_id(pl.read_ipc(folder / f"{name}.arrow"), run_id)

            segments = [
                CopySegment(
                    path=str(seg["path"]),
                    table=str(seg["table"]),
                    spine=read(f"segment{i}.spine"),
                    row_info=read(f"segment{i}.row_info"),
                    templates=read(f"segment{i}.templates"),
                )
                for i, seg in enumerate(meta["segments"])
            ]
            found = GroupEntry(
                tables={t: read(f"table{i}") for i, t in enumerate(meta["validated"])},
                quarantine=Quarantine(
                    rows_base=read("rows_base"),
                    failures_base=read("failures_base"),
                    segments=segments,
                ),
                dq=read("dq"),
                pairs=read("pairs"),
                facts=read("facts") if meta["facts"] else None,
            )
        except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError) as exc:
            why = str(exc) if isinstance(exc, _Unusable) else f"damaged: {type(exc).__name__}"
            log.warning(
                "file cache: the validated %s could not be used (%s); the group is validated again",
                ", ".join(tables),
                why,
            )
            _remove(folder)
            return None
        with self.lock:
            self.groups_kept.add(key)
        return found

    def save_group_later(self, key: str, tables: list[str], entry: GroupEntry) -> None:
        """Write a validated group on a thread (`join_writers` waits for them); a write that
        fails is logged and the group is validated again next run."""
        with self.lock:
            self.groups_kept.add(key)
        thread = threading.Thread(
            target=self._save_group, args=(key, tables, entry), name="validated-group-writer"
        )
        self.writers.append(thread)
        thread.start()

    def join_writers(self) -> None:
        for thread in self.writers:
            thread.join()
        self.writers.clear()

    def _save_group(self, key: str, tables: list[str], entry: GroupEntry) -> None:
        root = self._groups_root()
        folder = root / key
        tmp = root / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            root.mkdir(mode=0o700, exist_ok=True)
            root.chmod(0o700)
            _remove(tmp)
            tmp.mkdir(mode=0o700)
            frames: dict[str, pl.DataFrame] = {
                f"table{i}": frame for i, frame in enumerate(entry.tables.values())
            }
            q = entry.quarantine
            frames.update(
                rows_base=q.rows_base, failures_base=q.failures_base, dq=entry.dq, pairs=entry.pairs
            )
            for i, seg in enumerate(q.segments):
                frames[f"segment{i}.spine"] = seg.spine
                frames[f"segment{i}.row_info"] = seg.row_info
                frames[f"segment{i}.templates"] = seg.templates
            if entry.facts is not None:
                frames["facts"] = entry.facts
            for name, frame in frames.items():
                _write_frame(tmp / f"{name}.arrow", frame)
            meta = {
                "format": GROUP_FORMAT,
                "tables": tables,
                "validated": list(entry.tables),
                "segments": [{"path": s.path, "table": s.table} for s in q.segments],
                "facts": entry.facts is not None,
            }
            (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            (tmp / "meta.json").chmod(0o600)
            _remove(folder)
            os.replace(tmp, folder)
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            # the run goes on (this is a thread of its own); the group is validated again
            log.warning(
                "file cache: the validated %s not kept for the next run (%s)",
                ", ".join(tables),
                type(exc).__name__,
            )
        finally:
            with contextlib.suppress(OSError):  # e.g. no folder to hold it (said above)
                _remove(tmp)

    def _groups_root(self) -> Path:
        return self.root.parent / GROUPS_FOLDER

    def known_keys(self, secret: bytes) -> pl.DataFrame | None:
        """The patient keys (`site`, `mrn`, `patient_key`) the last run wrote under this run's
        context (`save_keys`), or None: absent, of another context (another key, code or
        mapping: another file name), or unusable (then every pair is hashed again): unreadable,
        not one row per pair, or a sample of its keys not the keyed hash under `secret`."""
        path = self._keys_path()
        if self.full or not path.is_file():
            return None
        try:
            frame = pl.read_ipc(path).select("site", "mrn", "patient_key")
            if set(frame.schema.values()) != {pl.Utf8}:
                raise _Unusable("the patient keys are not text")
            if frame.select("site", "mrn").is_duplicated().any():
                raise _Unusable("a pair is listed twice")
            sample = frame.head(KEYS_SAMPLE)
            if not patient_keys(sample["site"], sample["mrn"], secret).equals(
                sample["patient_key"]
            ):
                raise _Unusable("its keys are not this key's")
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            why = str(exc) if isinstance(exc, _Unusable) else f"damaged: {type(exc).__name__}"
            log.warning(
                "file cache: the patient keys could not be used (%s); they are hashed again", why
            )
            _remove(path)
            return None
        return frame

    def save_keys(self, keys: pl.DataFrame) -> None:
        """Write the run's patient keys for the next run (a temporary file renamed: never half
        a file), and drop those of other contexts."""
        path = self._keys_path()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            path.parent.chmod(0o700)
            _write_frame(tmp, keys.select("site", "mrn", "patient_key"))
            os.replace(tmp, path)
            for other in path.parent.iterdir():
                if other != path:
                    _remove(other)
        except OSError as exc:  # the run goes on; the next run hashes every pair again
            log.warning("file cache: patient keys not kept (%s)", type(exc).__name__)
        finally:
            _remove(tmp)

    def _keys_path(self) -> Path:
        return self.root.parent / KEYS_FOLDER / f"{self.context}.arrow"

    def prune(self) -> None:
        """Remove every entry but those of the files this run keyed, and every validated group
        but those this run read or wrote."""
        groups = self._groups_root()
        if groups.is_dir():
            for entry in groups.iterdir():
                if entry.name not in self.groups_kept:
                    _remove(entry)
        kept = {key for key, _ in self.keys.values()}
        dropped = [entry for entry in self.root.iterdir() if entry.name not in kept]
        for entry in dropped:
            _remove(entry)
        if dropped:
            log.info(
                "file cache: %d entr%s dropped (of files removed or changed, or of another "
                "code, contract, mapping, definition or key version)",
                len(dropped),
                "y" if len(dropped) == 1 else "ies",
            )


def _shared_columns(item: Entry) -> dict[str, str]:
    """The frame's columns (of `item.text_of`) equal to their delivered column, row for row:
    written once, in `raw.arrow`. None of them unless the frame and the delivered text hold the
    same rows in the same order (a streamed file, or a file read whole with no reshaping)."""
    frame, raw = item.frame, item.raw
    if (
        frame.height != raw.height
        or "_source_row" not in frame.columns
        or "_source_row" not in raw.columns
        or not frame["_source_row"].equals(raw["_source_row"])
    ):
        return {}
    return {
        column: delivered
        for column, delivered in item.text_of.items()
        if column in frame.columns
        and delivered in raw.columns
        and delivered != "_source_row"
        and frame[column].dtype == raw[delivered].dtype
        and frame[column].equals(raw[delivered])
    }


def _with_shared(frame: pl.DataFrame, raw: pl.DataFrame, meta: dict[str, Any]) -> pl.DataFrame:
    """The frame as written, its shared columns (`_shared_columns`) taken from the delivered
    text again, in the written column order."""
    shared = meta["shared"]
    if not shared:
        return frame
    if frame.height != raw.height:
        raise _Unusable("the frame and the delivered text differ in rows")
    return frame.hstack([raw[d].alias(c) for c, d in shared.items()]).select(meta["columns"])


def with_run_id(frame: pl.DataFrame, run_id: str) -> pl.DataFrame:
    """The kept frame with its `_run_id` column (if any) the reading run's, of the same type
    (a cached file's frame, a validated group's)."""
    if "_run_id" not in frame.columns:
        return frame
    return frame.with_columns(pl.lit(run_id).cast(frame.schema["_run_id"]).alias("_run_id"))


def _write_frame(path: Path, frame: pl.DataFrame) -> None:
    frame.write_ipc(path, compression="lz4")
    path.chmod(0o600)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
