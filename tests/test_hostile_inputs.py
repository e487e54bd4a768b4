"""Hostile and broken inputs (issue 17): each class of bad input gets one clear line (a
LeadcalError naming the file, the column or key, and example rows) or a counted drop in
extract_report.json under `extract.on_bad_rows`; never a traceback, never silent acceptance.

Exports are tiny hand-written CSVs (helpers from test_extract_errors: file line = row + 1).
"""

from __future__ import annotations

import csv
import io as _io
import logging
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import LeadcalError
from pipeline.params import Params, load_params
from pipeline.stages.extract import extract

from .conftest import REPO
from .test_extract_errors import (
    ACTIVITIES_HEADER,
    LEADS_HEADER,
    STAGES_HEADER,
    extract_error,
    lead,
    lines_in,
    make_export,
    valid_tables,
)


def _with(params: Params, **extract_settings: object) -> Params:
    return params.model_copy(update={"extract": params.extract.model_copy(update=extract_settings)})


def _as_parquet(params: Params, table: str = "activities") -> Path:
    """The export's CSV table rewritten as Parquet (text columns): the DuckDB streaming path for activities."""
    csv_path = params.paths.raw / f"{table}.csv"
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    csv_path.unlink()
    path = params.paths.raw / f"{table}.parquet"
    frame.to_parquet(path, index=False)
    return path


# --------------------------------------------------------------------------- 1. dates


def test_a_lead_dated_in_the_future_is_dropped_with_its_rows_and_does_not_move_the_dates(tmp_path):
    tables = valid_tables()
    tables["leads"].append(lead("L9", "2999-01-01T00:00:00Z"))  # file line 5
    tables["activities"].append(["L9", "email_open", "2999-01-02T00:00:00Z"])
    tables["stages"].append(["L9", "lead", "2999-01-01T00:00:00Z", ""])
    params, files = make_export(tmp_path, tables)

    report = extract(params)

    assert report["tables"]["leads"]["dropped"] == {"dated in the future": 1}
    assert report["tables"]["activities"]["dropped"] == {"of a lead dropped at extract": 1}
    assert report["tables"]["stages"]["dropped"] == {"of a lead dropped at extract": 1}
    assert report["date_range"]["last"] < pd.Timestamp("2100-01-01")
    leads = pd.read_parquet(params.paths.extracted / "leads.parquet")
    assert list(leads["lead_id"]) == ["L1", "L2", "L3"]

    message = extract_error(_with(params, on_bad_rows="fail"))
    assert str(files["leads"]) in message and "dated in the future" in message and lines_in(message) == {5}


@pytest.mark.parametrize("created_at", ["1900-01-01", "0001-01-01T00:00:00Z"])
def test_a_lead_dated_before_the_floor_is_dropped_and_counted(tmp_path, created_at):
    tables = valid_tables()
    tables["leads"].append(lead("L9", created_at))
    params, files = make_export(tmp_path, tables)

    report = extract(params)
    assert report["tables"]["leads"]["dropped"] == {"dated before 1990-01-01 (params extract.min_date)": 1}
    assert report["date_range"]["first"] >= pd.Timestamp("1990-01-01")

    message = extract_error(_with(params, on_bad_rows="fail"))
    assert str(files["leads"]) in message and "dated before 1990-01-01" in message and lines_in(message) == {5}

    # the floor is a setting: an older history can lower it
    report = extract(_with(params, min_date="0001-01-01"))
    assert report["tables"]["leads"]["dropped"] == {}


def test_the_streaming_event_log_drops_a_future_leads_events_as_the_csv_path_does(tmp_path):
    tables = valid_tables()
    tables["leads"].append(lead("L9", "2999-01-01T00:00:00Z"))
    tables["activities"] += [["L9", "email_open", "2999-01-02T00:00:00Z"], ["L1", "webinar", "0001-01-01T00:00:00Z"]]
    csv_params, _ = make_export(tmp_path / "csv", tables)
    duck_params, _ = make_export(tmp_path / "duck", tables)
    _as_parquet(duck_params)

    expected, got = extract(csv_params)["tables"]["activities"], extract(duck_params)["tables"]["activities"]

    assert got["dropped"] == expected["dropped"] == {"of a lead dropped at extract": 1,
                                                     "occurred before the lead was created": 1}
    assert (got["rows_read"], got["rows_written"]) == (expected["rows_read"], expected["rows_written"]) == (6, 4)


