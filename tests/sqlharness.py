"""Given/expect unit tests of SQL models, in the spirit of dbt's unit tests.

Beside a model `sql/<layer>/<NN_name>.sql` a file `sql/<layer>/<NN_name>.tests.yaml` lists
tests. Each test builds an in-memory DuckDB holding every table of the warehouse, typed and
empty: the staging tables from the contracts, `curated.definitions` (with the test's
`definitions:` overrides) and its macros, the vocabularies as `ref.*` (shipped content), the
tables Python writes (`harmonized.em_mentions`, `harmonized.em_unmapped_terms`,
`harmonized.date_shift`), then every model of every layer run on the empty inputs and emptied.
The test's `given:` rows are inserted by column name, each value cast to the column's type (so
`2020-01-29` becomes a DATE where the column is a DATE); a given `ref.*` table replaces the
shipped vocabulary; a given view is replaced by a table of the view's columns. Then the model
under test runs alone and its output is compared with `expect:` (as multisets unless
`ordered: true`; floats to 1e-9; `null` is SQL NULL). Only the model under test runs: an upstream
table that is not given is empty.

Values are read with YAML 1.2 booleans (only true/false), so `NO` or `yes` stay strings.
"""

from __future__ import annotations

import atexit
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml

from blinaetl.resources import vocab_dir
from blinaetl.validate.contracts import load_contracts
from blinaetl.warehouse import models

TESTS_SUFFIX = ".tests.yaml"
TESTED_LAYERS = ("harmonized", "curated", "endpoints")
FLOAT_TOLERANCE = 1e-9

# tables written by Python stages, not by SQL models (same columns and types as those stages)
PYTHON_TABLES_DDL = (
    """
    CREATE TABLE harmonized.em_mentions (
        _source_file VARCHAR, _source_row BIGINT, patient_key VARCHAR, site VARCHAR,
        report_date DATE, modality VARCHAR, sentence_no INTEGER, sentence VARCHAR,
        term VARCHAR, site_group VARCHAR, icdo3 VARCHAR, laterality VARCHAR, assertion VARCHAR,
        change VARCHAR
    )
    """,
    "CREATE TABLE harmonized.em_unmapped_terms (term VARCHAR, n_mentions BIGINT, n_reports BIGINT)",
    "CREATE TABLE harmonized.date_shift (patient_key VARCHAR, shift_days INTEGER)",
)

_TEST_KEYS = {"name", "rule", "definitions", "given", "expect"}
_EXPECT_KEYS = {"columns", "rows", "ordered"}


class TestsFileError(ValueError):
    """A tests file is malformed; the message names the file, the test and the fix."""


class ModelTestFailure(AssertionError):
    """A model's output differs from the expected rows (or the model could not run)."""


class _Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 booleans: only true/false, so `NO`, `yes`, `on` are strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


@dataclass(frozen=True)
class ModelTest:
    """One given/expect test of one model."""

    tests_file: Path
    model_file: Path
    name: str
    rule: str
    definitions: dict[str, Any]
    given: dict[str, list[dict[str, Any]]]
    rows: list[dict[str, Any]]
    columns: tuple[str, ...] | None = None
    ordered: bool = False
    where: str = field(default="", compare=False)

    @property
    def id(self) -> str:
        return f"{self.model_file.parent.name}/{self.model_file.stem}::{self.name}"


def model_for(tests_file: Path) -> Path:
    """The model file a tests file belongs to (`X.tests.yaml` -> `X.sql`)."""
    return tests_file.with_name(tests_file.name[: -len(TESTS_SUFFIX)] + ".sql")


def tests_file_for(model_file: Path) -> Path:
    return model_file.with_name(model_file.stem + TESTS_SUFFIX)


def find_tests_files(sql_root: Path) -> list[Path]:
    return sorted(sql_root.glob(f"*/*{TESTS_SUFFIX}"))


def read_model(model_file: Path) -> models.Model:
    """The model a tests file tests: its output and the tables it reads."""
    try:
        return models.read_model(model_file.parent.name, model_file)
    except models.SqlModelError as exc:
        raise TestsFileError(str(exc)) from exc


