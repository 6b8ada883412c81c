"""GX Data Docs open offline (issue 18): every page is one self-contained file, makes no outside
request in headless Chromium with the network disabled, and carries no data context id."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from blinaetl.reports.gx import validate_frame

from .test_browser import FLAGS, chromium  # noqa: F401  (the fixture installs Chromium if needed)

pytestmark = pytest.mark.browser


def outside_requests(chromium_path: str, page: Path, tmp: Path) -> tuple[list[str], str]:
    """URLs the page itself asked for over the network, and its DOM after loading.

    The network is disabled (every host name resolves to nothing) and Chromium writes a net log;
    a request counts when it was made for the page (its isolation key is the file:// origin), so
    the browser's own background calls are not counted.
    """
    log = tmp / f"{page.stem}.netlog.json"
    out = subprocess.run(
        [
            chromium_path,
            *FLAGS,
            f"--user-data-dir={tmp / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--log-net-log={log}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    events = json.loads(log.read_text())["events"]
    urls = {
        e["params"]["url"]
        for e in events
        if "url" in e.get("params", {})
        and str(e["params"].get("network_isolation_key", "")).startswith("file://")
        and not str(e["params"]["url"]).startswith(("file:", "data:"))
    }
    return sorted(urls), out.stdout


def test_the_counter_sees_outside_requests(chromium, tmp_path):  # noqa: F811
    page = tmp_path / "hostile.html"
    page.write_text(
        '<!doctype html><html><body><img src="http://example.invalid/x.png">'
        '<script src="https://cdn.example.invalid/x.js"></script><p>x</p></body></html>'
    )
    urls, _ = outside_requests(chromium, page, tmp_path)
    assert urls == ["http://example.invalid/x.png", "https://cdn.example.invalid/x.js"]


@pytest.fixture(scope="module")
def data_docs(tmp_path_factory) -> Path:
    """Data Docs of the committed checkpoint on a small hand-made cohort table."""
    frame = pd.DataFrame(
        {
            "patient_key": ["k1", "k2", "k3", "k4"],
            "best_response": ["CR", "refractory", "CRh", "NE"],
            "cd19_baseline": ["strong", "dim", "negative", "moderate"],
            "cd19_at_failure": [None, "negative", None, "dim"],
            "bm_blasts_pct": [40.0, 80.0, 12.0, 55.0],
            "responder_num": [1, 0, 1, 0],
            "os_days": [400, 90, 700, 30],
            "efs_days": [300, 20, 650, 30],
            "rfs_days": [250, None, 600, None],
            "response_day": [29, None, 43, None],
            "age_at_start": [34, 61, 19, 45],
            "failure_pattern": ["none", "isolated_marrow", "none", "combined"],
            "sex": ["F", "M", "F", "U"],
            "ph_status": ["negative", "positive", "unknown", "negative"],
        }
    )
    out = tmp_path_factory.mktemp("gx_docs")
    result = validate_frame(frame, out)
    assert result["data_docs"], "Data Docs were written"
    return out / "data_docs"


def test_data_docs_pages_make_no_outside_request(chromium, data_docs, tmp_path):  # noqa: F811
    pages = sorted(data_docs.rglob("*.html"))
    assert len(pages) >= 3, pages  # index, the suite, one validation result
    for page in pages:
        urls, dom = outside_requests(chromium, page, tmp_path)
        assert urls == [], (page.name, urls)
        assert "<style>" in dom, "styles inlined"
    index_dom = outside_requests(chromium, data_docs / "index.html", tmp_path)[1]
    assert "curated_patients_cohort" in index_dom.split("<tbody>", 1)[-1], (
        "the index lists are filled without a script"
    )


def test_data_docs_are_single_files_without_scripts_or_identifier(data_docs):
    assert not (data_docs / "static").exists(), "no fonts, images or styles beside the pages"
    for page in data_docs.rglob("*.html"):
        text = page.read_text()
        assert "<script" not in text.lower(), page.name
        assert "dataContextId" not in text and "amazonaws" not in text, page.name
        assert "<link" not in text.lower(), page.name
        assert "@font-face" not in text and "static/" not in text, page.name
