"""CRM exports: the generic file re-scores every lead exactly; each CRM format words the rows right."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.artifacts.readers import read_frequency_signals, read_scorecard
from pipeline.core.scorecard import score_features, score_leads
from pipeline.core.signals import SignalSet, build_signals, decay_matrix
from pipeline.errors import LeadcalError
from pipeline.exports import criteria, generic, hubspot, mautic, salesforce
from pipeline.params import ActivityMapping, CrmMapping
from pipeline.schema import AGE_PREFIX, COUNT_PREFIX, peak_column
from pipeline.stages import exports

FILES = ["weights.csv", "weights.json", "hubspot_score_properties.csv", "hubspot_score_settings.json",
         "hubspot_score_configuration.json",
         "salesforce_scoring.csv", "mautic_point_actions.json"]
BINS = {"company_size": [1, 11, 51, 201, 1001, 5001], "ratio": [0.5, 1.5]}


# --------------------------------------------------------------------------- the default run

@pytest.fixture(scope="module")
def exported(default_run, tmp_path_factory):
    """The exports stage run again on a copy of the default run's models (the run is shared by
    the test workers, so nothing writes into it)."""
    models = tmp_path_factory.mktemp("exported") / "models"
    shutil.copytree(default_run.paths.models, models)
    params = default_run.model_copy(update={"paths": default_run.paths.model_copy(update={"models": models})})
    summary = exports.run(params)
    features = io.read_parquet(params.paths.features / "features.parquet")
    signals = build_signals(features, params.signals, read_frequency_signals(params.paths.models))
    card = read_scorecard(params.paths.models)
    table, header = card.table_, card.header_
    return params, summary, features, signals, table, header


def _ages(features: pd.DataFrame, signals: SignalSet) -> pd.DataFrame:
    """Days since each lead last did each activity (NaN: never), columns named like the signals."""
    names = list(signals.catalog.loc[signals.catalog["type"] == "activity", "signal"])
    return pd.DataFrame({n: features[AGE_PREFIX + n].to_numpy(dtype=float) for n in names}, index=features.index)


@pytest.mark.parametrize("name", ["weights.json", "weights.csv"])
def test_round_trip_generic_export_scores_every_lead_exactly(exported, name):
    params, _, features, signals, table, header = exported
    expected = score_features(features, signals, table, header)
    path = params.paths.models / "exports" / name
    rows = generic.read_export_rows(path)
    half_life = io.read_json(path.with_suffix(".json"))["half_life_days"]
    assert half_life is not None  # the default run estimates a half-life: decay is exercised
    # the export's half-life and decay rows, not the internal table, drive the decay
    decayed = decay_matrix(signals, features, half_life)
    got = generic.apply_export(rows, decayed.matrix)
    pd.testing.assert_frame_equal(got, expected)
    # same again, decaying inside apply_export from each row's decay_half_life_days
    got_from_ages = generic.apply_export(rows, signals.matrix, ages=_ages(features, signals))
    pd.testing.assert_frame_equal(got_from_ages, expected)
    # not a vacuous comparison: real spread in both scores, decayed values strictly inside (0, 1)
    assert expected["fit_points"].nunique() > 20 and expected["engagement_points"].nunique() > 20
    activity = decayed.matrix[[r["signal"] for r in rows if r["type"] == "activity"]].to_numpy()
    assert ((activity > 0) & (activity < 1)).any()
    # and the half-life must be the exact one: rounded to one decimal, some totals change
    rounded = generic.apply_export(rows, decay_matrix(signals, features, round(half_life, 1)).matrix)
    assert (rounded["total_points"] != expected["total_points"]).any()


def test_round_trip_fails_when_a_row_is_wrong(exported):
    """The comparison above would notice one point off on one row."""
    params, _, features, signals, table, header = exported
    rows = generic.read_export_rows(params.paths.models / "exports" / "weights.json")
    expected = score_features(features, signals, table, header)
    tampered = [dict(r) for r in rows]
    target = next(r for r in tampered if r["signal"] == "industry = software")
    target["points"] += 1
    got = generic.apply_export(tampered, decay_matrix(signals, features, header["half_life_days"]).matrix)
    changed = got["total_points"] != expected["total_points"]
    assert changed.sum() == (signals.matrix["industry = software"] == 1).sum()


def _criterion_holds(row: dict, features: pd.DataFrame) -> np.ndarray:
    """A CRM's reading of one structured criterion (attribute, operator, value...) on the raw lead data."""
    attribute, operator, value, high = row["attribute"], row["operator"], row["value"], row["value_high"]
    if operator == "count_at_least":
        column = COUNT_PREFIX + attribute if row["window_days"] is None else peak_column(attribute, row["window_days"])
        return features[column].to_numpy() >= value
    x = features[attribute]
    if operator == "is_unknown":
        return x.isna().to_numpy()
    if operator == "is":
        return (x.notna() & (x.astype(str) == value)).to_numpy()
    x = x.to_numpy(dtype=float)
    return {
        "between": lambda: (x >= value) & (x <= high),
        "at_least": lambda: x >= value,
        "less_than": lambda: x < value,
        "at_least_and_below": lambda: (x >= value) & (x < high),
    }[operator]()


