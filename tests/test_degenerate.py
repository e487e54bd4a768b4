"""Degenerate data: the pipeline says what is wrong, never divides by zero, never publishes NaN."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.cli import STAGES, main
from pipeline.data.generate import write_sample
from pipeline.params import Params

from .conftest import params_in

PIPELINE = [name for name in STAGES if name != "generate"]


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("small_sample")
    write_sample(params_in(root, generate={"n_leads": 2500, "months": 12}))
    return root / "raw"


def _mutate(raw: Path, target: Path, change: str) -> None:
    shutil.copytree(raw, target)
    leads = pd.read_csv(target / "leads.csv")
    activities = pd.read_csv(target / "activities.csv")
    stages = pd.read_csv(target / "stages.csv")
    if change == "no_conversions":
        stages = stages[stages["stage"] != "customer"]
    elif change == "all_conversions":
        won = leads[["lead_id", "created_at"]].assign(stage="customer", amount=1000.0)
        won["entered_at"] = (pd.to_datetime(won["created_at"]) + pd.Timedelta(days=40)).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        stages = pd.concat([stages[stages["stage"] == "lead"], won[["lead_id", "stage", "entered_at", "amount"]]])
    elif change == "single_activity_type":
        activities = activities[activities["activity"] == "pricing_page_visit"]
    elif change == "one_cohort":
        month = pd.to_datetime(leads["created_at"]).dt.strftime("%Y-%m") == "2024-02"
        leads = leads[month]
        activities = activities[activities["lead_id"].isin(leads["lead_id"])]
        stages = stages[stages["lead_id"].isin(leads["lead_id"])]
    elif change == "signal_in_every_lead":
        everyone = leads[["lead_id", "created_at"]].assign(activity="cookie_banner_seen")
        everyone["occurred_at"] = (pd.to_datetime(everyone["created_at"]) + pd.Timedelta(hours=1)).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        activities = pd.concat([activities, everyone[["lead_id", "activity", "occurred_at"]]])
    leads.to_csv(target / "leads.csv", index=False)
    activities.to_csv(target / "activities.csv", index=False)
    stages.to_csv(target / "stages.csv", index=False)


def _no_nan_published(models: Path) -> None:
    for path in models.rglob("*"):
        if path.suffix == ".json":
            json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path}: {c} in a published file"))
        elif path.suffix == ".csv":
            frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
            if path.name == "salesforce_scoring.csv":  # grading rows move the grade and MQL rows hold the rule: no points
                frame = frame[frame["rule_type"].str.startswith(("scoring", "automation"))]
            numeric = frame.select_dtypes("number")
            assert not numeric.isin([math.inf, -math.inf]).any().any(), path
            for column in ("close_rate", "lift", "points", "leads", "customers"):
                if column in frame:
                    assert frame[column].notna().all(), (path, column)


@pytest.mark.parametrize("change, stops_at, message", [
    ("no_conversions", "close-rates", "none of the .* matured leads became a customer"),
    ("all_conversions", "weights", "training leads are all won"),
    ("single_activity_type", None, None),
    ("one_cohort", "train", "only one month of matured leads"),
    ("signal_in_every_lead", None, None),
])
def test_degenerate_history(small_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            change: str, stops_at: str | None, message: str | None) -> None:
    raw = tmp_path / "raw"
    _mutate(small_sample, raw, change)
    params: Params = params_in(tmp_path, train={"min_customers": 5, "min_leads": 50},
                               weights={"bootstrap_samples": 0}, thresholds={"bootstrap_samples": 20})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(json.loads(params.model_dump_json())))
    failed = None
    for stage in PIPELINE:
        code = main(["-q", "--params", str(path), stage])
        if code != 0:
            failed = stage
            break
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert failed == stops_at, err
    if message:
        import re

        assert re.search(message, err), err
        assert f"leadcal {stops_at}: error:" in err
        assert "Still available:" in err  # and what can still be used
    if params.paths.models.exists():
        _no_nan_published(params.paths.models)
    if change == "signal_in_every_lead":
        weights = pd.read_csv(params.paths.models / "weights.csv").set_index("signal")
        assert weights.loc["cookie_banner_seen", "points"] == 0
        assert weights.loc["cookie_banner_seen", "status"].startswith("same for every lead")
