"""Extramedullary (EM) site mentions in report text, with a ConText-style assertion.

Each report is split into sentences; site terms from `schemas/vocab/em_site_terms.csv` are
found in each sentence (longest term first) and coded to a site group and an ICD-O-3
topography; laterality is read from the words just before the term. The assertion of each
mention is one of `present`, `absent`, `possible`, `historical`, `resolved`, decided from
trigger phrases (`schemas/vocab/em_assertion_triggers.csv`) in a window of up to
`WINDOW_WORDS` words before the term (forward triggers) or after it (backward triggers),
cut at terminators ("but", "however", ";" ...). Pseudo-triggers ("no increase", "not only")
and uncertainty phrases that contain a negation word ("cannot exclude") are removed before
negation is tested. Precedence: resolved > absent > possible > historical > present.

Everything runs as polars string expressions over all sentences at once; there is no Python
loop per report. `assertion(sentence, target)` is the same code on a one-row frame.
"""

from __future__ import annotations

import re
from functools import cache

import polars as pl

from blinaetl.resources import vocab_dir

ASSERTIONS = ("present", "absent", "possible", "historical", "resolved")
WINDOW_WORDS = 8
MENTION_COLUMNS = [
    "_source_file",
    "_source_row",
    "patient_key",
    "site",
    "report_date",
    "modality",
    "sentence_no",
    "sentence",
    "term",
    "site_group",
    "icdo3",
    "laterality",
    "assertion",
]


@cache
def site_terms() -> pl.DataFrame:
    """The EM site vocabulary: term (lower case), site_group, icdo3."""
    terms = pl.read_csv(vocab_dir() / "em_site_terms.csv", infer_schema=False)
    return terms.with_columns(pl.col("term").str.to_lowercase().str.strip_chars()).unique(
        "term", keep="first", maintain_order=True
    )


@cache
def triggers() -> pl.DataFrame:
    return pl.read_csv(vocab_dir() / "em_assertion_triggers.csv", infer_schema=False).with_columns(
        pl.col("phrase").str.to_lowercase()
    )


def _alternation(phrases: list[str]) -> str:
    ordered = sorted(set(phrases), key=lambda p: (-len(p), p))
    return "|".join(re.escape(p) for p in ordered)


def _bounded(phrases: list[str]) -> str:
    """Regex matching any phrase as whole words (or a punctuation trigger such as ';')."""
    if not phrases:
        return r"(?!x)x"
    return r"(?:^|[^a-z0-9/])(?:" + _alternation(phrases) + r")(?:$|[^a-z0-9/])"


@cache
def _patterns() -> dict[str, str]:
    t = triggers()

    def phrases(category: str, directions: tuple[str, ...]) -> list[str]:
        return t.filter(
            (pl.col("category") == category) & pl.col("direction").is_in(list(directions))
        )["phrase"].to_list()

    out = {}
    for cat in ("negation", "uncertainty", "historical", "resolved", "pseudo"):
        out[f"{cat}_fwd"] = _bounded(phrases(cat, ("forward", "both")))
        out[f"{cat}_bwd"] = _bounded(phrases(cat, ("backward", "both")))
    term_list = t.filter(pl.col("category") == "terminator")["phrase"].to_list()
    out["terminator"] = (
        r"(?:\b(?:" + _alternation([p for p in term_list if p.isalpha()]) + r")\b|[;])"
    )
    out["uncertainty_all"] = _bounded(
        t.filter(pl.col("category") == "uncertainty")["phrase"].to_list()
    )
    out["pseudo_all"] = _bounded(t.filter(pl.col("category") == "pseudo")["phrase"].to_list())
    out["terms"] = r"\b(?:" + _alternation(site_terms()["term"].to_list()) + r")\b"
    ctx = pl.read_csv(vocab_dir() / "em_context_terms.csv", infer_schema=False)["pattern"].to_list()
    out["context"] = r"(?:" + "|".join(ctx) + r")"
    return out


@cache
def _term_prefixes() -> list[str]:
    """Every leading run of words of every vocabulary term ("cervical", "cervical lymph", ...)."""
    out = set()
    for term in site_terms()["term"].to_list():
        words = term.split()
        out.update(" ".join(words[:i]) for i in range(1, len(words)))
    return sorted(out)


