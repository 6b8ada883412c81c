"""Run the declarative parts in DuckDB: definitions, vocabularies and the SQL model layers.

SQL models live in `sql/<layer>/<NN>_<model>.sql`, one model per file. Each model creates one
schema-qualified table or view and reads others by their schema-qualified names
(`staging.x`, `ref.x`, `harmonized.x`, `curated.x`, `endpoints.x`); the run order within a
layer is computed from those references (file names only break ties), and before any model
runs the whole model graph is checked: a cycle, a read of a table no model creates, or a read
across layers the build cannot serve is an error naming the model. Named definitions
(`schemas/definitions.yaml`, overridable per run) are published as `curated.definitions` and
read in SQL through the macros `def_num(name)` and `def_text(name)`; vocabularies
(`schemas/vocab/*.csv`) become `ref.<file stem>` tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from blinaetl.resources import schemas_dir, sql_dir, vocab_dir
from blinaetl.validate.contracts import Contract, read_yaml, staging_ddl
from blinaetl.warehouse.frames import write_frame

# layer folder under sql/ -> the schema its models write (date_shift runs only in date-shift mode)
LAYER_SCHEMAS = {
    "harmonized": "harmonized",
    "curated": "curated",
    "date_shift": "curated",
    "endpoints": "endpoints",
}
LAYERS = tuple(LAYER_SCHEMAS)


class SqlModelError(RuntimeError):
    """A SQL model failed; the message names the model file."""


class DefinitionError(KeyError):
    """A definition override or default is unknown, of the wrong kind or not an allowed value."""

    def __str__(self) -> str:
        return str(self.args[0])


def load_definitions(
    path: Path | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Named definitions with their values and descriptions, defaults first, then overrides.

    An override must name a known definition (a typo must not silently keep the default), be a
    number where the default is a number, and be one of the definition's `allowed:` values where
    it lists them (the values the models implement).
    """
    src = path or schemas_dir() / "definitions.yaml"
    doc = read_yaml(src)["definitions"]
    defs = {name: {"value": d["value"], "description": d["description"]} for name, d in doc.items()}
    for name, d in doc.items():
        check_definition_value(name, d["value"], d, f"{src.name} (default)")
    for name, value in (overrides or {}).items():
        if name not in defs:
            known = ", ".join(sorted(defs))
            raise DefinitionError(
                f"unknown definition {name!r} in the run's overrides; known: {known}"
            )
        check_definition_value(name, value, doc[name], "the run's overrides")
        defs[name] = {**defs[name], "value": value}
    return defs


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_definition_value(name: str, value: Any, spec: dict[str, Any], where: str) -> None:
    """Refuse a value of another kind than the default, or outside the `allowed:` list."""
    if _is_number(spec["value"]) and not _is_number(value):
        raise DefinitionError(
            f"definition {name} in {where} must be a number (as its default "
            f"{spec['value']!r}), got {value!r}"
        )
    allowed = spec.get("allowed")
    if allowed is not None and value not in allowed:
        raise DefinitionError(
            f"definition {name} in {where} is {value!r}; the models implement only "
            f"{', '.join(map(repr, allowed))}"
        )


def install_definitions(con: duckdb.DuckDBPyConnection, defs: dict[str, dict[str, Any]]) -> None:
    """Write `curated.definitions` and (re)create the `def_num` / `def_text` macros."""
    con.execute("CREATE SCHEMA IF NOT EXISTS curated")
    con.execute(
        "CREATE OR REPLACE TABLE curated.definitions "
        "(name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, description VARCHAR NOT NULL)"
    )
    rows = [(n, str(d["value"]), d["description"]) for n, d in sorted(defs.items())]
    con.executemany("INSERT INTO curated.definitions VALUES (?, ?, ?)", rows)
    con.execute(
        "COMMENT ON TABLE curated.definitions IS "
        "'Named definitions (rules, windows, cut-offs) in force for this build, with their values.'"
    )
    for col, text in (
        ("name", "Definition name, as in schemas/definitions.yaml."),
        ("value", "Value used by this build (text; numbers as written)."),
        ("description", "What the definition means and where it is used."),
    ):
        con.execute(f"COMMENT ON COLUMN curated.definitions.{col} IS '{text}'")
    install_macros(con)


