-- CD19 at failure: the first classified specimen from the failure day (refractory
-- determination or relapse) to cd19_failure_window_days after it, marrow first on the same day.
CREATE OR REPLACE TABLE harmonized.cd19_at_failure AS
WITH candidates AS (
    SELECT
        s.patient_key,
        s.cd19_class,
        s.study_day,
        s.specimen_type,
        s._source_file,
        s._source_row,
        row_number() OVER (
            PARTITION BY s.patient_key
            ORDER BY
                s.study_day,
                CASE s.specimen_type WHEN 'marrow' THEN 0 ELSE 1 END,
                s._source_file,
                s._source_row
        ) AS pick
    FROM harmonized.cd19_specimens AS s
    INNER JOIN harmonized.patient_response AS r ON s.patient_key = r.patient_key
    WHERE
        s.cd19_class IS NOT NULL
        AND r.failure_day IS NOT NULL
        AND s.study_day BETWEEN r.failure_day AND r.failure_day + def_num('cd19_failure_window_days')
)

SELECT
    patient_key,
    cd19_class AS cd19_at_failure,
    study_day,
    specimen_type,
    _source_file,
    _source_row
FROM candidates
WHERE pick = 1;