def test_an_export_date_in_the_future_is_a_params_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("outcome:\n  as_of: 2999-01-01\n")
    with pytest.raises(LeadcalError, match=r"params.yaml: invalid params: outcome.as_of: .*2999-01-01.* in the future"):
        load_params(path)


# --------------------------------------------------------------------------- 2. links between tables


@pytest.mark.parametrize("activities_as", ["csv", "parquet"])
def test_activities_matching_no_lead_are_an_error_naming_ids_from_both_sides(tmp_path, activities_as):
    tables = valid_tables()
    tables["activities"][1:] = [[f"X{i}", "email_open", "2024-01-05T00:00:00Z"] for i in range(1, 5)]
    params, files = make_export(tmp_path, tables)
    path = _as_parquet(params) if activities_as == "parquet" else files["activities"]

    for policy in ("drop", "fail"):
        message = extract_error(_with(params, on_bad_rows=policy))
        assert str(path) in message and str(files["leads"]) in message
        assert "none of the 4 rows" in message and "'X1'" in message and "'L1'" in message
        assert "source.activities.columns.lead_id" in message


def test_stages_matching_no_lead_are_an_error(tmp_path):
    tables = valid_tables()
    tables["stages"][1:] = [[f"Z{i}", "lead", "2024-01-05T00:00:00Z", ""] for i in range(1, 4)]
    params, files = make_export(tmp_path, tables)

    message = extract_error(params)

    assert str(files["stages"]) in message and "none of the 3 rows" in message and "'Z1'" in message


@pytest.mark.parametrize("activities_as", ["csv", "parquet"])
def test_mostly_unknown_leads_are_a_warning_in_the_log_and_the_report(tmp_path, caplog, activities_as):
    tables = valid_tables()
    tables["activities"] += [[f"X{i}", "email_open", "2024-01-05T00:00:00Z"] for i in range(5)]
    params, _ = make_export(tmp_path, tables)
    if activities_as == "parquet":
        _as_parquet(params)

    with caplog.at_level(logging.WARNING):
        report = extract(params)

    activities = report["tables"]["activities"]
    assert activities["dropped"] == {"unknown lead_id": 5}
    assert len(activities["warnings"]) == 1 and "5 of 9 rows (56 %)" in activities["warnings"][0]
    assert "5 of 9 rows (56 %)" in caplog.text
    assert "warnings" not in report["tables"]["stages"]  # only where there is one


def test_no_event_left_after_extract_is_a_clear_error_at_features(tmp_path):
    from pipeline.stages.features import write_features

    tables = valid_tables()
    tables["activities"][1:] = [["L1", "email_open", "2023-01-01T00:00:00Z"]]  # before L1 was created: dropped
    params, _ = make_export(tmp_path, tables)
    extract(params)

    with pytest.raises(LeadcalError, match=r"activities.parquet: no event.*extract_report.json"):
        write_features(params)


# --------------------------------------------------------------------------- 3. params


def _params_file(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("key", ["extracted", "features", "models", "sample"])
def test_output_paths_outside_the_project_are_refused(tmp_path, key):
    outside = tmp_path / "system" / "folder"
    path = _params_file(tmp_path / "project", f"paths:\n  {key}: {outside}\n")
    with pytest.raises(LeadcalError, match=rf"paths.{key} .*is outside the project .*allow_outside_project"):
        load_params(path)
    path = _params_file(tmp_path / "project", f"paths:\n  {key}: ../elsewhere\n")
    with pytest.raises(LeadcalError, match=rf"paths.{key}"):
        load_params(path)
    path = _params_file(tmp_path / "project", f"allow_outside_project: true\npaths:\n  {key}: {outside}\n")
    assert getattr(load_params(path).paths, key) == outside


def test_the_input_may_live_outside_the_project_and_the_shipped_params_load(tmp_path, monkeypatch):
    path = _params_file(tmp_path / "project", f"paths:\n  raw: {tmp_path / 'exports'}\n")
    assert load_params(path).paths.raw == tmp_path / "exports"
    for shipped in ("params.yaml", "examples/olist/params.yaml", "examples/snapshot/params.yaml"):
        load_params(REPO / shipped)
    monkeypatch.chdir(REPO)
    load_params("params.yaml")


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "README.md").write_text("not a folder")
    path = _params_file(tmp_path, "paths:\n  extracted: README.md\n")
    with pytest.raises(LeadcalError, match=r"paths.extracted .*README.md is a file, not a folder"):
        load_params(path)