UNKNOWN_DEFINITION_HINT = "add it to schemas/definitions.yaml or fix the name in the model"


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """`def_num(name)` (the value as DOUBLE) and `def_text(name)` (as text).

    An unknown name is an error raised through DuckDB's `error()` where the macro is evaluated,
    never a NULL that would fall to a CASE's ELSE branch (a model over no rows may not evaluate
    it: `check_definitions_used` checks the names the models write before they run).
    """
    for macro, value in (("def_num", "CAST(value AS DOUBLE)"), ("def_text", "value")):
        message = (
            f"'unknown definition \"' || coalesce(n, 'NULL') || '\" in {macro}(): "
            f"{UNKNOWN_DEFINITION_HINT}'"
        )
        con.execute(
            f"CREATE OR REPLACE MACRO {macro}(n) AS CASE "
            "WHEN (SELECT count(*) FROM curated.definitions WHERE name = n) = 1 "
            f"THEN (SELECT {value} FROM curated.definitions WHERE name = n) "
            f"ELSE error({message}) END"
        )


def load_vocab(con: duckdb.DuckDBPyConnection, folder: Path | None = None) -> list[str]:
    """Load every `*.csv` of the vocabulary folder as `ref.<stem>`; returns the table names."""

    src = folder or vocab_dir()
    con.execute("CREATE SCHEMA IF NOT EXISTS ref")
    names = []
    for path in sorted(src.glob("*.csv")):
        name = path.stem
        write_frame(con, f"ref.{name}", pl.read_csv(path, infer_schema_length=None), replace=True)
        names.append(name)
    return names


def create_staging(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract]) -> None:
    """Empty staging tables, one per contract."""
    con.execute("CREATE SCHEMA IF NOT EXISTS staging")
    for contract in contracts.values():
        con.execute(staging_ddl(contract))
    con.execute(NOT_COLLECTED_DDL)
    con.execute(DATE_IMPUTATIONS_DDL)


# Partial ISO 8601 dates completed by the rule of definition partial_date_imputation, one per value
DATE_IMPUTATIONS_DDL = """CREATE OR REPLACE TABLE staging.date_imputations (
  source_id VARCHAR, source_file VARCHAR, source_row BIGINT, table_name VARCHAR,
  field_name VARCHAR, delivered VARCHAR, rule VARCHAR, imputed_date DATE
)"""

# Fields a site's mapping declares not collected (`not_collected`), one row per file, site, field
NOT_COLLECTED_DDL = """CREATE OR REPLACE TABLE staging.not_collected (
  source_id VARCHAR, site VARCHAR, table_name VARCHAR, field_name VARCHAR,
  source_file VARCHAR, rows_delivered BIGINT
)"""


def model_files(layer: str, root: Path | None = None) -> list[Path]:
    """The model files of a layer, in file-name order."""
    if layer not in LAYERS:
        raise ValueError(f"unknown SQL layer {layer!r}; layers are {', '.join(LAYERS)}")
    return sorted(((root or sql_dir()) / layer).glob("*.sql"))


# --- the model graph ---------------------------------------------------------------------------

# tables that exist before the models run and are written by Python stages or by this module
PYTHON_TABLES = frozenset(
    {
        "curated.definitions",
        "harmonized.em_mentions",
        "harmonized.em_unmapped_terms",
        "harmonized.date_shift",
    }
)
# schemas whose tables the models create (a read of one of these must name a model's output)
MODEL_SCHEMAS = frozenset(LAYER_SCHEMAS.values())
# schemas a layer's models may read: endpoints run on the published analytics file alone
LAYER_READS = {
    "harmonized": frozenset({"staging", "ref", "harmonized"}),
    "curated": frozenset({"staging", "ref", "harmonized", "curated"}),
    "date_shift": frozenset({"staging", "ref", "harmonized", "curated"}),
    "endpoints": frozenset({"curated", "endpoints"}),
}
OPTIONAL_LAYERS = frozenset({"date_shift"})  # run only in date-shift mode: nothing else reads it

