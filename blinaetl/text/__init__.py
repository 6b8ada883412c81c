"""Extramedullary (EM) site mentions in report text, with a ConText assertion.

Public, stable entry points:

- `assertion(sentence, target) -> str`: the category of `target` in one sentence, one of
  `ASSERTIONS` (`absent` is the negated category). Every occurrence of the target is assessed;
  the first occurrence that carries evidence (a disease word or a trigger) decides.
- `extract_em_mentions(reports)` / `read_em_text(reports)`: one row per site mention of every
  report sentence (`MENTION_COLUMNS`), written by the pipeline to `harmonized.em_mentions` and
  read by `sql/harmonized/21_em_findings.sql`; plus the unmapped candidate site phrases
  (`harmonized.em_unmapped_terms`, the steward report's vocabulary-gaps section).

The engine is `blinaetl.text.context` (see its docstring for the algorithm); its lexicon is
data in `schemas/vocab/`: `em_assertion_triggers.csv` (triggers, pseudo-triggers,
terminators), `em_context_terms.csv` (disease words), `em_site_terms.csv` (site -> group,
ICD-O-3), `em_site_regions.csv` (node regions -> C77.x; skin and soft-tissue body regions),
`em_laterality.csv`.

Everything runs as polars expressions over the distinct sentences at once and is joined back
to every sentence that reads the same; `assertion()` is the same code on a one-row frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import polars as pl

from blinaetl.text import context
from blinaetl.text.context import site_terms

__all__ = [
    "ASSERTIONS",
    "MENTION_COLUMNS",
    "assertion",
    "assertions",
    "extract_em_mentions",
    "find_unmapped_terms",
    "lowered_sentences",
    "read_em_text",
    "site_terms",
    "split_sentences",
]

ASSERTIONS = ("present", "absent", "possible", "historical", "resolved", "hypothetical")
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
    "change",
]


@cache
def _patterns() -> dict[str, str]:
    names = (
        site_terms()["term"].to_list()
        + context.regions().filter(pl.col("applies_to") == "lymph_node")["region"].to_list()
    )
    alternation = "|".join(re.escape(p) for p in sorted(set(names), key=lambda p: (-len(p), p)))
    return {
        "terms": r"\b(?:" + alternation + r")\b",
        "terms_group": r"\b(" + alternation + r")\b",
        # ASCII word boundaries keep the regex engine on its fast automaton
        "terms_ascii": r"(?-u:\b)(?:" + alternation + r")(?-u:\b)",
        "context": context.disease_patterns()["any"],
        # what the unmapped-term finder counts as known: site terms, and node regions only
        # with a node noun ("axillary region" is a vocabulary gap, "axillary nodes" is not)
        "known": r"\b(?:" + _known_alternation() + r")\b",
    }


def _known_alternation() -> str:
    regions = context.regions().filter(pl.col("applies_to") == "lymph_node")["region"].to_list()
    names = site_terms()["term"].to_list() + [
        f"{r} {n}" for r in regions for n in context.NODE_NOUNS
    ]
    return "|".join(re.escape(p) for p in sorted(set(names), key=lambda p: (-len(p), p)))


@cache
def _term_prefixes() -> list[str]:
    """Every leading run of words of every vocabulary term ("cervical", "cervical lymph", ...)."""
    out: set[str] = set()
    regions = context.regions().filter(pl.col("applies_to") == "lymph_node")["region"].to_list()
    for term in site_terms()["term"].to_list() + [f"{r} lymph nodes" for r in regions]:
        words = term.split()
        out.update(" ".join(words[:i]) for i in range(1, len(words)))
    return sorted(out)


def split_sentences(reports: pl.DataFrame, text_col: str = "report_text") -> pl.DataFrame:
    """One row per sentence with `sentence_no` (1-based) and `sentence`."""
    return (
        reports.with_columns(
            pl.col(text_col)
            .fill_null("")
            .str.replace_all(r"([.!?])\s+", "${1}\x1e")
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

    Everything a mention holds depends on its sentence alone, so the engine runs once per
    distinct wording and is joined back to every sentence that reads the same (radiology
    reports repeat their sentences; the CD19 lexicon is matched the same way).
    """
    distinct = pl.DataFrame({"_lc": wordings.unique()}).with_row_index("sid")
    distinct = distinct.with_columns(context.normalize(pl.col("_lc")).alias("norm"))
    # only wordings that name a site can hold a mention (one regex pass over the column)
    distinct = distinct.filter(pl.col("norm").str.contains(_patterns()["terms_ascii"]))
    found = context.mentions(context.tokens(distinct)).filter(pl.col("kept"))
    return (
        found.join(distinct.select("sid", "_lc"), on="sid")
        .select("_lc", "term", "site_group", "icdo3", "laterality", "assertion", "change")
        .unique()
    )


