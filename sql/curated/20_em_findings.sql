-- Published per-finding EM table: coded site, assertion, evidence; no dates or report text.
CREATE OR REPLACE TABLE curated.em_findings AS
SELECT
    patient_key,
    study_day,
    site_group,
    icdo3,
    laterality,
    assertion,
    change,
    evidence_source,
    counts_as_present,
    finding_source
FROM harmonized.em_findings
ORDER BY ALL;

COMMENT ON TABLE curated.em_findings IS 'One row per extramedullary finding: a site mention in a report (with its assertion) or CSF CNS3.';
COMMENT ON COLUMN curated.em_findings.patient_key IS 'Pseudonymous patient key (keyed HMAC of site and MRN).';
COMMENT ON COLUMN curated.em_findings.study_day IS 'Report or CSF day relative to blinatumomab cycle 1 start (day 0).';
COMMENT ON COLUMN curated.em_findings.site_group IS 'EM site group (schemas/vocab/em_site_terms.csv), cns for CSF CNS3.';
COMMENT ON COLUMN curated.em_findings.icdo3 IS 'ICD-O-3 topography code of the site term.';
COMMENT ON COLUMN curated.em_findings.laterality IS 'left, right or bilateral when stated, else NULL.';
COMMENT ON COLUMN curated.em_findings.assertion IS 'present, absent (negated), possible, historical, resolved or hypothetical (ConText reading of the mention, docs/text.md).';
COMMENT ON COLUMN curated.em_findings.change IS 'Change since the prior study stated by the report for a present or possible finding: new, increased, decreased or stable; NULL when none is stated, for other assertions and for CSF (schemas/vocab/em_change_triggers.csv, docs/text.md).';
COMMENT ON COLUMN curated.em_findings.evidence_source IS 'pathology, csf, imaging or examination (schemas/vocab/em_evidence.csv).';
COMMENT ON COLUMN curated.em_findings.counts_as_present IS 'Asserted present and not overruled by better-ranked evidence of the same site and day.';
COMMENT ON COLUMN curated.em_findings.finding_source IS 'imaging (report text) or csf (CNS status from CSF counts).';
