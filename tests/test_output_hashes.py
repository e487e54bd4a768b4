"""scripts/output_hashes.py: the check that a refactor changes no output must see every change."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("output_hashes", REPO / "scripts" / "output_hashes.py")
output_hashes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(output_hashes)


def test_a_changed_added_or_missing_artifact_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "params.yaml"
    config.write_text(json.dumps({"paths": {"sample": "raw", "raw": "raw", "extracted": "data/extracted",
                                            "features": "data/features", "models": "models"}}))
    (tmp_path / "models" / "exports").mkdir(parents=True)
    (tmp_path / "data" / "features").mkdir(parents=True)
    (tmp_path / "models" / "exports" / "weights.csv").write_text("signal,points\ndemo,40\n")
    (tmp_path / "data" / "features" / "features.parquet").write_bytes(b"PAR1")
    (tmp_path / "models" / ".leadcal-lock").write_text("4242")  # a lock holds the run's process id: not an output
    before = output_hashes.hashes(config)
    assert set(before) == {"models/exports/weights.csv", "data/features/features.parquet"}
    assert output_hashes.differences(output_hashes.hashes(config), before) == []
    (tmp_path / "models" / "exports" / "weights.csv").write_text("signal,points\ndemo,41\n")
    (tmp_path / "models" / "new.json").write_text("{}")
    (tmp_path / "data" / "features" / "features.parquet").unlink()
    assert output_hashes.differences(output_hashes.hashes(config), before) == [
        "+ models/new.json", "- data/features/features.parquet", "~ models/exports/weights.csv"]
