-- Response rate overall and by predictor, with the Wilson score 95% interval.
CREATE OR REPLACE VIEW endpoints.response_rates AS
WITH by_group AS (
    SELECT
        'overall' AS predictor,
        'all' AS level,
        responder
    FROM curated.patients
    UNION ALL
    SELECT
        'bm_blasts_gt50' AS predictor,
        bm_blasts_gt50::VARCHAR AS level,
        responder
    FROM curated.patients
    WHERE bm_blasts_gt50 IS NOT NULL
    UNION ALL
    SELECT
        'prior_em' AS predictor,
        prior_em::VARCHAR AS level,
        responder
    FROM curated.patients
    UNION ALL
    SELECT
        'active_em_at_start' AS predictor,
        active_em_at_start::VARCHAR AS level,
        responder
    FROM curated.patients
    UNION ALL
    SELECT
        'cd19_baseline' AS predictor,
        cd19_baseline AS level,
        responder
    FROM curated.patients
    WHERE cd19_baseline IS NOT NULL
),

counts AS (
    SELECT
        predictor,
        level,
        count(*) AS n,
        count(*) FILTER (WHERE responder) AS responders,
        1.959963984540054 AS z
    FROM by_group
    GROUP BY predictor, level
)

SELECT
    predictor,
    level,
    n::INTEGER AS n,
    responders::INTEGER AS responders,
    responders / n AS rate,
    greatest(0.0, (centre - half_width) / (1 + z * z / n)) AS ci_lower,
    least(1.0, (centre + half_width) / (1 + z * z / n)) AS ci_upper
FROM (
    SELECT
        *,
        responders / n + z * z / (2 * n) AS centre,
        z * sqrt(responders / n * (1 - responders / n) / n + z * z / (4 * n * n)) AS half_width
    FROM counts
) AS wilson
ORDER BY predictor, level;

COMMENT ON VIEW endpoints.response_rates IS 'Response (responder composite) overall and by predictor with Wilson 95% intervals.';
COMMENT ON COLUMN endpoints.response_rates.predictor IS 'overall, bm_blasts_gt50, prior_em, active_em_at_start or cd19_baseline.';
COMMENT ON COLUMN endpoints.response_rates.level IS 'Value of the predictor (all for overall).';
COMMENT ON COLUMN endpoints.response_rates.n IS 'Patients in the group.';
COMMENT ON COLUMN endpoints.response_rates.responders IS 'Responders in the group.';
COMMENT ON COLUMN endpoints.response_rates.rate IS 'responders / n.';
COMMENT ON COLUMN endpoints.response_rates.ci_lower IS 'Lower bound of the Wilson score 95% interval.';
COMMENT ON COLUMN endpoints.response_rates.ci_upper IS 'Upper bound of the Wilson score 95% interval.';
