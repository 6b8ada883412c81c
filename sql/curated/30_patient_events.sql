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

last_known AS (
    SELECT
        patient_key,
        max(study_day) AS study_day
    FROM (
        SELECT
            o.patient_key,
            date_diff('day', t.day0_date, o.event_date) AS study_day
        FROM staging.outcomes AS o
        INNER JOIN harmonized.patient_timeline AS t ON o.patient_key = t.patient_key
        UNION ALL
        SELECT
            a.patient_key,
            date_diff('day', t.day0_date, a.assessment_date) AS study_day
        FROM staging.assessments AS a
        INNER JOIN harmonized.patient_timeline AS t ON a.patient_key = t.patient_key
        UNION ALL
        SELECT
            tr.patient_key,
            date_diff('day', t.day0_date, tr.start_date) AS study_day
        FROM staging.treatments AS tr
        INNER JOIN harmonized.patient_timeline AS t ON tr.patient_key = t.patient_key
    ) AS known_days
    GROUP BY patient_key
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
ORDER BY patient_key, source;

COMMENT ON TABLE curated.patient_events IS 'Candidate days per patient by source (study_start, response, nonresponse, relapse, death, last_contact) for the time-to-event parameters.';
COMMENT ON COLUMN curated.patient_events.patient_key IS 'Pseudonymous patient key (keyed HMAC of site and MRN).';
COMMENT ON COLUMN curated.patient_events.source IS 'Source name as used in curated.tte_sources.';
COMMENT ON COLUMN curated.patient_events.study_day IS 'Day of the source event relative to blinatumomab cycle 1 start (day 0); last_contact is the latest day the patient is known alive or seen.';
