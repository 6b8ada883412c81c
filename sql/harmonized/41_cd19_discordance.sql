-- CD19 discordance between an EM specimen (tissue or CSF) and a marrow specimen of the same
-- patient taken at most cd19_discordance_window_days apart (either order): one row per such
-- pair of classified specimens. CD19-negative EM disease beside a CD19-expressing marrow is the
-- escape pattern described after blinatumomab (domain.md section 4), so the kind of discordance
-- is kept, not only whether the classes differ.
CREATE OR REPLACE TABLE harmonized.cd19_discordance AS
WITH em_specimens AS (
    SELECT
        patient_key,
        study_day,
        specimen_type,
        cd19_class
    FROM harmonized.cd19_specimens
    WHERE specimen_type IN ('tissue', 'csf') AND cd19_class IS NOT NULL
),

marrow_specimens AS (
    SELECT
        patient_key,
        study_day,
        cd19_class
    FROM harmonized.cd19_specimens
    WHERE specimen_type = 'marrow' AND cd19_class IS NOT NULL
),

pairs AS (
    SELECT
        em.patient_key,
        em.study_day AS em_study_day,
        em.specimen_type AS em_specimen_type,
        em.cd19_class AS em_cd19_class,
        mw.study_day AS marrow_study_day,
        mw.cd19_class AS marrow_cd19_class,
        abs(em.study_day - mw.study_day) AS days_apart
    FROM em_specimens AS em
    INNER JOIN marrow_specimens AS mw
        ON
            em.patient_key = mw.patient_key
            AND abs(em.study_day - mw.study_day) <= def_num('cd19_discordance_window_days')
)

SELECT
    patient_key,
    em_study_day,
    em_specimen_type,
    em_cd19_class,
    marrow_study_day,
    marrow_cd19_class,
    days_apart::INTEGER AS days_apart,
    em_cd19_class <> marrow_cd19_class AS discordant,
    CASE
        WHEN em_cd19_class = marrow_cd19_class THEN NULL
        WHEN em_cd19_class = 'negative' THEN 'em_negative'
        WHEN marrow_cd19_class = 'negative' THEN 'marrow_negative'
        ELSE 'intensity'
    END AS discordance
FROM pairs;
