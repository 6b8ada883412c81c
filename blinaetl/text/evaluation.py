"""Scores of the EM reader against a hand-labelled corpus (`tests/data/em_corpus.csv` format).

Corpus columns: `sentence_id`, `split`, `style`, `text`, `site_group`, `icdo3`, `laterality`,
`assertion`, `change` (optional: new / increased / decreased / stable, empty for none); one row
per labelled mention, a row with an empty `site_group` for a snippet with
no EM statement. Each snippet is read as one report by `extract_em_mentions` (the production
path: sentence splitting, distinct wordings, the ConText engine).

Measures (a "finding" is a (snippet, site group) pair):

- present findings: precision, recall and F1 of the set of (snippet, site group) with a
  `present` mention, gold against read;
- mention matching: each gold mention is paired with an unused read mention of the same
  snippet and site group, preferring the same ICD-O-3 code, then the same laterality;
- assertion accuracy, ICD-O-3 exact and laterality exact over matched gold mentions
  (laterality: both empty counts as equal); mention recall = matched / gold mentions;
- change (when the corpus has the column): exact over matched mentions, and over the matched
  mentions where the gold or the reader states a change (`change_stated_exact`: empty = empty
  would flatter the reader).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from blinaetl.text import extract_em_mentions


def read_corpus(path: Path, split: str | None = None) -> pl.DataFrame:
    gold = pl.read_csv(path, infer_schema=False).with_columns(
        pl.col("sentence_id").cast(pl.Int64),
        *[pl.col(c).fill_null("") for c in ("site_group", "icdo3", "laterality", "assertion")],
    )
    if "change" in gold.columns:
        gold = gold.with_columns(pl.col("change").fill_null(""))
    return gold.filter(pl.col("split") == split) if split else gold


def read_mentions(gold: pl.DataFrame) -> pl.DataFrame:
    """The reader's mentions of every snippet of `gold`."""
    reports = gold.unique("sentence_id").select(
        pl.lit("corpus.csv").alias("_source_file"),
        pl.col("sentence_id").alias("_source_row"),
        pl.lit("p").alias("patient_key"),
        pl.lit("s").alias("site"),
        pl.lit(None, pl.Date).alias("report_date"),
        pl.lit("CT").alias("modality"),
        pl.col("text").alias("report_text"),
    )
    found = extract_em_mentions(reports)
    return found.select(
        pl.col("_source_row").alias("sentence_id"),
        "term",
        "site_group",
        pl.col("icdo3").fill_null(""),
        pl.col("laterality").fill_null(""),
        "assertion",
        pl.col("change").fill_null(""),
    )


def score(gold: pl.DataFrame, read: pl.DataFrame | None = None) -> dict[str, float]:
    """The measures of the module docstring, of `read` (default: the reader's) against `gold`."""
    if read is None:
        read = read_mentions(gold)
    g = gold.filter(pl.col("site_group") != "")
    gold_present = set(
        g.filter(pl.col("assertion") == "present").select("sentence_id", "site_group").iter_rows()
    )
    read_present = set(
        read.filter(pl.col("assertion") == "present")
        .select("sentence_id", "site_group")
        .iter_rows()
    )
    tp = len(gold_present & read_present)
    precision = tp / len(read_present) if read_present else 1.0
    recall = tp / len(gold_present) if gold_present else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    pool: dict[tuple[int, str], list[dict]] = {}
    for row in read.iter_rows(named=True):
        pool.setdefault((row["sentence_id"], row["site_group"]), []).append(row)
    matched = []
    for row in g.iter_rows(named=True):
        cands = pool.get((row["sentence_id"], row["site_group"]), [])
        if not cands:
            continue
        cands.sort(
            key=lambda c: (
                c["icdo3"] != row["icdo3"],
                c["laterality"] != row["laterality"],
                c["assertion"] != row["assertion"],
            )
        )
        pick = cands.pop(0)
        matched.append((row, pick))
    n = len(matched) or 1
    out = {
        "present_precision": precision,
        "present_recall": recall,
        "present_f1": f1,
        "present_tp": tp,
        "present_gold": len(gold_present),
        "present_read": len(read_present),
        "mention_recall": len(matched) / (g.height or 1),
        "assertion_accuracy": sum(a["assertion"] == b["assertion"] for a, b in matched) / n,
        "icdo3_exact": sum(a["icdo3"] == b["icdo3"] for a, b in matched) / n,
        "laterality_exact": sum(a["laterality"] == b["laterality"] for a, b in matched) / n,
        "matched": len(matched),
        "gold_mentions": g.height,
    }
    if "change" in g.columns and "change" in read.columns:
        stated = [(a, b) for a, b in matched if a["change"] or b["change"]]
        out["change_exact"] = sum(a["change"] == b["change"] for a, b in matched) / n
        out["change_stated_exact"] = sum(a["change"] == b["change"] for a, b in stated) / (
            len(stated) or 1
        )
        out["change_stated"] = len(stated)
    return out


def errors(gold: pl.DataFrame, read: pl.DataFrame | None = None) -> list[str]:
    """Readable differences per snippet (for tuning): gold vs read mentions."""
    if read is None:
        read = read_mentions(gold)
    out = []
    for sid in gold["sentence_id"].unique().sort().to_list():
        gs = gold.filter((pl.col("sentence_id") == sid) & (pl.col("site_group") != ""))
        rs = read.filter(pl.col("sentence_id") == sid)
        gset = sorted(_label(r) for r in gs.iter_rows(named=True))
        rset = sorted(_label(r) for r in rs.iter_rows(named=True))
        if gset != rset:
            text = gold.filter(pl.col("sentence_id") == sid)["text"][0]
            out.append(f"[{sid}] {text}\n   gold {gset}\n   read {rset}")
    return out


def _label(r: dict) -> str:
    out = f"{r['site_group']}:{r['icdo3']}:{r['laterality'] or '-'}:{r['assertion']}"
    return out + (f":{r['change']}" if r.get("change") else "")
