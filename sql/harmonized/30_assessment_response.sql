-- Response category of each assessment in the response window (day 1 to response_window_end_day)
-- that carries marrow blasts or a known site-reported response label (docs/derivations.md).
-- Derived from the counts: marrow blasts above response_marrow_blasts_max_pct, circulating blasts
-- above blood_blasts_max_pct (where delivered) or EM disease counted present from
-- max(1, day - em_clear_lookback_days) to the day -> refractory; missing ANC or platelets -> NE;
-- then CR, CRh, CRi, else hypoplastic. The site's label is used instead when the counts do not
-- suffice (response_source_precedence). A remission of a patient with active EM at start counts as
-- CR/CRh/CRi only when every EM site of the start was shown clear (harmonized.em_clearing_evidence:
-- reported absent or resolved, or CSF CNS1 for cns) on or before the day, with no EM counted
-- present since; otherwise the category is CR_em_not_reassessed (BMT CTN/ASH, domain.md section 2).
CREATE OR REPLACE TABLE harmonized.assessment_response AS
WITH assessments AS (
    SELECT
        a.patient_key,
        a._source_file,
        a._source_row,
        a.marrow_blasts_pct,
        a.blood_blasts_pct,
        a.anc_10e9l,
        a.platelets_10e9l,
        a.mrd_pct,
        a.reported_response,
        date_diff('day', t.day0_date, a.assessment_date) AS study_day
    FROM harmonized.assessments AS a
    INNER JOIN harmonized.patient_timeline AS t ON a.patient_key = t.patient_key
    WHERE
        a.marrow_blasts_pct IS NOT NULL
        OR a.reported_response IN ('CR', 'CRh', 'CRi', 'hypoplastic', 'refractory', 'relapse', 'NE')
),

in_window AS (
    SELECT *
    FROM assessments
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
),

start_sites AS (
    -- the EM site groups active at the start of blinatumomab
    SELECT
        patient_key,
        unnest(string_split(em_sites_at_start, ',')) AS site_group
    FROM harmonized.em_patient_baseline
    WHERE active_em_at_start
),

start_sites_not_cleared AS (
    -- per window assessment, start sites with no clearing evidence on or before the day that
    -- is not followed (same day included) by a finding counted present up to the day
    SELECT DISTINCT
        w.patient_key,
        w.study_day
    FROM in_window AS w
    INNER JOIN start_sites AS s ON w.patient_key = s.patient_key
    WHERE NOT EXISTS (
        SELECT 1
        FROM harmonized.em_clearing_evidence AS c
        WHERE
            c.patient_key = s.patient_key
            AND c.site_group = s.site_group
            AND c.study_day <= w.study_day
            AND NOT EXISTS (
                SELECT 1
                FROM harmonized.em_findings AS f
                WHERE
                    f.patient_key = c.patient_key
                    AND f.site_group = c.site_group
                    AND f.counts_as_present
                    AND f.study_day BETWEEN c.study_day AND w.study_day
            )
    )
),

derived AS (
    SELECT
        w.*,
        e.patient_key IS NULL AS em_clear,
        n.patient_key IS NULL AS em_reassessed,
        (
            w.marrow_blasts_pct IS NOT NULL
            AND (
                w.marrow_blasts_pct > def_num('response_marrow_blasts_max_pct')
                OR coalesce(w.blood_blasts_pct > def_num('blood_blasts_max_pct'), FALSE)
                OR (w.anc_10e9l IS NOT NULL AND w.platelets_10e9l IS NOT NULL)
            )
        ) AS counts_suffice,
        CASE
            WHEN w.marrow_blasts_pct IS NULL THEN NULL
            WHEN
                w.marrow_blasts_pct > def_num('response_marrow_blasts_max_pct')
                OR coalesce(w.blood_blasts_pct > def_num('blood_blasts_max_pct'), FALSE)
                THEN 'refractory'
            WHEN w.anc_10e9l IS NULL OR w.platelets_10e9l IS NULL THEN 'NE'
            WHEN w.anc_10e9l > def_num('cr_anc_min') AND w.platelets_10e9l > def_num('cr_platelets_min') THEN 'CR'
            WHEN w.anc_10e9l > def_num('crh_anc_min') AND w.platelets_10e9l > def_num('crh_platelets_min') THEN 'CRh'
            WHEN w.anc_10e9l > def_num('cr_anc_min') OR w.platelets_10e9l > def_num('cr_platelets_min') THEN 'CRi'
            ELSE 'hypoplastic'
        END AS counts_category,
        -- a reported relapse inside the window means the patient is not in remission; a label
        -- outside the contract's codes (kept with a warning) is not used
        CASE
            WHEN w.reported_response = 'relapse' THEN 'refractory'
            WHEN w.reported_response IN ('CR', 'CRh', 'CRi', 'hypoplastic', 'refractory', 'NE')
                THEN w.reported_response
        END AS reported_category
    FROM in_window AS w
    LEFT JOIN em_active AS e ON w.patient_key = e.patient_key AND w.study_day = e.study_day
    LEFT JOIN start_sites_not_cleared AS n ON w.patient_key = n.patient_key AND w.study_day = n.study_day
),

sourced AS (
    SELECT
        *,
        CASE def_text('response_source_precedence')
            WHEN 'derived_only' THEN CASE WHEN marrow_blasts_pct IS NOT NULL THEN 'derived' END
            WHEN 'reported_first'
                THEN CASE WHEN reported_category IS NOT NULL THEN 'reported' ELSE 'derived' END
            ELSE CASE
                WHEN counts_suffice THEN 'derived'
                WHEN reported_category IS NOT NULL THEN 'reported'
                ELSE 'derived'
            END
        END AS category_source
    FROM derived
),

marrow_level AS (
    SELECT
        *,
        CASE category_source WHEN 'reported' THEN reported_category ELSE counts_category END AS marrow_category
    FROM sourced
    WHERE category_source IS NOT NULL
)

SELECT
    patient_key,
    study_day,
    marrow_blasts_pct,
    blood_blasts_pct,
    anc_10e9l,
    platelets_10e9l,
    mrd_pct,
    reported_response,
    em_clear,
    em_reassessed,
    counts_suffice,
    counts_category,
    reported_category,
    category_source,
    marrow_category,
    CASE
        WHEN marrow_category = 'refractory' OR NOT em_clear THEN 'refractory'
        WHEN marrow_category IN ('CR', 'CRh', 'CRi') AND NOT em_reassessed THEN 'CR_em_not_reassessed'
        ELSE marrow_category
    END AS category,
    _source_file,
    _source_row
FROM marrow_level;
