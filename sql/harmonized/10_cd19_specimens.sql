-- One harmonized CD19 record per flow specimen: the class on one scale (negative, dim,
-- moderate, strong) from numbers (percent positive, MFI ratio to normal B cells) and words
-- (lexicon ref.cd19_lexicon), per-laboratory cut-offs and precedence (ref.cd19_lab_cutoffs),
-- the rule that decided, and flags for conflicting and unreadable evidence. A percentage or an
-- MFI ratio written in the words counts as the column's number when the column is empty
-- (rule ids TXT_PCT_NEG, TXT_MFI_DIM / _MODERATE / _STRONG; NUM_* when from the columns).
CREATE OR REPLACE TABLE harmonized.cd19_specimens AS
WITH default_cutoffs AS (
    SELECT * FROM ref.cd19_lab_cutoffs
    WHERE source_id = '*'
),

descriptors AS (
    -- reports repeat a handful of wordings: normalise and read each distinct wording once
    SELECT DISTINCT cd19_descriptor
    FROM staging.flow_results
),

normalized_descriptors AS (
    -- lower case, one space, "CD 19" -> "cd19", a space between a marker and what follows it
    -- ("cd19neg", "cd19(+)", "cd22pos" -> "cd19 neg", "cd19 (+)", "cd22 pos")
    SELECT
        cd19_descriptor,
        regexp_replace(
            regexp_replace(
                lower(trim(regexp_replace(coalesce(cd19_descriptor, ''), '\s+', ' ', 'g'))),
                '\bcd\s+(\d+)', 'cd\1', 'g'
            ),
            '\b(cd\d+)([a-z+(\-])', '\1 \2', 'g'
        ) AS descriptor_norm
    FROM descriptors
),