_SCHEMAS = "|".join(sorted(MODEL_SCHEMAS | {"staging", "ref"}))
_QUALIFIED = re.compile(rf"(?<![\w.\"])({_SCHEMAS})\s*\.\s*([A-Za-z_]\w*)", re.IGNORECASE)
_CREATES = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"([A-Za-z_]\w*)\s*\.\s*([A-Za-z_]\w*)",
    re.IGNORECASE,
)
_DEFINITION_USE = re.compile(r"\bdef_(num|text)\s*\(\s*'([^']*)'\s*\)", re.IGNORECASE)
_LINE_COMMENT = re.compile(r"--[^\n]*")
_NOISE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.DOTALL)


@dataclass(frozen=True)
class Model:
    """One SQL model: its layer, file, the table or view it creates and the tables it reads."""

    layer: str
    path: Path
    output: str
    reads: frozenset[str]
    definitions: frozenset[str] = frozenset()
    numeric_definitions: frozenset[str] = frozenset()  # those read with def_num

    @property
    def name(self) -> str:
        return f"{self.layer}/{self.path.name}"


def strip_sql_noise(sql: str) -> str:
    """The SQL without comments and string literals (their text names no table)."""
    return _NOISE.sub(" ", sql)


def read_model(layer: str, path: Path) -> Model:
    """Parse a model file: the one schema-qualified table or view it creates, the names it reads."""
    code = strip_sql_noise(path.read_text(encoding="utf-8"))
    created = {f"{a}.{b}".lower() for a, b in _CREATES.findall(code)}
    if len(created) != 1:
        found = ", ".join(sorted(created)) or "none"
        raise SqlModelError(
            f"SQL model {layer}/{path.name} must create exactly one schema-qualified table or "
            f"view (CREATE OR REPLACE TABLE|VIEW schema.name); found {found}"
        )
    (output,) = created
    if output.split(".")[0] != LAYER_SCHEMAS[layer]:
        raise SqlModelError(
            f"SQL model {layer}/{path.name} creates {output}; models of sql/{layer}/ create "
            f"tables in the {LAYER_SCHEMAS[layer]} schema"
        )
    reads = {f"{a}.{b}".lower() for a, b in _QUALIFIED.findall(code)} - {output}
    uses = _DEFINITION_USE.findall(_LINE_COMMENT.sub(" ", path.read_text(encoding="utf-8")))
    return Model(
        layer=layer,
        path=path,
        output=output,
        reads=frozenset(reads),
        definitions=frozenset(name for _, name in uses),
        numeric_definitions=frozenset(name for kind, name in uses if kind.lower() == "num"),
    )


def discover_models(root: Path | None = None) -> list[Model]:
    """Every model of every layer, in layer then file-name order."""
    return [read_model(layer, path) for layer in LAYERS for path in model_files(layer, root)]


def check_model_graph(all_models: list[Model]) -> None:
    """Fail before anything runs on a doubly created table, a read of a table no model or stage
    creates, a read the model's layer cannot serve, or a cycle; the message names the model."""
    producers: dict[str, Model] = {}
    for model in all_models:
        if model.output in producers:
            raise SqlModelError(
                f"SQL models {producers[model.output].name} and {model.name} both create "
                f"{model.output}; one model per table"
            )
        producers[model.output] = model
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    for model in all_models:
        for name in sorted(model.reads):
            schema = name.split(".")[0]
            if schema not in LAYER_READS[model.layer]:
                raise SqlModelError(
                    f"SQL model {model.name} reads {name}, but {model.layer} models read only "
                    f"{', '.join(sorted(LAYER_READS[model.layer]))} (the database they run in "
                    "holds nothing else)"
                )
            if schema not in MODEL_SCHEMAS or name in PYTHON_TABLES:
                continue
            upstream = producers.get(name)
            if upstream is None:
                raise SqlModelError(
                    f"SQL model {model.name} reads {name}, which no SQL model creates (missing "
                    "upstream: add the model or fix the name)"
                )
            if rank[upstream.layer] > rank[model.layer] or (
                upstream.layer in OPTIONAL_LAYERS and upstream.layer != model.layer
            ):
                raise SqlModelError(
                    f"SQL model {model.name} reads {name}, created by {upstream.name}, which runs "
                    f"after the {model.layer} layer or only in date-shift mode"
                )
    for layer in LAYERS:
        order_models([m for m in all_models if m.layer == layer])


