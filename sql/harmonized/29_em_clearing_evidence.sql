-- EM clearing evidence: each day an EM site group was shown free of disease (BMT CTN/ASH: CR needs
-- no EM disease, EM response by imaging; NCCN: CNS remission = CNS1; domain.md sections 2 and 3):
-- a report finding asserting the site absent or resolved, or a CSF sample classified CNS1 (site
-- group cns). One rule, read by 30_assessment_response (a start site shown clear before a
-- remission) and 34_patient_response (a start site shown clear and back = new EM at failure).
CREATE OR REPLACE TABLE harmonized.em_clearing_evidence AS
WITH report_clearing AS (
    SELECT
        patient_key,
        site_group,
        study_day,
        assertion AS evidence,
        _source_file,
        _source_row
    FROM harmonized.em_findings
    WHERE assertion IN ('absent', 'resolved')
),

csf_clearing AS (
    SELECT
        patient_key,
        'cns' AS site_group,
        study_day,
        'csf_cns1' AS evidence,
        _source_file,
        _source_row
    FROM harmonized.cns_status
    WHERE cns_status = 'CNS1'
)

SELECT * FROM report_clearing
UNION ALL
SELECT * FROM csf_clearing;