@dataclass(frozen=True)
class _Split:
    """Reports cut into sentences once per distinct report text.

    `reports`: the reports with `_tid`, the id of their text; `sentences`: the sentences of each
    distinct text (`_tid`, `sentence_no`, `sentence`, `_lc`). Reports that read the same (a
    "No acute findings." report, a template) are split and read once.
    """

    reports: pl.DataFrame
    sentences: pl.DataFrame


def _split_reports(reports: pl.DataFrame) -> _Split:
    keyed = reports.with_columns(pl.col("report_text").fill_null(""))
    texts = keyed.select("report_text").unique().with_row_index("_tid")
    return _Split(
        reports=keyed.join(texts, on="report_text", how="inner"),
        sentences=lowered_sentences(texts).select("_tid", "sentence_no", "sentence", "_lc"),
    )


def extract_em_mentions(reports: pl.DataFrame, split: _Split | None = None) -> pl.DataFrame:
    """EM site mentions of every report, with site group, ICD-O-3, laterality and assertion.

    Input: `staging.imaging_reports` columns (patient_key, site, _source_file, _source_row,
    report_date, modality, report_text). Mentions in sentences without any disease word (e.g.
    "degenerative changes of the spine") are not EM statements and are left out. A term found
    twice in one sentence is one mention. Rows are sorted by every column.
    """
    if reports.height == 0:
        return _empty_mentions()
    split = split or _split_reports(reports)
    found = _mentions_per_wording(split.sentences["_lc"])
    # sorted per text, then joined in report order: the rows come out sorted by report (a
    # delivered row), sentence and every mention column without sorting the joined rows
    per_text = (
        split.sentences.join(found, on="_lc", how="inner")
        .drop("_lc")
        .sort(["_tid", "sentence_no", "term", *MENTION_COLUMNS[9:]], nulls_last=True)
    )
    return (
        split.reports.drop("report_text")
        .sort(["_source_file", "_source_row"])
        .join(per_text, on="_tid", how="inner", maintain_order="left_right")
        .select(MENTION_COLUMNS)
    )


