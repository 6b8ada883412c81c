-- Steward listing: assessments whose reported response differs from the derived category.
CREATE OR REPLACE TABLE harmonized.response_discordance AS
SELECT
    patient_key,
    study_day,
    reported_response,
    category AS derived_category,
    _source_file,
    _source_row
FROM harmonized.assessment_response
WHERE reported_response IS NOT NULL AND reported_response <> category;