def order_models(layer_models: list[Model]) -> list[Model]:
    """The models in an order where each runs after the models it reads (ties by file name).

    Raises SqlModelError naming the models of a cycle.
    """
    outputs = {m.output: m for m in layer_models}
    waiting = {m.name: {outputs[r].name for r in m.reads if r in outputs} for m in layer_models}
    by_name = {m.name: m for m in layer_models}
    ordered: list[Model] = []
    while waiting:
        ready = sorted(name for name, needs in waiting.items() if not needs)
        if not ready:
            cycle = ", ".join(sorted(waiting))
            raise SqlModelError(
                f"SQL models read each other in a cycle (none can run first): {cycle}; "
                "each reads an output of another"
            )
        first = ready[0]  # one at a time: the file-name order wherever the references allow
        ordered.append(by_name[first])
        del waiting[first]
        for needs in waiting.values():
            needs.discard(first)
    return ordered


def check_definitions_used(all_models: list[Model], installed: dict[str, str]) -> None:
    """Fail when a model names a definition (`def_num('x')`, `def_text('x')`) that is not
    installed, or reads one with `def_num` whose value is not a number."""
    for model in all_models:
        unknown = sorted(model.definitions - set(installed))
        if unknown:
            raise SqlModelError(
                f"SQL model {model.name} uses definition(s) {', '.join(map(repr, unknown))}, "
                f"which curated.definitions lacks: {UNKNOWN_DEFINITION_HINT}"
            )
        for name in sorted(model.numeric_definitions):
            try:
                float(installed[name])
            except ValueError:
                raise SqlModelError(
                    f"SQL model {model.name} reads definition {name!r} with def_num, but its "
                    f"value {installed[name]!r} is not a number: use def_text or fix the value"
                ) from None


def check_models(definitions: dict[str, dict[str, Any]], root: Path | None = None) -> list[Model]:
    """Every model of every layer checked before a run reads anything: the graph
    (`check_model_graph`) and the definitions the models name against `definitions`
    (`load_definitions` output). Returns the models."""
    all_models = discover_models(root)
    check_model_graph(all_models)
    check_definitions_used(all_models, {n: str(d["value"]) for n, d in definitions.items()})
    return all_models


def installed_definitions(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Name -> value (as text) of the connection's `curated.definitions` (empty when none)."""
    if not _exists(con, "curated.definitions"):
        return {}
    return dict(con.execute("SELECT name, value FROM curated.definitions").fetchall())


def _exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    try:
        con.execute(f"DESCRIBE {name}")
    except duckdb.Error:
        return False
    return True


def run_layer(con: duckdb.DuckDBPyConnection, layer: str, root: Path | None = None) -> list[str]:
    """Execute the models of one layer in dependency order; returns the model file names run.

    The whole model graph is checked first (`check_model_graph`) and every definition a model
    names must be installed, then every table the layer reads from outside it must exist in the
    connection; nothing runs if a check fails.
    """
    if layer not in LAYERS:
        raise ValueError(f"unknown SQL layer {layer!r}; layers are {', '.join(LAYERS)}")
    all_models = discover_models(root)
    check_model_graph(all_models)
    check_definitions_used(all_models, installed_definitions(con))
    ordered = order_models([m for m in all_models if m.layer == layer])
    made_here = {m.output for m in ordered}
    for model in ordered:
        for name in sorted(model.reads - made_here):
            if not _exists(con, name):
                raise SqlModelError(
                    f"SQL model {model.name} reads {name}, which this database lacks (run the "
                    "stages and layers before this one first)"
                )
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {LAYER_SCHEMAS[layer]}")
    ran = []
    for model in ordered:
        try:
            con.execute(model.path.read_text(encoding="utf-8"))
        except duckdb.Error as exc:
            raise SqlModelError(f"SQL model {model.name} failed: {exc}") from exc
        ran.append(model.path.name)
    return ran
