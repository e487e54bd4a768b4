"""Each CRM export re-scored exactly as that CRM computes scores, against the threshold the file states.

The threshold leadcal chooses holds only under leadcal's own arithmetic (continuous decay, caps).
Each export now carries the threshold chosen for its own tool (pipeline.core.crm_scoring). These
tests read each file the way the tool would (HubSpot: its step decay and limits; Account
Engagement: score plus a grade moved in thirds of a letter; Mautic: one total that never
decays), score the default run's leads from nothing but that file, take each lead at its peak,
and check that the file's own rule sends the share of leads the file says, within 1 point.
The scorers here are written from the CRM's rules and the file, not from leadcal's scoring code;
only the leads' own data (which signals they have, how old each activity is) comes from the pipeline.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.artifacts.readers import read_frequency_signals
from pipeline.core.signals import build_signals, time_split
from pipeline.exports import generic, salesforce
from pipeline.params import Params
from pipeline.schema import AGE_PREFIX

GRADES = ["F", "D-", "D", "D+", "C-", "C", "C+", "B-", "B", "B+", "A-", "A", "A+"]
ONE_POINT = 0.01


@pytest.fixture(scope="module")
def leads(default_run: Params) -> dict[str, object]:
    """Every snapshot row of the default run: signals (0/1), activity ages, lead ids, the time split."""
    params = default_run
    features = io.read_parquet(params.paths.features / "features.parquet")
    signals = build_signals(features, params.signals, read_frequency_signals(params.paths.models))
    train, valid = time_split(features, params.train.validation_months, params.outcome.horizon_days)
    rows = generic.read_export_rows(params.paths.models / "exports" / "weights.csv")
    # the pooled "any other value" rules as columns of their own (the lead's data, read like apply_export)
    matrix = generic.with_other_values(pd.DataFrame(rows), signals.matrix.astype(float))
    return {"matrix": matrix, "features": features, "lead": signals.leads(), "train": train.to_numpy(),
            "valid": valid.to_numpy(), "closed": features["closed"].to_numpy()}


def age(leads: dict, signal: str) -> np.ndarray:
    return leads["features"][AGE_PREFIX + signal].to_numpy(dtype=float)


def share_passing(leads: dict, passes_by_row: np.ndarray, rows: str) -> float:
    """Share of the leads in `rows` ("train" / "valid") that pass at any of their snapshots (their peak)."""
    frame = pd.DataFrame({"lead": leads["lead"], "passes": passes_by_row, "in": leads[rows]})
    per_lead = frame.groupby("lead", sort=False).agg(passes=("passes", "max"), included=("in", "max"))
    return float(per_lead.loc[per_lead["included"], "passes"].mean())


def test_hubspot_sheet_rescored_with_hubspots_step_decay_sends_the_share_it_states(default_run, leads) -> None:
    folder = default_run.paths.models / "exports"
    sheet = pd.read_csv(folder / "hubspot_score_properties.csv")
    settings = io.read_json(folder / "hubspot_score_settings.json")
    decay = settings["engagement_decay"]
    period = decay["every_months"] * 365.25 / 12 if decay else None
    contributions = {}
    for row in sheet.itertuples(index=False):
        value = leads["matrix"][row.leadcal_signal].to_numpy(dtype=float) * row.points
        if row.decay == "yes":  # HubSpot: the points stay for a whole period, then halve
            days = age(leads, row.leadcal_signal)
            value = np.where(np.isnan(days), 0.0, value * 0.5 ** np.floor(np.nan_to_num(days) / period))
        contributions.setdefault((row.group, row.criteria_group), 0.0)
        contributions[(row.group, row.criteria_group)] = contributions[(row.group, row.criteria_group)] + value
    limits = {g: limit["limit"] for limit in settings["group_limits"] for g in limit["criteria_groups"]}
    total = 0
    for group in ("Fit", "Engagement"):
        score = sum((np.minimum(v, limits[c]) if c in limits else v) for (g, c), v in contributions.items() if g == group)
        cap = settings["score_limits"][group.lower()]
        total = total + np.round(np.minimum(score, cap) if cap is not None else score)
    mql = settings["mql_threshold"]
    assert mql["rule"] == f"Combined score is greater than or equal to {mql['threshold']}"
    for rows, stated in (("train", mql["training"]["mql_share"]), ("valid", mql["validation"]["mql_share"])):
        assert share_passing(leads, total >= mql["threshold"], rows) == pytest.approx(stated, abs=ONE_POINT)


def test_account_engagement_sheet_rescored_as_score_and_grade_sends_the_share_it_states(default_run, leads) -> None:
    sheet = generic.read_export_rows(default_run.paths.models / "exports" / "salesforce_scoring.csv")
    sheet = pd.DataFrame(sheet)
    score, thirds = 0.0, 0.0
    for row in sheet[sheet["rule_type"] != salesforce.MQL_RULE].itertuples(index=False):
        has = leads["matrix"][row.leadcal_signal].to_numpy(dtype=float)
        if row.rule_type.startswith("profile criterion"):  # the grade moves; the score does not
            change = re.fullmatch(r"(up|down) (\d)(/3| letters?)|none", row.grade_change)
            step = 0 if row.grade_change == "none" else int(change.group(2)) * (1 if change.group(3) == "/3" else 3)
            thirds = thirds + has * (step if change.group(1) == "up" else -step if step else 0)
            assert pd.isna(row.points)
        else:  # Account Engagement points never decay
            score = score + has * float(row.points)
    grade = np.clip(GRADES.index("D") + thirds, 0, len(GRADES) - 1)
    rule = sheet[sheet["rule_type"] == salesforce.MQL_RULE].set_index("field")
    passes = (grade >= GRADES.index(rule.loc["Prospect grade", "value"])) & (score >= float(rule.loc["Prospect score", "value"]))
    stated = io.read_json(default_run.paths.models / "published" / "thresholds.json")["crm"]["account_engagement"]
    assert stated["grade_at_least"] == rule.loc["Prospect grade", "value"]
    assert share_passing(leads, passes, "train") == pytest.approx(stated["training"]["mql_share"], abs=ONE_POINT)
    later = share_passing(leads, passes, "valid")
    assert later == pytest.approx(stated["validation"]["mql_share"], abs=ONE_POINT)
    # the sheet itself states the held-out share, in words
    assert f"{100 * stated['validation']['mql_share']:.1f} % of leads are MQLs" in rule.loc["Prospect score", "note"]


def test_mautic_export_rescored_as_one_total_that_never_decays_fires_its_trigger_at_the_share_it_states(
        default_run, leads) -> None:
    export = io.read_json(default_run.paths.models / "exports" / "mautic_point_actions.json")
    total = 0.0
    for item in export["point_actions"] + export["segments"] + export["by_campaign"]:  # one total, fit included
        total = total + leads["matrix"][item["leadcal_signal"]].to_numpy(dtype=float) * item["delta"]
    trigger, mql = export["point_trigger"], export["mql"]
    assert trigger["points"] == trigger["api"]["points"] == mql["threshold"]
    for rows, stated in (("train", mql["training"]["mql_share"]), ("valid", mql["validation"]["mql_share"])):
        assert share_passing(leads, np.round(total) >= trigger["points"], rows) == pytest.approx(stated, abs=ONE_POINT)


def test_generic_export_carries_leadcals_own_threshold_and_reproduces_its_share(default_run, leads) -> None:
    payload = io.read_json(default_run.paths.models / "exports" / "weights.json")
    ages = pd.DataFrame({s: age(leads, s) for s in payload_activity_signals(payload)})
    scores = generic.apply_export(payload["rows"], leads["matrix"], ages.reindex(columns=leads["matrix"].columns))
    thresholds = io.read_json(default_run.paths.models / "published" / "thresholds.json")
    assert payload["mql"]["total_points_at_least"] == thresholds["threshold"]  # leadcal's arithmetic: its own threshold
    passes = scores["total_points"].to_numpy() >= payload["mql"]["threshold"]
    assert share_passing(leads, passes, "train") == pytest.approx(thresholds["training"]["mql_share"], abs=ONE_POINT)


def payload_activity_signals(payload: dict) -> list[str]:
    return [r["signal"] for r in payload["rows"] if r.get("decay_half_life_days") is not None]


def test_without_recalibration_the_tools_would_send_more_mqls_than_chosen(default_run) -> None:
    """The measured cost of pasting leadcal's threshold into a tool that does not decay: on the default
    sample (half-life about 10 days) more leads pass, closing less often; each tool's own threshold is higher."""
    thresholds = io.read_json(default_run.paths.models / "published" / "thresholds.json")
    own = thresholds["validation"]
    for target in ("hubspot", "mautic"):
        entry = thresholds["crm"][target]
        naive = entry["at_leadcal_threshold"]["validation"]
        assert naive["mql_share"] > own["mql_share"] + 0.05 and naive["mql_close_rate"] < own["mql_close_rate"]
        assert entry["threshold"] > thresholds["threshold"]
        assert entry["validation"]["mql_share"] == pytest.approx(own["mql_share"], abs=0.03)
