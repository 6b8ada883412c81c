-- One row per patient with a blinatumomab cycle 1: the study-day origin (day 0) and the
-- patient-level dates later models measure against. Restricted zone: holds calendar dates.
CREATE OR REPLACE TABLE harmonized.patient_timeline AS
WITH origin AS (
    -- definition study_day_origin: the models implement one origin, the start of blinatumomab
    -- cycle 1; any other value is refused rather than silently ignored
    SELECT
        CASE
            WHEN def_text('study_day_origin') = 'blinatumomab_cycle1_start' THEN 'blinatumomab'
            ELSE error(
                'definition study_day_origin = "' || def_text('study_day_origin')
                || '" is not implemented; the only origin is blinatumomab_cycle1_start'
            )
        END AS origin_treatment
),

cycle1 AS (
    SELECT
        t.patient_key,
        min(t.start_date) AS day0_date
    FROM staging.treatments AS t
    INNER JOIN origin ON t.treatment = origin.origin_treatment
    WHERE t.cycle = 1
    GROUP BY t.patient_key
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
