-- Response category of each marrow assessment in the response window (day 1 to
-- response_window_end_day), by the named criteria: blasts above response_marrow_blasts_max_pct
-- or EM disease counted present from max(1, day - em_clear_lookback_days) to the day ->
-- refractory; missing counts -> NE; then CR, CRh, CRi, else hypoplastic.
CREATE OR REPLACE TABLE harmonized.assessment_response AS
WITH window_assessments AS (
    SELECT
        a.patient_key,
        a._source_file,
        a._source_row,
        a.marrow_blasts_pct,
        a.anc_10e9l,
        a.platelets_10e9l,
        a.mrd_pct,
        a.reported_response,
        date_diff('day', t.day0_date, a.assessment_date) AS study_day
    FROM staging.assessments AS a
    INNER JOIN harmonized.patient_timeline AS t ON a.patient_key = t.patient_key
    WHERE a.marrow_blasts_pct IS NOT NULL
),

in_window AS (
    SELECT *
    FROM window_assessments
    WHERE study_day BETWEEN 1 AND def_num('response_window_end_day')
),

em_active AS (
    SELECT DISTINCT
        w.patient_key,
        w.study_day
    FROM in_window AS w
    INNER JOIN harmonized.em_findings AS f
        ON
            w.patient_key = f.patient_key
            AND f.counts_as_present
            AND f.study_day BETWEEN greatest(1, w.study_day - def_num('em_clear_lookback_days')) AND w.study_day
)

SELECT
    w.patient_key,
    w.study_day,
    w.marrow_blasts_pct,
    w.anc_10e9l,
    w.platelets_10e9l,
    w.mrd_pct,
    w.reported_response,
    e.patient_key IS NULL AS em_clear,
    CASE
        WHEN w.marrow_blasts_pct > def_num('response_marrow_blasts_max_pct') OR e.patient_key IS NOT NULL
            THEN 'refractory'
        WHEN w.anc_10e9l IS NULL OR w.platelets_10e9l IS NULL THEN 'NE'
        WHEN w.anc_10e9l > def_num('cr_anc_min') AND w.platelets_10e9l > def_num('cr_platelets_min') THEN 'CR'
        WHEN w.anc_10e9l > def_num('crh_anc_min') AND w.platelets_10e9l > def_num('crh_platelets_min') THEN 'CRh'
        WHEN w.anc_10e9l > def_num('cr_anc_min') OR w.platelets_10e9l > def_num('cr_platelets_min') THEN 'CRi'
        ELSE 'hypoplastic'
    END AS category,
    w._source_file,
    w._source_row
FROM in_window AS w
LEFT JOIN em_active AS e ON w.patient_key = e.patient_key AND w.study_day = e.study_day;
