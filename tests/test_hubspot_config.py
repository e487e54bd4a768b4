"""HubSpot's Lead Scoring API configuration (models/exports/hubspot_score_configuration.json).

The file must be a body the API takes as it is (validated against tests/hubspot_schema.py, written
from HubSpot's spec), and it must score as the sheet does: re-scoring the default run's leads from
the configuration alone, the way HubSpot evaluates it (conditions on the contact's raw properties,
event rules with the group's step decay and the rule's cap, frequency ranges, category limit),
sends the share of MQLs the file states, within 1 point. Where leadcal's features cannot tell
what HubSpot would see (the count of the last W days rather than the busiest W days; each repeat
of an event decaying on its own), the scorer reads the lead's data as leadcal stores it: those
two gaps are stated in the file's `not_expressed` instead.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.core.signals import UNKNOWN, time_split
from pipeline.exports import hubspot_api
from pipeline.exports.push_hubspot import body_to_push, update_body
from pipeline.params import ActivityMapping, CrmMapping, Params
from pipeline.schema import AGE_PREFIX, COUNT_PREFIX
from tests.hubspot_schema import DRAFT_CREATE, DRAFT_UPDATE
from tests.mautic_server import validation_errors

ONE_POINT = 0.01


@pytest.fixture(scope="module")
def configuration(default_run: Params) -> dict:
    return io.read_json(default_run.paths.models / "exports" / "hubspot_score_configuration.json")


def test_the_configuration_is_a_body_the_lead_scoring_api_takes(configuration) -> None:
    assert validation_errors(configuration["api"], DRAFT_CREATE) == {}
    body, _, _ = body_to_push(configuration, include_unmapped=True)
    assert validation_errors(update_body(body, {"groupConfigs": []}), DRAFT_UPDATE) == {}
    groups = {g["groupName"]: g for g in configuration["api"]["groupConfigs"]}
    assert {g["groupCategory"] for g in groups.values()} == {"FIT", "INTENT"}
    assert groups["Activities"]["groupDecay"] == {"decayIntervalDays": 30, "percentToDecayPerInterval": 50}
    assert "groupDecay" not in groups["Frequency"]  # leadcal does not decay frequency: neither does HubSpot then
    assert len(configuration["rules"]) == sum(len(g["ruleConfigurations"]) for g in groups.values())


@pytest.mark.parametrize("breaks", [
    lambda b: b.pop("maxScorePerCategory"),
    lambda b: b["groupConfigs"][0].update(groupCategory="ENGAGEMENT"),
    lambda b: b["groupConfigs"][0]["ruleConfigurations"][0]["configuration"]["calculation"]["whereCondition"]
    ["conditions"][0]["operation"].update(operator="IS_ROUGHLY"),
    lambda b: b["groupConfigs"][-2].update(groupDecay={"decayIntervalDays": 30.5, "percentToDecayPerInterval": 50}),
    lambda b: b["groupConfigs"][-2]["ruleConfigurations"][0]["configuration"]["calculation"].update(type="MATCHES"),
    lambda b: b["groupConfigs"][-1]["ruleConfigurations"][0]["configuration"]["calculation"]["eventCalculators"][0]
    ["eventFrequencyCriteria"]["ranges"][0].pop("from"),
])
def test_the_schema_refuses_what_hubspot_would(configuration, breaks) -> None:
    body = copy.deepcopy(configuration["api"])
    breaks(body)
    assert validation_errors(body, DRAFT_CREATE)


def held_as_hubspot(body: dict) -> dict:
    """A draft as HubSpot holds it: its own ids on every group and rule."""
    return {"groupConfigs": [{**g, "id": f"hs-group-{i}", "ruleConfigurations": [
        {**r, "id": f"hs-rule-{i}-{j}"} for j, r in enumerate(g["ruleConfigurations"])]}
        for i, g in enumerate(body["groupConfigs"])]}


def test_a_draft_update_keeps_hubspots_ids_by_group_name_and_rule_content(configuration) -> None:
    assert validation_errors(copy.deepcopy(configuration["api"]), DRAFT_UPDATE)  # groups and rules without ids
    body, _, _ = body_to_push(configuration, include_unmapped=True)
    held = held_as_hubspot(body)
    assert update_body(body, held)["groupConfigs"] == held["groupConfigs"]  # nothing changed: every id kept
    industry = next(i for i, g in enumerate(body["groupConfigs"]) if g["groupName"] == "industry")
    rules = body["groupConfigs"][industry]["ruleConfigurations"]
    inserted = copy.deepcopy(rules[0])
    inserted["configuration"]["calculation"]["value"] = 99
    moved = copy.deepcopy(rules[1])
    moved["configuration"]["calculation"]["value"] += 1
    body["groupConfigs"][industry]["ruleConfigurations"] = [inserted, rules[0], moved, *rules[2:]]
    ids = [r["id"] for r in update_body(body, held)["groupConfigs"][industry]["ruleConfigurations"]]
    assert ids[1] == f"hs-rule-{industry}-0" and ids[3:] == [f"hs-rule-{industry}-{j}" for j in range(2, len(rules))]
    assert ids[2] == f"hs-rule-{industry}-1"  # the same criterion with one more point: the same rule
    assert not ids[0].startswith("hs-") and ids[0] not in ids[1:]  # the inserted rule: a new id of its own
    assert validation_errors(update_body(body, {**held, "filterConfiguration": {
        "listFilterType": "EXCLUDES", "segmentIds": [12]}}), DRAFT_UPDATE) == {}


# ----------------------------------------------------------------------------------------- hand-computed rules

ROW = {"score_group": "fit", "type": "fit", "attribute_cap": None, "decay_half_life_days": None, "window_days": None}


def conditions(row: dict, mapping: CrmMapping = CrmMapping(), numeric: set[str] = frozenset()) -> list[tuple]:
    rule, _ = hubspot_api.rule_for({**ROW, **row}, mapping, set(numeric))
    calculation = rule["configuration"]["calculation"]
    return [(c["property"], c["operation"]["operationType"], c["operation"]["operator"],
             c["operation"].get("values", c["operation"].get("value")), c["operation"]["includeObjectsWithNoValueSet"])
            for c in calculation["whereCondition"]["conditions"]]


def test_fit_rows_become_exact_property_conditions() -> None:
    band = {"attribute": "company_size", "operator": "between", "value": 201, "value_high": 1000, "points": 15}
    assert conditions(band, numeric={"company_size"}) == [
        ("company_size", "NUMBER", "IS_GREATER_THAN_OR_EQUAL_TO", 201, False),
        ("company_size", "NUMBER", "IS_LESS_THAN_OR_EQUAL_TO", 1000, False)]
    half_open = {"attribute": "revenue", "operator": "at_least_and_below", "value": 0.5, "value_high": 2.5, "points": 1}
    assert [c[2:4] for c in conditions(half_open, numeric={"revenue"})] == [
        ("IS_GREATER_THAN_OR_EQUAL_TO", 0.5), ("IS_LESS_THAN", 2.5)]
    other = {"attribute": "industry", "operator": "is_none_of", "value": "software; retail", "value_high": None, "points": -3}
    mapping = CrmMapping(properties={"industry": "industry_hs"}, values={"industry": {"software": "SOFTWARE"}})
    assert conditions(other, mapping) == [("industry_hs", "ALL_PROPERTY", "IS_KNOWN", None, False),
                                          ("industry_hs", "ENUMERATION", "IS_NONE_OF", ["SOFTWARE", "retail"], False)]
    text = CrmMapping(property_types={"industry": "string"})
    value = {"attribute": "industry", "operator": "is", "value": "software", "value_high": None, "points": 11}
    assert conditions(value, text) == [("industry", "MULTISTRING", "IS_EQUAL_TO", ["software"], False)]
    unknown = {"attribute": "annual_revenue", "operator": "is_unknown", "value": None, "value_high": None, "points": 10}
    assert conditions(unknown) == [("annual_revenue", "ALL_PROPERTY", "IS_UNKNOWN", None, True)]
    nothing_listed = {**other, "value": ""}  # every value is rare: "any other value" is any known value
    assert conditions(nothing_listed) == [("industry", "ALL_PROPERTY", "IS_KNOWN", None, False)]


def engagement(attribute: str, kind: str, points: int, cap: float | None, decays: bool) -> dict:
    return {"score_group": "engagement", "type": kind, "attribute": attribute, "attribute_cap": cap, "points": points,
            "decay_half_life_days": 10.0 if decays else None, "value": 1 if kind == "activity" else 4,
            "value_high": None, "window_days": None if kind == "activity" else 30, "signal": f"{attribute} {kind}",
            "criterion": kind, "score_group_cap": None, "operator": "count_at_least"}


def test_caps_become_group_limits_and_what_hubspot_cannot_cap_is_said() -> None:
    fit = {**ROW, "attribute": "industry", "operator": "is", "value": "software", "value_high": None, "points": 40,
           "attribute_cap": 20.0, "signal": "industry = software", "criterion": "industry is software"}
    rows = [fit, engagement("pricing", "activity", 30, 25.0, True), engagement("pricing", "frequency", 20, 25.0, False)]
    ranges = {"fit": {"highest": 40}, "engagement": {"highest": 50}}
    header = {"caps": {"industry": 20.0, "pricing": 25.0, "fit": 30.0}, "half_life_days": 10.0, "numeric_attributes": []}
    payload = hubspot_api.score_configuration(rows, header, ranges, None, CrmMapping())
    limits = {g["groupName"]: g.get("maxValue") for g in payload["api"]["groupConfigs"]}
    assert limits == {"industry": 20, "pricing (decay)": 25, "pricing (no decay)": 25}
    # fit is capped at 30, engagement not at all: one limit for both can only be engagement's highest score
    assert payload["api"]["maxScorePerCategory"] == 50
    notes = " ".join(payload["not_expressed"])
    assert "leadcal caps fit at 30" in notes and "pricing: leadcal caps its activity and frequency rows together" in notes
    both = hubspot_api.score_configuration(rows, {**header, "caps": {"fit": 30.0, "engagement": 60.0}}, ranges, None,
                                              CrmMapping())
    assert both["api"]["maxScorePerCategory"] == 60 and "leadcal caps fit at 30" in " ".join(both["not_expressed"])


def test_an_activity_counts_once_and_uses_the_mapped_event_type() -> None:
    row = {"score_group": "engagement", "type": "activity", "attribute": "demo_request", "attribute_cap": None,
           "decay_half_life_days": 10.0, "points": 42, "value": 1, "value_high": None, "window_days": None}
    mapping = CrmMapping(activities={"demo_request": ActivityMapping(event_type_id="4-1639801", event_property="hs_form_id",
                                                                     ids=["f-123"])})
    rule, mapped = hubspot_api.rule_for(row, mapping, set())
    entry = rule["configuration"]["calculation"]["eventCalculators"][0]
    assert mapped and rule["maximumValue"] == 42 and entry["eventTypeId"] == "4-1639801"
    condition = entry["recordCalculation"]["whereCondition"]["conditions"][0]
    assert entry["recordCalculation"]["value"] == 42 and condition["property"] == "hs_form_id"
    assert condition["operation"]["values"] == ["f-123"]
    negative, mapped = hubspot_api.rule_for({**row, "points": -20}, CrmMapping(), set())
    assert not mapped and negative["minimumValue"] == -20 and "maximumValue" not in negative


# ----------------------------------------------------------------------------------------- re-scored as HubSpot does

def holds(values: pd.Series, operation: dict) -> np.ndarray:
    """One property condition on the contacts' raw values, as HubSpot's list filters read it."""
    unset = values.isna() | (values.astype("string") == UNKNOWN)
    kind, operator = operation["operationType"], operation["operator"]
    if kind == "ALL_PROPERTY":
        return unset.to_numpy() if operator == "IS_UNKNOWN" else (~unset).to_numpy()
    if kind == "NUMBER":
        number = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        compare = {"IS_GREATER_THAN_OR_EQUAL_TO": np.greater_equal, "IS_LESS_THAN_OR_EQUAL_TO": np.less_equal,
                   "IS_LESS_THAN": np.less, "IS_GREATER_THAN": np.greater, "IS_EQUAL_TO": np.equal}[operator]
        result = compare(np.nan_to_num(number, nan=np.inf if "LESS" in operator else -np.inf), operation["value"])
    else:
        inside = values.astype("string").isin(operation["values"]).fillna(False).to_numpy(dtype=bool)
        result = inside if operator in ("IS_ANY_OF", "IS_EQUAL_TO") else ~inside
    return np.where(unset.to_numpy(), operation["includeObjectsWithNoValueSet"], result)


def hubspot_score(configuration: dict, features: pd.DataFrame) -> np.ndarray:
    """Every snapshot row's combined score from the configuration alone."""
    api = configuration["api"]
    by_category = {"FIT": 0.0, "INTENT": 0.0}
    for group in api["groupConfigs"]:
        decay = group.get("groupDecay")
        total = np.zeros(len(features))
        for rule in group["ruleConfigurations"]:
            calculation = rule["configuration"]["calculation"]
            if calculation["type"] == "CONDITIONAL":
                passes = np.ones(len(features), dtype=bool)
                for condition in calculation["whereCondition"]["conditions"]:
                    passes &= holds(features[condition["property"]], condition["operation"])
                value = np.where(passes, calculation["value"], 0.0)
            else:
                entry = calculation["eventCalculators"][0]
                event = entry["eventTypeId"]
                if "eventFrequencyCriteria" in entry:
                    band = entry["eventFrequencyCriteria"]["ranges"][0]
                    days = entry["eventTimeframe"]["eventFilterOperation"]["numberOfDays"]
                    count = features[f"peak__{event}__{days}d"].to_numpy(dtype=float)
                    value = np.where(count >= band["from"], band["value"], 0.0)
                else:
                    age = features[AGE_PREFIX + event].to_numpy(dtype=float)
                    did = features[COUNT_PREFIX + event].to_numpy(dtype=float) > 0
                    left = 1.0
                    if decay:
                        share = 1 - decay["percentToDecayPerInterval"] / 100
                        left = share ** np.floor(np.nan_to_num(age) / decay["decayIntervalDays"])
                    value = np.where(did, entry["recordCalculation"]["value"] * left, 0.0)
                value = np.clip(value, rule.get("minimumValue", -np.inf), rule.get("maximumValue", np.inf))
            total = total + value
        by_category[group["groupCategory"]] = by_category[group["groupCategory"]] + np.clip(
            total, group.get("minValue", -np.inf), group.get("maxValue", np.inf))
    cap = api["maxScorePerCategory"]
    return np.round(np.minimum(by_category["FIT"], cap)) + np.round(np.minimum(by_category["INTENT"], cap))


def test_the_configuration_rescored_as_hubspot_does_sends_the_share_it_states(default_run, configuration) -> None:
    features = io.read_parquet(default_run.paths.features / "features.parquet")
    train, valid = time_split(features, default_run.train.validation_months, default_run.outcome.horizon_days)
    passes = hubspot_score(configuration, features) >= configuration["mql"]["threshold"]
    frame = pd.DataFrame({"lead": features["lead_id"].to_numpy(), "passes": passes, "train": train.to_numpy(),
                          "valid": valid.to_numpy()})
    per_lead = frame.groupby("lead", sort=False).max()  # each lead at its peak
    for rows, stated in (("train", "training"), ("valid", "validation")):
        share = float(per_lead.loc[per_lead[rows], "passes"].mean())
        assert share == pytest.approx(configuration["mql"][stated]["mql_share"], abs=ONE_POINT)
    settings = io.read_json(default_run.paths.models / "exports" / "hubspot_score_settings.json")
    assert configuration["mql"]["threshold"] == settings["mql_threshold"]["threshold"]  # one HubSpot threshold
