-- EM site groups active at the start of blinatumomab, per patient: a finding counted present
-- (harmonized.em_findings, CSF CNS3 as site group cns) from active_em_window_start_day to
-- active_em_window_end_day, with the first and last such day. The one place of the start-window
-- rule: read by 22_em_patient_baseline (active_em_at_start, em_sites_at_start) and
-- 34_patient_response (a start site shown clear after its last start day and back is new EM).
CREATE OR REPLACE TABLE harmonized.em_start_sites AS
SELECT
    patient_key,
    site_group,
    min(study_day) AS first_start_day,
    max(study_day) AS last_start_day
FROM harmonized.em_findings
WHERE
    counts_as_present
    AND study_day BETWEEN def_num('active_em_window_start_day') AND def_num('active_em_window_end_day')
GROUP BY patient_key, site_group;
