-- Failure patterns among refractory and among relapsed patients: EM involvement, pattern and
-- CD19 at failure among the evaluable (negative / dim / positive = moderate or strong).
-- Refractory = every non-responder, whatever the reason (failure_type, docs/derivations.md).
CREATE OR REPLACE VIEW endpoints.failure_patterns AS
WITH failures AS (
    SELECT
        'refractory' AS failure_group,
        *
    FROM curated.patients
    WHERE failure_type = 'refractory'
    UNION ALL
    SELECT
        'relapsed' AS failure_group,
        *
    FROM curated.patients
    WHERE relapsed
)

SELECT
    failure_group,
    count(*)::INTEGER AS n,
    count(*) FILTER (WHERE em_at_failure)::INTEGER AS em_at_failure,
    count(*) FILTER (WHERE failure_pattern = 'isolated_marrow')::INTEGER AS isolated_marrow,
    count(*) FILTER (WHERE failure_pattern = 'isolated_em')::INTEGER AS isolated_em,
    count(*) FILTER (WHERE failure_pattern = 'combined')::INTEGER AS combined,
    count(*) FILTER (WHERE failure_pattern = 'unclassified')::INTEGER AS unclassified,
    count(cd19_at_failure)::INTEGER AS cd19_evaluable,
    count(*) FILTER (WHERE cd19_at_failure = 'negative')::INTEGER AS cd19_negative,
    count(*) FILTER (WHERE cd19_at_failure = 'dim')::INTEGER AS cd19_dim,
    count(*) FILTER (WHERE cd19_at_failure IN ('moderate', 'strong'))::INTEGER AS cd19_positive
FROM failures
GROUP BY failure_group
ORDER BY failure_group;

COMMENT ON VIEW endpoints.failure_patterns IS 'Among refractory and among relapsed patients: EM at failure, failure pattern and CD19 at failure (percentages of evaluable = cd19_evaluable).';
COMMENT ON COLUMN endpoints.failure_patterns.failure_group IS 'refractory (every non-responder: refractory, hypoplastic, NE, CR_em_not_reassessed or response_not_sustained best response) or relapsed (responders who relapsed).';
COMMENT ON COLUMN endpoints.failure_patterns.n IS 'Patients in the group.';
COMMENT ON COLUMN endpoints.failure_patterns.em_at_failure IS 'Patients with new EM disease at failure (persistent baseline disease excluded).';
COMMENT ON COLUMN endpoints.failure_patterns.isolated_marrow IS 'Marrow only at failure.';
COMMENT ON COLUMN endpoints.failure_patterns.isolated_em IS 'EM only at failure.';
COMMENT ON COLUMN endpoints.failure_patterns.combined IS 'Marrow and EM at failure.';
COMMENT ON COLUMN endpoints.failure_patterns.unclassified IS 'Neither marrow (or blood) blasts nor new EM near the failure day (e.g. hypoplastic, not evaluable, persistent baseline EM).';
COMMENT ON COLUMN endpoints.failure_patterns.cd19_evaluable IS 'Patients with a CD19 class at failure.';
COMMENT ON COLUMN endpoints.failure_patterns.cd19_negative IS 'CD19 negative at failure.';
COMMENT ON COLUMN endpoints.failure_patterns.cd19_dim IS 'CD19 dim at failure.';
COMMENT ON COLUMN endpoints.failure_patterns.cd19_positive IS 'CD19 moderate or strong at failure.';
