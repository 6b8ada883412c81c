-- CD19 at failure: the classified specimen nearest the failure day (refractory determination or
-- relapse) within cd19_failure_window_days either side of it ("around that day", issue 16 rule 3),
-- never before day 1: a specimen of day 0 or earlier shows the disease before blinatumomab
-- (cd19_baseline's window ends on day 0), not at failure.
-- Ties: on equal distance the specimen after the failure day wins (it shows the disease that
-- failed; one before it was taken while the patient still counted as responding or on treatment);
-- on the same day marrow comes before other specimens, then file and row order.
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
                abs(s.study_day - r.failure_day) ASC,
                s.study_day DESC,
                CASE s.specimen_type WHEN 'marrow' THEN 0 ELSE 1 END ASC,
                s._source_file ASC,
                s._source_row ASC
        ) AS pick
    FROM harmonized.cd19_specimens AS s
    INNER JOIN harmonized.patient_response AS r ON s.patient_key = r.patient_key
    WHERE
        s.cd19_class IS NOT NULL
        AND r.failure_day IS NOT NULL
        AND s.study_day >= 1
        AND s.study_day
        BETWEEN r.failure_day - def_num('cd19_failure_window_days')
        AND r.failure_day + def_num('cd19_failure_window_days')
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
