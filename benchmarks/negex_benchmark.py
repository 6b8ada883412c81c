"""Negation on the public NegEx test kit: our ConText engine beside the original NegEx algorithm.

    .venv/bin/python benchmarks/negex_benchmark.py [--negex DIR] [--show-errors N]

The kit is `negex.python/Annotations-1-120.txt` of github.com/chapmanbe/negex (2,376 sentence /
concept pairs from 120 de-identified reports, each labelled Affirmed or Negated), with the
trigger list `negex.python/negex_triggers.txt` of the same folder. Neither file is copied into
this repository: the repository states no licence for the annotations (its negex.python code
is under the Python 2.5.4 licence, its Java kit under Apache 2.0), so the benchmark reads them
from a local copy: `--negex DIR` (a checkout, or a bare git directory read with `git show`),
else `$BLINAETL_NEGEX_REPO`, else the workplace snapshot path below.

Both readers get the same pairs. Ours: `blinaetl.text.assertions(sentence, concept)`, negated
when it says `absent` or `resolved` (the kit labels "his nausea resolved" Negated). NegEx: written here from the published description (Chapman et al.,
J Biomed Inform 2001;34:301-310, and the kit's README): triggers are marked longest first;
a pre-negation trigger [PREN] negates a concept after it, a post-negation trigger [POST] one
before it; the scope runs to the end of the sentence and stops at a conjunction [CONJ], a
pseudo-trigger [PSEU] or a trigger of another kind; possible negations ([PREP], [POSP]) are
not counted as negated (the kit's labels are binary). `--window 5` gives the 2001 paper's
five-word scope instead.

Prints negation precision, recall, F1 and accuracy (Negated is the positive class) and the
time each reader took.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

SNAPSHOT = Path("/work/.mirror/chapmanbe+negex/repo")
KIT = "negex.python/Annotations-1-120.txt"
TRIGGERS = "negex.python/negex_triggers.txt"


def _read(source: Path, rel: str) -> str:
    if (source / rel).is_file():
        return (source / rel).read_text(encoding="utf-8", errors="replace")
    out = subprocess.run(
        ["git", "--git-dir", str(source), "show", f"HEAD:{rel}"],
        capture_output=True,
        check=False,
    )
    if out.returncode:
        raise FileNotFoundError(
            f"{rel} not found in {source} (neither a checkout nor a git directory holding it); "
            "pass --negex DIR pointing at a copy of github.com/chapmanbe/negex"
        )
    return out.stdout.decode("utf-8", errors="replace")


def negex_source(explicit: str | None = None) -> Path | None:
    """The first of --negex, $BLINAETL_NEGEX_REPO and the snapshot that exists, else None."""
    for cand in (explicit, os.environ.get("BLINAETL_NEGEX_REPO"), str(SNAPSHOT)):
        if cand and Path(cand).exists():
            return Path(cand)
    return None


def load_kit(source: Path) -> pl.DataFrame:
    """`report`, `concept`, `sentence`, `negated` (bool) per annotated pair."""
    rows = []
    for i, line in enumerate(_read(source, KIT).splitlines()):
        if i == 0 or not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 4:
            raise ValueError(f"{KIT} line {i + 1}: expected 4 tab-separated fields")
        report, concept, sentence, label = parts[:4]
        sentence = sentence.strip().strip('"')
        rows.append(
            (report, concept.strip().strip('"').strip(), sentence, label.strip() == "Negated")
        )
    return pl.DataFrame(rows, schema=["report", "concept", "sentence", "negated"], orient="row")


def load_triggers(source: Path) -> list[tuple[str, str]]:
    out = []
    for line in _read(source, TRIGGERS).splitlines():
        if "[" not in line:
            continue
        phrase, tag = line.rsplit("\t", 1) if "\t" in line else line.rsplit(" ", 1)
        out.append((phrase.strip().lower(), tag.strip().strip("[]")))
    return out


class NegEx:
    """The NegEx algorithm (see the module docstring), definite negation only."""

    def __init__(self, rules: list[tuple[str, str]], window: int | None = None):
        ordered = sorted(rules, key=lambda r: -len(r[0]))
        self.tag = {p: t for p, t in ordered}
        alt = "|".join(r"\s+".join(map(re.escape, p.split())) for p, _ in ordered)
        self.trig = re.compile(r"\b(?:" + alt + r")\b", re.IGNORECASE)
        self.window = window

    def negated(self, sentence: str, concept: str) -> bool:
        words = concept.split()
        pat = re.compile(r"\b" + r"\W+".join(map(re.escape, words)) + r"\b", re.IGNORECASE)
        hit = pat.search(sentence)
        if not hit:
            return False
        marks = []
        for m in self.trig.finditer(sentence):
            if m.start() < hit.end() and m.end() > hit.start():
                continue  # a trigger inside the concept is part of the concept
            key = re.sub(r"\s+", " ", m.group(0).lower())
            marks.append((m.start(), m.end(), self.tag.get(key, "")))
        c0, c1 = hit.start(), hit.end()
        # pre-negation: the nearest trigger before the concept must be a PREN
        before = [mk for mk in marks if mk[1] <= c0]
        after = [mk for mk in marks if mk[0] >= c1]
        pre = bool(before) and before[-1][2] == "PREN" and self._near(sentence, before[-1][1], c0)
        post = bool(after) and after[0][2] == "POST" and self._near(sentence, c1, after[0][0])
        return pre or post

    def _near(self, sentence: str, start: int, end: int) -> bool:
        return self.window is None or len(sentence[start:end].split()) <= self.window


def scores(gold: list[bool], pred: list[bool]) -> dict[str, float]:
    tp = sum(g and p for g, p in zip(gold, pred, strict=True))
    fp = sum(p and not g for g, p in zip(gold, pred, strict=True))
    fn = sum(g and not p for g, p in zip(gold, pred, strict=True))
    correct = sum(g == p for g, p in zip(gold, pred, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": correct / len(gold),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def ours(kit: pl.DataFrame) -> list[bool]:
    from blinaetl.text import assertions

    # 13 of the kit's concepts do not occur in their sentence (cut at a sentence end): not
    # found counts as not negated, for both readers
    read = assertions(kit["sentence"], kit["concept"], missing="null")
    # negated = not there now: absent, or resolved ("his nausea resolved" is Negated in the kit)
    return read.is_in(["absent", "resolved"]).fill_null(False).to_list()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--negex", help="copy of github.com/chapmanbe/negex (checkout or git dir)")
    ap.add_argument(
        "--window", type=int, default=None, help="NegEx scope in words (default: to a terminator)"
    )
    ap.add_argument("--show-errors", type=int, default=0, metavar="N")
    args = ap.parse_args(argv)
    source = negex_source(args.negex)
    if source is None:
        print("NegEx kit not found: pass --negex DIR (a copy of github.com/chapmanbe/negex)")
        return 2
    kit = load_kit(source)
    gold = kit["negated"].to_list()
    t0 = time.perf_counter()
    mine = ours(kit)
    t_ours = time.perf_counter() - t0
    negex = NegEx(load_triggers(source), window=args.window)
    t0 = time.perf_counter()
    theirs = [negex.negated(s, c) for s, c in zip(kit["sentence"], kit["concept"], strict=True)]
    t_negex = time.perf_counter() - t0
    print(f"NegEx test kit: {kit.height} pairs, {sum(gold)} negated ({source})")
    print(
        f"{'reader':28s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'accuracy':>8s} {'seconds':>8s}"
    )
    for name, pred, secs in (
        ("blinaetl ConText", mine, t_ours),
        ("NegEx (this implementation)", theirs, t_negex),
    ):
        s = scores(gold, pred)
        print(
            f"{name:28s} {s['precision']:9.3f} {s['recall']:7.3f} {s['f1']:6.3f} "
            f"{s['accuracy']:8.3f} {secs:8.2f}"
        )
    if args.show_errors:
        shown = 0
        for row, p in zip(kit.iter_rows(named=True), mine, strict=True):
            if row["negated"] != p and shown < args.show_errors:
                shown += 1
                print(
                    f"\n[{'FN' if row['negated'] else 'FP'}] {row['concept']!r}: {row['sentence'][:300]}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