def _assertion_expr(prefix: pl.Expr, suffix: pl.Expr) -> pl.Expr:
    """Assertion label from the lower-case text before and after the target."""
    pat = _patterns()
    fwd_clause = prefix.str.replace(r"^.*" + pat["terminator"], "")
    bwd_clause = suffix.str.replace(r"^(.*?)" + pat["terminator"] + r".*$", "${1}")
    fwd = fwd_clause.str.extract(r"((?:\S+\s+){0," + str(WINDOW_WORDS) + r"}\S*\s*)$", 1).fill_null(
        ""
    )
    bwd = bwd_clause.str.extract(r"^(\s*(?:\S+\s*){0," + str(WINDOW_WORDS) + r"})", 1).fill_null("")
    # pseudo-triggers and negated uncertainty phrases must not read as negation
    fwd_neg = fwd.str.replace_all(pat["pseudo_all"], " ").str.replace_all(
        pat["uncertainty_all"], " "
    )
    bwd_neg = bwd.str.replace_all(pat["pseudo_all"], " ").str.replace_all(
        pat["uncertainty_all"], " "
    )

    def has(window: pl.Expr, key: str) -> pl.Expr:
        return window.str.contains(pat[key])

    resolved = has(fwd, "resolved_fwd") | has(bwd, "resolved_bwd")
    negated = has(fwd_neg, "negation_fwd") | has(bwd_neg, "negation_bwd")
    uncertain = has(fwd, "uncertainty_fwd") | has(bwd, "uncertainty_bwd")
    historical = has(fwd, "historical_fwd") | has(bwd, "historical_bwd")
    return (
        pl.when(resolved)
        .then(pl.lit("resolved"))
        .when(negated)
        .then(pl.lit("absent"))
        .when(uncertain)
        .then(pl.lit("possible"))
        .when(historical)
        .then(pl.lit("historical"))
        .otherwise(pl.lit("present"))
    )


def _laterality_expr(prefix: pl.Expr, suffix: pl.Expr) -> pl.Expr:
    before = prefix.str.extract(r"\b(left|right|bilateral)\s+(?:[a-z-]+\s+){0,2}$", 1)
    after = suffix.str.extract(
        r"^\s*,?\s*(?:[a-z-]+\s+)?(bilaterally|on the left|on the right)\b", 1
    )
    after = after.str.replace("bilaterally", "bilateral").str.replace("on the ", "")
    return pl.coalesce(before, after)


def split_sentences(reports: pl.DataFrame, text_col: str = "report_text") -> pl.DataFrame:
    """One row per sentence with `sentence_no` (1-based) and `sentence`."""
    return (
        reports.with_columns(
            pl.col(text_col)
            .fill_null("")
            .str.replace_all(r"([.!?;])\s+", "${1}\x1e")
            .str.replace_all(r"\n+", "\x1e")
            .str.split("\x1e")
            .alias("sentence")
        )
        .with_columns(pl.int_ranges(1, pl.col("sentence").list.len() + 1).alias("sentence_no"))
        .explode(["sentence", "sentence_no"])
        .with_columns(pl.col("sentence").str.strip_chars(), pl.col("sentence_no").cast(pl.Int32))
        .filter(pl.col("sentence") != "")
    )


def lowered_sentences(reports: pl.DataFrame) -> pl.DataFrame:
    """`split_sentences` plus `_lc`, the lower-case sentence every reader below matches on."""
    return split_sentences(reports).with_columns(pl.col("sentence").str.to_lowercase().alias("_lc"))


def _mentions_per_wording(wordings: pl.Series) -> pl.DataFrame:
    """Mentions of each distinct lower-case sentence: `_lc`, term, code, laterality, assertion.

    Everything a mention holds depends on its sentence alone, so the regexes run once per
    distinct wording and are joined back to every sentence that reads the same (radiology
    reports repeat their sentences; the CD19 lexicon is matched the same way).
    """
    pat = _patterns()
    return (
        pl.DataFrame({"_lc": wordings.unique()})
        .filter(pl.col("_lc").str.contains(pat["context"]))
        .with_columns(pl.col("_lc").str.extract_all(pat["terms"]).alias("term"))
        .explode("term")
        .filter(pl.col("term").is_not_null())
        .unique(subset=["_lc", "term"])
        .join(site_terms().select("term", "site_group", "icdo3"), on="term", how="left")
        .with_columns(pl.col("_lc").str.find(r"\b" + pl.col("term") + r"\b").alias("_pos"))
        .with_columns(
            pl.col("_lc").str.slice(0, pl.col("_pos")).alias("_prefix"),
            pl.col("_lc")
            .str.slice(pl.col("_pos") + pl.col("term").str.len_chars())
            .alias("_suffix"),
        )
        .select(
            "_lc",
            "term",
            "site_group",
            "icdo3",
            _assertion_expr(pl.col("_prefix"), pl.col("_suffix")).alias("assertion"),
            _laterality_expr(pl.col("_prefix"), pl.col("_suffix")).alias("laterality"),
        )
    )


def extract_em_mentions(
    reports: pl.DataFrame, sentences: pl.DataFrame | None = None
) -> pl.DataFrame:
    """EM site mentions of every report, with site group, ICD-O-3, laterality and assertion.

    Input: `staging.imaging_reports` columns (patient_key, site, _source_file, _source_row,
    report_date, modality, report_text), and optionally its `lowered_sentences` when the caller
    has them already. Mentions in sentences without any disease word (e.g. "degenerative
    changes of the spine") are not EM statements and are left out. A term found twice in one
    sentence is one mention.
    """
    if reports.height == 0:
        return _empty_mentions()
    if sentences is None:
        sentences = lowered_sentences(reports)
    found = _mentions_per_wording(sentences["_lc"])
    return (
        sentences.join(found, on="_lc", how="inner")
        .select(MENTION_COLUMNS)
        .sort(["_source_file", "_source_row", "sentence_no", "term"])
    )


