-- Best response, remission, transplant, relapse and failure per patient (docs/derivations.md).
-- Relapse = the first relapse evidence after the response day (harmonized.relapse_evidence),
-- with the kinds of evidence of that day. A response whose first relapse evidence comes fewer than
-- cr_min_duration_days after the response day is response_not_sustained, not a response (BMT
-- CTN/CIBMTR: CR lasting >= 4 weeks). Failure: every non-responder is refractory (whatever the
-- reason: refractory, hypoplastic, NE, CR_em_not_reassessed, response_not_sustained), failing on
-- the first window assessment (response_not_sustained: on the evidence day); a relapsed responder
-- fails on the relapse day. At failure: marrow involvement
-- (marrow blasts above the remission cut-off, at or above the relapse cut-off for a relapse, or
-- circulating blasts) and EM at failure = a new EM site (not active at start, or shown clear since
-- and back) or a start site reported increased (em_findings.change), never persistent baseline
-- disease otherwise; both within failure_em_window_days of the day.
CREATE OR REPLACE TABLE harmonized.patient_response AS
WITH base AS (
    SELECT
        b.*,
        t.day0_date
    FROM harmonized.best_response AS b
    INNER JOIN harmonized.patient_timeline AS t ON b.patient_key = t.patient_key
),

transplants AS (
    SELECT
        tr.patient_key,
        min(date_diff('day', d.day0_date, tr.start_date)) AS hct_day
    FROM staging.treatments AS tr
    INNER JOIN base AS d ON tr.patient_key = d.patient_key
    WHERE tr.treatment = 'allo_hct' AND tr.start_date > d.day0_date
    GROUP BY tr.patient_key
),

first_evidence_day AS (
    SELECT
        patient_key,
        min(study_day) AS relapse_day
    FROM harmonized.relapse_evidence
    GROUP BY patient_key
),

evidence_kinds AS (
    SELECT DISTINCT
        patient_key,
        study_day,
        evidence,
        evidence_order
    FROM harmonized.relapse_evidence
),

relapses AS (
    SELECT
        d.patient_key,
        d.relapse_day,
        string_agg(e.evidence, ',' ORDER BY e.evidence_order) AS relapse_evidence
    FROM first_evidence_day AS d
    INNER JOIN evidence_kinds AS e
        ON d.patient_key = e.patient_key AND d.relapse_day = e.study_day
    GROUP BY d.patient_key, d.relapse_day
),

judged AS (
    -- CR lasting >= 4 weeks (BMT CTN/ASBMT, CIBMTR; domain.md section 2): a response whose first
    -- relapse evidence comes fewer than cr_min_duration_days after the response day is not
    -- sustained: best response response_not_sustained, not a response, failing (refractory) on
    -- that evidence day. 0 = not required. Death without relapse evidence does not break it.
    SELECT
        d.*,
        r.relapse_day AS evidence_day,
        r.relapse_evidence AS evidence_kinds,
        coalesce(
            d.responder AND r.relapse_day - d.response_day < def_num('cr_min_duration_days'), FALSE
        ) AS not_sustained
    FROM base AS d
    LEFT JOIN relapses AS r ON d.patient_key = r.patient_key
),

sustained AS (
    SELECT
        patient_key,
        day0_date,
        CASE WHEN not_sustained THEN 'response_not_sustained' ELSE best_response END AS best_response,
        responder AND NOT not_sustained AS responder,
        response_source,
        CASE WHEN NOT not_sustained THEN response_day END AS response_day,
        CASE WHEN NOT not_sustained THEN mrd_negative END AS mrd_negative,
        CASE WHEN not_sustained THEN evidence_day ELSE first_failure_day END AS first_failure_day,
        CASE WHEN responder AND NOT not_sustained THEN evidence_day END AS relapse_day,
        CASE WHEN responder AND NOT not_sustained THEN evidence_kinds END AS relapse_evidence,
        -- the failure is shown by relapse evidence (relapse, or a response not sustained): the
        -- marrow at failure is read with the relapse cut-off
        responder AND evidence_day IS NOT NULL AS failed_on_relapse_evidence
    FROM judged
),

