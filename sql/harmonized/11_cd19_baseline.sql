-- CD19 at baseline: the classified marrow specimen closest before day 0 within
-- cd19_baseline_window_days, else the closest blood specimen; other specimen types are not used.
CREATE OR REPLACE TABLE harmonized.cd19_baseline AS
WITH candidates AS (
    SELECT
        patient_key,
        cd19_class,
        study_day,
        specimen_type,
        _source_file,
        _source_row,
        row_number() OVER (
            PARTITION BY patient_key
            ORDER BY
                CASE specimen_type WHEN 'marrow' THEN 0 ELSE 1 END,
                study_day DESC,
                _source_file ASC,
                _source_row ASC
        ) AS pick
    FROM harmonized.cd19_specimens
    WHERE
        cd19_class IS NOT NULL
        AND specimen_type IN ('marrow', 'blood')
        AND study_day BETWEEN -def_num('cd19_baseline_window_days') AND 0
)

SELECT
    patient_key,
    cd19_class AS cd19_baseline,
    study_day,
    specimen_type,
    _source_file,
    _source_row
FROM candidates
WHERE pick = 1;
