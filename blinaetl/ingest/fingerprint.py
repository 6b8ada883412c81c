"""Fingerprint of a run's inputs, to skip runs whose landing files and definitions did not change."""

from __future__ import annotations

import hashlib
import json

from blinaetl.config import RunConfig
from blinaetl.ingest.limits import file_sha256
from blinaetl.ingest.sources import resolve_sources_dir
from blinaetl.warehouse import models


def inputs_fingerprint(cfg: RunConfig) -> str:
    """Hash of every landing file's path and bytes, the source mappings, the definitions in
    force and the mode."""
    digest = hashlib.sha256()
    root = cfg.landing.resolve()
    inside = (p for p in cfg.landing.rglob("*") if p.resolve().is_relative_to(root))
    for path in sorted(p for p in inside if p.is_file()):  # links out of the folder: never read
        digest.update(path.relative_to(cfg.landing).as_posix().encode())
        digest.update(bytes.fromhex(file_sha256(path)))
    for path in sorted(resolve_sources_dir(cfg.sources_dir).glob("*.yaml")):
        digest.update(path.name.encode())
        digest.update(bytes.fromhex(file_sha256(path)))
    settings = {
        "definitions": models.load_definitions(overrides=cfg.definitions),
        "date_shift": cfg.date_shift,
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def unchanged_since_last_run(cfg: RunConfig) -> str | None:
    """Run id of the latest published run with the same inputs, if the analytics file exists."""
    if not cfg.analytics_path.exists() or not cfg.reports.is_dir():
        return None
    # the latest run that published (a run refused by the publish gate changed nothing)
    manifests = [json.loads(p.read_text()) for p in sorted(cfg.reports.glob("*/manifest.json"))]
    manifests = [m for m in manifests if m.get("published", True)]
    if not manifests:
        return None
    last = manifests[-1]
    return last["run_id"] if last.get("inputs_fingerprint") == inputs_fingerprint(cfg) else None
