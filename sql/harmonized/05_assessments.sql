-- One assessment per patient and date: the delivered assessments (counts, CSF, the site's label
-- when the same file carries it) merged with the responses a site reported in a file of their
-- own (staging.reported_responses, e.g. CDISC SDTM RS), so a date with counts (LB) and a label
-- (RS) is one assessment, not two colliding rows. The assessment row's own label comes first;
-- a different label from the responses file is kept in conflicting_label for stewards. A
-- response-only date is an assessment with its label and no counts.
CREATE OR REPLACE TABLE harmonized.assessments AS
WITH reported AS (
    SELECT
        patient_key,
        site,
        response_date AS assessment_date,
        reported_response,
        _source_file,
        _source_row
    FROM staging.reported_responses
)

SELECT
    coalesce(a.patient_key, r.patient_key) AS patient_key,
    coalesce(a.site, r.site) AS site,
    coalesce(a.assessment_date, r.assessment_date) AS assessment_date,
    a.marrow_blasts_pct,
    a.blood_blasts_pct,
    a.anc_10e9l,
    a.platelets_10e9l,
    a.blood_wbc_10e9l,
    a.blood_rbc_10e12l,
    a.mrd_pct,
    a.csf_wbc_per_ul,
    a.csf_rbc_per_ul,
    a.csf_blasts,
    coalesce(a.reported_response, r.reported_response) AS reported_response,
    CASE
        WHEN a.reported_response IS NOT NULL AND r.reported_response <> a.reported_response
            THEN r.reported_response
    END AS conflicting_label,
    CASE
        WHEN a.reported_response IS NOT NULL THEN 'assessments'
        WHEN r.reported_response IS NOT NULL THEN 'reported_responses'
    END AS label_source_table,
    CASE WHEN a.reported_response IS NOT NULL THEN a._source_file ELSE r._source_file END
        AS label_source_file,
    CASE WHEN a.reported_response IS NOT NULL THEN a._source_row ELSE r._source_row END
        AS label_source_row,
    coalesce(a._source_file, r._source_file) AS _source_file,
    coalesce(a._source_row, r._source_row) AS _source_row
FROM staging.assessments AS a
FULL OUTER JOIN reported AS r
    ON a.patient_key = r.patient_key AND a.assessment_date = r.assessment_date;

COMMENT ON TABLE harmonized.assessments IS 'One assessment per patient and date: staging.assessments merged with staging.reported_responses (a label reported in a file of its own, e.g. SDTM RS) on patient and date. Read by the response, relapse and event models instead of staging.assessments.';
COMMENT ON COLUMN harmonized.assessments.patient_key IS 'Pseudonymous patient key.';
COMMENT ON COLUMN harmonized.assessments.site IS 'Site code.';
COMMENT ON COLUMN harmonized.assessments.assessment_date IS 'Date of the assessment (or of the reported response).';
COMMENT ON COLUMN harmonized.assessments.marrow_blasts_pct IS 'Marrow blasts, percent (from staging.assessments).';
COMMENT ON COLUMN harmonized.assessments.blood_blasts_pct IS 'Peripheral-blood blasts, percent (from staging.assessments).';
COMMENT ON COLUMN harmonized.assessments.anc_10e9l IS 'Absolute neutrophil count, 10^9/L (from staging.assessments).';
COMMENT ON COLUMN harmonized.assessments.platelets_10e9l IS 'Platelets, 10^9/L (from staging.assessments).';
COMMENT ON COLUMN harmonized.assessments.blood_wbc_10e9l IS 'Blood white cells, 10^9/L (from staging.assessments).';
COMMENT ON COLUMN harmonized.assessments.blood_rbc_10e12l IS 'Blood red cells, 10^12/L (from staging.assessments).';
COMMENT ON COLUMN harmonized.assessments.mrd_pct IS 'MRD, percent (from staging.assessments).';
COMMENT ON COLUMN harmonized.assessments.csf_wbc_per_ul IS 'CSF white cells per uL (from staging.assessments).';
COMMENT ON COLUMN harmonized.assessments.csf_rbc_per_ul IS 'CSF red cells per uL (from staging.assessments).';
COMMENT ON COLUMN harmonized.assessments.csf_blasts IS 'Blasts on CSF cytospin (from staging.assessments).';
COMMENT ON COLUMN harmonized.assessments.reported_response IS 'The site''s response label of the date: the assessment row''s own, else the reported_responses row''s.';
COMMENT ON COLUMN harmonized.assessments.conflicting_label IS 'A reported_responses label that differs from the assessment row''s own label on the same date (the own label is used); NULL when they agree or one is missing.';
COMMENT ON COLUMN harmonized.assessments.label_source_table IS 'Where reported_response came from: assessments or reported_responses; NULL without a label.';
COMMENT ON COLUMN harmonized.assessments.label_source_file IS 'Landing file of the label (lineage).';
COMMENT ON COLUMN harmonized.assessments.label_source_row IS 'Row of the label in its landing file (lineage).';
COMMENT ON COLUMN harmonized.assessments._source_file IS 'Landing file of the assessment row, else of the reported response (lineage).';
COMMENT ON COLUMN harmonized.assessments._source_row IS 'Row in that file (lineage).';
