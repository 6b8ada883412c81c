-- EM-versus-marrow CD19 discordance in the cohort, by patient and by specimen pair; the window
-- is the run's definition, read here so the report prints the one that built the pairs.
CREATE OR REPLACE VIEW endpoints.cd19_discordance_summary AS
WITH patient_flags AS (
    SELECT
        patient_key,
        count(*) AS pairs,
        count(*) FILTER (WHERE discordant) AS pairs_discordant,
        bool_or(discordant) AS any_discordant,
        bool_or(discordance = 'em_negative') AS any_em_negative,
        bool_or(discordance = 'marrow_negative') AS any_marrow_negative
    FROM curated.cd19_discordance
    GROUP BY patient_key
)

SELECT
    def_num('cd19_discordance_window_days')::INTEGER AS window_days,
    count(*)::INTEGER AS patients_paired,
    count(*) FILTER (WHERE any_discordant)::INTEGER AS patients_discordant,
    count(*) FILTER (WHERE any_em_negative)::INTEGER AS patients_em_negative,
    count(*) FILTER (WHERE any_marrow_negative)::INTEGER AS patients_marrow_negative,
    coalesce(sum(pairs), 0)::INTEGER AS pairs,
    coalesce(sum(pairs_discordant), 0)::INTEGER AS pairs_discordant
FROM patient_flags;

COMMENT ON VIEW endpoints.cd19_discordance_summary IS 'One row: patients and specimen pairs with an EM specimen (tissue or CSF) and a marrow specimen at most window_days apart, and how many of them are CD19-discordant (curated.cd19_discordance).';
COMMENT ON COLUMN endpoints.cd19_discordance_summary.window_days IS 'cd19_discordance_window_days of the run: the most days between the EM and the marrow collection of a pair.';
COMMENT ON COLUMN endpoints.cd19_discordance_summary.patients_paired IS 'Patients with at least one EM-marrow pair of classified specimens.';
COMMENT ON COLUMN endpoints.cd19_discordance_summary.patients_discordant IS 'Of those, patients with at least one pair whose CD19 classes differ.';
COMMENT ON COLUMN endpoints.cd19_discordance_summary.patients_em_negative IS 'Of those, patients with at least one CD19-negative EM specimen beside a CD19-expressing marrow (EM escape).';
COMMENT ON COLUMN endpoints.cd19_discordance_summary.patients_marrow_negative IS 'Of those, patients with at least one CD19-negative marrow beside a CD19-expressing EM specimen.';
COMMENT ON COLUMN endpoints.cd19_discordance_summary.pairs IS 'EM-marrow specimen pairs (a specimen may be in several pairs).';
COMMENT ON COLUMN endpoints.cd19_discordance_summary.pairs_discordant IS 'Pairs whose CD19 classes differ.';
