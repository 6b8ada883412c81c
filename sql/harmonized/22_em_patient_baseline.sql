-- EM disease before and at the start of blinatumomab, per patient.
-- prior_em: a finding present, historical or resolved before day 0, or historical in a report
-- dated up to active_em_window_end_day. active_em_at_start: a site group active at start
-- (harmonized.em_start_sites: a finding counted present from active_em_window_start_day to
-- active_em_window_end_day).
CREATE OR REPLACE TABLE harmonized.em_patient_baseline AS
WITH prior_evidence AS (
    SELECT DISTINCT patient_key
    FROM harmonized.em_findings
    WHERE
        (
            study_day < 0
            AND (counts_as_present OR assertion IN ('historical', 'resolved'))
        )
        OR (assertion = 'historical' AND study_day <= def_num('active_em_window_end_day'))
),

active_evidence AS (
    -- the start-window rule lives in harmonized.em_start_sites
    SELECT
        patient_key,
        string_agg(DISTINCT site_group, ',' ORDER BY site_group) AS em_sites_at_start
    FROM harmonized.em_start_sites
    GROUP BY patient_key
)

SELECT
    t.patient_key,
    p.patient_key IS NOT NULL AS prior_em,
    a.patient_key IS NOT NULL AS active_em_at_start,
    a.em_sites_at_start
FROM harmonized.patient_timeline AS t
LEFT JOIN prior_evidence AS p ON t.patient_key = p.patient_key
LEFT JOIN active_evidence AS a ON t.patient_key = a.patient_key;