def read_em_text(reports: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`extract_em_mentions` and `find_unmapped_terms` of the same reports, split once."""
    split = _split_reports(reports) if reports.height else None
    return (
        extract_em_mentions(reports, split),
        find_unmapped_terms(reports, split),
    )


def assertions(
    sentences: pl.Series | list[str],
    targets: pl.Series | list[str],
    missing: str = "raise",
) -> pl.Series:
    """Assertion of each target in its sentence, for whole columns at once.

    Case, hyphens, runs of spaces and punctuation around the target do not matter. A target
    that does not occur in its sentence raises ValueError naming the first such row
    (`missing="raise"`), or gets a null (`missing="null"`).
    """
    if missing not in ("raise", "null"):
        raise ValueError(f"missing must be 'raise' or 'null', not {missing!r}")
    frame = pl.DataFrame(
        {
            "sentence": pl.Series(sentences, dtype=pl.Utf8),
            "target": pl.Series(targets, dtype=pl.Utf8),
        }
    ).with_row_index("sid")
    frame = frame.with_columns(
        context.normalize(pl.col("sentence")).alias("_s"),
        context.normalize(pl.col("target")).str.strip_chars(" .,;:!?()[]\"'").alias("_t"),
    )
    # every occurrence of the target becomes one placeholder token (a literal target per row:
    # a plain loop over the rows, the engine itself runs on the whole column)
    marked, ok = [], []
    for text, tgt in zip(frame["_s"].to_list(), frame["_t"].to_list(), strict=True):
        pat = re.compile(r"(?<![a-z0-9])" + re.escape(tgt) + r"(?![a-z0-9])") if tgt else None
        new = pat.sub(" " + context.TARGET_TOKEN + " ", text) if pat else text
        ok.append(new != text)
        marked.append(re.sub(r"\s+", " ", new).strip())
    frame = frame.with_columns(pl.Series("norm", marked), pl.Series("_ok", ok))
    absent_rows = frame.filter(~pl.col("_ok"))
    if absent_rows.height and missing == "raise":
        raise ValueError(f"row {absent_rows['sid'][0]}: the target does not occur in its sentence")
    # a target that names an EM site ("testis", "cervical lymph nodes") is read like a site
    # mention: its evidence may be the disease word of its clause
    groups = site_terms().group_by("term").agg(pl.col("site_group").first())
    nouns = "|".join(re.escape(n) for n in context.NODE_NOUNS)
    frame = (
        frame.join(groups.rename({"term": "_t", "site_group": "_exact"}), on="_t", how="left")
        .with_columns(pl.col("_t").str.extract(_patterns()["terms_group"], 1).alias("_found"))
        .join(groups.rename({"term": "_found", "site_group": "_within"}), on="_found", how="left")
        .with_columns(
            pl.coalesce(
                "_exact",
                pl.when(pl.col("_t").str.contains(r"(?:^| )(?:" + nouns + r")$")).then(
                    pl.lit("lymph_node")
                ),
                "_within",
            ).alias("target_group")
        )
    )
    long = context.tokens(frame.select("sid", "norm")).join(
        frame.select("sid", "target_group"), on="sid", how="left"
    )
    found = context.mentions(long, sites_for_targets=True).filter(pl.col("is_target"))
    assessed = found.with_columns(
        ((pl.col("kept")) | (pl.col("assertion") != "present")).alias("_assessed")
    )
    best = (
        assessed.sort(["sid", "_assessed", "pos"], descending=[False, True, False])
        .unique("sid", keep="first")
        .select("sid", "assertion")
    )
    out = frame.select("sid", "_ok").join(best, on="sid", how="left").sort("sid")
    return out.select(
        pl.when(pl.col("_ok")).then(pl.col("assertion").fill_null("present")).alias("assertion")
    )["assertion"]


def assertion(sentence: str, target: str) -> str:
    """Assertion of `target` in one sentence: one of `ASSERTIONS` (`absent` = negated).

    >>> assertion("No evidence of leukemic involvement of the left testis.", "testis")
    'absent'
    >>> assertion("New left testicular enlargement concerning for leukemic infiltration.", "testicular")
    'possible'
    >>> assertion("MRI brain to assess for leptomeningeal disease.", "leptomeningeal")
    'hypothetical'

    Runs the same vectorized code as `extract_em_mentions`. Raises ValueError when the target
    does not occur in the sentence.
    """
    try:
        return assertions([sentence], [target])[0]
    except ValueError:
        raise ValueError(f"target {target!r} does not occur in the sentence") from None


def find_unmapped_terms(reports: pl.DataFrame, split: _Split | None = None) -> pl.DataFrame:
    """Candidate site phrases in disease wording that match no vocabulary term, with counts.

    Like the mentions, the candidates are read once per distinct sentence wording and counted
    over every sentence that reads the same.
    """
    pat = _patterns()
    schema = {"term": pl.Utf8, "n_mentions": pl.Int64, "n_reports": pl.Int64}
    if reports.height == 0:
        return pl.DataFrame(schema=schema)
    split = split or _split_reports(reports)
    candidate = (
        r"(?:infiltration|involvement|deposits?|mass|lesions?|relapse|recurrence) "
        r"(?:of|in|involving) (?:the )?((?:left |right |bilateral )?[a-z-]+(?: [a-z-]+)?)"
    )
    per_wording = (
        pl.DataFrame({"_lc": split.sentences["_lc"].unique()})
        .with_columns(pl.col("_lc").str.extract_all(candidate).alias("_hit"))
        .explode("_hit")
        .filter(pl.col("_hit").is_not_null())
        .with_columns(pl.col("_hit").str.extract(candidate, 1).alias("term"))
        .with_columns(pl.col("term").str.replace(r"^(left|right|bilateral) ", ""))
        .filter(~pl.col("term").str.contains(pat["known"]))
        # "cervical lymph" cut from "cervical lymph nodes": the start of a known term is not unmapped
        .filter(~pl.col("term").is_in(_term_prefixes()))
        .filter(
            # articles and disease words are not sites ("axillary" starts with "a" but is one)
            ~pl.col("term").str.contains(
                r"^(?:(?:a|an|the|this|that|disease)\b|leukemi|extramedullary)"
            )
        )
        .select("_lc", "term")
    )
    # one row per hit: a wording with two hits counts twice wherever it occurs
    found = (
        split.sentences.select("_tid", "_lc")
        .join(per_wording, on="_lc")
        .join(split.reports.select("_tid", "_source_file", "_source_row"), on="_tid")
    )
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
            "change": pl.Utf8,
        }
    )