marker_segments AS (
    -- every other marker (CD10, CD22, TdT ...) starts a new segment, so the CD19 clause keeps
    -- its own qualifiers after commas ("cd19 weak, partial (30%), cd22 bright" -> "cd19 weak,
    -- partial (30%)") and loses the other markers' ("cd19 neg/cd22 pos" -> "cd19 neg")
    SELECT
        cd19_descriptor,
        descriptor_norm,
        regexp_replace(
            descriptor_norm,
            '\s*[,;/]?\s*\b(cd(?:[02-9]\d*|1[0-8]?|19\d+)[a-z]?|tdt|hla\s?dr|mpo)\b', ';\1', 'g'
        ) AS segmented
    FROM normalized_descriptors
),

descriptor_clauses AS (
    SELECT
        cd19_descriptor,
        CASE
            WHEN descriptor_norm LIKE '%cd19%'
                THEN trim(
                    -- a segment that starts with another marker: the CD19 clause starts at cd19
                    regexp_replace(
                        list_filter(string_split(segmented, ';'), LAMBDA x: x LIKE '%cd19%')[1],
                        '^\s*(cd(?:[02-9]\d*|1[0-8]?|19\d+)[a-z]?|tdt|hla\s?dr|mpo)\b.*?(cd19)', '\2'
                    ),
                    ' ,;'
                )
            ELSE descriptor_norm
        END AS cd19_clause
    FROM marker_segments
),

distinct_clauses AS (
    SELECT DISTINCT cd19_clause
    FROM descriptor_clauses
    WHERE cd19_clause <> ''
),

text_rules AS (
    SELECT
        d.cd19_clause,
        lx.rule_id,
        lx.cd19_class,
        -- any matching entry that marks partial expression sets the flag, whichever decides
        bool_or(lx.partial::BOOLEAN) OVER (PARTITION BY d.cd19_clause) AS text_partial,
        row_number() OVER (
            PARTITION BY d.cd19_clause ORDER BY lx.priority, lx.rule_id
        ) AS rule_rank
    FROM distinct_clauses AS d
    INNER JOIN ref.cd19_lexicon AS lx ON regexp_matches(d.cd19_clause, lx.pattern)
),

text_evidence AS (
    SELECT
        cd19_clause,
        rule_id AS text_rule_id,
        cd19_class AS text_class,
        text_partial
    FROM text_rules
    WHERE rule_rank = 1
),

mfi_patterns AS (
    -- the two MFIs written in the words: blasts, then the normal B-cell reference
    SELECT
        'mfi\s*[:=]?\s*(\d+(?:\.\d+)?)\s*(?:\(|,|;|/|vs\.?)?\s*'
        || '(?:normal\s*b(?:[\s-]*cells?)?|ref(?:erence)?)\s*(?:mfi)?\s*[:=]?\s*(\d+(?:\.\d+)?)' AS mfi_pair
),

descriptor_evidence AS (
    -- per distinct wording: its CD19 clause, a percentage written in it and the lexicon reading
    SELECT
        dc.cd19_descriptor,
        dc.cd19_clause,
        -- a percentage in the CD19 clause ("(3%)", "on <2% of blasts", "in 30 percent")
        try_cast(
            nullif(regexp_extract(dc.cd19_clause, '(\d+(?:\.\d+)?)\s*(?:%|percent)', 1), '') AS DOUBLE
        ) AS text_pct,
        -- an MFI ratio to normal B cells written in the CD19 clause: "mfi ratio 0.25", or the
        -- two MFIs "mfi 1200 (normal b cells 5000)", "mfi 800 / normal b 1000", "mfi 800 vs ref 1000"
        coalesce(
            try_cast(
                nullif(
                    regexp_extract(
                        dc.cd19_clause,
                        'mfi\s*ratio(?:\s*to\s*normal\s*b(?:[\s-]*cells?)?)?\s*[:=]?\s*(\d+(?:\.\d+)?)', 1
                    ),
                    ''
                ) AS DOUBLE
            ),
            try_cast(nullif(regexp_extract(dc.cd19_clause, mfi_pair, 1), '') AS DOUBLE)
            / nullif(try_cast(nullif(regexp_extract(dc.cd19_clause, mfi_pair, 2), '') AS DOUBLE), 0)
        ) AS text_mfi_ratio,
        te.text_class,
        te.text_rule_id,
        te.text_partial
    FROM descriptor_clauses AS dc
    CROSS JOIN mfi_patterns
    LEFT JOIN text_evidence AS te ON dc.cd19_clause = te.cd19_clause
),

classified AS (
    SELECT
        f.patient_key,
        f._source_id AS source_id,
        f._source_file,
        f._source_row,
        f.specimen_id,
        f.specimen_type,
        f.collection_date,
        f.blasts_pct,
        f.cd19_pct_positive,
        f.cd19_descriptor,
        date_diff('day', t.day0_date, f.collection_date) AS study_day,
        coalesce(c.pct_positive_cutoff, d.pct_positive_cutoff) AS pct_cutoff,
        coalesce(c.dim_upper, d.dim_upper) AS dim_upper,
        coalesce(c.moderate_upper, d.moderate_upper) AS moderate_upper,
        coalesce(c.partial_below_pct, d.partial_below_pct) AS partial_below_pct,
        coalesce(c.precedence, d.precedence) AS precedence,
        de.cd19_clause,
        coalesce(f.cd19_pct_positive, de.text_pct) AS pct_positive,
        CASE WHEN f.cd19_pct_positive IS NULL AND de.text_pct IS NOT NULL THEN 'TXT' ELSE 'NUM' END AS pct_source,
        de.text_pct,
        -- the MFI ratio from the columns or, failing them, the words (as for the percentage)
        coalesce(CASE WHEN f.ref_mfi > 0 THEN f.cd19_mfi / f.ref_mfi END, de.text_mfi_ratio) AS mfi_ratio,
        CASE
            WHEN f.ref_mfi > 0 AND f.cd19_mfi IS NOT NULL THEN 'NUM'
            WHEN de.text_mfi_ratio IS NOT NULL THEN 'TXT'
            ELSE 'NUM'
        END AS mfi_source,
        de.text_mfi_ratio,
        de.text_class,
        de.text_rule_id,
        de.text_partial
    FROM staging.flow_results AS f
    INNER JOIN harmonized.patient_timeline AS t ON f.patient_key = t.patient_key
    INNER JOIN descriptor_evidence AS de ON f.cd19_descriptor IS NOT DISTINCT FROM de.cd19_descriptor
    CROSS JOIN default_cutoffs AS d
    LEFT JOIN ref.cd19_lab_cutoffs AS c ON f._source_id = c.source_id
),

numeric_evidence AS (
    SELECT
        *,
        -- the percent rule applies to a percentage from the column or, failing it, the words
        CASE
            WHEN pct_positive < pct_cutoff THEN 'negative'
            WHEN mfi_ratio < dim_upper THEN 'dim'
            WHEN mfi_ratio < moderate_upper THEN 'moderate'
            WHEN mfi_ratio >= moderate_upper THEN 'strong'
        END AS numeric_class,
        CASE
            WHEN pct_positive < pct_cutoff THEN pct_source || '_PCT_NEG'
            WHEN mfi_ratio < dim_upper THEN mfi_source || '_MFI_DIM'
            WHEN mfi_ratio < moderate_upper THEN mfi_source || '_MFI_MODERATE'
            WHEN mfi_ratio >= moderate_upper THEN mfi_source || '_MFI_STRONG'
        END AS numeric_rule_id
    FROM classified
)

SELECT
    patient_key,
    source_id,
    specimen_id,
    specimen_type,
    collection_date,
    study_day,
    blasts_pct,
    pct_positive,
    mfi_ratio,
    numeric_class,
    text_class,
    cd19_descriptor AS descriptor,
    CASE
        WHEN precedence = 'text_first' THEN coalesce(text_class, numeric_class)
        ELSE coalesce(numeric_class, text_class)
    END AS cd19_class,
    CASE
        WHEN precedence = 'text_first' THEN coalesce(text_rule_id, numeric_rule_id)
        ELSE coalesce(numeric_rule_id, text_rule_id)
    END AS rule_id,
    coalesce(pct_positive < partial_below_pct, FALSE)
    OR coalesce(text_partial, FALSE)
        AS partial,
    coalesce(numeric_class IS NOT NULL AND text_class IS NOT NULL AND numeric_class <> text_class, FALSE)
        AS evidence_conflict,
    -- words present but neither a lexicon entry nor a percentage nor an MFI read from them
    (cd19_clause <> '' AND text_class IS NULL AND text_pct IS NULL AND text_mfi_ratio IS NULL) AS unreadable,
    precedence,
    _source_file,
    _source_row
FROM numeric_evidence;