def test_structured_criteria_select_the_same_leads_as_the_signals(exported):
    params, _, features, signals, _, _ = exported
    rows = generic.read_export_rows(params.paths.models / "exports" / "weights.json")
    for row in rows:
        holds = _criterion_holds(row, features)
        assert (holds == (signals.matrix[row["signal"]].to_numpy() > 0)).all(), row["criterion"]


def test_files_are_written_deterministic_utf8_with_headers(exported):
    params, summary, _, _, table, _ = exported
    folder = params.paths.models / "exports"
    assert sorted(summary["files"]) == sorted(FILES)
    first = {name: (folder / name).read_bytes() for name in FILES}
    exports.run(params)
    assert {name: (folder / name).read_bytes() for name in FILES} == first
    headers = {
        "weights.csv": criteria.GENERIC_COLUMNS,
        "hubspot_score_properties.csv": hubspot.HUBSPOT_COLUMNS,
        "salesforce_scoring.csv": salesforce.SALESFORCE_COLUMNS,
    }
    scored = int((table["points"] != 0).sum())
    for name, columns in headers.items():
        lines = list(csv.reader(first[name].decode("utf-8").splitlines()))
        assert lines[0] == columns
        mql_rows = 2 if name == "salesforce_scoring.csv" else 0  # Account Engagement's MQL rule: grade and score
        assert len(lines) == 1 + scored + mql_rows
    payload = json.loads(first["weights.json"].decode("utf-8"))
    assert payload["format"] == generic.FORMAT and len(payload["rows"]) == scored
    csv_signals = [r[-1] for r in csv.reader(first["weights.csv"].decode().splitlines())][1:]
    assert [r["signal"] for r in payload["rows"]] == csv_signals
    assert not list(folder.glob(".*.tmp"))


# --------------------------------------------------------------------------- hand-made tables

