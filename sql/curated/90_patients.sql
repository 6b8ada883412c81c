-- The analysis-ready table: one row per patient with a blinatumomab cycle 1 (ADSL-like).
-- Pseudonymous key, age in years and study days only: no identifier, no calendar date.
CREATE OR REPLACE TABLE curated.patients AS
WITH baseline_marrow AS (
    SELECT
        a.patient_key,
        arg_max(a.marrow_blasts_pct, a.assessment_date) AS bm_blasts_pct
    FROM staging.assessments AS a
    INNER JOIN harmonized.patient_timeline AS t ON a.patient_key = t.patient_key
    WHERE
        a.marrow_blasts_pct IS NOT NULL
        AND date_diff('day', t.day0_date, a.assessment_date)
        BETWEEN -def_num('baseline_marrow_window_days') AND 0
    GROUP BY a.patient_key
),

tte_wide AS (
    SELECT
        patient_key,
        max(aval_days) FILTER (WHERE param = 'OS') AS os_days,
        max(CASE WHEN cnsr = 0 THEN 1 ELSE 0 END) FILTER (WHERE param = 'OS') AS os_event,
        max(aval_days) FILTER (WHERE param = 'EFS') AS efs_days,
        max(CASE WHEN cnsr = 0 THEN 1 ELSE 0 END) FILTER (WHERE param = 'EFS') AS efs_event,
        max(aval_days) FILTER (WHERE param = 'RFS') AS rfs_days,
        max(CASE WHEN cnsr = 0 THEN 1 ELSE 0 END) FILTER (WHERE param = 'RFS') AS rfs_event
    FROM curated.time_to_event
    GROUP BY patient_key
)

SELECT
    t.patient_key,
    t.site,
    date_part('year', age(t.day0_date, p.birth_date))::INTEGER AS age_at_start,
    p.sex,
    p.ph_status,
    p.prior_hct,
    p.prior_lines::INTEGER AS prior_lines,
    bm.bm_blasts_pct,
    bm.bm_blasts_pct > def_num('bm_blasts_high_cutoff_pct') AS bm_blasts_gt50,
    em.prior_em,
    em.active_em_at_start,
    em.em_sites_at_start,
    cb.cd19_baseline,
    r.best_response,
    r.responder,
    r.response_source,
    r.response_day,
    r.mrd_negative,
    r.hct_in_cr,
    r.hct_day,
    r.relapsed,
    r.relapse_day,
    r.relapse_evidence,
    r.failure_type,
    r.failure_pattern,
    r.em_at_failure,
    cf.cd19_at_failure,
    t.death_date IS NOT NULL AS died,
    tte.os_days,
    tte.os_event,
    tte.efs_days,
    tte.efs_event,
    tte.rfs_days,
    tte.rfs_event
FROM harmonized.patient_timeline AS t
INNER JOIN staging.patients AS p ON t.patient_key = p.patient_key
LEFT JOIN baseline_marrow AS bm ON t.patient_key = bm.patient_key
LEFT JOIN harmonized.em_patient_baseline AS em ON t.patient_key = em.patient_key
LEFT JOIN harmonized.cd19_baseline AS cb ON t.patient_key = cb.patient_key
LEFT JOIN harmonized.patient_response AS r ON t.patient_key = r.patient_key
LEFT JOIN harmonized.cd19_at_failure AS cf ON t.patient_key = cf.patient_key
LEFT JOIN tte_wide AS tte ON t.patient_key = tte.patient_key
ORDER BY ALL;