@pytest.mark.parametrize("value", [".inf", ".nan", "-1"])
def test_duckdb_memory_must_be_a_finite_positive_number(tmp_path, value):
    path = _params_file(tmp_path, f"duckdb_memory_gb: {value}\n")
    with pytest.raises(LeadcalError, match=r"duckdb_memory_gb: "):
        load_params(path)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_params_file_is_an_error(tmp_path, text):
    path = _params_file(tmp_path, text)
    with pytest.raises(LeadcalError, match=r"params.yaml: empty params file"):
        load_params(path)


def test_a_key_given_twice_is_an_error_naming_key_and_line(tmp_path):
    path = _params_file(tmp_path, "seed: 1\noutcome:\n  horizon_days: 90\n  horizon_days: 30\n")
    with pytest.raises(LeadcalError, match=r"params.yaml: line 4: key 'horizon_days' .*more than once.*line 3"):
        load_params(path)
    path = _params_file(tmp_path, "seed: 1\nseed: 2\n")
    with pytest.raises(LeadcalError, match=r"line 2: key 'seed'"):
        load_params(path)


@pytest.mark.parametrize("attribute", ["lead_id", "created_at", "Lead_ID "])
def test_the_id_or_creation_date_as_a_fit_attribute_is_refused(tmp_path, attribute):
    path = _params_file(tmp_path, f"signals:\n  fit_attributes: [industry, '{attribute}']\n")
    with pytest.raises(LeadcalError, match=r"signals.fit_attributes: .*not a fit attribute"):
        load_params(path)


def test_a_fit_attribute_with_a_value_per_lead_is_refused_at_extract(tmp_path):
    tables = valid_tables()
    tables["leads"][0] = [*LEADS_HEADER, "email"]
    tables["leads"][1:] = [[*lead(f"L{i}", "2024-01-01"), f"person{i}@example.com"] for i in range(1, 61)]
    params, files = make_export(tmp_path, tables)
    params = params.model_copy(update={"signals": params.signals.model_copy(
        update={"fit_attributes": [*params.signals.fit_attributes, "email"]})})

    message = extract_error(params)

    assert str(files["leads"]) in message and "fit attribute 'email'" in message
    assert "60 of 60 leads" in message and "'person1@example.com'" in message


def test_more_validation_months_than_the_history_has_says_how_many_there_are(tmp_path):
    from pipeline.data.generate import write_sample
    from pipeline.stages import close_rates
    from pipeline.stages.features import write_features

    from .conftest import params_in

    params = params_in(tmp_path, generate={"n_leads": 400, "months": 8}, train={"validation_months": 40})
    write_sample(params)
    extract(params)
    write_features(params)
    with pytest.raises(LeadcalError, match=r"train.validation_months = 40: the history has 6 months of matured leads \(2024-01 to 2024-06\).*at most 3$"):
        close_rates.run(params)


def test_a_quote_in_a_path_reaches_duckdb_quoted(tmp_path):
    from pipeline.stages.features import build_features

    params, _ = make_export(tmp_path / "o'brien", None)
    _as_parquet(params)  # the streaming path builds SQL with the file names
    report = extract(params)
    assert report["tables"]["activities"]["rows_written"] == 4
    features, _ = build_features(params, require_outcomes=False)
    assert set(features["lead_id"]) == {"L1", "L2", "L3"}


# --------------------------------------------------------------------------- 4. text


@pytest.mark.parametrize("activities_as", ["csv", "parquet"])
def test_a_nul_byte_in_a_value_is_refused_with_the_line(tmp_path, activities_as):
    tables = valid_tables()
    tables["activities"][3][1] = "\x00email_open"  # file line 4
    params, files = make_export(tmp_path, tables)
    path = _as_parquet(params) if activities_as == "parquet" else files["activities"]

    message = extract_error(params)

    assert str(path) in message and "NUL" in message
    assert ("line 4" if activities_as == "csv" else "row 3") in message


def test_a_nul_byte_in_a_lead_value_is_refused(tmp_path):
    tables = valid_tables()
    tables["leads"][2][4] = "soft\x00ware"
    params, files = make_export(tmp_path, tables)
    message = extract_error(params)
    assert str(files["leads"]) in message and "NUL" in message and lines_in(message) == {3}


