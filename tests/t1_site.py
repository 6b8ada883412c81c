"""The small patients-only site T1 several ingest tests deliver to: its source mapping (one
CSV entry, ISO dates) and its patients header, and the folders a test delivers into. One copy
here instead of one per test file."""

from pathlib import Path

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


def write_t1_landing(tmp_path: Path, mapping: str, files: dict[str, bytes]) -> tuple[Path, Path]:
    """A landing folder holding `files` (path relative to it -> bytes) and a sources folder
    holding `mapping` as its one source mapping: (landing, sources)."""
    landing, sources = tmp_path / "landing", tmp_path / "sources"
    sources.mkdir(parents=True)
    (sources / "t.yaml").write_text(mapping)
    for rel, data in files.items():
        path = landing / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return landing, sources