COMMENT ON TABLE curated.patients IS 'One row per patient treated with blinatumomab: baseline, response, failure, transplant and survival (docs/derivations.md). Days are study days from cycle 1 start (day 0).';
COMMENT ON COLUMN curated.patients.patient_key IS 'Pseudonymous patient key: keyed HMAC-SHA256 of site and MRN.';
COMMENT ON COLUMN curated.patients.site IS 'Clinical site code.';
COMMENT ON COLUMN curated.patients.age_at_start IS 'Age in whole years at day 0.';
COMMENT ON COLUMN curated.patients.sex IS 'M, F or U.';
COMMENT ON COLUMN curated.patients.ph_status IS 'Philadelphia chromosome: positive, negative or unknown.';
COMMENT ON COLUMN curated.patients.prior_hct IS 'Allogeneic HCT before blinatumomab, as reported.';
COMMENT ON COLUMN curated.patients.prior_lines IS 'Lines of therapy before blinatumomab, as reported.';
COMMENT ON COLUMN curated.patients.bm_blasts_pct IS 'Baseline marrow blasts (%): latest value from day -baseline_marrow_window_days (28) to day 0.';
COMMENT ON COLUMN curated.patients.bm_blasts_gt50 IS 'bm_blasts_pct above bm_blasts_high_cutoff_pct (50); NULL without a baseline value.';
COMMENT ON COLUMN curated.patients.prior_em IS 'EM disease before day 0: a finding counted present, historical or resolved before day 0, a historical mention up to day active_em_window_end_day, or CSF CNS3 before day 0.';
COMMENT ON COLUMN curated.patients.active_em_at_start IS 'EM finding counted present (or CSF CNS3) from day active_em_window_start_day (-30) to active_em_window_end_day (7).';
COMMENT ON COLUMN curated.patients.em_sites_at_start IS 'Comma-separated EM site groups behind active_em_at_start; NULL when none.';
COMMENT ON COLUMN curated.patients.cd19_baseline IS 'CD19 class at baseline: classified marrow specimen closest before day 0 within cd19_baseline_window_days (60), else blood; NULL if none.';
COMMENT ON COLUMN curated.patients.best_response IS 'Best response over assessments from day 1 to response_window_end_day (84), derived from the counts or, when they do not suffice, the site label (response_source_precedence): CR > CRh > CRi > CR_em_not_reassessed (marrow remission, active EM at start not shown resolved) > hypoplastic > refractory > NE; NE without an assessment. response_not_sustained: a CR/CRh/CRi whose first relapse evidence came fewer than cr_min_duration_days (28) after the response day (BMT CTN/CIBMTR: CR lasting >= 4 weeks).';
COMMENT ON COLUMN curated.patients.responder IS 'best_response in responder_categories (default CR, CRh, CRi), plus CR_em_not_reassessed when em_not_reassessed_counts_as_response; never response_not_sustained.';
COMMENT ON COLUMN curated.patients.response_source IS 'Where best_response came from: derived (the counts), reported (the site label, counts missing) or none (no assessment).';
COMMENT ON COLUMN curated.patients.response_day IS 'First day an assessment met a responder category; NULL for non-responders.';
COMMENT ON COLUMN curated.patients.mrd_negative IS 'Responders: MRD below mrd_negative_below_pct (0.01%) on a window assessment in remission; FALSE if measured in remission and never below; NULL if not measured or not a responder.';
COMMENT ON COLUMN curated.patients.hct_in_cr IS 'Responders: allogeneic HCT after the response day and before any relapse; NULL for non-responders.';
COMMENT ON COLUMN curated.patients.hct_day IS 'Day of the first allogeneic HCT after day 0 (in or out of remission); NULL if none.';
COMMENT ON COLUMN curated.patients.relapsed IS 'Responders: relapse evidence after the response day (marrow blasts >= relapse_marrow_blasts_min_pct, circulating blasts, new EM, CSF CNS3) or a reported relapse; NULL for non-responders.';
COMMENT ON COLUMN curated.patients.relapse_day IS 'Day of the first relapse evidence after the response day.';
COMMENT ON COLUMN curated.patients.relapse_evidence IS 'Kinds of evidence dated on relapse_day, comma-separated in the order marrow, blood, cns3, em, reported; reported alone = the site reported it with no result showing it that day.';
COMMENT ON COLUMN curated.patients.failure_type IS 'refractory (every non-responder, whatever the reason), relapse (relapsed responder), NULL otherwise.';
COMMENT ON COLUMN curated.patients.failure_pattern IS 'At failure (first window assessment of a non-responder, or the relapse day): isolated_marrow, isolated_em, combined (marrow or circulating blasts / new EM within failure_em_window_days, 14), unclassified (neither, e.g. hypoplastic or persistent baseline EM), none without failure.';
COMMENT ON COLUMN curated.patients.em_at_failure IS 'New EM disease within failure_em_window_days (14) of the failure day: a finding counted present (or CSF CNS3) at a site not active at start, or shown clear since; persistent baseline disease does not count. NULL without a failure day.';
COMMENT ON COLUMN curated.patients.cd19_at_failure IS 'CD19 class of the classified specimen nearest the failure day within cd19_failure_window_days (30) either side of it, from day 1 on (equal distance: the one after; same day: marrow first); NULL if none.';
COMMENT ON COLUMN curated.patients.died IS 'A death was reported.';
COMMENT ON COLUMN curated.patients.os_days IS 'OS (endpoints.time_to_event): days from day 0 to death, or to last known alive.';
COMMENT ON COLUMN curated.patients.os_event IS 'OS: 1 death, 0 censored.';
COMMENT ON COLUMN curated.patients.efs_days IS 'EFS (ELN/TOWER template): evaluable non-responders an event on efs_nonresponse_event_day (0); not evaluable (NE) censored on efs_not_evaluable_censor_day (0) unless dead (death day); responders days to the first of relapse and death, else censored at the last response assessment (efs_responder_censor).';
COMMENT ON COLUMN curated.patients.efs_event IS 'EFS: 1 event, 0 censored.';
COMMENT ON COLUMN curated.patients.rfs_days IS 'RFS, responders only: days from the response day to relapse or death, else to last known alive; NULL for non-responders.';
COMMENT ON COLUMN curated.patients.rfs_event IS 'RFS: 1 relapse or death, 0 censored; NULL for non-responders.';
