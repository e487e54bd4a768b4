"""Guard rails on publishing (issue 9): floors keep the last good table, drift is flagged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline import io
from pipeline.params import Params, Publish
from pipeline.publish import below_floors, drift, run


def _payload(threshold: int, points: dict[str, int]) -> dict:
    return {"thresholds": {"threshold": threshold},
            "weights": {"signals": [{"signal": s, "points": p} for s, p in points.items()]}}


def test_drift_by_hand() -> None:
    limits = Publish(max_threshold_change=10, max_points_change=5)
    found = drift(_payload(40, {"demo_request": 80, "blog_read": 2}), _payload(55, {"demo_request": 70, "webinar": 9}), limits)
    assert found["threshold_move"] == 15
    assert found["signals_moved_more_than_limit"] == {"demo_request": -10, "webinar": 9}
    assert found["added_signals"] == ["webinar"] and found["removed_signals"] == ["blog_read"]
    assert len(found["flags"]) == 3 and "more than publish.max_threshold_change = 10" in found["flags"][0]
    assert drift(_payload(40, {"a": 1}), _payload(45, {"a": 3}), limits)["flags"] == []


def test_floors_by_hand() -> None:
    limits = Publish(min_points_auc=0.7, min_model_auc=0.6)
    good = {"model": {"mean": {"auc": 0.65}}, "points_table": {"mean": {"auc": 0.71}}}
    assert below_floors(good, limits) == []
    bad = {"model": {"mean": {"auc": 0.55}}, "points_table": {"mean": {"auc": 0.71}}}
    assert below_floors(bad, limits) == ["model held-out AUC 0.55 is below the floor 0.6 (params publish.min_model_auc)"]


def test_publish_cycle(default_run: Params, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(default_run.paths.models, models, ignore=shutil.ignore_patterns("published"))
    params = default_run.model_copy(update={"paths": default_run.paths.model_copy(update={"models": models})})
    published = models / "published"

    assert run(params)["drift"]["note"] == "first publication"
    first = {p.name: p.read_bytes() for p in published.iterdir() if p.is_file()}
    assert run(params)["status"] == "published"  # an identical candidate writes nothing
    assert {p.name: p.read_bytes() for p in published.iterdir() if p.is_file()} == first

    # a new run whose threshold jumps and whose top signal loses 40 points: published, flagged
    thresholds = io.read_json(models / "thresholds.json")
    io.write_json(models / "thresholds.json", {**thresholds, "threshold": thresholds["threshold"] + 30})
    weights = io.read_json(models / "weights.json")
    weights["signals"][0]["points"] -= 40
    io.write_json(models / "weights.json", weights)
    record = run(params)
    assert record["status"] == "published" and len(record["drift"]["flags"]) == 2
    assert json.loads((published / "thresholds.json").read_text())["threshold"] == thresholds["threshold"] + 30
    # the publication it replaced is kept beside it, for the drift notebook
    assert (published / "previous" / "weights.json").read_bytes() == first["weights.json"]
    assert (published / "previous" / "publication.json").read_bytes() == first["publication.json"]

    # a run below the floors: the last good publication stays, the candidate goes beside it
    good = {name: (published / name).read_bytes() for name in ("weights.csv", "weights.json", "thresholds.json")}
    io.write_json(models / "thresholds.json", {**thresholds, "threshold": 1})
    strict = params.model_copy(update={"publish": params.publish.model_copy(update={"min_points_auc": 0.99})})
    record = run(strict)
    assert record["status"].startswith("rejected") and "points_table held-out AUC" in record["reasons"][0]
    assert {name: (published / name).read_bytes() for name in good} == good
    assert json.loads((published / "rejected" / "thresholds.json").read_text())["threshold"] == 1
    assert io.read_json(published / "publication.json")["status"].startswith("rejected")

    # the next good run, identical to the last publication, clears the rejection
    io.write_json(models / "thresholds.json", json.loads(good["thresholds.json"]))
    record = run(params)
    assert record["status"] == "published" and not (published / "rejected").exists()
