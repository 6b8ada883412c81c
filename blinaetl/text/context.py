"""ConText over whole columns of sentences: tokens, trigger scopes, mentions and their assertion.

The algorithm (Harkema et al. 2009, ConText; Chapman et al. 2001, NegEx), as implemented here:

1. Each distinct sentence is lower-cased, hyphens read as spaces, and cut into tokens by one
   regular expression: every lexicon phrase (triggers, site terms, node regions, laterality
   words) is one token, longest phrase first; every other word or punctuation mark is a token.
   Pseudo-triggers ("no change", "gram negative") are phrases too, so the words inside them
   never act as triggers.
2. Triggers (`schemas/vocab/em_assertion_triggers.csv`) have a category (negation, uncertainty,
   historical, resolved, hypothetical) and a direction. A forward trigger covers up to
   `PRE_WINDOW` tokens after it, a backward trigger up to `POST_WINDOW` tokens before it.
3. A scope ends at a terminator (`but`, `however`, `;` ...), at a comma that does not continue
   a list of sites ("liver, spleen and kidneys are normal" continues; "the liver is enlarged,
   and the spleen is normal" does not), and forward scopes end at a colon (a section boundary:
   "ALLERGIES: None PAST HISTORY: CNS relapse" does not negate the CNS). A trigger right before
   a colon is a section heading ("PAST HISTORY:") and covers its whole section.
4. Every occurrence of a target is assessed on its own. A site mention is covered by a trigger
   itself ("no left testicular mass"), or else takes the reading of its evidence: the disease
   word of its clause it belongs to ("the pancreas shows no focal lesion": the lesion is
   negated, so is the pancreas). Disease words (`em_context_terms.csv`) are strong (leukemic,
   blasts, infiltration ...) or weak (mass, enlarged ...); the strongest, then the nearest,
   decides. A site before the first colon with no disease word of its own is a header
   ("Testis, left, biopsy: no evidence of leukemia") and takes its evidence after the colon.
5. Precedence of categories: resolved > negated (`absent`) > hypothetical > possible >
   historical > present; a historical mention whose clause negates the disease now ("history
   of CNS involvement, now without evidence of disease") is resolved.
6. Change since the prior study (`em_change_triggers.csv`: new, increased, decreased, stable)
   is read the same way: a change word's scope covers the mention, else its evidence's; a
   change word in a negation's scope is not read; new > increased > decreased > stable; only
   present and possible mentions carry one.

Everything is polars expressions over a long frame of tokens (one row per token of every
distinct sentence); there is no Python loop per sentence.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import polars as pl

from blinaetl.resources import vocab_dir

PRE_WINDOW = 15
POST_WINDOW = 8
SECTION_WINDOW = 1000
BIG = 1_000_000  # more than any sentence's token count plus a window
BACK_OFFSET = 10_000  # keeps "position - window" of a backward trigger non-negative
CATEGORIES = ("negation", "uncertainty", "historical", "resolved", "hypothetical")
# change since the prior study, by precedence (see `change_of`)
CHANGES = ("new", "increased", "decreased", "stable")
TARGET_TOKEN = "qqtargetqq"
GLUE = ("or", "and", ",", "/", "and/or", "lymph", "chain", "the")
CLAUSE_STARTERS = ("the", "a", "an", "there", "he", "she", "it", "this", "these", "which")
NODE_NOUNS = (
    "lymph node",
    "lymph nodes",
    "node",
    "nodes",
    "nodal",
    "adenopathy",
    "lymphadenopathy",
)


def normalize(expr: pl.Expr) -> pl.Expr:
    """Lower case, hyphens and underscores as spaces, runs of white space as one space."""
    return (
        expr.fill_null("")
        .str.to_lowercase()
        .str.replace_all(r"[-_\u2013\u2014]", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def _norm_text(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[-_\u2013\u2014]", " ", text.lower())).strip()


@cache
def site_terms() -> pl.DataFrame:
    """The EM site vocabulary: term (normalized), site_group, icdo3. A term may have two rows."""
    terms = pl.read_csv(vocab_dir() / "em_site_terms.csv", infer_schema=False)
    return terms.with_columns(pl.col("term").map_elements(_norm_text, return_dtype=pl.Utf8)).unique(
        ["term", "site_group"], keep="first", maintain_order=True
    )


@cache
def triggers() -> pl.DataFrame:
    t = pl.read_csv(vocab_dir() / "em_assertion_triggers.csv", infer_schema=False)
    t = t.with_columns(pl.col("phrase").map_elements(_norm_text, return_dtype=pl.Utf8))
    dup = t.filter(pl.col("phrase").is_duplicated())["phrase"].unique().to_list()
    if dup:
        raise ValueError(
            f"schemas/vocab/em_assertion_triggers.csv: phrase(s) listed twice: {sorted(dup)}; "
            "keep one row per phrase"
        )
    return t


@cache
def change_triggers() -> pl.DataFrame:
    """`em_change_triggers.csv` of the vocabulary (see `read_change_triggers`)."""
    return read_change_triggers(vocab_dir() / "em_change_triggers.csv")


def read_change_triggers(path: Path) -> pl.DataFrame:
    """A change lexicon: phrase (normalized), change, direction; ValueError naming a bad row.

    `change` is one of `CHANGES` or `none` (a phrase that holds a change word but states no
    change: "increased FDG uptake", "clinically stable"); `direction` forward, backward or both.
    """
    t = pl.read_csv(path, infer_schema=False)
    t = t.with_columns(pl.col("phrase").map_elements(_norm_text, return_dtype=pl.Utf8))
    dup = t.filter(pl.col("phrase").is_duplicated())["phrase"].unique().to_list()
    if dup:
        raise ValueError(
            f"{path.name}: phrase(s) listed twice: {sorted(dup)}; keep one row per phrase"
        )
    t = t.with_row_index("_line", offset=2)
    bad = t.filter(
        ~pl.col("change").is_in([*CHANGES, "none"]).fill_null(False)
        | ~pl.col("direction").is_in(["forward", "backward", "both"]).fill_null(False)
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"{path.name} line {row['_line']}: phrase {row['phrase']!r} has change "
            f"{row['change']!r} and direction {row['direction']!r}; change must be one of "
            f"{', '.join([*CHANGES, 'none'])} and direction forward, backward or both"
        )
    return t.drop("_line")


@cache
def regions() -> pl.DataFrame:
    r = pl.read_csv(vocab_dir() / "em_site_regions.csv", infer_schema=False)
    return r.with_columns(pl.col("region").map_elements(_norm_text, return_dtype=pl.Utf8))


@cache
def laterality_words() -> pl.DataFrame:
    lat = pl.read_csv(vocab_dir() / "em_laterality.csv", infer_schema=False)
    return lat.with_columns(pl.col("phrase").map_elements(_norm_text, return_dtype=pl.Utf8))


@cache
def disease_patterns() -> dict[str, str]:
    ctx = pl.read_csv(vocab_dir() / "em_context_terms.csv", infer_schema=False)
    out = {}
    for strength in ("specific", "strong", "weak"):
        pats = ctx.filter(pl.col("strength") == strength)["pattern"].to_list()
        out[strength] = r"(?:" + "|".join(pats) + r")"
    out["any"] = r"(?:" + "|".join(p.lstrip("^") for p in ctx["pattern"].to_list()) + r")"
    return out


def _alternation(phrases: list[str]) -> str:
    ordered = sorted({p for p in phrases if p}, key=lambda p: (-len(p), p))
    return "|".join(re.escape(p) for p in ordered)


@cache
def token_pattern() -> str:
    """One regex whose matches, left to right, are the tokens of a normalized sentence."""
    phrases = (
        triggers().filter(pl.col("category") != "terminator")["phrase"].to_list()
        + triggers().filter(pl.col("phrase").str.contains(r"^[a-z ]+$"))["phrase"].to_list()
        + site_terms()["term"].to_list()
        + regions()["region"].to_list()
        + laterality_words()["phrase"].to_list()
        + change_triggers()["phrase"].to_list()
        + list(NODE_NOUNS)
        + ["b all"]
    )
    multi = [p for p in phrases if re.search(r"[^a-z0-9]", p)]
    return r"(?:(?-u:\b)(?:" + _alternation(multi) + r")(?-u:\b))|[a-z0-9]+|[^\sa-z0-9]"


@cache
def lexicon() -> pl.DataFrame:
    """One row per token string with its roles: trigger, terminator, region, laterality."""
    t = triggers()
    trig = t.filter(~pl.col("category").is_in(["terminator"])).select(
        pl.col("phrase").alias("tok"),
        pl.col("category").alias("trig_cat"),
        pl.col("direction").alias("trig_dir"),
    )
    term = t.filter(pl.col("category") == "terminator").select(
        pl.col("phrase").alias("tok"), pl.lit(True).alias("is_terminator")
    )
    reg = regions()
    ln = reg.filter(pl.col("applies_to") == "lymph_node").select(
        pl.col("region").alias("tok"), pl.col("icdo3").alias("region_ln")
    )
    skin = reg.filter(pl.col("applies_to") == "skin").select(
        pl.col("region").alias("tok"), pl.col("icdo3").alias("region_skin")
    )
    soft = reg.filter(pl.col("applies_to") == "soft_tissue").select(
        pl.col("region").alias("tok"), pl.col("icdo3").alias("region_soft")
    )
    lat = laterality_words().select(
        pl.col("phrase").alias("tok"),
        pl.col("laterality").alias("lat_val"),
        pl.col("position").alias("lat_pos"),
    )
    sites = (
        site_terms()
        .select(pl.col("term").alias("tok"))
        .unique()
        .with_columns(pl.lit(True).alias("is_site"))
    )
    nouns = pl.DataFrame({"tok": list(NODE_NOUNS), "is_node_noun": [True] * len(NODE_NOUNS)})
    chg = change_triggers().select(
        pl.col("phrase").alias("tok"),
        pl.col("change").alias("chg_val"),
        pl.col("direction").alias("chg_dir"),
    )
    roles = (trig, term, ln, skin, soft, lat, sites, nouns, chg)
    keys = pl.concat([f.select("tok") for f in roles])
    out = keys.unique()
    for f in roles:
        out = out.join(f, on="tok", how="left")
    return out.with_columns(
        pl.col("is_terminator").fill_null(False),
        pl.col("is_site").fill_null(False),
        pl.col("is_node_noun").fill_null(False),
        *_direction_flags(),
    )


def _direction_flags() -> list[pl.Expr]:
    """Boolean role flags per lexicon token, so the scope passes read booleans, not strings:
    per category `_pre_`/`_fwd_`/`_post_`/`_postend_<cat>` (reaches forward, forward as a
    section heading, backward, backward from the end of its clause) and per change
    `_chgpre_`/`_chgpost_<change>`."""
    cat, d = pl.col("trig_cat"), pl.col("trig_dir")
    out = []
    for c in CATEGORIES:
        out += [
            ((cat == c) & d.is_in(["forward", "both", "both_end"]))
            .fill_null(False)
            .alias(f"_pre_{c}"),
            ((cat == c) & d.is_in(["forward", "both"])).fill_null(False).alias(f"_fwd_{c}"),
            ((cat == c) & d.is_in(["backward", "both"])).fill_null(False).alias(f"_post_{c}"),
            ((cat == c) & d.is_in(["backward_end", "both_end"]))
            .fill_null(False)
            .alias(f"_postend_{c}"),
        ]
    val, cd = pl.col("chg_val"), pl.col("chg_dir")
    for c in CHANGES:
        out += [
            ((val == c) & cd.is_in(["forward", "both"])).fill_null(False).alias(f"_chgpre_{c}"),
            ((val == c) & cd.is_in(["backward", "both"])).fill_null(False).alias(f"_chgpost_{c}"),
        ]
    return out


def _flag_names() -> list[str]:
    return [f"_{k}_{c}" for c in CATEGORIES for k in ("pre", "fwd", "post", "postend")] + [
        f"_{k}_{c}" for c in CHANGES for k in ("chgpre", "chgpost")
    ]


def tokens(sentences: pl.DataFrame) -> pl.DataFrame:
    """Long frame of tokens: `sid`, `pos` and every role column of `lexicon()` per token.

    `sentences` has `sid` (unique) and `norm` (a `normalize`d sentence).
    """
    pat = token_pattern()
    dis = disease_patterns()
    long = (
        sentences.select("sid", pl.col("norm").str.extract_all(pat).alias("tok"))
        .with_columns(pl.int_ranges(pl.col("tok").list.len()).alias("pos"))
        .explode(["tok", "pos"])
        .filter(pl.col("tok").is_not_null())
        .with_columns(pl.col("pos").cast(pl.Int32))
    )
    # the disease strength of each distinct token string (three regexes over a few hundred
    # strings instead of every token)
    strength = long.select(pl.col("tok").unique()).with_columns(
        pl.when(pl.col("tok").str.contains(dis["specific"]))
        .then(pl.lit(3, pl.Int8))
        .when(pl.col("tok").str.contains(dis["strong"]))
        .then(pl.lit(2, pl.Int8))
        .when(pl.col("tok").str.contains(dis["weak"]))
        .then(pl.lit(1, pl.Int8))
        .otherwise(pl.lit(0, pl.Int8))
        .alias("disease")
    )
    long = (
        long.join(lexicon(), on="tok", how="left")
        .join(strength, on="tok", how="left")
        .with_columns(
            pl.col("is_terminator").fill_null(False),
            pl.col("is_site").fill_null(False),
            pl.col("is_node_noun").fill_null(False),
            *[pl.col(f).fill_null(False) for f in _flag_names()],
            (pl.col("tok") == ":").alias("is_colon"),
            (pl.col("tok") == TARGET_TOKEN).alias("is_target"),
        )
    )
    return long.sort(["sid", "pos"])


def _sh(col: str | pl.Expr, n: int, gid: str = "sid") -> pl.Expr:
    """`col` shifted by `n` rows within the contiguous group `gid` (the frame is sorted)."""
    e = pl.col(col) if isinstance(col, str) else col
    return pl.when(pl.col(gid).shift(n) == pl.col(gid)).then(e.shift(n))


def _ffill(value: pl.Expr, cond: pl.Expr, gid: str) -> pl.Expr:
    """Last `value` where `cond` at or before each row, within the contiguous group `gid`.

    One global fill plus a group check: much faster than `.over()` on many small groups.
    """
    v = pl.when(cond).then(value).forward_fill()
    g = pl.when(cond).then(pl.col(gid)).forward_fill()
    return pl.when(g == pl.col(gid)).then(v)


def _bfill(value: pl.Expr, cond: pl.Expr, gid: str) -> pl.Expr:
    """Next `value` where `cond` at or after each row, within the contiguous group `gid`."""
    v = pl.when(cond).then(value).backward_fill()
    g = pl.when(cond).then(pl.col(gid)).backward_fill()
    return pl.when(g == pl.col(gid)).then(v)


def _clause_marks(long: pl.LazyFrame) -> pl.LazyFrame:
    """Per token: `_new_sid` (first token of its sentence), `_soft_comma` (a comma or "and" that
    starts a new clause), `_enumerator` ("2)" of a numbered list) and `_before_colon`."""
    prev_tok = _sh("tok", 1)
    prev_listy = (
        _sh("is_site", 1).fill_null(False)
        | _sh("region_ln", 1).is_not_null()
        | _sh("region_skin", 1).is_not_null()
        | prev_tok.is_in(["left", "right", "bilateral"]).fill_null(False)
    )
    # a comma starts a new clause when a determiner or a site follows it, or "and" does with
    # a determiner or a site after it ("the liver is enlarged, and the spleen is normal");
    # ", or" and ", and edema" continue a list
    starter = pl.col("tok").is_in(list(CLAUSE_STARTERS)) | pl.col("is_site")
    next_starts_clause = _sh(starter, -1).fill_null(False) | (
        (_sh("tok", -1) == "and").fill_null(False) & _sh(starter, -2).fill_null(False)
    )
    new_sid = (pl.col("sid") != pl.col("sid").shift(1)).fill_null(True)
    # a comma that starts a new clause, or "and" right before a determiner ("... during the
    # last two weeks and the spleen is infiltrated")
    soft_comma = ((pl.col("tok") == ",") & ~prev_listy & next_starts_clause) | (
        (pl.col("tok") == "and")
        & ~(pl.col("tok").shift(1) == ",").fill_null(False)
        & _sh("tok", -1).is_in(["the", "there"]).fill_null(False)
    )
    # an enumerator "2)" of a numbered list starts a new item
    enumerator = (
        (pl.col("tok") == ")")
        & _sh("tok", 1).str.contains(r"^[0-9]+$").fill_null(False)
        & (_sh("tok", 2) != "(").fill_null(True)
    )
    return long.with_columns(
        new_sid.alias("_new_sid"),
        soft_comma.alias("_soft_comma"),
        enumerator.alias("_enumerator"),
        # a trigger right before a colon is a section heading: its colon carries it into the
        # section that follows (`_category_scopes`)
        _sh("is_colon", -1).fill_null(False).alias("_before_colon"),
    )


def _scope_groups(long: pl.LazyFrame) -> pl.LazyFrame:
    """Group ids from the clause marks: `hc` (clause: ends at a terminator or enumerator),
    `_gf` (forward scope: also ends at a colon or a new clause), `_gb` (backward scope: also
    ends at a new clause), `seg` (colons before the token in its sentence)."""
    hard = pl.col("_new_sid") | pl.col("is_terminator") | pl.col("_enumerator")
    colons = pl.col("is_colon").cast(pl.Int32).cum_sum()
    return long.with_columns(
        hard.cast(pl.Int32).cum_sum().alias("hc"),
        (hard | pl.col("is_colon") | pl.col("_soft_comma")).cast(pl.Int32).cum_sum().alias("_gf"),
        (hard | pl.col("_soft_comma")).cast(pl.Int32).cum_sum().alias("_gb"),
        (
            colons
            - pl.when(pl.col("_new_sid"))
            .then(colons - pl.col("is_colon").cast(pl.Int32))
            .forward_fill()
        ).alias("seg"),
    )


def _in_scope(is_pre: pl.Expr, is_post: pl.Expr, is_sec: pl.Expr | None = None) -> pl.Expr:
    """The token is reached by a forward trigger before it (`is_pre`: `PRE_WINDOW` tokens;
    `is_sec`: a section heading, `SECTION_WINDOW`) or a backward trigger after it (`is_post`:
    `POST_WINDOW`), within its scope group (`_gf` forward, `_gb` backward).

    The group id is folded into the value (gid * BIG + reach), so one cumulative max (forward)
    or reverse cumulative min (backward) over the whole sorted frame answers it without windows.
    """
    big = pl.lit(BIG, pl.Int64)
    gf = pl.col("_gf").cast(pl.Int64) * big
    gb = pl.col("_gb").cast(pl.Int64) * big
    pos = pl.col("pos").cast(pl.Int64)
    reach = pl.when(is_pre).then(gf + pos + PRE_WINDOW).otherwise(gf - 1)
    if is_sec is not None:
        reach = pl.when(is_sec).then(gf + pos + SECTION_WINDOW).otherwise(reach)
    in_pre = (reach.cum_max() - gf) >= pos
    back = (
        pl.when(is_post)
        .then(gb + pos - POST_WINDOW + BACK_OFFSET)
        .otherwise(gb + BIG - 1)
        .cum_min(reverse=True)
    )
    in_post = (back - gb - BACK_OFFSET) <= pos
    return in_pre | in_post


def _category_scopes(long: pl.LazyFrame) -> pl.LazyFrame:
    """Per category `in_<cat>`: the token is in the scope of a trigger of that category (not
    counting the trigger itself, unless it is the target placeholder)."""
    # "*_end" triggers look back only from the end of their clause: "the spleen is normal."
    # but not "... and normal sensation"
    at_end = ~_sh("tok", -1).str.contains(r"^[a-z0-9]").fill_null(False)
    long = long.with_columns(at_end.alias("_at_end"))
    exprs = []
    for cat in CATEGORIES:
        is_pre = pl.col(f"_pre_{cat}") & ~pl.col("_before_colon")
        # a colon right after a forward trigger carries it into its section ("PAST HISTORY:")
        is_sec = pl.col("is_colon") & _sh(f"_fwd_{cat}", 1).fill_null(False)
        is_post = pl.col(f"_post_{cat}") | (pl.col(f"_postend_{cat}") & pl.col("_at_end"))
        trigger_itself = (is_pre | is_sec | is_post) & ~pl.col("is_target")
        exprs.append((_in_scope(is_pre, is_post, is_sec) & ~trigger_itself).alias(f"in_{cat}"))
    return long.with_columns(exprs)


def scopes(long: pl.LazyFrame) -> pl.LazyFrame:
    """Add clause ids (`hc` clause, `seg` colons before the token, `_gf`/`_gb` scope groups)
    and per category `in_<cat>`: the token is in the scope of a trigger of that category."""
    return _category_scopes(_scope_groups(_clause_marks(long)))


def change_scopes(long: pl.LazyFrame) -> pl.LazyFrame:
    """Per change of `CHANGES`, `chg_<change>`: the token is a change word of that kind or in
    its scope, within the same scope groups as the assertion triggers (`scopes` first).

    A change word in the scope of a negation is not read ("no new lesions", "not increased in
    size"); "no change" and "unchanged" are change words of their own (stable).
    """
    live = ~pl.col("in_negation")
    exprs = []
    for change in CHANGES:
        is_pre = pl.col(f"_chgpre_{change}") & live
        is_post = pl.col(f"_chgpost_{change}") & live
        exprs.append((_in_scope(is_pre, is_post) | is_pre | is_post).alias(f"chg_{change}"))
    return long.with_columns(exprs)


def change_of(prefix: str = "chg_") -> pl.Expr:
    """The change from the flags `<prefix><change>`: new > increased > decreased > stable."""
    out = pl.lit(None, pl.Utf8)
    for change in reversed(CHANGES):
        out = pl.when(pl.col(prefix + change)).then(pl.lit(change)).otherwise(out)
    return out


def assertion_of(prefix: str = "in_") -> pl.Expr:
    """The category from the flags `<prefix><category>` by precedence (see module docstring)."""

    def f(cat: str) -> pl.Expr:
        return pl.col(prefix + cat)

    return (
        pl.when(f("resolved"))
        .then(pl.lit("resolved"))
        .when(f("historical") & f("negation"))
        .then(pl.lit("resolved"))
        .when(f("negation"))
        .then(pl.lit("absent"))
        .when(f("hypothetical"))
        .then(pl.lit("hypothetical"))
        .when(f("uncertainty"))
        .then(pl.lit("possible"))
        .when(f("historical"))
        .then(pl.lit("historical"))
        .otherwise(pl.lit("present"))
    )


def _laterality(long: pl.LazyFrame) -> pl.LazyFrame:
    """Laterality of every token (used for site tokens): `lat` column."""

    def sh(col: str, n: int) -> pl.Expr:
        return _sh(col, n)

    before_ok = pl.col("lat_pos").is_in(["before", "both"]).fill_null(False)
    pl.col("lat_pos").is_in(["after", "both"]).fill_null(False)
    lat_b = pl.when(before_ok).then(pl.col("lat_val"))
    lat_a_near = pl.when(pl.col("lat_pos") == "both").then(pl.col("lat_val"))
    long = long.with_columns(lat_b.alias("_lat_b"), lat_a_near.alias("_lat_an"))
    word = pl.col("tok").str.contains(r"^[a-z0-9]")
    long = long.with_columns(word.alias("_word"))
    plain_word = lambda n: (  # noqa: E731
        sh("_word", n).fill_null(False)
        & ~sh("is_site", n).fill_null(False)
        & sh("lat_val", n).is_null()
        & ~sh("is_terminator", n).fill_null(False)
        & sh("trig_cat", n).is_null()
    )
    glue = lambda n: (  # noqa: E731
        sh("region_ln", n).is_not_null() | sh("tok", n).is_in([*list(GLUE), "of"]).fill_null(False)
    )
    b1 = sh("_lat_b", 1)
    b2 = pl.when(plain_word(1)).then(sh("_lat_b", 2))
    b3 = pl.when(glue(1) & glue(2)).then(sh("_lat_b", 3))
    a1 = sh("_lat_an", -1)
    a2 = pl.when(sh("tok", -1) == ",").then(sh("_lat_an", -2))
    # "bilaterally", "on the left" anywhere later in the clause, before the next site
    after_only = (pl.col("lat_pos") == "after").fill_null(False)
    far_pos = _bfill(pl.col("pos"), after_only, "_gb")
    far_val = _bfill(pl.col("lat_val"), after_only, "_gb")
    real_site = pl.col("is_site") & ~pl.col("is_node_noun")
    long = long.with_columns(
        _bfill(pl.col("pos"), real_site, "sid").alias("_site_here_or_next"),
        far_pos.alias("_far_pos0"),
        far_val.alias("_far_val0"),
    ).with_columns(
        _sh("_site_here_or_next", -1).alias("_next_site"),
        _sh("_far_pos0", -1, "_gb").alias("_far_pos"),
        _sh("_far_val0", -1, "_gb").alias("_far_val"),
    )
    far = pl.when(
        pl.col("_far_pos").is_not_null()
        & (pl.col("_far_pos") - pl.col("pos") <= 10)
        & (pl.col("_next_site").is_null() | (pl.col("_far_pos") < pl.col("_next_site")))
    ).then(pl.col("_far_val"))
    return long.with_columns(pl.coalesce(b1, b2, b3, a1, a2, far).alias("lat"))


def _node_regions(long: pl.LazyFrame) -> pl.LazyFrame:
    """Node-region words attached to a node noun: `region_mention` and `covered` node nouns.

    "No supraclavicular or axillary adenopathy": both regions attach to "adenopathy" (through
    "or" and commas); "Lymph node, left axillary, excision": the region follows its noun.
    """
    skip = pl.col("region_ln").is_not_null() | pl.col("tok").is_in(
        [*GLUE, "left", "right", "bilateral"]
    )
    long = long.with_columns(skip.alias("_skip"))
    sig = ~pl.col("_skip")
    nxt_pos = _bfill(pl.col("pos"), sig, "sid")
    nxt_noun = _bfill(pl.col("is_node_noun"), sig, "sid")
    prv_pos = _ffill(pl.col("pos"), sig, "sid")
    prv_noun = _ffill(pl.col("is_node_noun"), sig, "sid")
    prev_tok = _sh("tok", 1)
    prev2_tok = _sh("tok", 2)
    comma_before = (prev_tok == ",") | (
        prev_tok.is_in(["left", "right", "bilateral"]) & (prev2_tok == ",")
    )
    is_reg = pl.col("region_ln").is_not_null()
    long = long.with_columns(
        pl.when(is_reg & nxt_noun.fill_null(False))
        .then(nxt_pos)
        .when(is_reg & prv_noun.fill_null(False) & comma_before.fill_null(False))
        .then(prv_pos)
        .alias("attached_to")
    )
    covered = (
        long.filter(pl.col("attached_to").is_not_null())
        .select("sid", pl.col("attached_to").alias("pos"))
        .unique()
    )
    return long.join(
        covered.with_columns(pl.lit(True).alias("covered")), on=["sid", "pos"], how="left"
    ).with_columns(pl.col("covered").fill_null(False))


CATS = [f"in_{c}" for c in CATEGORIES]
CHGS = [f"chg_{c}" for c in CHANGES]
SOFT_TISSUE = ["soft tissue", "soft tissues"]


def mentions(long: pl.DataFrame, sites_for_targets: bool = False) -> pl.DataFrame:
    """Site mentions (or target tokens) with site group, code, laterality and assertion.

    Returns `sid`, `pos`, `term`, `site_group`, `icdo3`, `laterality`, `assertion`, `kept`
    (false for a mention without disease evidence and without a negation of its own:
    "degenerative changes of the spine"), `is_target` and `change`.
    """
    lazy_long = long.lazy()
    for step in (
        _clause_marks,
        _scope_groups,
        _category_scopes,
        change_scopes,
        _node_regions,
        _laterality,
    ):
        lazy_long = _done(step(lazy_long))
    m = _done(_candidate_mentions(lazy_long, sites_for_targets))
    m = _done(_drop_descriptive_soft_tissue(m, lazy_long))
    m = _done(_mark_headers(_refine_regions(m, lazy_long), lazy_long))
    dis = _done(_disease_words(lazy_long))
    keyed = _done(m.with_row_index("_mid"))
    keyed = _done(
        keyed.join(_done(_evidence(keyed, dis)), on="_mid", how="left").join(
            _done(_later_negation(keyed, dis, lazy_long)), on="_mid", how="left"
        )
    )
    return _read_mentions(keyed, sites_for_targets).collect(engine="in-memory")


def _done(frame: pl.LazyFrame) -> pl.LazyFrame:
    """`frame` computed now (and handed on as lazy). Each step of `mentions` is computed on its
    own: one fused plan of all of them took twice as long (measured at 10,000 patients). The
    in-memory engine: polars 2's default streaming engine is several times slower on these
    order-dependent fills and shifts over a small frame."""
    return frame.collect(engine="in-memory").lazy()


def _candidate_mentions(lazy_long: pl.LazyFrame, sites_for_targets: bool) -> pl.LazyFrame:
    """Site-term tokens (not node nouns a region covers), node regions attached to a node noun
    and, for `assertions`, the target placeholders; with `site_group`, `icdo3`, `description`."""
    st = site_terms().rename({"term": "tok"}).lazy()
    site_rows = lazy_long.filter(
        pl.col("is_site") & ~pl.col("covered") & pl.col("attached_to").is_null()
    ).join(st, on="tok", how="inner")
    region_rows = lazy_long.filter(pl.col("attached_to").is_not_null()).with_columns(
        pl.lit("lymph_node").alias("site_group"),
        pl.col("region_ln").alias("icdo3"),
        pl.lit("").alias("description"),
    )
    cols = site_rows.collect_schema().names()
    parts = [site_rows, region_rows.select(cols)]
    if sites_for_targets:
        tgt = lazy_long.filter(pl.col("is_target")).with_columns(
            pl.col("target_group").alias("site_group"),
            pl.lit(None, pl.Utf8).alias("icdo3"),
            pl.lit("").alias("description"),
        )
        parts.append(tgt.select(cols))
    return pl.concat(parts)


def _drop_descriptive_soft_tissue(m: pl.LazyFrame, lazy_long: pl.LazyFrame) -> pl.LazyFrame:
    """ "Soft tissue density in the nasal cavity": soft tissue beside another site of its clause
    describes that site, unless coordinated with it ("osseous or soft tissue lesion")."""
    others = (
        m.filter(~pl.col("tok").is_in(SOFT_TISSUE))
        .group_by("sid", "hc")
        .agg(pl.len().alias("_n_other"))
    )
    next_tok = lazy_long.select(
        "sid",
        "pos",
        _sh("tok", -1).alias("_next_tok"),
        _sh("tok", 1).alias("_prev_tok"),
        _sh("is_site", 1).alias("_prev_site"),
    )
    m = m.join(others, on=["sid", "hc"], how="left").join(next_tok, on=["sid", "pos"], how="left")
    descriptive = (
        pl.col("tok").is_in(SOFT_TISSUE)
        & pl.col("_n_other").fill_null(0).gt(0)
        & ~pl.col("_prev_tok").is_in(["or", "and"]).fill_null(False)
    )
    return m.filter(~descriptive)


def _mark_headers(m: pl.LazyFrame, lazy_long: pl.LazyFrame) -> pl.LazyFrame:
    """`_header`: a mention before the first colon of a sentence whose first segment has no
    disease word ("Testis, left, biopsy: ..."); it takes its evidence after the colon."""
    has_colon = lazy_long.group_by("sid").agg(pl.col("is_colon").any().alias("_has_colon"))
    seg0_disease = (
        lazy_long.filter((pl.col("seg") == 0) & (pl.col("disease") > 0))
        .group_by("sid")
        .agg(pl.lit(True).alias("_seg0_dis"))
    )
    return (
        m.join(has_colon, on="sid", how="left")
        .join(seg0_disease, on="sid", how="left")
        .with_columns(
            (
                pl.col("_has_colon")
                & (pl.col("seg") == 0)
                & pl.col("_seg0_dis").is_null()
                & (pl.col("disease") == 0)
            ).alias("_header")
        )
    )


def _disease_words(lazy_long: pl.LazyFrame) -> pl.LazyFrame:
    """The disease words: position, clause, segment, strength and scope flags (`d_` prefix)."""
    return lazy_long.filter(pl.col("disease") > 0).select(
        "sid",
        pl.col("pos").alias("d_pos"),
        pl.col("hc").alias("d_hc"),
        pl.col("seg").alias("d_seg"),
        pl.col("disease").alias("d_strength"),
        *[pl.col(c).alias("d_" + c) for c in CATS + CHGS],
    )


def _evidence(keyed: pl.LazyFrame, dis: pl.LazyFrame) -> pl.LazyFrame:
    """Per mention (`_mid`) the disease word it belongs to: of its clause (of the sections
    after the colon for a header), the strongest, then the nearest; its flags and `_has_ev`."""
    return (
        keyed.select("_mid", "sid", "pos", "hc", "_header", "disease")
        .join(dis, on="sid", how="inner")
        .filter(
            pl.when(pl.col("_header"))
            .then(pl.col("d_seg") >= 1)
            .otherwise(pl.col("d_hc") == pl.col("hc"))
        )
        .with_columns((pl.col("d_pos") - pl.col("pos")).abs().alias("_dist"))
        .sort(["_mid", "d_strength", "_dist", "d_pos"], descending=[False, True, False, False])
        .unique("_mid", keep="first", maintain_order=True)
        .select("_mid", *["d_" + c for c in CATS + CHGS], pl.lit(True).alias("_has_ev"))
    )


def _later_negation(
    keyed: pl.LazyFrame, dis: pl.LazyFrame, lazy_long: pl.LazyFrame
) -> pl.LazyFrame:
    """`_later_neg` per mention: later in its clause, a negated disease word or a resolution
    ("history of ..., now without disease", "... disease, now in remission")."""
    gone = pl.concat(
        [
            dis.filter(pl.col("d_in_negation") & (pl.col("d_strength") >= 2)).select(
                "sid", "d_pos", "d_hc"
            ),
            lazy_long.filter(pl.col("trig_cat") == "resolved").select(
                "sid", pl.col("pos").alias("d_pos"), pl.col("hc").alias("d_hc")
            ),
        ]
    )
    return (
        keyed.select("_mid", "sid", "pos", "hc")
        .join(gone, on="sid")
        .filter((pl.col("d_hc") == pl.col("hc")) & (pl.col("d_pos") > pl.col("pos")))
        .select("_mid", pl.lit(True).alias("_later_neg"))
        .unique("_mid")
    )


def _final_flags(sites_for_targets: bool) -> list[pl.Expr]:
    """`f_in_<cat>` and `f_chg_<change>`: a mention's own trigger flags, or its evidence's when
    no trigger covers it (for changes: when no change word covers it)."""
    has_ev = pl.col("_has_ev").fill_null(False)
    use_ev = has_ev & ~pl.any_horizontal(*[pl.col(c) for c in CATS])
    if sites_for_targets:
        use_ev = use_ev & pl.col("site_group").is_not_null()
    final = [
        pl.when(use_ev).then(pl.col("d_" + c)).otherwise(pl.col(c)).fill_null(False).alias("f_" + c)
        for c in CATS
    ]
    own_chg = pl.any_horizontal(*[pl.col(c) for c in CHGS])
    return final + [
        pl.when(own_chg)
        .then(pl.col(c))
        .when(has_ev)
        .then(pl.col("d_" + c))
        .fill_null(False)
        .alias("f_" + c)
        for c in CHGS
    ]


def _read_mentions(keyed: pl.LazyFrame, sites_for_targets: bool) -> pl.LazyFrame:
    """The output columns of `mentions` from the joined evidence and later negation."""
    keyed = keyed.with_columns(_final_flags(sites_for_targets)).with_columns(
        (
            pl.col("f_in_negation")
            | (pl.col("f_in_historical") & pl.col("_later_neg").fill_null(False))
        ).alias("f_in_negation")
    )
    kept = (
        pl.col("_has_ev").fill_null(False)
        | pl.col("in_negation")
        | pl.col("in_resolved")
        | pl.col("in_uncertainty")
        | pl.col("in_hypothetical")
        | pl.col("is_target")
    )
    return (
        keyed.select(
            "sid",
            "pos",
            pl.col("tok").alias("term"),
            "site_group",
            "icdo3",
            pl.col("lat").alias("laterality"),
            assertion_of("f_in_").alias("assertion"),
            kept.alias("kept"),
            "is_target",
            *[f"f_{c}" for c in CHGS],
        )
        .with_columns(
            # only a finding asserted now (present or possible) has a change since the prior study
            pl.when(pl.col("assertion").is_in(["present", "possible"]))
            .then(change_of("f_chg_"))
            .alias("change")
        )
        .drop([f"f_{c}" for c in CHGS])
    )


def _refine_regions(m: pl.LazyFrame, long: pl.LazyFrame) -> pl.LazyFrame:
    """ "Skin, left forearm": the NOS code of skin or soft tissue takes the body region's code."""
    reg = long.filter(pl.col("region_skin").is_not_null() | pl.col("region_soft").is_not_null())
    reg = reg.select(
        "sid",
        pl.col("pos").alias("r_pos"),
        "region_skin",
        "region_soft",
        pl.col("lat").alias("r_lat"),
    )
    refinable = pl.col("tok").is_in(
        ["skin", "soft tissue", "soft tissues", "intramuscular", "muscle", "subcutaneous"]
    )
    m = m.with_row_index("_rid")
    cand = (
        m.filter(refinable)
        .select("_rid", "sid", "pos", "site_group")
        .join(reg, on="sid")
        .with_columns(
            pl.when(pl.col("site_group") == "skin")
            .then(pl.col("region_skin"))
            .when(pl.col("site_group") == "soft_tissue")
            .then(pl.col("region_soft"))
            .alias("_code"),
            (pl.col("r_pos") - pl.col("pos")).abs().alias("_d"),
        )
        .filter(pl.col("_code").is_not_null() & (pl.col("_d") <= 8))
        .sort(["_rid", "_d"])
        .unique("_rid", keep="first")
        .select("_rid", "_code", "r_lat")
    )
    return (
        m.join(cand, on="_rid", how="left")
        .with_columns(
            pl.coalesce("_code", "icdo3").alias("icdo3"),
            pl.coalesce("lat", "r_lat").alias("lat"),
        )
        .drop("_rid", "_code", "r_lat")
    )
