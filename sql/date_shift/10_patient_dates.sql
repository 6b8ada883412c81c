-- Date-shift mode only (off by default): the patient's milestones as calendar dates, every one
-- moved by the same keyed per-patient shift (harmonized.date_shift, restricted zone), so
-- intervals are exact while the true dates are not published.
CREATE OR REPLACE TABLE curated.patient_dates AS
WITH shifted_origin AS (
    SELECT
        t.patient_key,
        t.day0_date + s.shift_days AS start_date,
        t.diagnosis_date + s.shift_days AS diagnosis_date
    FROM harmonized.patient_timeline AS t
    INNER JOIN harmonized.date_shift AS s ON t.patient_key = s.patient_key
)

SELECT
    p.patient_key,
    o.start_date,
    o.diagnosis_date,
    o.start_date + p.response_day::INTEGER AS response_date,
    o.start_date + p.hct_day::INTEGER AS hct_date,
    o.start_date + p.relapse_day::INTEGER AS relapse_date,
    CASE WHEN p.died THEN o.start_date + p.os_days::INTEGER END AS death_date,
    CASE WHEN NOT p.died THEN o.start_date + p.os_days::INTEGER END AS last_known_alive_date
FROM curated.patients AS p
INNER JOIN shifted_origin AS o ON p.patient_key = o.patient_key
ORDER BY ALL;

COMMENT ON TABLE curated.patient_dates IS 'Date-shift mode only: patient milestones as shifted calendar dates. Every date of a patient moves by one keyed shift of 1 to date_shift_max_days days, earlier or later; the shift is not published and cannot be derived from patient_key without the secret. Intervals equal the study-day differences of curated.patients.';
COMMENT ON COLUMN curated.patient_dates.patient_key IS 'Pseudonymous patient key, as in curated.patients.';
COMMENT ON COLUMN curated.patient_dates.start_date IS 'Shifted date of blinatumomab cycle 1 start (study day 0).';
COMMENT ON COLUMN curated.patient_dates.diagnosis_date IS 'Shifted date of diagnosis.';
COMMENT ON COLUMN curated.patient_dates.response_date IS 'Shifted start_date + curated.patients.response_day.';
COMMENT ON COLUMN curated.patient_dates.hct_date IS 'Shifted start_date + curated.patients.hct_day.';
COMMENT ON COLUMN curated.patient_dates.relapse_date IS 'Shifted start_date + curated.patients.relapse_day.';
COMMENT ON COLUMN curated.patient_dates.death_date IS 'Shifted date of death (start_date + os_days when died).';
COMMENT ON COLUMN curated.patient_dates.last_known_alive_date IS 'Shifted date last known alive (start_date + os_days when not died).';