@pytest.mark.parametrize("activities_as", ["csv", "parquet"])
def test_an_overlong_activity_name_is_dropped_and_counted(tmp_path, activities_as):
    tables = valid_tables()
    tables["activities"].append(["L2", "x" * 1_000_000, "2024-01-05T00:00:00Z"])  # a megabyte name, line 6
    params, files = make_export(tmp_path, tables)
    path = _as_parquet(params) if activities_as == "parquet" else files["activities"]

    report = extract(params)
    assert report["tables"]["activities"]["dropped"] == {"activity name longer than 200 characters": 1}
    assert max(len(name) for name in report["activities_seen"]) < 200

    message = extract_error(_with(params, on_bad_rows="fail"))
    assert str(path) in message and "longer than 200 characters" in message and len(message) < 1000


def test_an_overlong_fit_value_drops_the_lead(tmp_path):
    tables = valid_tables()
    tables["leads"][3][4] = "y" * 300  # L3's industry, line 4
    params, files = make_export(tmp_path, tables)

    report = extract(params)
    assert report["tables"]["leads"]["dropped"] == {"value of 'industry' longer than 200 characters": 1}
    assert report["tables"]["activities"]["dropped"] == {"of a lead dropped at extract": 1}

    message = extract_error(_with(params, on_bad_rows="fail"))
    assert str(files["leads"]) in message and lines_in(message) == {4} and len(message) < 1000


@pytest.mark.parametrize("table", ["leads", "activities", "stages"])
def test_a_row_with_fewer_fields_than_the_header_is_counted(tmp_path, table):
    params, files = make_export(tmp_path)
    text = files[table].read_text().splitlines()
    text.insert(2, text[2].rsplit(",", 1)[0])  # line 3: a copy of line 3 without its last field
    files[table].write_text("\n".join(text) + "\n")

    report = extract(params)
    assert report["tables"][table]["dropped"].get("fewer fields than the header") == 1

    message = extract_error(_with(params, on_bad_rows="fail"))
    assert str(files[table]) in message and "fewer fields than the header" in message and lines_in(message) == {3}


def test_short_rows_of_a_mapped_export_are_counted_through_its_wide_columns(tmp_path):
    """A CRM export mapped in params: the event log's short row keeps its mark when the wide sheet's
    events are appended to it, and a short contact drops with its events and outcome."""
    from .conftest import params_in

    (tmp_path / "contacts.csv").write_text("id,created,demo,status,decided\na,2024-01-02,yes,won,2024-02-01\n"
                                           "b,2024-01-03,no\nc,2024-01-04,yes,lost,2024-02-02\n")
    (tmp_path / "events.csv").write_text("who,what,when\na,Blog Read,2024-01-05\nc,Blog Read\nc,Blog Read,2024-01-06\n")
    source = {"leads": {"path": "contacts.csv", "columns": {"lead_id": "id", "created_at": "created"}},
              "activities": {"path": "events.csv", "columns": {"lead_id": "who", "activity": "what", "occurred_at": "when"}},
              "outcome": {"column": "status", "date_column": "decided"},
              "wide": {"activities": [{"column": "demo", "activity": "demo_request", "kind": "flag"}]}}
    params = params_in(tmp_path, source=source, signals={"fit_attributes": [], "numeric_bins": {}})
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"raw": tmp_path})})

    report = extract(params)

    assert report["tables"]["leads"]["dropped"] == {"fewer fields than the header": 1}  # b
    assert report["tables"]["activities"]["dropped"] == {"fewer fields than the header": 1}  # c's second line
    events = pd.read_parquet(params.paths.extracted / "activities.parquet")
    assert sorted(zip(events["lead_id"], events["activity"])) == [
        ("a", "blog_read"), ("a", "demo_request"), ("c", "blog_read"), ("c", "demo_request")]


def test_a_nul_byte_in_a_parquet_leads_table_is_refused(tmp_path):
    tables = valid_tables()
    tables["leads"][2][4] = "soft\x00ware"  # L2's industry: data row 2
    params, _ = make_export(tmp_path, tables)
    path = params.paths.raw / "leads.csv"
    path.write_text(path.read_text().replace("soft\x00ware", "SOFTNUL"))
    leads = _as_parquet(params, "leads")
    frame = pd.read_parquet(leads)
    frame["industry"] = frame["industry"].str.replace("SOFTNUL", "soft\x00ware")
    frame.to_parquet(leads, index=False)

    message = extract_error(params)

    assert str(leads) in message and "column 'industry'" in message and "NUL" in message