def _table(rows: list[tuple[str, str, str, str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["signal", "kind", "type", "attribute", "value", "points"])


SMALL = _table([
    ("demo_request", "engagement", "activity", "demo_request", "yes", 86),
    ("email_click", "engagement", "activity", "email_click", "yes", 0),
    ("unsubscribe", "engagement", "activity", "unsubscribe", "yes", -37),
    ("pricing_page_visit 4+ in 30 days", "engagement", "frequency", "pricing_page_visit", ">= 4 in 30 days", 26),
    ("any activity in the last 7 days", "engagement", "recency", "recency", "<= 7 days", 0),
    ("company_size = <1", "fit", "fit", "company_size", "<1", 4),
    ("company_size = 201-1k", "fit", "fit", "company_size", "201-1k", 13),
    ("company_size = 5001+", "fit", "fit", "company_size", "5001+", -3),
    ("company_size = unknown", "fit", "fit", "company_size", "unknown", -2),
    ("industry = retail", "fit", "fit", "industry", "retail", 0),
    ("industry = software", "fit", "fit", "industry", "software", 14),
    ("ratio = 0.5-1.5", "fit", "fit", "ratio", "0.5-1.5", 7),
])
HEADER = {"points_to_double_odds": 20.0, "base_log_odds": -4.0, "half_life_days": 45.0, "caps": {}}


@pytest.fixture()
def small_rows():
    return criteria.generic_rows(SMALL, HEADER, BINS)


def test_generic_rows_words_sort_and_leave_out_zero_points(small_rows):
    by_signal = {r["signal"]: r for r in small_rows}
    assert set(by_signal) == set(SMALL.loc[SMALL["points"] != 0, "signal"])
    assert [r["score_group"] for r in small_rows] == ["fit"] * 6 + ["engagement"] * 3
    assert [r["signal"] for r in small_rows][:4] == [  # bands in numeric order, unknown last
        "company_size = <1", "company_size = 201-1k", "company_size = 5001+", "company_size = unknown"]
    wording = {s: r["criterion"] for s, r in by_signal.items()}
    assert wording["demo_request"] == "Activity: demo_request at least once"
    assert wording["pricing_page_visit 4+ in 30 days"] == "pricing_page_visit 4 or more times within 30 days"
    assert wording["industry = software"] == "industry is software"
    assert wording["company_size = 201-1k"] == "company_size between 201 and 1000"
    assert wording["company_size = 5001+"] == "company_size 5001 or more"
    assert wording["company_size = <1"] == "company_size less than 1"
    assert wording["company_size = unknown"] == "company_size is unknown (empty)"
    assert wording["ratio = 0.5-1.5"] == "ratio at least 0.5 and below 1.5"
    between = by_signal["company_size = 201-1k"]
    assert (between["operator"], between["value"], between["value_high"]) == ("between", 201, 1000)
    frequency = by_signal["pricing_page_visit 4+ in 30 days"]
    assert (frequency["operator"], frequency["value"], frequency["window_days"]) == ("count_at_least", 4, 30)
    assert by_signal["unsubscribe"]["points"] == -37
    # decay only on activity rows: leadcal does not decay frequency signals
    assert by_signal["demo_request"]["decay_half_life_days"] == 45.0
    assert frequency["decay_half_life_days"] is None and between["decay_half_life_days"] is None


def test_recency_gets_a_row_when_it_has_points():
    table = SMALL.assign(points=SMALL["points"].where(SMALL["type"] != "recency", 5))
    rows = criteria.generic_rows(table, {**HEADER, "half_life_days": None}, BINS)
    recency = next(r for r in rows if r["type"] == "recency")
    assert recency["criterion"] == "any activity within the last 7 days"
    assert all(r["decay_half_life_days"] is None for r in rows)
    in_hubspot = hubspot.hubspot_rows(rows)
    assert any(h["criteria"] == "Has any engagement in the last 7 days" for h in in_hubspot)


def test_a_band_the_params_do_not_know_is_an_error():
    table = _table([("company_size = 7-9", "fit", "fit", "company_size", "7-9", 3)])
    with pytest.raises(LeadcalError, match="numeric_bins.company_size"):
        criteria.generic_rows(table, HEADER, BINS)


def test_generic_csv_keeps_numbers_exact(tmp_path, small_rows):
    header = {**HEADER, "half_life_days": 10.1692902682, "caps": {"company_size": 12.25, "engagement": 1234567.5}}
    rows = criteria.generic_rows(SMALL, header, BINS)
    io.write_csv(tmp_path / "weights.csv", generic.generic_frame(rows))
    back = generic.read_export_rows(tmp_path / "weights.csv")
    assert next(r for r in back if r["signal"] == "demo_request")["decay_half_life_days"] == 10.1692902682
    assert next(r for r in back if r["signal"] == "demo_request")["score_group_cap"] == 1234567.5
    assert next(r for r in back if r["attribute"] == "company_size")["attribute_cap"] == 12.25


def test_hubspot_criteria_wording(small_rows):
    rows = {r["leadcal_signal"]: r for r in hubspot.hubspot_rows(small_rows)}
    assert rows["industry = software"] == {
        "group": "Fit", "criteria_group": "industry", "criteria": "Contact property industry is any of software",
        "points": 14, "decay": "no", "leadcal_signal": "industry = software", "mapped": "no"}
    assert rows["company_size = 201-1k"]["criteria"] == "Contact property company_size is between 201 and 1000"
    assert rows["company_size = 5001+"]["criteria"] == "Contact property company_size is greater than or equal to 5001"
    assert rows["company_size = unknown"]["criteria"] == "Contact property company_size is unknown"
    assert rows["demo_request"]["criteria"] == "Has completed form submission: demo_request"
    assert (rows["demo_request"]["group"], rows["demo_request"]["decay"]) == ("Engagement", "yes")
    assert rows["pricing_page_visit 4+ in 30 days"]["criteria"] == (
        "Has viewed page: pricing_page_visit, at least 4 times in the last 30 days")
    assert rows["pricing_page_visit 4+ in 30 days"]["decay"] == "no"
    assert rows["unsubscribe"]["points"] == -37
    assert "email_click" not in rows and "industry = retail" not in rows


@pytest.mark.parametrize("half_life, months", [
    (10.17, 1), (30, 1), (52, 1), (53, 3), (91, 3), (128, 3),
    (130, 6), (182, 6), (258, 6), (259, 12), (365, 12), (900, 12),
])
def test_hubspot_decay_rounds_to_the_nearest_option_on_a_ratio_scale(half_life, months):
    decay = hubspot.hubspot_decay(half_life)
    assert decay["every_months"] == months and decay["lose_percent"] == 50
    assert decay["hubspot_half_life_days"] == pytest.approx(months * 365.25 / 12)


def test_hubspot_decay_none_without_half_life():
    assert hubspot.hubspot_decay(None) is None


def test_hubspot_settings_caps_and_ranges():
    header = {**HEADER, "caps": {"fit": 40.0, "pricing_page_visit": 30.0}}
    rows = criteria.generic_rows(SMALL, header, BINS)
    settings = hubspot.hubspot_settings(rows, header, SMALL)
    assert settings["engagement_decay"]["every_months"] == 1
    assert settings["score_limits"]["fit"] == 40.0 and settings["score_limits"]["engagement"] is None
    assert settings["group_limits"] == [{"attribute": "pricing_page_visit", "limit": 30.0, "note": "",
                                         "criteria_groups": ["pricing_page_visit (no decay)"]}]
    # fit: best value per attribute (company_size 13, industry 14, ratio 7); worst (company_size -3, others 0)
    assert settings["points_range"]["fit"] == {"lowest": -3, "highest": 34}
    assert settings["points_range"]["engagement"] == {"lowest": -37, "highest": 112}


def test_salesforce_rows(small_rows):
    rows = {r["leadcal_signal"]: r for r in salesforce.salesforce_rows(small_rows)}
    assert list(next(iter(rows.values()))) == salesforce.SALESFORCE_COLUMNS
    assert rows["industry = software"] == {"rule_type": "profile criterion (grading)", "field": "industry",
                                           "operator": "is", "value": "software", "points": None,
                                           "grade_change": "up 1 letter", "leadcal_signal": "industry = software",
                                           "mapped": "no", "note": "leadcal: +14 points; 1 points = 1/3 of a letter"}
    # at 5 points a third of a letter, 14 points move the grade by 3 thirds (a letter), 7 by 1/3, 2 not at all
    graded = {r["leadcal_signal"]: r["grade_change"] for r in salesforce.salesforce_rows(small_rows, per_third=5.0)
              if r["rule_type"].startswith("profile")}
    assert graded["industry = software"] == "up 1 letter"
    assert all(r["rule_type"] != salesforce.MQL_RULE for r in salesforce.salesforce_rows(small_rows))  # no threshold given
    assert (rows["company_size = 201-1k"]["operator"], rows["company_size = 201-1k"]["value"]) == (
        "is between (inclusive)", "201 and 1000")
    assert (rows["company_size = unknown"]["operator"], rows["company_size = unknown"]["value"]) == ("is empty", "")
    assert rows["demo_request"] == {"rule_type": "scoring rule", "field": "Prospect form", "operator": "was submitted",
                                    "value": "demo_request", "points": 86, "grade_change": None,
                                    "leadcal_signal": "demo_request", "mapped": "no", "note": None}
    frequency = rows["pricing_page_visit 4+ in 30 days"]
    assert (frequency["rule_type"], frequency["field"]) == ("automation rule", "Prospect page view")
    assert frequency["operator"] == "was viewed at least 4 times in the last 30 days"
    assert rows["unsubscribe"]["points"] == -37
    assert "email_click" not in rows and "industry = retail" not in rows


@pytest.mark.parametrize("activity, action", [
    ("demo_request", "form.submit"), ("contact_sales_form", "form.submit"), ("form_submission", "form.submit"),
    ("newsletter_signup", "form.submit"), ("webinar_registration", "form.submit"),
    ("whitepaper_download", "asset.download"), ("case_study_download", "asset.download"),
    ("pricing_page_visit", "url.hit"), ("careers_page_visit", "url.hit"), ("blog_read", "url.hit"),
    ("email_open", "email.open"),
    # no Mautic core point action for these: a campaign adjusts the points instead
    ("email_click", "custom"), ("unsubscribe", "custom"), ("webinar_attendance", "custom"),
    ("social_like", "custom"), ("social_comment", "custom"), ("chat_started", "custom"),
])
def test_mautic_type_mapping(activity, action):
    assert mautic.mautic_type(activity) == action


def test_mautic_export(small_rows):
    payload = mautic.mautic_export(small_rows, HEADER, numeric=BINS)
    actions = {a["leadcal_signal"]: a for a in payload["point_actions"]}
    assert set(actions) == {"demo_request", "pricing_page_visit 4+ in 30 days"}
    demo = actions["demo_request"]["api"]
    assert (demo["name"], demo["type"], demo["delta"], demo["repeatable"], demo["properties"]) == (
        "Activity: demo_request at least once", "form.submit", 86, False, {"forms": []})
    assert actions["demo_request"]["mapped"] is False  # forms [] means ANY form in Mautic: flagged
    frequency = actions["pricing_page_visit 4+ in 30 days"]["api"]
    assert frequency["type"] == "url.hit" and frequency["properties"] == {"page_hits": 4}
    # no core point action for an unsubscribe: a campaign adjusts the points
    assert [(c["leadcal_signal"], c["delta"]) for c in payload["by_campaign"]] == [("unsubscribe", -37)]
    segments = {s["leadcal_signal"]: s for s in payload["segments"]}
    assert set(segments) == {"company_size = <1", "company_size = 201-1k", "company_size = 5001+",
                             "company_size = unknown", "industry = software", "ratio = 0.5-1.5"}
    band = segments["company_size = 201-1k"]["api"]["filters"]
    assert [(f["field"], f["type"], f["operator"], f["properties"]["filter"]) for f in band] == [
        ("company_size", "number", "gte", 201), ("company_size", "number", "lte", 1000)]
    software = segments["industry = software"]["api"]["filters"]
    assert software == [{"glue": "and", "object": "lead", "field": "industry", "type": "text", "operator": "=",
                         "properties": {"filter": "software"}}]
    assert set(payload["unmapped"]) == set(actions) | set(segments) | {"unsubscribe"}
    # fit adds to the same one total as the point actions, so the point trigger compares fit + engagement
    assert "fit + engagement" in payload["notes"]["points_total"] and "never decay" in payload["notes"]["decay"]
    assert payload["point_trigger"] is None  # no threshold given
    mql = {"threshold": 61, "validation": {"mql_share": 0.2, "mql_close_rate": 0.08, "average_close_rate": 0.03,
                                           "customers_captured": 0.5}}
    trigger = mautic.mautic_export(small_rows, HEADER, mql)["point_trigger"]["api"]
    assert (trigger["points"], trigger["name"]) == (61, "leadcal MQL: 61 points")
    assert "20.0 % of leads are MQLs, closing at 8.0 %" in trigger["description"]


MAPPING = {
    "mautic": CrmMapping(properties={"company_size": "employees", "industry": "sector"},
                         values={"industry": {"software": "Software & SaaS"}},
                         activities={"demo_request": ActivityMapping(event="form.submit", ids=[3, 7]),
                                     "pricing_page_visit": ActivityMapping(event="url.hit",
                                                                           page_url="https://example.com/pricing*")}),
    "hubspot": CrmMapping(properties={"industry": "industry_hs"}, values={"industry": {"software": "COMPUTER_SOFTWARE"}},
                          activities={"demo_request": ActivityMapping(event="Has completed form submission",
                                                                      ids=["Demo request"])}),
    "account_engagement": CrmMapping(properties={"industry": "Industry"},
                                     activities={"demo_request": ActivityMapping(event="Prospect form", ids=["Demo"])}),
}


def test_mapping_puts_each_crms_own_names_in_its_file_and_lists_the_rest(small_rows, tmp_path):
    payload = mautic.mautic_export(small_rows, HEADER, None, MAPPING["mautic"], BINS)
    actions = {a["leadcal_signal"]: a for a in payload["point_actions"]}
    assert actions["demo_request"]["api"]["properties"] == {"forms": [3, 7]} and actions["demo_request"]["mapped"]
    assert actions["pricing_page_visit 4+ in 30 days"]["api"]["properties"] == {
        "page_url": "https://example.com/pricing*", "page_hits": 4}
    segments = {s["leadcal_signal"]: s["api"]["filters"] for s in payload["segments"]}
    assert segments["industry = software"][0]["field"] == "sector"
    assert segments["industry = software"][0]["properties"]["filter"] == "Software & SaaS"
    assert segments["company_size = 201-1k"][0]["field"] == "employees"
    assert set(payload["unmapped"]) == {"ratio = 0.5-1.5", "unsubscribe"}

    in_hubspot = {r["leadcal_signal"]: r for r in hubspot.hubspot_rows(small_rows, MAPPING["hubspot"])}
    assert in_hubspot["industry = software"]["criteria"] == "Contact property industry_hs is any of COMPUTER_SOFTWARE"
    assert in_hubspot["demo_request"]["criteria"] == "Has completed form submission: Demo request"
    assert (in_hubspot["demo_request"]["mapped"], in_hubspot["unsubscribe"]["mapped"]) == ("yes", "no")

    pardot = {r["leadcal_signal"]: r for r in salesforce.salesforce_rows(small_rows, 5.0, None, MAPPING["account_engagement"])}
    assert (pardot["industry = software"]["field"], pardot["industry = software"]["mapped"]) == ("Industry", "yes")
    assert (pardot["demo_request"]["field"], pardot["demo_request"]["value"]) == ("Prospect form", "Demo")
    assert pardot["company_size = 201-1k"]["mapped"] == "no"

    summary = exports.write_exports(tmp_path, SMALL, HEADER, BINS, None, MAPPING)
    assert summary["unmapped"]["mautic"] == payload["unmapped"]
    assert "demo_request" not in summary["unmapped"]["hubspot"] and "unsubscribe" in summary["unmapped"]["hubspot"]
    assert "demo_request" not in summary["unmapped"]["account_engagement"]


def test_mapping_params_refuse_what_mautic_does_not_have(tmp_path):
    from pipeline.params import Exports

    with pytest.raises(ValueError, match="mapping.mautic.activities.demo_request.event: 'form.submitted' is not a Mautic"):
        Exports.model_validate({"mapping": {"mautic": {"activities": {"demo_request": {"event": "form.submitted"}}}}})
    with pytest.raises(ValueError, match="url.hit takes page_url, not ids"):
        Exports.model_validate({"mapping": {"mautic": {"activities": {"pricing": {"event": "url.hit", "ids": [1]}}}}})
    with pytest.raises(ValueError):
        Exports.model_validate({"mapping": {"marketo": {}}})


def test_every_format_leaves_out_zero_points_and_keeps_negatives(tmp_path):
    exports.write_exports(tmp_path, SMALL, HEADER, BINS)
    text = {name: (tmp_path / name).read_text(encoding="utf-8") for name in FILES}
    for name in ("weights.csv", "weights.json", "hubspot_score_properties.csv", "hubspot_score_configuration.json",
                 "salesforce_scoring.csv", "mautic_point_actions.json"):
        assert "email_click" not in text[name] and "retail" not in text[name], name
        assert "-37" in text[name] and "-3" in text[name], name


FORMULA_TABLE = _table([
    ("=1+2", "engagement", "activity", "=1+2", "yes", 12),
    ("@SUM(A1)", "engagement", "activity", "@SUM(A1)", "yes", -7),
    ("industry = =HYPERLINK(\"http://x\",\"y\")", "fit", "fit", "industry", "=HYPERLINK(\"http://x\",\"y\")", 5),
    ("industry = software", "fit", "fit", "industry", "software", 9),
    ("-seniority = +vp", "fit", "fit", "-seniority", "+vp", -3),
])


def test_csv_sheets_never_start_a_cell_with_a_formula(tmp_path):
    """OWASP CSV injection: names from the user's export are escaped in every CSV sheet; numbers stay numbers."""
    exports.write_exports(tmp_path, FORMULA_TABLE, HEADER, {})
    for name in ("weights.csv", "hubspot_score_properties.csv", "salesforce_scoring.csv"):
        rows = list(csv.reader((tmp_path / name).open(newline="", encoding="utf-8")))
        points = rows[0].index("points")
        for row in rows[1:]:
            for column, cell in enumerate(row):
                if column != points:
                    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (name, cell)
        # negatives unescaped; Account Engagement's grading rows move the grade and keep leadcal's points in a note
        values = [int(row[points]) if row[points] else int(re.search(r"leadcal: ([+-]\d+) points", row[-1]).group(1))
                  for row in rows[1:]]
        assert sorted(values) == [-7, -3, 5, 9, 12], name
        assert any(cell == "'=1+2" for row in rows for cell in row), name
    # the JSON files keep the names as they are
    assert "=1+2" in [r["signal"] for r in io.read_json(tmp_path / "weights.json")["rows"]]


def test_a_signal_named_like_a_formula_survives_export_and_reimport(tmp_path):
    exports.write_exports(tmp_path, FORMULA_TABLE, HEADER, {})
    from_csv = generic.read_export_rows(tmp_path / "weights.csv")
    from_json = generic.read_export_rows(tmp_path / "weights.json")
    assert [r["signal"] for r in from_csv] == [r["signal"] for r in from_json]
    assert "=1+2" in [r["signal"] for r in from_csv] and "@SUM(A1)" in [r["attribute"] for r in from_csv]
    hyperlink = next(r for r in from_csv if r["signal"].startswith("industry = ="))
    assert hyperlink["value"] == "=HYPERLINK(\"http://x\",\"y\")"
    assert next(r for r in from_csv if r["attribute"] == "-seniority")["value"] == "+vp"
    # and the re-imported sheet scores every lead as the table does
    rng = np.random.default_rng(3)
    matrix = pd.DataFrame({s: rng.integers(0, 2, 50) for s in FORMULA_TABLE["signal"]}, dtype=float)
    industry = rng.integers(0, 2, 50)
    matrix["industry = software"], matrix[FORMULA_TABLE["signal"][2]] = industry.astype(float), 1.0 - industry
    pd.testing.assert_frame_equal(generic.apply_export(from_csv, matrix), generic.apply_export(from_json, matrix))
    pd.testing.assert_frame_equal(generic.apply_export(from_csv, matrix), score_leads(matrix, FORMULA_TABLE, {}))


# --------------------------------------------------------------------------- apply_export against score_leads

def _random_case(seed: int):
    rng = np.random.default_rng(seed)
    rows = []
    for activity in ["demo_request", "email_open", "pricing_page_visit", "webinar_attendance"]:
        rows.append((activity, "engagement", "activity", activity, "yes", int(rng.integers(-40, 90))))
    rows.append(("pricing_page_visit 3+ in 30 days", "engagement", "frequency", "pricing_page_visit",
                 ">= 3 in 30 days", 20))
    fit_values = {"industry": ["retail", "software", "unknown"], "seniority": ["vp", "manager", "intern"]}
    for attribute, values in fit_values.items():
        for value in values:
            rows.append((f"{attribute} = {value}", "fit", "fit", attribute, value, int(rng.integers(-20, 25))))
    rows.append(("industry = media", "fit", "fit", "industry", "media", 0))
    table = _table(rows)
    n = 400
    matrix = pd.DataFrame({s: rng.integers(0, 2, n) for s in table["signal"]}, dtype=float)
    for attribute in ["industry", "seniority"]:  # exactly one value per fit attribute
        names = list(table.loc[table["attribute"] == attribute, "signal"])
        pick = rng.integers(0, len(names), n)
        for j, name in enumerate(names):
            matrix[name] = (pick == j).astype(float)
    ages = pd.DataFrame({a: np.where(matrix[a] > 0, rng.uniform(0, 60, n), np.nan)
                         for a in table.loc[table["type"] == "activity", "signal"]})
    return table, matrix, ages


@pytest.mark.parametrize("caps", [
    {}, {"pricing_page_visit": 35.0, "engagement": 60.0}, {"fit": 10.0, "industry": 5.0, "email_open": 3.0},
])
@pytest.mark.parametrize("seed", [1, 2])
def test_apply_export_matches_score_leads_with_caps_and_decay(caps, seed):
    table, matrix, ages = _random_case(seed)
    header = {**HEADER, "half_life_days": 7.5, "caps": caps}
    features = pd.DataFrame({AGE_PREFIX + a: ages[a] for a in ages.columns})
    decayed = decay_matrix(SignalSet(matrix, table), features, 7.5).matrix
    expected = score_leads(decayed, table, caps)
    rows = criteria.generic_rows(table, header, {})
    pd.testing.assert_frame_equal(generic.apply_export(rows, decayed), expected)
    pd.testing.assert_frame_equal(generic.apply_export(rows, matrix, ages=ages), expected)


def test_apply_export_needs_every_signal():
    rows = criteria.generic_rows(SMALL, HEADER, BINS)
    with pytest.raises(LeadcalError, match="demo_request"):
        generic.apply_export(rows, pd.DataFrame({"industry = software": [1.0]}))


def test_apply_export_of_an_empty_export_is_zero():
    got = generic.apply_export([], pd.DataFrame({"a": [1.0, 0.0]}))
    assert got["total_points"].tolist() == [0, 0]


def test_run_needs_the_weights(tmp_path):
    from tests.conftest import params_in

    with pytest.raises(LeadcalError, match="weights.json"):
        exports.run(params_in(tmp_path))
    assert not Path(tmp_path / "models" / "exports").exists()


def test_exports_follow_the_publication_not_a_rejected_candidate(default_run, tmp_path):
    """A run the guard rails reject changes the candidate weights but never the CRM sheets."""

    from pipeline.stages import publish

    models = tmp_path / "models"
    shutil.copytree(default_run.paths.models, models)
    params = default_run.model_copy(update={"paths": default_run.paths.model_copy(update={"models": models})})
    before = exports.run(params)
    sheets = {p.name: p.read_bytes() for p in (models / "exports").iterdir()}
    weights = io.read_json(models / "weights.json")
    weights["signals"][0]["points"] -= 40
    io.write_json(models / "weights.json", weights)
    strict = params.model_copy(update={"publish": params.publish.model_copy(update={"min_model_auc": 0.99})})
    assert publish.run(strict)["status"].startswith("rejected")
    assert exports.run(strict) == before
    assert {p.name: p.read_bytes() for p in (models / "exports").iterdir()} == sheets
    # once a good run publishes the changed table, the sheets follow it
    assert publish.run(params)["status"] == "published"
    exports.run(params)
    changed = weights["signals"][0]
    rows = {r["signal"]: r for r in generic.read_export_rows(models / "exports" / "weights.json")}
    assert rows[changed["signal"]]["points"] == changed["points"]


def test_exports_say_why_nothing_is_published(default_run, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    io.write_json(models / "published" / "publication.json", {"status": "rejected: nothing published yet"})
    params = default_run.model_copy(update={"paths": default_run.paths.model_copy(update={"models": models})})
    with pytest.raises(LeadcalError, match="rejected: nothing published yet"):
        exports.run(params)


@pytest.mark.parametrize("seed", [1, 2])
def test_rare_fit_values_become_one_any_other_value_rule_that_scores_the_same(seed, tmp_path):
    """Values below min_support carry their attribute's reference points: one pooled rule, same totals.
    An empty value keeps its own rule, and a value never seen in training counts as "any other"."""
    from pipeline.core.scorecard import STATUS_LOW_SUPPORT_FIT, STATUS_SCORED

    table, matrix, ages = _random_case(seed)
    rare = ["industry = media", "industry = unknown", "seniority = intern"]  # too rare: scored like the reference
    table["status"] = np.where(table["signal"].isin(rare), STATUS_LOW_SUPPORT_FIT, STATUS_SCORED)
    table.loc[table["signal"].isin(rare), "points"] = -6
    # leads with a value the table has never seen: no column of their attribute is set
    unseen = pd.DataFrame(0.0, index=range(3), columns=matrix.columns)
    unseen["seniority = vp"] = 1.0
    matrix = pd.concat([matrix, unseen], ignore_index=True)
    header = {**HEADER, "half_life_days": 7.5}
    rows = criteria.generic_rows(table, header, {})
    pooled = {r["attribute"]: r for r in rows if r["operator"] == "is_none_of"}
    assert set(pooled) == {"industry", "seniority"} and all(r["points"] == -6 for r in pooled.values())
    assert pooled["industry"]["value"] == "retail; software"  # the values scored on their own, empty aside
    assert pooled["seniority"]["criterion"] == "seniority is not empty and none of vp; manager"
    empty = [r for r in rows if r["signal"] == "industry = unknown"]
    assert len(empty) == 1 and empty[0]["operator"] == "is_unknown" and empty[0]["points"] == -6
    assert not any(r["signal"] in ("industry = media", "seniority = intern") for r in rows)
    expected = score_leads(matrix, table, {})
    assert (expected["fit_points"].iloc[-3:] == -6 + table.set_index("signal").loc["seniority = vp", "points"]).all()
    pd.testing.assert_frame_equal(generic.apply_export(rows, matrix), expected)
    exports.write_exports(tmp_path, table, header, {})
    for name in ("weights.json", "weights.csv"):
        again = generic.read_export_rows(tmp_path / name)
        pd.testing.assert_frame_equal(generic.apply_export(again, matrix), expected)
    hubspot = pd.read_csv(tmp_path / "hubspot_score_properties.csv")
    assert hubspot["criteria"].str.contains("Contact property seniority is known and is none of vp; manager").any()
    mautic = io.read_json(tmp_path / "mautic_point_actions.json")
    pooled = next(s["api"]["filters"] for s in mautic["segments"] if s["leadcal_signal"].startswith("seniority = ("))
    # known, and none of the values scored on their own: one != per value, ANDed
    assert [(f["operator"], f["properties"]["filter"]) for f in pooled] == [("!empty", None), ("!=", "vp"), ("!=", "manager")]


def test_rare_numeric_bands_keep_their_range_rules():
    """A band is a range a CRM can test: a rare one keeps its own rule (with the reference points)."""
    from pipeline.core.scorecard import STATUS_LOW_SUPPORT_FIT

    table = SMALL.assign(status="scored")
    table.loc[table["signal"] == "company_size = 5001+", "status"] = STATUS_LOW_SUPPORT_FIT
    rows = {r["signal"]: r for r in criteria.generic_rows(table, HEADER, BINS)}
    assert rows["company_size = 5001+"]["operator"] == "at_least" and rows["company_size = 5001+"]["points"] == -3
    assert not any(r["operator"] == "is_none_of" for r in rows.values())
