"""The small patients-only site T1 several ingest tests deliver to: its source mapping (one
CSV entry, ISO dates) and its patients header. One copy here instead of one per test file."""

T1_PATIENTS_MAPPING = """
source: t_clinical
kind: clinical
site: T1
files:
  - table: patients
    glob: "clinical/T1/patients_*.csv"
    format: csv
    date_format: "%Y-%m-%d"
    columns: {mrn: MRN, patient_name: patient_name, birth_date: birth_date, sex: sex, diagnosis_date: diagnosis_date, ph_status: ph_status, prior_lines: prior_lines, prior_hct: prior_hct}
"""
T1_PATIENTS_HEADER = (
    "MRN,patient_name,birth_date,sex,diagnosis_date,ph_status,prior_lines,prior_hct\n"
)