def test_quoted_values_and_empty_last_fields_are_not_short_rows(tmp_path):
    tables = valid_tables()
    params, files = make_export(tmp_path, tables)
    with files["stages"].open("w", newline="") as handle:  # every field quoted, a comma and a line break inside one
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow([*STAGES_HEADER, "note"])
        for row in tables["stages"][1:]:
            writer.writerow([*row, "said: yes,\nthen no"])
    report = extract(params)
    assert report["tables"]["stages"]["dropped"] == {} and report["tables"]["stages"]["rows_written"] == 6


def test_a_first_row_with_more_fields_than_the_header_is_refused(tmp_path):
    params, files = make_export(tmp_path)
    text = files["activities"].read_text().splitlines()
    text[1] += ",extra"
    files["activities"].write_text("\n".join(text) + "\n")
    message = extract_error(params)
    assert str(files["activities"]) in message and lines_in(message) == {2} and "more fields than the header" in message


# --------------------------------------------------------------------------- 5. fuzz

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
CELLS = st.one_of(
    st.sampled_from(["", "L1", "L2", " L3 ", "2024-01-05", "2024-01-05T00:00:00Z", "2999-01-01", "0001-01-01",
                     "email_open", "lead", "customer", "-5", "1e400", "NaN", "nan", "x" * 300, '"', "\x00", "\r"]),
    st.text(max_size=12),
)


def _export_with(tmp_path: Path, table: str, rows: list[list[str]]) -> Params:
    params, files = make_export(tmp_path)
    header = {"leads": LEADS_HEADER, "activities": ACTIVITIES_HEADER, "stages": STAGES_HEADER}[table]
    buffer = _io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    files[table].write_text(buffer.getvalue(), encoding="utf-8")
    return params


def _only_leadcal_errors(params: Params) -> None:
    """Success or a LeadcalError (one clear line at the CLI); any other exception fails the test."""
    try:
        extract(params)
    except LeadcalError:
        pass


@FUZZ
@given(data=st.binary(max_size=300), table=st.sampled_from(["leads", "activities", "stages"]))
def test_fuzz_random_bytes_in_a_csv(tmp_path_factory, data, table):
    params, files = make_export(tmp_path_factory.mktemp("bytes"))
    files[table].write_bytes(data)
    _only_leadcal_errors(params)


@FUZZ
@given(table=st.sampled_from(["leads", "activities", "stages"]),
       rows=st.lists(st.lists(CELLS, min_size=0, max_size=10), min_size=1, max_size=6))
def test_fuzz_random_cells_in_a_csv(tmp_path_factory, table, rows):
    _only_leadcal_errors(_export_with(tmp_path_factory.mktemp("cells"), table, rows))


@FUZZ
@given(rows=st.lists(st.tuples(CELLS, CELLS, CELLS), min_size=1, max_size=8))
def test_fuzz_random_cells_in_a_parquet_event_log(tmp_path_factory, rows):
    params, files = make_export(tmp_path_factory.mktemp("parquet"))
    files["activities"].unlink()
    pd.DataFrame(rows, columns=ACTIVITIES_HEADER).to_parquet(params.paths.raw / "activities.parquet", index=False)
    _only_leadcal_errors(params)


def test_the_date_range_skips_missing_dates_and_empty_tables() -> None:
    """The report's first and last date come from each column's ends, not one concatenated column:
    missing dates and an empty table (no stages) are skipped, no date at all is NaT."""
    from pipeline.stages.extract import date_range

    leads = pd.Series(pd.to_datetime(["2024-01-02", None, "2023-05-01"])).astype("datetime64[us]")
    stages = pd.Series([], dtype="datetime64[us]")
    events = pd.Series([None, "2025-01-01T10:00"], dtype="datetime64[us]")
    assert date_range(leads, stages, events) == (pd.Timestamp("2023-05-01"), pd.Timestamp("2025-01-01T10:00"))
    assert all(pd.isna(end) for end in date_range(stages, events.iloc[:1]))