def load_tests_file(path: Path) -> list[ModelTest]:
    """The tests of one tests file, checked for shape; raises TestsFileError naming the fix."""
    where = str(path)
    model_file = model_for(path)
    if not model_file.exists():
        raise TestsFileError(f"{where}: no model {model_file.name} beside it; rename or remove it")
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as exc:
        raise TestsFileError(f"{where}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict) or set(doc) != {"tests"} or not isinstance(doc["tests"], list):
        raise TestsFileError(
            f"{where}: the document must be a mapping with one key `tests:` (a list)"
        )
    tests = []
    seen: set[str] = set()
    for i, raw in enumerate(doc["tests"], start=1):
        test = _parse_test(raw, f"{where}: test {i}", path, model_file)
        if test.name in seen:
            raise TestsFileError(
                f"{where}: test name {test.name!r} is used twice; names are unique"
            )
        seen.add(test.name)
        tests.append(test)
    return tests


def _parse_test(raw: Any, where: str, path: Path, model_file: Path) -> ModelTest:
    if not isinstance(raw, dict):
        raise TestsFileError(f"{where}: a test is a mapping with name, rule, given, expect")
    unknown = set(raw) - _TEST_KEYS
    if unknown:
        raise TestsFileError(
            f"{where}: unknown key(s) {sorted(unknown)}; a test has {sorted(_TEST_KEYS)}"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise TestsFileError(f"{where}: `name:` must be a word (letters, digits, _ or -)")
    where = f"{where} ({name})"
    rule = raw.get("rule")
    if not isinstance(rule, str) or not rule.strip():
        raise TestsFileError(
            f"{where}: `rule:` must say where the rule comes from (domain.md section, definition)"
        )
    definitions = raw.get("definitions") or {}
    if not isinstance(definitions, dict):
        raise TestsFileError(f"{where}: `definitions:` must map definition names to values")
    given = raw.get("given") or {}
    if not isinstance(given, dict):
        raise TestsFileError(f"{where}: `given:` must map schema.table names to lists of rows")
    for table, rows in given.items():
        if not isinstance(table, str) or not re.fullmatch(r"[a-z_]\w*\.[a-z_]\w*", table):
            raise TestsFileError(
                f"{where}: given table {table!r} must be schema-qualified, e.g. staging.assessments"
            )
        _check_rows(rows, f"{where}: given {table}")
    expect = raw.get("expect")
    if not isinstance(expect, dict) or "rows" not in expect:
        raise TestsFileError(
            f"{where}: `expect:` must be a mapping with `rows:` (a list, may be [])"
        )
    unknown = set(expect) - _EXPECT_KEYS
    if unknown:
        raise TestsFileError(
            f"{where}: unknown key(s) {sorted(unknown)} in expect; it has {sorted(_EXPECT_KEYS)}"
        )
    rows = expect["rows"] or []
    _check_rows(rows, f"{where}: expect rows")
    columns = expect.get("columns")
    if columns is not None and (
        not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns)
    ):
        raise TestsFileError(f"{where}: expect `columns:` must be a non-empty list of names")
    ordered = expect.get("ordered", False)
    if not isinstance(ordered, bool):
        raise TestsFileError(f"{where}: expect `ordered:` must be true or false")
    return ModelTest(
        tests_file=path,
        model_file=model_file,
        name=name,
        rule=rule,
        definitions=definitions,
        given={t: list(r or []) for t, r in given.items()},
        rows=list(rows),
        columns=tuple(columns) if columns else None,
        ordered=ordered,
        where=where,
    )


def _check_rows(rows: Any, where: str) -> None:
    if rows is None:
        return
    if not isinstance(rows, list) or not all(isinstance(r, dict) and r for r in rows):
        raise TestsFileError(f"{where}: rows must be a list of mappings column -> value")


# --- the database a test runs in ---------------------------------------------------------------


def build_database(
    sql_root: Path, definitions: dict[str, Any] | None = None
) -> duckdb.DuckDBPyConnection:
    """In-memory warehouse with every table of `sql_root`'s models, typed and empty.

    Staging from the contracts, definitions (with overrides), vocabularies (shipped content),
    the Python-written tables, then every layer's models run on empty inputs and their tables
    emptied (a model that selects from a vocabulary would otherwise leave rows).
    """
    con = duckdb.connect()
    con.execute("SET threads = 1")  # small tables; a shared machine
    models.create_staging(con, load_contracts())
    models.install_definitions(con, models.load_definitions(overrides=definitions))
    models.load_vocab(con, vocab_dir())
    for schema in models.LAYER_SCHEMAS.values():
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for ddl in PYTHON_TABLES_DDL:
        con.execute(ddl)
    for layer in models.LAYERS:
        models.run_layer(con, layer, sql_root)
    for schema, table in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() "
        "WHERE schema_name IN ('harmonized', 'curated') AND table_name <> 'definitions'"
    ).fetchall():
        con.execute(f'DELETE FROM {schema}."{table}"')
    return con


