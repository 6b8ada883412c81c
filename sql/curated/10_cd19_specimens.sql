-- Published per-specimen CD19 table: class, evidence and timepoint; no dates, ids or text.
CREATE OR REPLACE TABLE curated.cd19_specimens AS
SELECT
    s.patient_key,
    s.study_day,
    s.specimen_type,
    s.cd19_class,
    s.partial,
    s.pct_positive,
    s.mfi_ratio,
    s.rule_id,
    s.evidence_conflict,
    s.unreadable,
    CASE
        WHEN b._source_file IS NOT NULL THEN 'baseline'
        WHEN f._source_file IS NOT NULL THEN 'failure'
    END AS timepoint
FROM harmonized.cd19_specimens AS s
LEFT JOIN harmonized.cd19_baseline AS b
    ON s._source_file = b._source_file AND s._source_row = b._source_row
LEFT JOIN harmonized.cd19_at_failure AS f
    ON s._source_file = f._source_file AND s._source_row = f._source_row
ORDER BY ALL;

COMMENT ON TABLE curated.cd19_specimens IS 'One row per flow-cytometry specimen: harmonized CD19 class with the evidence and rule that decided it (docs/cd19.md).';
COMMENT ON COLUMN curated.cd19_specimens.patient_key IS 'Pseudonymous patient key (keyed HMAC of site and MRN).';
COMMENT ON COLUMN curated.cd19_specimens.study_day IS 'Collection day relative to blinatumomab cycle 1 start (day 0).';
COMMENT ON COLUMN curated.cd19_specimens.specimen_type IS 'marrow, blood, csf or tissue.';
COMMENT ON COLUMN curated.cd19_specimens.cd19_class IS 'CD19 on blasts: negative, dim, moderate or strong; NULL when no evidence could be classified.';
COMMENT ON COLUMN curated.cd19_specimens.partial IS 'CD19 on a subset of blasts: percent positive below the lab partial cut-off (default 80%) or partial/subset/heterogeneous wording.';
COMMENT ON COLUMN curated.cd19_specimens.pct_positive IS 'Percent of blasts CD19-positive (reported, or read from the wording).';
COMMENT ON COLUMN curated.cd19_specimens.mfi_ratio IS 'CD19 MFI on blasts divided by the MFI of the normal B-cell reference.';
COMMENT ON COLUMN curated.cd19_specimens.rule_id IS 'Rule that decided the class: NUM_* numeric cut-off, TXT_PCT_NEG a percentage in the words below the cut-off, LEX_* lexicon entry (ref.cd19_lexicon).';
COMMENT ON COLUMN curated.cd19_specimens.evidence_conflict IS 'Numbers and words both gave a class and they differ.';
COMMENT ON COLUMN curated.cd19_specimens.unreadable IS 'A CD19 wording was present but neither a lexicon entry nor a percentage could be read from it (listed for stewards, never guessed).';
COMMENT ON COLUMN curated.cd19_specimens.timepoint IS 'baseline when this specimen gave cd19_baseline, failure when it gave cd19_at_failure, else NULL.';
