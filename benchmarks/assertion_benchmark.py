"""Assertion reader benchmark on the hand-written labelled sentences (tests/data).

    .venv/bin/python benchmarks/assertion_benchmark.py [--show-errors]

Prints, for negation (label absent) and uncertainty (label possible), precision and recall,
the per-label counts and the confusion table, then the time to classify the set; then the
report-snippet corpus (tests/data/em_corpus.csv, issue 17's measures, per half and per style).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl

from blinaetl.text import ASSERTIONS, assertions

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "assertion_sentences.csv"
# written after the triggers were tuned on DATA and never used for tuning: an honest estimate
HELDOUT = DATA.with_name("assertion_heldout.csv")


def evaluate(path: Path = DATA) -> tuple[pl.DataFrame, dict[str, dict[str, float]]]:
    """Predictions for every labelled sentence and precision/recall per label."""
    gold = pl.read_csv(path)
    frame = gold.with_columns(assertions(gold["sentence"], gold["target"]).alias("predicted"))
    scores = {}
    for label in ASSERTIONS:
        tp = frame.filter((pl.col("label") == label) & (pl.col("predicted") == label)).height
        fp = frame.filter((pl.col("label") != label) & (pl.col("predicted") == label)).height
        fn = frame.filter((pl.col("label") == label) & (pl.col("predicted") != label)).height
        scores[label] = {
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "n": tp + fn,
        }
    return frame, scores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    frame, scores = evaluate()
    elapsed = time.perf_counter() - t0
    held, held_scores = evaluate(HELDOUT)
    print(f"held-out set ({held.height} sentences, {HELDOUT.name}, not used for tuning):")
    for name, label in (("negation", "absent"), ("uncertainty", "possible")):
        s = held_scores[label]
        print(
            f"  {name:12s} precision {s['precision']:.3f}  recall {s['recall']:.3f}  (n={s['n']})"
        )
    print(
        f"\n{frame.height} hand-labelled sentences ({DATA.name}, used while writing the triggers)"
    )
    for name, label in (("negation", "absent"), ("uncertainty", "possible")):
        s = scores[label]
        print(f"{name:12s} precision {s['precision']:.3f}  recall {s['recall']:.3f}  (n={s['n']})")
    print("\nper label:")
    for label in ASSERTIONS:
        s = scores[label]
        print(
            f"  {label:10s} n={s['n']:3d}  precision {s['precision']:.3f}  recall {s['recall']:.3f}"
        )
    confusion = Counter(zip(frame["label"], frame["predicted"], strict=True))
    print("\nconfusion (gold -> predicted):")
    for (g, p), n in sorted(confusion.items()):
        if g != p:
            print(f"  {g:10s} -> {p:10s} {n}")
    print(f"\nclassified the whole set (vectorized) in {elapsed:.2f} s")
    _corpus_report()
    if args.show_errors:
        for row in (
            pl.concat([frame, held])
            .filter(pl.col("label") != pl.col("predicted"))
            .iter_rows(named=True)
        ):
            print(f"  [{row['label']} -> {row['predicted']}] {row['target']!r}: {row['sentence']}")
    return 0


def _corpus_report() -> None:
    from blinaetl.text import evaluation

    corpus = DATA.with_name("em_corpus.csv")
    gold_all = evaluation.read_corpus(corpus)
    print(f"\nreport snippets ({gold_all['sentence_id'].n_unique()} in {corpus.name})")
    keys = ("present_precision", "present_recall", "present_f1", "assertion_accuracy")
    keys += ("icdo3_exact", "laterality_exact", "mention_recall")
    print(f"  {'part':24s} " + " ".join(f"{k.replace('present_', 'pres_'):>12s}" for k in keys))
    parts = [("half " + h, pl.col("split") == h) for h in ("tuning", "evaluation")]
    parts += [
        ("style " + st, pl.col("style") == st)
        for st in ("radiology", "pathology", "csf", "clinic_note")
    ]
    for name, cond in parts:
        s = evaluation.score(gold_all.filter(cond))
        print(f"  {name:24s} " + " ".join(f"{s[k]:12.3f}" for k in keys))


if __name__ == "__main__":
    sys.exit(main())
