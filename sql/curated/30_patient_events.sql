-- Candidate event and censoring days per patient, by named source: the inputs of the
-- declarative time-to-event parameters (curated.tte_sources).
CREATE OR REPLACE TABLE curated.patient_events AS
WITH deaths AS (
    SELECT
        t.patient_key,
        date_diff('day', t.day0_date, t.death_date) AS study_day
    FROM harmonized.patient_timeline AS t
    WHERE t.death_date IS NOT NULL
),

known_dates AS (
    -- the latest date per patient over outcomes, assessments and treatment starts (one
    -- aggregate, then one join to the timeline)
    SELECT
        patient_key,
        max(known_date) AS last_date
    FROM (
        SELECT
            patient_key,
            event_date AS known_date
        FROM staging.outcomes
        UNION ALL
        SELECT
            patient_key,
            assessment_date AS known_date
        FROM staging.assessments
        UNION ALL
        SELECT
            patient_key,
            start_date AS known_date
        FROM staging.treatments
    ) AS all_dates
    GROUP BY patient_key
),

last_known AS (
    SELECT
        k.patient_key,
        date_diff('day', t.day0_date, k.last_date) AS study_day
    FROM known_dates AS k
    INNER JOIN harmonized.patient_timeline AS t ON k.patient_key = t.patient_key
)

SELECT
    patient_key,
    'study_start' AS source,
    0 AS study_day
FROM harmonized.patient_timeline
UNION ALL
SELECT
    patient_key,
    'response' AS source,
    response_day AS study_day
FROM harmonized.patient_response
WHERE responder
UNION ALL
SELECT
    patient_key,
    'nonresponse' AS source,
    def_num('efs_nonresponse_event_day')::INTEGER AS study_day
FROM harmonized.patient_response
WHERE NOT responder
UNION ALL
SELECT
    patient_key,
    'relapse' AS source,
    relapse_day AS study_day
FROM harmonized.patient_response
WHERE relapsed
UNION ALL
SELECT
    patient_key,
    'death' AS source,
    study_day
FROM deaths
UNION ALL
SELECT
    patient_key,
    'last_contact' AS source,
    study_day
FROM last_known
ORDER BY ALL;

COMMENT ON TABLE curated.patient_events IS 'Candidate days per patient by source (study_start, response, nonresponse, relapse, death, last_contact) for the time-to-event parameters.';
COMMENT ON COLUMN curated.patient_events.patient_key IS 'Pseudonymous patient key (keyed HMAC of site and MRN).';
COMMENT ON COLUMN curated.patient_events.source IS 'Source name as used in curated.tte_sources.';
COMMENT ON COLUMN curated.patient_events.study_day IS 'Day of the source event relative to blinatumomab cycle 1 start (day 0); last_contact is the latest day the patient is known alive or seen.';
