"""One-row-per-lead exports read without code: blank counts, category and number columns,
placeholders, an outcome flag, and snapshot mode when the export has no dates.

Each case is a sheet small enough to check by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.design import SNAPSHOT, SNAPSHOT_COHORT
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.stages.extract import extract
from pipeline.stages.mode import effective_params
from tests.conftest import params_in, run_stages

SHEET = (
    "Prospect ID,Lead Source,Converted,TotalVisits,Time On Site,Last Activity,Do Not Email,Specialization\n"
    "a,Google,1,3,120.5,Email Opened,No,Finance\n"
    "b,Select,0,,,SMS Sent,Yes,Select\n"
    "c,Reference,1,0,30,,No,\n"
    "d,google ,0,2,0,Email Opened,No,Select\n"
    "e,Google,maybe,1,5,SMS Sent,No,Finance\n"
)
SOURCE = {
    "leads": {"path": "leads.csv", "columns": {"lead_id": "Prospect ID"}},
    "outcome": {"column": "Converted", "won": [1], "lost": [0]},
    "missing_values": ["Select"],
    "wide": {"activities": [
        {"column": "TotalVisits", "activity": "website_visit", "kind": "count"},
        {"column": "Last Activity", "kind": "category"},
        {"column": "Do Not Email", "activity": "do_not_email", "kind": "flag"},
        {"column": "Time On Site", "activity": "time_on_site", "kind": "number"},
    ]},
}
SIGNALS = {"fit_attributes": ["Lead Source", "SPECIALIZATION ", "time_on_site"],
           "numeric_bins": {"time_on_site": [0, 60]}}


def _params(tmp_path: Path, sheet: str = SHEET, source: dict | None = None, signals: dict | None = None) -> Params:
    (tmp_path / "raw").mkdir(exist_ok=True)
    (tmp_path / "raw" / "leads.csv").write_text(sheet)
    return params_in(tmp_path, source=source or SOURCE, signals=signals or SIGNALS)


def test_snapshot_sheet_becomes_leads_events_and_outcomes(tmp_path: Path) -> None:
    params = _params(tmp_path)
    report = extract(params)
    leads = io.read_parquet(params.paths.extracted / "leads.parquet")
    events = io.read_parquet(params.paths.extracted / "activities.parquet")
    stages = io.read_parquet(params.paths.extracted / "stages.parquet")

    assert report["mode"] == SNAPSHOT
    # 'maybe' is neither won nor lost: a lead still open, left out of a snapshot
    assert leads["lead_id"].tolist() == ["a", "b", "c", "d"]
    assert report["normalisation"]["outcome"]["open_leads_left_out"] == 1
    assert sorted(zip(stages["lead_id"], stages["stage"])) == [("a", "customer"), ("b", "lost"), ("c", "customer"),
                                                               ("d", "lost")]
    # placeholders are blank: 'Select' is no category; attribute names matched ignoring case and spaces
    assert leads["lead source"][0] == "google" and leads["lead source"][3] == "google"
    assert pd.isna(leads["lead source"][1])
    assert leads["specialization"].isna().tolist() == [False, True, True, True]
    # a number column is a numeric attribute (blank: missing), not events
    assert leads["time_on_site"].tolist()[0] == pytest.approx(120.5) and np.isnan(leads["time_on_site"][1])
    counted = events.groupby(["lead_id", "activity"]).size().to_dict()
    assert counted == {
        ("a", "website_visit"): 3, ("a", "email_opened"): 1,
        ("b", "sms_sent"): 1, ("b", "do_not_email"): 1,  # b's blank visit count is 0 visits, not an error
        ("d", "website_visit"): 2, ("d", "email_opened"): 1,
    }
    assert report["normalisation"]["leads"]["placeholders_blanked"] == {"lead source": 1, "specialization": 2}


def test_category_kind_with_a_prefix(tmp_path: Path) -> None:
    source = {**SOURCE, "wide": {"activities": [{"column": "Last Activity", "activity": "Last", "kind": "category"}]}}
    params = _params(tmp_path, source=source, signals={"fit_attributes": ["lead source"], "numeric_bins": {}})
    extract(params)
    events = io.read_parquet(params.paths.extracted / "activities.parquet")
    assert sorted(set(events["activity"])) == ["last_email_opened", "last_sms_sent"]


def test_number_column_must_be_banded(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="number column 'Time On Site' becomes the attribute 'time_on_site'"):
        _params(tmp_path, signals={"fit_attributes": ["lead source"], "numeric_bins": {}})


def test_fractional_count_points_to_number(tmp_path: Path) -> None:
    params = _params(tmp_path, sheet=SHEET.replace("a,Google,1,3,", "a,Google,1,2.5,"))
    with pytest.raises(LeadcalError, match=r"column 'totalvisits'.*fractions.*kind: number.*line 2: '2.5'"):
        extract(params)


def test_dated_outcome_column(tmp_path: Path) -> None:
    """With a creation date and the outcome's date, a flag export stays a dated history."""
    sheet = ("id,created,won,won on,visits\n"
             "a,2024-01-01,Yes,2024-01-20,2\n"
             "b,2024-01-02,No,,1\n"
             "c,2024-01-03,,,\n")
    source = {"leads": {"path": "leads.csv", "columns": {"lead_id": "id", "created_at": "created"}},
              "outcome": {"column": "won", "won": [True], "lost": [False], "date_column": "won on"},
              "wide": {"activities": [{"column": "visits", "activity": "website_visit"}]}}
    params = _params(tmp_path, sheet=sheet, source=source, signals={"fit_attributes": [], "numeric_bins": {}})
    report = extract(params)
    stages = io.read_parquet(params.paths.extracted / "stages.parquet")
    assert report["mode"] == "dated"
    # a's win at its date; b lost without a date stays open until its horizon; c is open
    assert list(zip(stages["lead_id"], stages["stage"], stages["entered_at"].dt.strftime("%Y-%m-%d"))) == [
        ("a", "customer", "2024-01-20")]
    assert len(io.read_parquet(params.paths.extracted / "leads.parquet")) == 3