_TEMPLATES: dict[Path, Path] = {}


def open_database(
    sql_root: Path, definitions: dict[str, Any] | None = None
) -> duckdb.DuckDBPyConnection:
    """A fresh copy of `build_database(sql_root)` (built once per folder), with the overrides.

    Copying the built database (`COPY FROM DATABASE`) takes a sixth of the time of building it.
    """
    root = sql_root.resolve()
    if root not in _TEMPLATES:
        folder = Path(tempfile.mkdtemp(prefix="blinaetl_sqltests_"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        template = folder / "template.duckdb"
        con = build_database(root)
        try:
            con.execute(f"ATTACH '{template}' AS template")
            con.execute("COPY FROM DATABASE memory TO template")
        finally:
            con.close()
        _TEMPLATES[root] = template
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute(f"ATTACH '{_TEMPLATES[root]}' AS template (READ_ONLY)")
    con.execute("COPY FROM DATABASE template TO memory")
    con.execute("DETACH template")
    if definitions:
        models.install_definitions(con, models.load_definitions(overrides=definitions))
    return con


def column_types(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """Column name -> DuckDB type of a table, view or query."""
    rows = con.execute(f"DESCRIBE {relation}").fetchall()
    return {name: typ for name, typ, *_ in rows}


def _relation_kind(con: duckdb.DuckDBPyConnection, qualified: str) -> str | None:
    schema, name = qualified.split(".")
    found = con.execute(
        "SELECT table_type FROM information_schema.tables "
        "WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchall()
    return found[0][0] if found else None


def insert_given(
    con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]], where: str
) -> None:
    """Insert the rows by column name, each value cast to its column's type.

    A view is first replaced by an empty table of its columns; a `ref.*` table's shipped rows
    are removed first (the given rows are the vocabulary of the test).
    """
    kind = _relation_kind(con, table)
    if kind is None:
        known = [
            f"{s}.{t}"
            for s, t in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables ORDER BY ALL"
            ).fetchall()
        ]
        raise TestsFileError(f"{where}: given table {table} does not exist; tables are {known}")
    if kind == "VIEW":
        con.execute(f"CREATE TABLE {table}__given AS SELECT * FROM {table} LIMIT 0")
        con.execute(f"DROP VIEW {table}")
        con.execute(f"ALTER TABLE {table}__given RENAME TO {table.split('.')[1]}")
    elif table.startswith("ref."):
        con.execute(f"DELETE FROM {table}")
    types = column_types(con, table)
    for i, row in enumerate(rows, start=1):
        missing = [c for c in row if c not in types]
        if missing:
            raise TestsFileError(
                f"{where}: given {table} row {i} names column(s) {missing} the table lacks; "
                f"its columns are {list(types)}"
            )
        cols = ", ".join(f'"{c}"' for c in row)
        casts = ", ".join(f"CAST(? AS {types[c]})" for c in row)
        try:
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {casts}", list(row.values()))
        except duckdb.Error as exc:
            raise TestsFileError(
                f"{where}: given {table} row {i} {row} cannot be cast to the column types "
                f"{ {c: types[c] for c in row} }: {exc}"
            ) from exc


def _typed_rows(
    con: duckdb.DuckDBPyConnection,
    rows: list[dict[str, Any]],
    columns: tuple[str, ...],
    types: dict[str, str],
    where: str,
) -> list[tuple[Any, ...]]:
    """Expected rows as DuckDB returns them: each value cast to the output column's type."""
    out = []
    casts = ", ".join(f"CAST(? AS {types[c]})" for c in columns)
    for i, row in enumerate(rows, start=1):
        lacking = [c for c in columns if c not in row]
        extra = [c for c in row if c not in columns]
        if lacking or extra:
            raise TestsFileError(
                f"{where}: expected row {i} {row} must give exactly the compared columns "
                f"{list(columns)} (null for NULL); lacking {lacking}, extra {extra}"
            )
        try:
            out.append(
                tuple(con.execute(f"SELECT {casts}", [row[c] for c in columns]).fetchone() or ())
            )
        except duckdb.Error as exc:
            raise TestsFileError(
                f"{where}: expected row {i} {row} cannot be cast to the output types "
                f"{ {c: types[c] for c in columns} }: {exc}"
            ) from exc
    return out


def same_value(a: Any, b: Any) -> bool:
    """Equal, with floats to FLOAT_TOLERANCE (relative or absolute) and NULL equal to NULL."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        try:
            fa, fb = float(a), float(b)
        except (TypeError, ValueError):
            return False
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return math.isclose(fa, fb, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def same_row(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))


def diff_multiset(
    expected: list[tuple[Any, ...]], actual: list[tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(expected rows not found, actual rows not expected), each row matched at most once."""
    unmatched = list(actual)
    missing = []
    for row in expected:
        for j, cand in enumerate(unmatched):
            if same_row(row, cand):
                del unmatched[j]
                break
        else:
            missing.append(row)
    return missing, unmatched


def _show(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    return "\n".join(
        "    {" + ", ".join(f"{c}: {_literal(v)}" for c, v in zip(columns, row, strict=True)) + "}"
        for row in rows
    )


def _literal(value: Any) -> str:
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def run_model_test(test: ModelTest, sql_root: Path) -> None:
    """Run one test; raises ModelTestFailure (differing rows) or TestsFileError (bad test)."""
    model = read_model(test.model_file)
    output = model.output
    header = (
        f"{test.tests_file} :: {test.name}\n  rule: {test.rule}\n"
        f"  model: {test.model_file.parent.name}/{test.model_file.name} -> {output}"
    )
    unused = sorted(set(test.definitions) - model.definitions)
    if unused:
        raise TestsFileError(
            f"{test.where}: definitions {unused} are overridden but {model.name} does not read "
            f"them; it reads {', '.join(sorted(model.definitions)) or 'none'}"
        )
    try:
        con = open_database(sql_root, test.definitions)
    except KeyError as exc:  # an unknown definition override
        raise TestsFileError(f"{test.where}: {exc.args[0]}") from exc
    try:
        for table, rows in test.given.items():
            if table not in model.reads:
                raise TestsFileError(
                    f"{test.where}: given {table}, which {model.name} does not read; it reads "
                    f"{', '.join(sorted(model.reads))}"
                )
            insert_given(con, table, rows, test.where)
        try:
            con.execute(test.model_file.read_text(encoding="utf-8"))
        except duckdb.Error as exc:
            raise ModelTestFailure(f"{header}\n  the model failed: {exc}") from exc
        types = column_types(con, output)
        columns = test.columns or tuple(dict.fromkeys(c for row in test.rows for c in row))
        if not columns:  # expect no rows and name no columns: compare the row count only
            columns = tuple(types)
        unknown = [c for c in columns if c not in types]
        if unknown:
            raise TestsFileError(
                f"{test.where}: expected column(s) {unknown} are not in {output}; "
                f"its columns are {list(types)}"
            )
        expected = _typed_rows(con, test.rows, columns, types, test.where)
        select = ", ".join(f'"{c}"' for c in columns)
        actual = [tuple(r) for r in con.execute(f"SELECT {select} FROM {output}").fetchall()]
    finally:
        con.close()
    _compare(header, columns, expected, actual, test.ordered)


def _compare(
    header: str,
    columns: tuple[str, ...],
    expected: list[tuple[Any, ...]],
    actual: list[tuple[Any, ...]],
    ordered: bool,
) -> None:
    if ordered:
        if len(expected) == len(actual) and all(map(same_row, expected, actual)):
            return
        first = next(
            (
                i
                for i, (e, a) in enumerate(zip(expected, actual, strict=False))
                if not same_row(e, a)
            ),
            min(len(expected), len(actual)),
        )
        raise ModelTestFailure(
            f"{header}\n  rows differ in order or content from row {first + 1} "
            f"({len(expected)} expected, {len(actual)} found)\n"
            f"  expected (in order):\n{_show(columns, expected)}\n"
            f"  found (in order):\n{_show(columns, actual)}"
        )
    missing, unexpected = diff_multiset(expected, actual)
    if not missing and not unexpected:
        return
    parts = [f"{header}\n  {len(expected)} rows expected, {len(actual)} found"]
    if missing:
        parts.append(f"  expected but not found ({len(missing)}):\n{_show(columns, missing)}")
    if unexpected:
        parts.append(f"  found but not expected ({len(unexpected)}):\n{_show(columns, unexpected)}")
    raise ModelTestFailure("\n".join(parts))


def models_without_tests(sql_root: Path) -> list[str]:
    """Models of the tested layers with no tests file or a tests file with no test."""
    missing = []
    for layer in TESTED_LAYERS:
        for model in models.model_files(layer, sql_root):
            tests = tests_file_for(model)
            if not tests.exists() or not load_tests_file(tests):
                missing.append(f"{layer}/{model.name}")
    return missing
