-- Steward listing: window assessments whose site-reported response differs from the category
-- derived from the counts (only where the counts suffice), with the category the run used.
-- A reported relapse agrees with a derived refractory (neither is a remission).
CREATE OR REPLACE TABLE harmonized.response_discordance AS
WITH derived AS (
    SELECT
        patient_key,
        study_day,
        reported_response,
        reported_category,
        category_source,
        category AS used_category,
        _source_file,
        _source_row,
        CASE
            WHEN counts_category = 'refractory' OR NOT em_clear THEN 'refractory'
            WHEN counts_category IN ('CR', 'CRh', 'CRi') AND NOT em_reassessed THEN 'CR_em_not_reassessed'
            ELSE counts_category
        END AS derived_category
    FROM harmonized.assessment_response
    WHERE counts_suffice AND reported_response IS NOT NULL
)

SELECT
    patient_key,
    study_day,
    reported_response,
    derived_category,
    category_source,
    used_category,
    _source_file,
    _source_row
FROM derived
WHERE reported_category <> derived_category;