def test_undated_outcome_with_creation_dates_is_a_snapshot(tmp_path: Path) -> None:
    sheet = "id,created,converted,visits\na,2024-01-01,1,1\nb,2024-01-02,0,2\n"
    source = {"leads": {"path": "leads.csv", "columns": {"lead_id": "id", "created_at": "created"}},
              "outcome": {"column": "converted"}, "wide": {"activities": [{"column": "visits", "activity": "visit"}]}}
    params = _params(tmp_path, sheet=sheet, source=source, signals={"fit_attributes": [], "numeric_bins": {}})
    report = extract(params)
    assert report["mode"] == SNAPSHOT and "created_at_ignored" in report["normalisation"]


def test_snapshot_refuses_a_dated_event_log(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "events.csv").write_text("id,what,when\na,email_open,2024-01-01\n")
    source = {**SOURCE, "activities": {"path": "events.csv", "columns": {"lead_id": "id", "activity": "what",
                                                                           "occurred_at": "when"}}}
    params = _params(tmp_path, source=source)
    with pytest.raises(LeadcalError, match="snapshot export.*creation dates: map source.leads.columns.created_at"):
        extract(params)


def test_no_won_value_is_named(tmp_path: Path) -> None:
    params = _params(tmp_path, source={**SOURCE, "outcome": {"column": "Converted", "won": ["won"], "lost": ["lost"]}})
    with pytest.raises(LeadcalError, match=r"outcome column 'converted': no value means won.*'1': 2"):
        extract(params)


def test_snapshot_run_validates_on_random_folds(tmp_path: Path) -> None:
    """A whole run on a snapshot sheet: one row per lead, stratified random folds, no decay, and
    every output saying how it was validated."""
    rng = np.random.default_rng(7)
    n = 3000
    source_value = rng.choice(["google", "reference", "chat"], n)
    visits = rng.poisson(2, n)
    p = 1 / (1 + np.exp(-(-1.5 + 1.2 * (source_value == "reference") + 0.3 * visits)))
    converted = (rng.random(n) < p).astype(int)
    frame = pd.DataFrame({"Prospect ID": [f"p{i:05d}" for i in range(n)], "Lead Source": source_value,
                          "Converted": converted, "TotalVisits": visits, "Time On Site": rng.gamma(2, 100, n).round(1),
                          "Last Activity": rng.choice(["Email Opened", "SMS Sent"], n), "Do Not Email": "No",
                          "Specialization": rng.choice(["Finance", "Select"], n)})
    params = _params(tmp_path, sheet=frame.to_csv(index=False))
    params = params.model_copy(update={"train": params.train.model_copy(update={"min_customers": 50})})
    run_stages(params, ["extract"])
    effective = effective_params(params)
    assert effective.weights.decay is False and effective.signals.recency_days == []
    run_stages(effective, ["features", "close-rates", "weights", "train"])
    features = io.read_parquet(params.paths.features / "features.parquet")
    assert len(features) == n and features["lead_id"].is_unique
    assert (features["cohort"] == SNAPSHOT_COHORT).all()
    folds = features["validation_fold"].to_numpy()
    assert sorted(np.unique(folds)) == [0, 1, 2]
    for fold in range(3):  # stratified: each fold close to the overall close rate
        assert abs(converted[folds == fold].mean() - converted.mean()) < 0.01
    rates = io.read_csv(params.paths.models / "close_rates.csv").set_index("signal")
    reference = rates.loc["lead source = reference"]
    assert reference["leads"] == (source_value == "reference").sum()
    assert reference["customers"] == converted[source_value == "reference"].sum()
    train = io.read_json(params.paths.models / "metrics" / "train.json")
    assert "random folds" in train["validated_on"] and len(train["model"]["folds"]) == 3
    assert "random folds" in (params.paths.models / "model_card.md").read_text()
    assert io.read_json(params.paths.models / "weights.json")["half_life_days"] is None
