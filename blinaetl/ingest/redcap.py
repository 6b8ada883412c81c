"""REDCap project exports: the records CSV read through the project's data dictionary.

A mapping entry with `redcap: {dictionary: GLOB, instrument: NAME, events: [..]}` takes from the
export (REDCap's "CSV / Microsoft Excel (raw data)") the rows of one instrument: a repeating
instrument's rows (`redcap_repeat_instrument` = NAME, one per `redcap_repeat_instance`), or for
a non-repeating instrument the rows that are not repeat rows; optionally of some events
(`redcap_event_name`). Coded choices (radio, dropdown, yes/no, true/false) are translated to
their labels through the dictionary, and each checkbox field `var` gets a column `var` holding
the labels of its ticked choices (`var___1`, `var___2`, ... stay as delivered, 1/0). Then the
entry's `columns`, `codes` and the rest apply as to any file.
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import io
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from blinaetl.ingest.sources import FileMapping, SourceMapping

REPEAT_INSTRUMENT, REPEAT_INSTANCE, EVENT = (
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
    "redcap_event_name",
)
CODED = {"radio", "dropdown", "yesno", "truefalse"}
FIXED_CHOICES = {"yesno": {"1": "Yes", "0": "No"}, "truefalse": {"1": "True", "0": "False"}}
CHECKBOX_SEPARATOR = "; "
DATE_RE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


class RedcapProblem(Exception):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


@dataclass(frozen=True)
class DictField:
    name: str
    form: str
    type: str
    choices: dict[str, str]


def parse_choices(text: str) -> dict[str, str]:
    """`1, Male | 2, Female` -> {"1": "Male", "2": "Female"} (labels may hold commas)."""
    out: dict[str, str] = {}
    for part in (text or "").split("|"):
        if not part.strip():
            continue
        code, _, label = part.partition(",")
        out[code.strip()] = label.strip()
    return out


def read_dictionary(path: Path, rel: str) -> dict[str, DictField]:
    """The data dictionary CSV REDCap exports (first columns: field name, form name, section
    header, field type, field label, choices)."""
    text = path.read_bytes().decode("utf-8-sig", errors="strict")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or len(rows[0]) < 6 or "field" not in rows[0][0].lower():
        raise RedcapProblem(
            f"{rel}: is not a REDCap data dictionary (expected the columns 'Variable / Field "
            "Name', 'Form Name', 'Section Header', 'Field Type', 'Field Label', 'Choices, "
            "Calculations, OR Slider Labels')",
            "export the data dictionary from REDCap (Project Setup > Data Dictionary) as CSV",
        )
    fields = {}
    for r in rows[1:]:
        if len(r) < 6 or not r[0].strip():
            continue
        ftype = r[3].strip().lower()
        choices = FIXED_CHOICES.get(ftype) or (
            parse_choices(r[5]) if ftype in CODED | {"checkbox"} else {}
        )
        fields[r[0].strip()] = DictField(r[0].strip(), r[1].strip(), ftype, choices)
    return fields


def _newest(landing: Path, pattern: str) -> tuple[Path, str] | None:
    hits = sorted(
        (p.relative_to(landing).as_posix(), p)
        for p in landing.rglob("*")
        if p.is_file() and fnmatch.fnmatchcase(p.relative_to(landing).as_posix(), pattern)
    )
    if not hits:
        return None

    def when(rel: str) -> tuple[dt.date, str]:
        m = DATE_RE.search(Path(rel).name)
        try:
            d = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else dt.date.min
        except ValueError:
            d = dt.date.min
        return d, rel

    rel, path = max(hits, key=lambda h: when(h[0]))
    return path, rel


def apply_redcap(
    frame: pl.DataFrame, fm: FileMapping, source: SourceMapping, landing: Path, rel: str
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """The instrument's rows of the export with choices translated and checkboxes collected,
    the same rows as delivered (for the quarantine), and notes."""
    spec = fm.redcap or {}
    fix = f"correct 'redcap' in the source mapping ({source.path.name})"
    found = _newest(landing, spec["dictionary"])
    if found is None:
        raise RedcapProblem(
            f"{rel}: no data dictionary matches 'redcap.dictionary' ({spec['dictionary']}) in "
            "the landing folder",
            "put the project's data dictionary CSV beside the export, or " + fix,
        )
    dictionary = read_dictionary(*found)
    notes = [f"REDCap data dictionary {found[1]}"]
    delivered = frame.height
    instrument = spec["instrument"]
    forms = {f.form for f in dictionary.values()}
    if instrument not in forms:
        raise RedcapProblem(
            f"{rel}: instrument '{instrument}' is not a form of the data dictionary "
            f"(forms: {', '.join(sorted(forms))})",
            fix,
        )
    if spec.get("repeating"):
        if REPEAT_INSTRUMENT not in frame.columns:
            raise RedcapProblem(
                f"{rel}: has no '{REPEAT_INSTRUMENT}' column, so it holds no repeating instrument",
                "export the records again with the repeating instruments, or " + fix,
            )
        frame = frame.filter(pl.col(REPEAT_INSTRUMENT) == instrument)
    elif REPEAT_INSTRUMENT in frame.columns:
        frame = frame.filter(pl.col(REPEAT_INSTRUMENT).is_null())
    if spec.get("events"):
        if EVENT not in frame.columns:
            raise RedcapProblem(
                f"{rel}: 'redcap.events' is set but the export has no '{EVENT}' column "
                "(a project without events)",
                fix,
            )
        frame = frame.filter(pl.col(EVENT).is_in(spec["events"]))
    notes.append(
        f"{delivered - frame.height} of {delivered} row(s) are not of instrument "
        f"'{instrument}'{' in events ' + ', '.join(spec['events']) if spec.get('events') else ''}"
        " and were left out"
    )
    as_delivered = frame
    exprs = []
    for f in dictionary.values():
        if f.type in CODED and f.name in frame.columns and f.choices:
            unknown = sorted(set(frame[f.name].drop_nulls().unique().to_list()) - set(f.choices))
            if unknown:
                notes.append(
                    f"'{f.name}' has code(s) {', '.join(unknown[:5])} not in the dictionary's "
                    "choices; kept as delivered"
                )
            exprs.append(
                pl.col(f.name).replace_strict(f.choices, default=pl.col(f.name)).alias(f.name)
            )
        elif f.type == "checkbox" and f.choices:
            boxes = [(code, f"{f.name}___{code.lower()}") for code in f.choices]
            present = [(code, col) for code, col in boxes if col in frame.columns]
            if not present:
                continue
            ticked = [
                pl.when(pl.col(col) == "1").then(pl.lit(f.choices[code])).otherwise(None)
                for code, col in present
            ]
            exprs.append(
                pl.concat_list(ticked)
                .list.drop_nulls()
                .list.join(CHECKBOX_SEPARATOR)
                .replace("", None)
                .alias(f.name)
            )
    if exprs:
        frame = frame.with_columns(exprs)
    return frame, as_delivered, notes