outcomes_joined AS (
    SELECT
        d.*,
        h.hct_day,
        CASE WHEN NOT d.responder THEN d.first_failure_day ELSE d.relapse_day END AS failure_day,
        CASE
            WHEN NOT d.responder THEN 'refractory'
            WHEN d.relapse_day IS NOT NULL THEN 'relapse'
        END AS failure_type
    FROM sustained AS d
    LEFT JOIN transplants AS h ON d.patient_key = h.patient_key
),

marrow_failure AS (
    SELECT DISTINCT o.patient_key
    FROM outcomes_joined AS o
    INNER JOIN staging.assessments AS a ON o.patient_key = a.patient_key
    WHERE
        o.failure_day IS NOT NULL
        AND abs(date_diff('day', o.day0_date, a.assessment_date) - o.failure_day)
        <= def_num('failure_em_window_days')
        AND (
            CASE
                WHEN o.failed_on_relapse_evidence
                    THEN a.marrow_blasts_pct >= def_num('relapse_marrow_blasts_min_pct')
                ELSE a.marrow_blasts_pct > def_num('response_marrow_blasts_max_pct')
            END
            OR a.blood_blasts_pct > def_num('blood_blasts_max_pct')
        )
),

start_sites AS (
    -- EM sites active at start with their last day counted present there
    SELECT
        patient_key,
        site_group,
        last_start_day
    FROM harmonized.em_start_sites
),

em_near_failure AS (
    SELECT
        o.patient_key,
        f.site_group,
        f.study_day,
        f.change
    FROM outcomes_joined AS o
    INNER JOIN harmonized.em_findings AS f ON o.patient_key = f.patient_key
    WHERE
        o.failure_day IS NOT NULL
        AND f.counts_as_present
        AND abs(f.study_day - o.failure_day) <= def_num('failure_em_window_days')
),

em_failure AS (
    -- new EM: a site not active at start, or a start site shown clear after its last finding of
    -- the start window and before this finding; or a documented increase: a start site whose
    -- finding near failure is reported increased (BMT CTN PD: new EM disease or a rise in EM
    -- burden). Persistent start disease (stable, decreased or no change stated) does not count.
    SELECT DISTINCT n.patient_key
    FROM em_near_failure AS n
    LEFT JOIN start_sites AS s ON n.patient_key = s.patient_key AND n.site_group = s.site_group
    WHERE
        s.patient_key IS NULL
        OR n.change = 'increased'
        OR EXISTS (
            SELECT 1
            FROM harmonized.em_clearing_evidence AS c
            WHERE
                c.patient_key = n.patient_key
                AND c.site_group = n.site_group
                AND c.study_day > s.last_start_day
                AND c.study_day < n.study_day
        )
)

SELECT
    o.patient_key,
    o.best_response,
    o.responder,
    o.response_source,
    o.response_day,
    o.mrd_negative,
    o.hct_day,
    CASE
        WHEN NOT o.responder THEN NULL
        ELSE coalesce(
            o.hct_day > o.response_day AND (o.relapse_day IS NULL OR o.hct_day < o.relapse_day), FALSE
        )
    END AS hct_in_cr,
    CASE WHEN o.responder THEN o.relapse_day IS NOT NULL END AS relapsed,
    o.relapse_day,
    o.relapse_evidence,
    o.failure_day,
    o.failure_type,
    CASE WHEN o.failure_day IS NOT NULL THEN m.patient_key IS NOT NULL END AS marrow_at_failure,
    CASE WHEN o.failure_day IS NOT NULL THEN e.patient_key IS NOT NULL END AS em_at_failure,
    CASE
        WHEN o.failure_type IS NULL THEN 'none'
        WHEN m.patient_key IS NOT NULL AND e.patient_key IS NOT NULL THEN 'combined'
        WHEN e.patient_key IS NOT NULL THEN 'isolated_em'
        WHEN m.patient_key IS NOT NULL THEN 'isolated_marrow'
        ELSE 'unclassified'
    END AS failure_pattern
FROM outcomes_joined AS o
LEFT JOIN marrow_failure AS m ON o.patient_key = m.patient_key
LEFT JOIN em_failure AS e ON o.patient_key = e.patient_key;
