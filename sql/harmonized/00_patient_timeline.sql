-- One row per patient with a blinatumomab cycle 1: the study-day origin (day 0) and the
-- patient-level dates later models measure against. Restricted zone: holds calendar dates.
CREATE OR REPLACE TABLE harmonized.patient_timeline AS
WITH cycle1 AS (
    SELECT
        patient_key,
        min(start_date) AS day0_date
    FROM staging.treatments
    WHERE treatment = 'blinatumomab' AND cycle = 1
    GROUP BY patient_key
),

deaths AS (
    SELECT
        patient_key,
        min(event_date) AS death_date
    FROM staging.outcomes
    WHERE event = 'death'
    GROUP BY patient_key
)

SELECT
    p.patient_key,
    p.site,
    cycle1.day0_date,
    p.birth_date,
    p.diagnosis_date,
    deaths.death_date
FROM staging.patients AS p
INNER JOIN cycle1 ON p.patient_key = cycle1.patient_key
LEFT JOIN deaths ON p.patient_key = deaths.patient_key;
