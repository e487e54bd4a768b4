"""The extract stage at its boundary: bad exports fail with a precise LeadcalError,
recoverable rows are dropped and counted, outputs are written atomically, and the CLI
turns every problem into one line on stderr with exit code 2.

Every test builds a tiny export in tmp_path; line numbers are those of the CSV file
(header = line 1, first data row = line 2).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet
import pytest

from pipeline.cli import main
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.stages.extract import extract

# --------------------------------------------------------------------------- helpers

LEADS_HEADER = [
    "lead_id", "created_at", "company_size", "annual_revenue",
    "industry", "seniority", "country", "source", "email_type",
]
ACTIVITIES_HEADER = ["lead_id", "activity", "occurred_at"]
STAGES_HEADER = ["lead_id", "stage", "entered_at", "amount"]


def lead(lead_id: str, created_at: str, company_size: str = "50", annual_revenue: str = "2000000") -> list[str]:
    return [lead_id, created_at, company_size, annual_revenue, "Software", "manager", "de", "organic_search", "business"]


def valid_tables() -> dict[str, list[list[str]]]:
    """A tiny valid export: header row first, then data rows (row i is file line i + 1)."""
    return {
        "leads": [
            LEADS_HEADER,
            lead("L1", "2024-01-01T09:00:00Z"),
            lead("L2", "2024-01-02T10:00:00Z", "250", "60000000"),
            lead("L3", "2024-01-03", "5", ""),
        ],
        "activities": [
            ACTIVITIES_HEADER,
            ["L1", "email_open", "2024-01-02T08:00:00Z"],
            ["L1", "pricing_page_visit", "2024-01-05T12:00:00Z"],
            ["L2", "webinar", "2024-01-03T10:00:00Z"],
            ["L3", "email_open", "2024-01-04T00:00:00Z"],
        ],
        "stages": [
            STAGES_HEADER,
            ["L1", "lead", "2024-01-01T09:00:00Z", ""],
            ["L1", "mql", "2024-01-06T09:00:00Z", ""],
            ["L1", "customer", "2024-02-01T09:00:00Z", "12000"],
            ["L2", "lead", "2024-01-02T10:00:00Z", ""],
            ["L2", "lost", "2024-02-10T10:00:00Z", ""],
            ["L3", "lead", "2024-01-03T00:00:00Z", ""],
        ],
    }


def params_for(tmp_path: Path) -> Params:
    return Params.model_validate({
        "paths": {
            "raw": str(tmp_path / "data" / "raw"),
            "extracted": str(tmp_path / "data" / "extracted"),
            "features": str(tmp_path / "data" / "features"),
            "models": str(tmp_path / "models"),
        }
    })


def write_table(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(",".join(row) for row in rows) + "\n").encode(encoding))
    return path


def make_export(tmp_path: Path, tables: dict[str, list[list[str]]] | None = None) -> tuple[Params, dict[str, Path]]:
    """Write leads/activities/stages CSVs under tmp_path/data/raw; return params and file paths."""
    params = params_for(tmp_path)
    tables = valid_tables() if tables is None else tables
    files = {name: write_table(params.paths.raw / f"{name}.csv", rows) for name, rows in tables.items()}
    return params, files


def write_params_yaml(tmp_path: Path, extra: str = "") -> Path:
    """A params file whose `paths:` point into tmp_path (absolute, JSON-quoted = valid YAML)."""
    p = params_for(tmp_path).paths
    text = (
        "paths:\n"
        f"  raw: {json.dumps(str(p.raw))}\n"
        f"  extracted: {json.dumps(str(p.extracted))}\n"
        f"  features: {json.dumps(str(p.features))}\n"
        f"  models: {json.dumps(str(p.models))}\n"
        + extra
    )
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def extract_error(params: Params) -> str:
    with pytest.raises(LeadcalError) as info:
        extract(params)
    return str(info.value)


def lines_in(message: str) -> set[int]:
    return {int(n) for n in re.findall(r"\bline (\d+)\b", message)}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- sanity: the helper builds a valid export


def test_valid_export_extracts_cleanly(tmp_path):
    params, files = make_export(tmp_path)
    report = extract(params)

    out = params.paths.extracted
    assert sorted(p.name for p in out.iterdir()) == [
        "activities.parquet", "extract_report.json", "leads.parquet", "stages.parquet",
    ]
    leads = pd.read_parquet(out / "leads.parquet")
    assert list(leads["lead_id"]) == ["L1", "L2", "L3"]
    assert list(leads["industry"]) == ["software"] * 3  # categories normalised to lower case
    assert leads["company_size"].tolist() == [50.0, 250.0, 5.0]
    assert report["tables"]["leads"]["file"] == str(files["leads"])
    assert report["tables"]["activities"]["dropped"] == {}
    assert report["tables"]["activities"]["rows_written"] == 4
    assert report["tables"]["stages"]["rows_written"] == 6


# --------------------------------------------------------------------------- fatal input errors


@pytest.mark.parametrize(
    ("table", "column"),
    [("leads", "created_at"), ("activities", "occurred_at"), ("stages", "stage")],
)
def test_missing_required_column_names_file_and_column(tmp_path, table, column):
    tables = valid_tables()
    index = tables[table][0].index(column)
    tables[table] = [row[:index] + row[index + 1:] for row in tables[table]]
    params, files = make_export(tmp_path, tables)

    message = extract_error(params)

    assert str(files[table]) in message
    assert "missing required column" in message
    assert repr(column) in message


def test_missing_fit_attribute_column_names_file_and_column(tmp_path):
    tables = valid_tables()
    index = LEADS_HEADER.index("seniority")
    tables["leads"] = [row[:index] + row[index + 1:] for row in tables["leads"]]
    params, files = make_export(tmp_path, tables)

    message = extract_error(params)

    assert str(files["leads"]) in message
    assert "'seniority'" in message
    assert "fit_attributes" in message


def test_unparseable_created_at_names_line_and_value(tmp_path):
    tables = valid_tables()
    tables["leads"][3][1] = "03/01/2024"  # data row 3 -> file line 4
    params, files = make_export(tmp_path, tables)

    message = extract_error(params)

    assert str(files["leads"]) in message
    assert "'created_at'" in message
    assert "03/01/2024" in message
    assert lines_in(message) == {4}


def test_empty_lead_id_names_line(tmp_path):
    tables = valid_tables()
    tables["leads"][2][0] = ""  # file line 3
    params, files = make_export(tmp_path, tables)

    message = extract_error(params)

    assert str(files["leads"]) in message
    assert "'lead_id'" in message
    assert "empty id" in message
    assert lines_in(message) == {3}


def test_duplicate_lead_ids_name_every_line(tmp_path):
    tables = valid_tables()
    tables["leads"][3][0] = "L1"  # L1 on file lines 2 and 4
    params, files = make_export(tmp_path, tables)

    message = extract_error(params)

    assert str(files["leads"]) in message
    assert "'lead_id'" in message
    assert "1 duplicate lead id" in message
    assert "'L1'" in message
    assert lines_in(message) == {2, 4}


def test_unknown_stage_names_line_and_value(tmp_path):
    tables = valid_tables()
    tables["stages"][5][1] = "won"  # file line 6
    params, files = make_export(tmp_path, tables)

    message = extract_error(params)

    assert str(files["stages"]) in message
    assert "'stage'" in message
    assert "'won'" in message
    assert lines_in(message) == {6}


def test_negative_amount_names_line_and_value(tmp_path):
    tables = valid_tables()
    tables["stages"][3][3] = "-12000"  # file line 4
    params, files = make_export(tmp_path, tables)

    message = extract_error(params)

    assert str(files["stages"]) in message
    assert "'amount'" in message
    assert "negative" in message
    assert "-12000" in message
    assert lines_in(message) == {4}


def test_non_numeric_company_size_names_line_and_value(tmp_path):
    tables = valid_tables()
    tables["leads"][2][2] = "ten"  # file line 3
    params, files = make_export(tmp_path, tables)

    message = extract_error(params)

    assert str(files["leads"]) in message
    assert "'company_size'" in message
    assert "not numbers" in message
    assert "'ten'" in message
    assert lines_in(message) == {3}


def test_line_numbers_count_blank_lines(tmp_path):
    params, files = make_export(tmp_path)
    # header, L1, <blank line>, L2 with a bad date -> the bad row is on file line 4
    files["leads"].write_text(
        ",".join(LEADS_HEADER) + "\n"
        + ",".join(lead("L1", "2024-01-01")) + "\n"
        + "\n"
        + ",".join(lead("L2", "not-a-date")) + "\n",
        encoding="utf-8",
    )

    message = extract_error(params)

    assert "not-a-date" in message
    assert lines_in(message) == {4}


def _latin1_leads(where: str) -> list[list[str]]:
    tables = valid_tables()
    if where == "header":
        tables["leads"][0] = [*LEADS_HEADER, "ciudad_ñ"]
        tables["leads"][1:] = [[*row, "x"] for row in tables["leads"][1:]]
    else:
        tables["leads"][2][6] = "São Paulo"  # country of L2, file line 3
    return tables["leads"]


@pytest.mark.parametrize("where", ["header", "data row"])
def test_non_utf8_file_is_a_leadcal_error_naming_the_file(tmp_path, where):
    params, files = make_export(tmp_path)
    write_table(files["leads"], _latin1_leads(where), encoding="latin-1")

    message = extract_error(params)

    assert str(files["leads"]) in message


@pytest.mark.parametrize(("where", "line"), [("header", 1), ("data row", 3)])
def test_non_utf8_file_says_to_re_export_as_utf8(tmp_path, where, line):
    params, files = make_export(tmp_path)
    write_table(files["leads"], _latin1_leads(where), encoding="latin-1")

    message = extract_error(params)

    assert str(files["leads"]) in message
    assert "not UTF-8" in message
    assert "re-export the file as UTF-8" in message
    assert lines_in(message) == {line}


@pytest.mark.parametrize("table", ["leads", "activities", "stages"])
def test_empty_file_names_the_file(tmp_path, table):
    params, files = make_export(tmp_path)
    files[table].write_bytes(b"")

    message = extract_error(params)

    assert str(files[table]) in message
    assert "empty" in message


@pytest.mark.parametrize("table", ["leads", "activities", "stages"])
def test_header_only_file_names_the_file(tmp_path, table):
    tables = valid_tables()
    tables[table] = tables[table][:1]
    params, files = make_export(tmp_path, tables)

    message = extract_error(params)

    assert str(files[table]) in message
    assert "header but no rows" in message


def test_missing_table_file_names_folder_and_table(tmp_path):
    params, files = make_export(tmp_path)
    files["stages"].unlink()

    message = extract_error(params)

    assert str(params.paths.raw) in message
    assert "stages.csv" in message


# --------------------------------------------------------------------------- recoverable rows


def test_recoverable_rows_are_dropped_and_counted(tmp_path):
    tables = valid_tables()
    tables["activities"] += [
        ["L999", "email_open", "2024-01-05T00:00:00Z"],  # unknown lead
        ["L2", "webinar", "2024-01-01T00:00:00Z"],  # before L2 was created (2024-01-02T10:00Z)
        ["L1", "email_open", "2024-01-02T08:00:00Z"],  # exact duplicate of the first event
        ["L3", " Email_Open ", "2024-01-04T00:00:00Z"],  # duplicate once normalised
    ]
    tables["stages"] += [["L404", "lead", "2024-01-05T00:00:00Z", ""]]
    params, _ = make_export(tmp_path, tables)

    report = extract(params)

    expected_dropped = {
        "unknown lead_id": 1,
        "occurred before the lead was created": 1,
        "duplicate event": 2,
    }
    activities = report["tables"]["activities"]
    assert activities["dropped"] == expected_dropped
    assert (activities["rows_read"], activities["rows_written"]) == (8, 4)
    assert report["tables"]["stages"]["dropped"] == {"unknown lead_id": 1}
    assert report["tables"]["stages"]["rows_written"] == 6

    on_disk = json.loads((params.paths.extracted / "extract_report.json").read_text(encoding="utf-8"))
    assert on_disk["tables"]["activities"]["dropped"] == expected_dropped
    assert on_disk["tables"]["activities"]["rows_written"] == 4
    assert on_disk["tables"]["stages"]["dropped"] == {"unknown lead_id": 1}

    events = pd.read_parquet(params.paths.extracted / "activities.parquet")
    assert len(events) == 4
    assert "L999" not in set(events["lead_id"])
    assert events[["lead_id", "activity"]].values.tolist() == [
        ["L1", "email_open"], ["L1", "pricing_page_visit"], ["L2", "webinar"], ["L3", "email_open"],
    ]


# --------------------------------------------------------------------------- atomic outputs


def test_failed_rerun_leaves_previous_outputs_byte_identical(tmp_path):
    params, files = make_export(tmp_path)
    extract(params)
    out = params.paths.extracted
    before = snapshot(out)
    assert len(before) == 4

    tables = valid_tables()
    tables["leads"].append(lead("L4", "2024-01-04"))  # would change leads.parquet if written
    tables["stages"][2][1] = "won"
    make_export(tmp_path, tables)

    message = extract_error(params)

    assert str(files["stages"]) in message
    assert snapshot(out) == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_crash_while_writing_keeps_previous_file_and_no_temp_file(tmp_path, monkeypatch):
    params, _ = make_export(tmp_path)
    extract(params)
    out = params.paths.extracted
    before = snapshot(out)

    tables = valid_tables()
    tables["leads"].append(lead("L4", "2024-01-04"))  # a valid change: leads.parquet would differ
    make_export(tmp_path, tables)

    def half_written(table, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(pyarrow.parquet, "write_table", half_written)
    with pytest.raises(OSError, match="disk full"):
        extract(params)

    assert snapshot(out) == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- CLI


def test_cli_valid_export_exits_0(tmp_path, capsys):
    make_export(tmp_path)
    params_file = write_params_yaml(tmp_path)

    code = main(["--params", str(params_file), "extract"])

    assert code == 0
    assert "error" not in capsys.readouterr().err
    leads = pd.read_parquet(tmp_path / "data" / "extracted" / "leads.parquet")
    assert list(leads["lead_id"]) == ["L1", "L2", "L3"]


def _single_error_line(stderr: str, stage: str = "extract") -> str:
    prefix = f"leadcal {stage}: error:"
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith(prefix)]
    assert len(error_lines) == 1, stderr
    assert stderr.rstrip("\n").endswith(error_lines[0]), "the error message must be a single line"
    return error_lines[0]


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    tables = valid_tables()
    tables["stages"][4][1] = "won"  # file line 5
    _, files = make_export(tmp_path, tables)
    params_file = write_params_yaml(tmp_path)

    code = main(["--params", str(params_file), "extract"])

    assert code == 2
    line = _single_error_line(capsys.readouterr().err)
    assert str(files["stages"]) in line
    assert "'stage'" in line
    assert lines_in(line) == {5}
    assert not (tmp_path / "data" / "extracted").exists()


def test_cli_unknown_params_key_exits_2_naming_the_key(tmp_path, capsys):
    make_export(tmp_path)
    params_file = write_params_yaml(tmp_path, "thresholds: {mql_lfit: 3}\n")

    code = main(["--params", str(params_file), "extract"])

    assert code == 2
    line = _single_error_line(capsys.readouterr().err)
    assert str(params_file) in line
    assert "thresholds.mql_lfit" in line
    assert not (tmp_path / "data" / "extracted").exists()


# --------------------------------------------------------------------------- time zones


def test_time_zones_are_converted_to_naive_utc(tmp_path):
    tables = valid_tables()
    tables["leads"][1][1] = "2024-03-01T10:00:00+02:00"  # L1 created 08:00 UTC
    tables["activities"][1:3] = [
        ["L1", "email_open", "2024-03-01T09:00:00Z"],  # after creation in UTC (not in wall-clock text)
        ["L1", "webinar", "2024-03-01T09:30:00+02:00"],  # 07:30 UTC: before creation -> dropped
    ]
    tables["stages"][1:4] = [["L1", "lead", "2024-03-01T10:00:00+02:00", ""]]
    params, _ = make_export(tmp_path, tables)

    report = extract(params)

    leads = pd.read_parquet(params.paths.extracted / "leads.parquet").set_index("lead_id")
    assert leads["created_at"].dt.tz is None
    assert leads.loc["L1", "created_at"] == pd.Timestamp("2024-03-01 08:00:00")
    assert leads.loc["L3", "created_at"] == pd.Timestamp("2024-01-03 00:00:00")

    events = pd.read_parquet(params.paths.extracted / "activities.parquet")
    l1 = events[events["lead_id"] == "L1"]
    assert l1["activity"].tolist() == ["email_open"]
    assert l1["occurred_at"].tolist() == [pd.Timestamp("2024-03-01 09:00:00")]
    assert report["tables"]["activities"]["dropped"] == {"occurred before the lead was created": 1}

    stages = pd.read_parquet(params.paths.extracted / "stages.parquet")
    assert stages.loc[stages["lead_id"] == "L1", "entered_at"].tolist() == [pd.Timestamp("2024-03-01 08:00:00")]


def test_na_and_null_are_values_not_missing(tmp_path):
    # 'NA' is Namibia's country code; only an empty cell is missing.
    tables = valid_tables()
    tables["leads"][1][6] = "NA"
    tables["leads"][2][6] = ""
    params, _ = make_export(tmp_path, tables)

    extract(params)

    leads = pd.read_parquet(params.paths.extracted / "leads.parquet").set_index("lead_id")
    assert leads.loc["L1", "country"] == "na"
    assert pd.isna(leads.loc["L2", "country"])


def test_artifacts_get_normal_file_permissions(tmp_path):
    params, _ = make_export(tmp_path)
    extract(params)
    umask = os.umask(0)
    os.umask(umask)
    mode = (params.paths.extracted / "leads.parquet").stat().st_mode & 0o777
    assert mode == 0o666 & ~umask


def test_future_events_and_out_of_order_stages_are_dropped_and_counted(tmp_path):
    tables = valid_tables()
    tables["activities"] += [["L1", "demo_request", "2999-01-01T00:00:00Z"]]
    # L2 reaches sql before its mql: the sql row is out of funnel order
    tables["stages"] += [["L2", "mql", "2024-02-10T00:00:00Z", ""], ["L2", "sql", "2024-02-01T00:00:00Z", ""]]
    params, _ = make_export(tmp_path, tables)

    report = extract(params)

    assert report["tables"]["activities"]["dropped"] == {"dated in the future": 1}
    assert report["tables"]["stages"]["dropped"] == {"dated before an earlier funnel stage of the same lead": 1}
    stages = pd.read_parquet(params.paths.extracted / "stages.parquet")
    assert not ((stages["lead_id"] == "L2") & (stages["stage"] == "sql")).any()


def test_fail_policy_stops_on_the_first_recoverable_problem_with_lines(tmp_path):
    tables = valid_tables()
    tables["activities"] += [["L404", "demo_request", "2024-01-05T00:00:00Z"]]
    params, files = make_export(tmp_path, tables)
    strict = params.model_copy(update={"extract": params.extract.model_copy(update={"on_bad_rows": "fail"})})

    message = extract_error(strict)

    assert str(files["activities"]) in message and "unknown lead_id" in message and "on_bad_rows" in message
    assert lines_in(message) == {len(tables["activities"])}  # the appended row: last line of the file


@pytest.mark.parametrize("delimiter, name", [(";", "semicolons"), ("\t", "tabs")])
def test_a_file_with_another_delimiter_says_so(tmp_path, delimiter, name):
    params, files = make_export(tmp_path)
    text = files["leads"].read_text().replace(",", delimiter)
    files["leads"].write_text(text)

    message = extract_error(params)

    assert str(files["leads"]) in message and f"separated by {name}" in message


def test_stages_come_out_by_id_date_and_name_with_each_stage_once_per_lead() -> None:
    """Hand-made: rows out of order, two stages on one date (sorted by name), a stage reached
    twice (the earliest kept, the other dropped and counted)."""
    from pipeline.data.contract import validate_stages

    leads = pd.Series(["A1", "B2"])
    created = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-01"]))
    raw = pd.DataFrame({
        "lead_id": ["B2", "A1", "A1", "B2", "A1", "B2"],
        "stage": ["sql", "mql", "sql", "mql", "sql", "mql"],
        "entered_at": ["2024-03-01", "2024-02-01", "2024-02-01", "2024-02-10", "2024-04-01", "2024-02-10"],
    }, dtype="string")
    stages, report = validate_stages(raw, "stages.csv", leads, created)
    assert list(zip(stages["lead_id"], stages["stage"], stages["entered_at"].dt.strftime("%m-%d"))) == [
        ("A1", "mql", "02-01"), ("A1", "sql", "02-01"), ("B2", "mql", "02-10"), ("B2", "sql", "03-01")]
    assert report.as_dict()["dropped"] == {"duplicate stage for the same lead (earliest kept)": 2}


@pytest.mark.parametrize(("change", "conforms"), [
    ({}, True),
    ({"amount": [None, 0.0, 1.0]}, True),  # no amount yet, or zero: fine
    ({"stage": ["mql", "won", "sql"]}, False),  # outside the vocabulary
    ({"stage": ["mql", None, "sql"]}, False),  # no stage
    ({"amount": [None, -1.0, 2.0]}, False),
])
def test_stages_conform_checks_the_stages_schema_rules(change: dict, conforms: bool) -> None:
    """The quick check that lets validate_stages skip pandera must fail wherever the schema fails
    (test_unknown_stage_names_line_and_value and the amount test check pandera's messages)."""
    from pipeline.data.contract import stages_conform

    stages = pd.DataFrame({"lead_id": ["A", "A", "B"], "stage": ["mql", "customer", "sql"],
                           "amount": [None, 5000.0, None], **change})
    assert stages_conform(stages) is conforms
    assert stages_conform(stages.drop(columns="amount")) is ("stage" not in change)
