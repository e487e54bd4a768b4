"""Guard rails on publishing (issue 9): floors keep the last good table, drift is flagged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline import io
from pipeline.params import Params, Publish
from pipeline.stages.publish import below_floors, drift, run


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


def test_a_null_threshold_is_never_published(default_run: Params, tmp_path: Path) -> None:
    """A run whose thresholds.json has no threshold (no policy found one) is rejected with the reason,
    both as a first run and after a good publication, which then stays."""
    models = tmp_path / "models"
    shutil.copytree(default_run.paths.models, models, ignore=shutil.ignore_patterns("published"))
    params = default_run.model_copy(update={"paths": default_run.paths.model_copy(update={"models": models})})
    published = models / "published"
    good = io.read_json(models / "thresholds.json")
    assert good["threshold"] is not None
    none = {**good, "threshold": None, "warning": "no policy finds a threshold on the training leads"}

    io.write_json(models / "thresholds.json", none)
    record = run(params)
    assert record["status"] == "rejected: nothing published yet"
    assert any("no MQL threshold" in r and "no policy finds a threshold" in r for r in record["reasons"])
    assert not (published / "thresholds.json").exists()
    assert io.read_json(published / "rejected" / "thresholds.json")["threshold"] is None

    io.write_json(models / "thresholds.json", good)
    assert run(params)["status"] == "published"
    kept = (published / "thresholds.json").read_bytes()
    io.write_json(models / "thresholds.json", none)
    record = run(params)
    assert record["status"] == "rejected: the previous publication stays"
    assert (published / "thresholds.json").read_bytes() == kept
    assert json.loads(kept)["threshold"] == good["threshold"]


def test_a_run_where_no_policy_finds_a_threshold_is_rejected_not_published(default_run: Params, tmp_path: Path) -> None:
    """thresholds -> publish end to end: no policy can leave min_mql_leads leads, so thresholds.json says so
    with every policy's reason and publish keeps nothing of it."""
    from pipeline.stages import thresholds

    models = tmp_path / "models"
    shutil.copytree(default_run.paths.models, models, ignore=shutil.ignore_patterns("published", "report", "charts"))
    leads = len(io.read_parquet(default_run.paths.features / "features.parquet", columns=["lead_id"]).drop_duplicates())
    params = default_run.model_copy(update={
        "paths": default_run.paths.model_copy(update={"models": models}),
        "thresholds": default_run.thresholds.model_copy(update={"min_mql_leads": leads + 1})})
    result = thresholds.run(params)
    assert result["threshold"] is None and result["fallback"] is None and result["capped_because"] is None
    assert all(entry["threshold"] is None for entry in result["policies"].values())
    assert f"fewer than {leads + 1} leads" in result["warning"] and "not published" in result["warning"]
    record = run(params)
    assert record["status"] == "rejected: nothing published yet"
    assert any(r.startswith("no MQL threshold") and f"fewer than {leads + 1} leads" in r for r in record["reasons"])
    assert not (models / "published" / "thresholds.json").exists()