def read_em_text(reports: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`extract_em_mentions` and `find_unmapped_terms` of the same reports, split once."""
    sentences = lowered_sentences(reports) if reports.height else None
    return (
        extract_em_mentions(reports, sentences),
        find_unmapped_terms(reports, sentences),
    )


def assertions(sentences: pl.Series | list[str], targets: pl.Series | list[str]) -> pl.Series:
    """Assertion of each target in its sentence, for whole columns at once.

    Raises ValueError naming the first row whose target does not occur in its sentence.
    """
    frame = pl.DataFrame(
        {
            "sentence": pl.Series(sentences, dtype=pl.Utf8),
            "target": pl.Series(targets, dtype=pl.Utf8),
        }
    )
    frame = frame.with_columns(
        pl.col("sentence").str.to_lowercase().alias("_lc"),
        pl.col("target").str.to_lowercase().str.strip_chars().alias("_t"),
    ).with_columns(
        pl.col("_lc")
        .str.find(pl.lit(r"\b") + pl.col("_t").str.escape_regex() + pl.lit(r"\b"))
        .alias("_pos")
    )
    missing = frame.with_row_index("_row").filter(pl.col("_pos").is_null())
    if missing.height:
        raise ValueError(f"row {missing['_row'][0]}: the target does not occur in its sentence")
    frame = frame.with_columns(
        pl.col("_lc").str.slice(0, pl.col("_pos")).alias("_prefix"),
        pl.col("_lc").str.slice(pl.col("_pos") + pl.col("_t").str.len_chars()).alias("_suffix"),
    )
    return frame.select(_assertion_expr(pl.col("_prefix"), pl.col("_suffix")).alias("assertion"))[
        "assertion"
    ]


def assertion(sentence: str, target: str) -> str:
    """Assertion of `target` in one sentence: present, absent, possible, historical or resolved.

    >>> assertion("No evidence of leukemic involvement of the left testis.", "testis")
    'absent'
    >>> assertion("New left testicular enlargement concerning for leukemic infiltration.", "testicular")
    'possible'

    Runs the same vectorized code as `extract_em_mentions`. Raises ValueError when the target
    does not occur in the sentence.
    """
    try:
        return assertions([sentence], [target])[0]
    except ValueError:
        raise ValueError(f"target {target!r} does not occur in the sentence") from None


def find_unmapped_terms(
    reports: pl.DataFrame, sentences: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Candidate site phrases in disease wording that match no vocabulary term, with counts.

    Like the mentions, the candidates are read once per distinct sentence wording and counted
    over every sentence that reads the same.
    """
    pat = _patterns()
    schema = {"term": pl.Utf8, "n_mentions": pl.Int64, "n_reports": pl.Int64}
    if reports.height == 0:
        return pl.DataFrame(schema=schema)
    if sentences is None:
        sentences = lowered_sentences(reports)
    candidate = (
        r"(?:infiltration|involvement|deposits?|mass|lesions?|relapse|recurrence) "
        r"(?:of|in|involving) (?:the )?((?:left |right |bilateral )?[a-z-]+(?: [a-z-]+)?)"
    )
    per_wording = (
        pl.DataFrame({"_lc": sentences["_lc"].unique()})
        .with_columns(pl.col("_lc").str.extract_all(candidate).alias("_hit"))
        .explode("_hit")
        .filter(pl.col("_hit").is_not_null())
        .with_columns(pl.col("_hit").str.extract(candidate, 1).alias("term"))
        .with_columns(pl.col("term").str.replace(r"^(left|right|bilateral) ", ""))
        .filter(~pl.col("term").str.contains(pat["terms"]))
        # "cervical lymph" cut from "cervical lymph nodes": the start of a known term is not unmapped
        .filter(~pl.col("term").is_in(_term_prefixes()))
        .filter(
            ~pl.col("term").str.contains(r"^(?:a|an|the|this|that|disease|leukemi|extramedullary)")
        )
        .select("_lc", "term")
    )
    # one row per hit: a wording with two hits counts twice wherever it occurs
    found = sentences.select("_source_file", "_source_row", "_lc").join(per_wording, on="_lc")
    return (
        found.group_by("term")
        .agg(
            pl.len().cast(pl.Int64).alias("n_mentions"),
            pl.struct("_source_file", "_source_row").n_unique().cast(pl.Int64).alias("n_reports"),
        )
        .sort(["n_mentions", "term"], descending=[True, False])
    )


def _empty_mentions() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "_source_file": pl.Utf8,
            "_source_row": pl.Int64,
            "patient_key": pl.Utf8,
            "site": pl.Utf8,
            "report_date": pl.Date,
            "modality": pl.Utf8,
            "sentence_no": pl.Int32,
            "sentence": pl.Utf8,
            "term": pl.Utf8,
            "site_group": pl.Utf8,
            "icdo3": pl.Utf8,
            "laterality": pl.Utf8,
            "assertion": pl.Utf8,
        }
    )
