"""Real sources (params `source:`): CRM-shaped files, event-log folders, wide sheets, SQL.

The strongest check: the same history, exported the way a CRM or a database holds it and
mapped back in params, must give exactly the canonical tables the contract's own folder
gives. Then hand-made wide sheets, bad input, and the Olist funnel against pandas.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.cli import STAGES, build_parser
from pipeline.data.generate import write_sample
from pipeline.errors import LeadcalError
from pipeline.params import Params, Source, load_params
from pipeline.stages.extract import extract
from tests.conftest import REPO, params_in, run_stages

OLIST = REPO.parent / "shared" / "data" / "olist"

# CRM-style names for the contract's columns, as a HubSpot or Salesforce export spells them
CRM_NAMES = {
    "leads": {"lead_id": "Contact ID", "created_at": "Create Date"},
    "activities": {"lead_id": "Contact ID", "activity": "Event Type", "occurred_at": "Event Timestamp"},
    "stages": {"lead_id": "Contact ID", "stage": "Lifecycle Stage", "entered_at": "Stage Date", "amount": "Amount"},
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """A small generated history, extracted the contract's own way: the reference tables."""
    params = params_in(tmp_path_factory.mktemp("sources"), generate={"n_leads": 1500, "months": 12})
    write_sample(params)
    extract(params)
    return params


def _canonical(params: Params) -> dict[str, pd.DataFrame]:
    return {name: io.read_parquet(params.paths.extracted / f"{name}.parquet") for name in ("leads", "activities", "stages")}


def _crm_frames(sample: Params) -> dict[str, pd.DataFrame]:
    """The sample's raw tables with CRM column names, a CRM's spellings and its local time."""
    frames = {name: pd.read_csv(sample.paths.raw / f"{name}.csv", dtype=str, keep_default_na=False)
              for name in ("leads", "activities", "stages")}
    activities = frames["activities"]
    # "Webinar Attendance", "Demo-Request": spaces, capitals and hyphens, as CRMs write event names
    activities["activity"] = activities["activity"].str.replace("_", " ").str.title()
    activities.loc[activities.index % 3 == 0, "activity"] = activities["activity"].str.replace(" ", "-")
    stages = frames["stages"]
    stages["stage"] = stages["stage"].map({"customer": "Closed Won", "lost": "Closed Lost"}).fillna(stages["stage"])
    # the CRM writes local São Paulo time (no DST since 2019, so no hour is ambiguous) without an offset
    for name, column in (("leads", "created_at"), ("activities", "occurred_at"), ("stages", "entered_at")):
        utc = pd.to_datetime(frames[name][column], utc=True)
        frames[name][column] = utc.dt.tz_convert("America/Sao_Paulo").dt.strftime("%d/%m/%Y %H:%M:%S")
    return {name: frame.rename(columns=CRM_NAMES[name]) for name, frame in frames.items()}


def _crm_source(paths: dict[str, str] | None = None, queries: dict[str, str] | None = None,
                url: str | None = None) -> dict:
    tables = {}
    for name, mapping in CRM_NAMES.items():
        table: dict = {"columns": {k: v for k, v in mapping.items()}, "date_format": "%d/%m/%Y %H:%M:%S"}
        table.update({"path": paths[name]} if paths else {"query": queries[name]})
        tables[name] = table
    tables["stages"]["values"] = {"stage": {"closed won": "customer", "CLOSED LOST": "lost"}}
    return {**tables, "timezone": "America/Sao_Paulo", "url": url}


def _with_source(sample: Params, root: Path, raw: Path, source: dict) -> Params:
    params = params_in(root, sample, source=source)
    return params.model_copy(update={"paths": params.paths.model_copy(update={"raw": raw})})


def _assert_same_tables(got: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame]) -> None:
    for name in expected:
        pd.testing.assert_frame_equal(got[name], expected[name], check_dtype=False, obj=name)


def test_event_log_folder_with_crm_names_gives_the_contract_tables(sample: Params, tmp_path: Path) -> None:
    """Activities as monthly files (CSV and Parquet mixed), CRM column names, spellings, local time."""
    frames = _crm_frames(sample)
    export = tmp_path / "crm_export"
    (export / "events").mkdir(parents=True)
    frames["leads"].to_csv(export / "contacts.csv", index=False)
    frames["stages"].to_parquet(export / "lifecycle.parquet", index=False)
    events = frames["activities"]
    month = events["Event Timestamp"].str[3:10]  # mm/yyyy
    for index, (key, part) in enumerate(events.groupby(month, sort=True)):
        name = f"events_{key[3:]}_{key[:2]}"
        if index % 2:
            part.to_parquet(export / "events" / f"{name}.parquet", index=False)
        else:
            part.to_csv(export / "events" / f"{name}.csv", index=False)
    params = _with_source(sample, tmp_path, export, _crm_source(
        paths={"leads": "contacts.csv", "activities": "events", "stages": "lifecycle.parquet"}))
    report = extract(params)
    _assert_same_tables(_canonical(params), _canonical(sample))
    # what was normalised is reported
    assert report["normalisation"]["stages"]["values_renamed"]["stage"] == int(
        frames["stages"]["Lifecycle Stage"].str.startswith("Closed").sum())
    # "Email Open" and "Email-Open" were respelt; one-word names ("Unsubscribe") only lower-cased
    assert report["normalisation"]["activities"]["values_respelt_snake_case"] == int(
        events["Event Type"].str.contains("[ -]").sum()) > 0
    assert report["normalisation"]["leads"]["columns"]["lead_id"] == "contact id"
    assert report["unknown_activities"] == {}
    assert "events/ (" in report["tables"]["activities"]["file"]


def test_sqlite_queries_give_the_contract_tables(sample: Params, tmp_path: Path) -> None:
    database = tmp_path / "crm.db"
    with sqlite3.connect(database) as connection:
        for name, frame in _crm_frames(sample).items():
            frame.to_sql(f"crm_{name}", connection, index=False)
    queries = {name: f'SELECT * FROM crm_{name}' for name in CRM_NAMES}
    params = _with_source(sample, tmp_path, tmp_path, _crm_source(queries=queries, url=f"sqlite:///{database}"))
    report = extract(params)
    _assert_same_tables(_canonical(params), _canonical(sample))
    assert report["tables"]["leads"]["file"] == f"sqlite:///{database} (source.leads.query)"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory):
    """A local PostgreSQL server (pgserver's bundled binaries), started for these tests."""
    try:
        import pgserver

        server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    except Exception as exc:  # pragma: no cover - only where no server can start
        pytest.skip(f"cannot start a local PostgreSQL server here ({exc}); the SQLite test covers the SQL path")
    yield server
    server.cleanup()


def test_postgresql_queries_give_the_contract_tables(sample: Params, tmp_path: Path, postgres) -> None:
    import sqlalchemy

    url = postgres.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sqlalchemy.create_engine(url)
    frames = _crm_frames(sample)
    with engine.begin() as connection:
        for name, frame in frames.items():
            frame.to_sql(f"crm_{name}", connection, index=False, if_exists="replace")
        # a real column type on the server: timestamps in a timestamptz column
        connection.execute(sqlalchemy.text(
            'ALTER TABLE crm_leads ALTER COLUMN "Create Date" TYPE timestamptz '
            "USING to_timestamp(\"Create Date\", 'DD/MM/YYYY HH24:MI:SS')::timestamp AT TIME ZONE 'America/Sao_Paulo'"))
    engine.dispose()
    queries = {name: f'SELECT * FROM crm_{name}' for name in CRM_NAMES}
    # the timestamptz column arrives as a zoned timestamp: read as it is, no format needed
    params = _with_source(sample, tmp_path, tmp_path, _crm_source(queries=queries, url=url))
    extract(params)
    _assert_same_tables(_canonical(params), _canonical(sample))


def test_local_times_across_daylight_saving_changes() -> None:
    """In the hour a clock repeats, standard time is assumed; a skipped hour moves forward."""
    from pipeline.data.sources import parse_dates

    local = pd.Series(["2024-10-27 02:30:00", "2024-03-31 02:30:00", "2024-07-01 12:00:00"])
    utc = parse_dates(local, None, False, "Europe/Paris", "f.csv", "created_at")
    assert utc.dt.strftime("%Y-%m-%d %H:%M").tolist() == ["2024-10-27 01:30", "2024-03-31 01:00", "2024-07-01 10:00"]
    # a value with its own offset keeps it, whatever source.timezone says
    zoned = parse_dates(pd.Series(["2024-07-01T12:00:00+02:00"]), None, False, "Asia/Tokyo", "f.csv", "created_at")
    assert zoned.dt.strftime("%H:%M").tolist() == ["10:00"]


def test_wide_export_by_hand(tmp_path: Path) -> None:
    """Counts, flags and dates of a wide contact sheet become events; lifecycle dates become stages."""
    (tmp_path / "contacts.csv").write_text(
        "Record ID,Created,Industry,Webinars Attended,Requested Demo,Last Pricing Visit,Became MQL,Became Customer\n"
        "a,2024-01-02,software,2,yes,2024-01-05,2024-01-06,2024-02-01\n"
        "b,2024-01-03,retail,0,no,,,\n"
        "c,2024-01-04,software,1,,2024-01-04 10:00,2024-01-08,\n"
    )
    source = {
        "leads": {"path": "contacts.csv", "columns": {"lead_id": "Record ID", "created_at": "Created"}},
        "wide": {"activities": [{"column": "Webinars Attended", "activity": "webinar_attendance", "kind": "count"},
                                {"column": "Requested Demo", "activity": "demo_request", "kind": "flag"},
                                {"column": "Last Pricing Visit", "activity": "pricing_page_visit", "kind": "date"}],
                 "stages": {"mql": "Became MQL", "customer": "Became Customer"}},
    }
    params = params_in(tmp_path, source=source, signals={"fit_attributes": ["industry"], "numeric_bins": {}})
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"raw": tmp_path})})
    report = extract(params)
    events = io.read_parquet(params.paths.extracted / "activities.parquet")
    got = sorted(zip(events["lead_id"], events["activity"], events["occurred_at"].astype(str)))
    assert got == [
        ("a", "demo_request", "2024-01-02 00:00:00"),
        ("a", "pricing_page_visit", "2024-01-05 00:00:00"),
        ("a", "webinar_attendance", "2024-01-02 00:00:00"),
        ("a", "webinar_attendance", "2024-01-02 00:00:01"),  # two events, one second apart
        ("c", "pricing_page_visit", "2024-01-04 10:00:00"),
        ("c", "webinar_attendance", "2024-01-04 00:00:00"),
    ]
    stages = io.read_parquet(params.paths.extracted / "stages.parquet")
    assert sorted(zip(stages["lead_id"], stages["stage"])) == [("a", "customer"), ("a", "mql"), ("c", "mql")]
    assert report["normalisation"]["wide_activities"] == {"webinar_attendance": 3, "demo_request": 1,
                                                          "pricing_page_visit": 2}


@pytest.mark.parametrize(("sheet", "source", "message"), [
    ("id,created\na,14-06-2017\nb,2017-06-32\n", {"date_format": "%d-%m-%Y"},
     r"contacts.csv: column 'created_at': 1 value\(s\) are not dates in format '%d-%m-%Y'.*line 3: '2017-06-32'"),
    ("id,created\na,2024-01-01\n", {"leads": {"path": "contacts.csv", "columns": {"lead_id": "contact_id",
                                                                                  "created_at": "created"}}},
     r"contacts.csv: column\(s\) \['contact_id'\] named in params source.leads.columns are not in the data"),
    ("id,created,demo\na,2024-01-01,maybe\n", {"wide": {"activities": [{"column": "demo", "activity": "demo_request",
                                                                          "kind": "flag"}], "stages": {}}},
     r"column 'demo': 1 value\(s\) are not yes/no flags.*line 2: 'maybe'"),
    ("id,created,webinars\na,2024-01-01,1.5\n", {"wide": {"activities": [{"column": "webinars", "activity": "webinar",
                                                                           "kind": "count"}], "stages": {}}},
     r"column 'webinars': 1 value\(s\) are fractions or too large to be counts.*kind: number.*line 2: '1.5'"),
])
def test_bad_source_input_names_file_column_and_line(tmp_path: Path, sheet: str, source: dict, message: str) -> None:
    (tmp_path / "contacts.csv").write_text(sheet)
    (tmp_path / "won.csv").write_text("id,won\na,2024-02-01\n")
    base = {"leads": {"path": "contacts.csv", "columns": {"lead_id": "id", "created_at": "created"}},
            "stages": {"path": "won.csv", "columns": {"lead_id": "id", "entered_at": "won"}, "constants": {"stage": "customer"}},
            "wide": {"activities": [{"column": "created", "activity": "form", "kind": "date"}]}}
    params = params_in(tmp_path, source={**base, **source}, signals={"fit_attributes": [], "numeric_bins": {}})
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"raw": tmp_path})})
    (params.paths.extracted).mkdir(parents=True)
    (params.paths.extracted / "leads.parquet").write_bytes(b"previous output")
    with pytest.raises(LeadcalError, match=message):
        extract(params)
    assert (params.paths.extracted / "leads.parquet").read_bytes() == b"previous output"


def test_database_problems_are_one_clear_line(tmp_path: Path) -> None:
    from pipeline.data.sources import read_query

    with pytest.raises(LeadcalError, match=r"source.leads.query\): the query failed: no such table: crm_leads"):
        read_query(f"sqlite:///{tmp_path / 'empty.db'}", "SELECT * FROM crm_leads", "leads")
    with pytest.raises(LeadcalError, match=r"not a SQLAlchemy URL"):
        read_query("not a url", "SELECT 1", "leads")
    # a password never reaches a message
    with pytest.raises(LeadcalError) as caught:
        read_query("postgresql+psycopg://ops:s3cret@127.0.0.1:1/crm", "SELECT 1", "leads")
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


def test_source_params_are_checked() -> None:
    with pytest.raises(ValueError, match="exactly one of path"):
        Source.model_validate({"leads": {"columns": {}}, "stages": {"path": "x"}, "activities": {"path": "y"}})
    with pytest.raises(ValueError, match="no outcomes"):
        Source.model_validate({"leads": {"path": "l.csv"}, "activities": {"path": "a.csv"}})
    with pytest.raises(ValueError, match="need source.url"):
        Source.model_validate({"leads": {"query": "select 1"}, "activities": {"path": "a"}, "stages": {"path": "s"}})
    with pytest.raises(ValueError, match="unknown time zone"):
        Source.model_validate({"leads": {"path": "l"}, "activities": {"path": "a"}, "stages": {"path": "s"},
                               "timezone": "Mars/Olympus"})


def test_run_accepts_config_after_the_sub_command() -> None:
    args = build_parser().parse_args(["run", "--config", "examples/olist/params.yaml"])
    assert args.stage == "run" and args.params == "examples/olist/params.yaml"
    assert build_parser().parse_args(["extract"]).params == "params.yaml"


@pytest.fixture(scope="module")
def olist(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """examples/olist/params.yaml, outputs in a temp folder, run up to the thresholds."""
    if not OLIST.exists():
        pytest.skip(f"{OLIST} not found (the shared datasets sit beside the repository)")
    example = load_params(REPO / "examples" / "olist" / "params.yaml")
    params = params_in(tmp_path_factory.mktemp("olist"), example)
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"raw": OLIST})})
    run_stages(params, [name for name in STAGES if name != "generate"])  # what `leadcal run --config` runs
    return params


def _olist_in_pandas(horizon_days: int) -> pd.DataFrame:
    """Independently of leadcal: each MQL, its origin, and whether it won (any time / within the horizon)."""
    mqls = pd.read_csv(OLIST / "olist_marketing_qualified_leads_dataset.csv")
    deals = pd.read_csv(OLIST / "olist_closed_deals_dataset.csv")
    merged = mqls.merge(deals[["mql_id", "won_date"]], on="mql_id", how="left")
    # local São Paulo times; Brazil still had DST then (midnight 15-10-2017 did not exist: clocks jumped to 01:00)
    local = {"ambiguous": np.zeros(len(merged), dtype=bool), "nonexistent": "shift_forward"}
    contact = pd.to_datetime(merged["first_contact_date"], format="%d-%m-%Y").dt.tz_localize("America/Sao_Paulo", **local)
    won = pd.to_datetime(merged["won_date"], format="%d-%m-%Y %H:%M").dt.tz_localize("America/Sao_Paulo", **local)
    lag = won - contact
    return pd.DataFrame({
        "origin": merged["origin"].fillna("unknown"),
        "won_any_time": lag >= pd.Timedelta(0),  # one deal is dated before its first contact: not an outcome
        "won": (lag >= pd.Timedelta(0)) & (lag <= pd.Timedelta(days=horizon_days)),
    })


def test_olist_close_rates_match_pandas(olist: Params) -> None:
    truth = _olist_in_pandas(olist.outcome.horizon_days)
    metrics = io.read_json(olist.paths.models / "metrics" / "close_rates.json")
    assert metrics["matured_leads"] == 8000
    assert metrics["close_rate_any_time"] == pytest.approx(truth["won_any_time"].mean(), abs=1e-12)
    assert metrics["close_rate_any_time"] == pytest.approx(0.105, abs=0.002)  # 841 of 8,000
    assert metrics["average_close_rate"] == pytest.approx(truth["won"].mean(), abs=1e-12)
    table = io.read_csv(olist.paths.models / "close_rates.csv")
    by_origin = table[table["attribute"] == "origin"].set_index("value")["close_rate"]
    expected = truth.groupby("origin")["won"].mean()
    assert sorted(by_origin.index) == sorted(expected.index)
    np.testing.assert_allclose(by_origin.reindex(expected.index).to_numpy(), expected.to_numpy(), atol=1e-6)
    # the spread the data is known for: email far below paid search
    assert by_origin["email"] < 0.05 < by_origin["paid_search"]


def test_olist_has_no_signal_too_good_to_be_true(olist: Params) -> None:
    """Olist's fast winners once made 'any activity in the last 7 days' close 248 of 248 leads and
    earn 136 points (an outcome leaking through a cut-off at the win). Seen at fixed ages: nothing."""
    table = io.read_csv(olist.paths.models / "close_rates.csv")
    assert (table.loc[table["leads"] >= 30, "close_rate"] < 0.99).all()
    assert table["close_rate"].max() < 0.5 or (table.loc[table["close_rate"] >= 0.5, "leads"] < 30).all()
    weights = io.read_csv(olist.paths.models / "weights.csv").set_index("signal")
    assert (weights.loc[weights["type"] != "fit", "points"] == 0).all()  # the form every lead fills: no information
    report = io.read_json(olist.paths.features / "features_report.json")
    assert report["leakage_screen"]["signals"] == []
    assert io.read_json(olist.paths.models / "weights.json")["half_life_source"].startswith("not identifiable")
    auc = io.read_json(olist.paths.models / "metrics" / "train.json")["model"]["mean"]["auc"]
    assert 0.6 < auc < 0.75  # honest: was 0.82 with the leak


def test_olist_gives_weights_a_model_and_thresholds(olist: Params) -> None:
    models = olist.paths.models
    weights = io.read_json(models / "weights.json")
    scored = [s for s in weights["signals"] if s["status"] == "scored"]
    assert any(s["attribute"] == "origin" for s in scored)
    train = io.read_json(models / "metrics" / "train.json")
    assert train["model"]["mean"]["auc"] > 0.6 and train["points_table"]["mean"]["auc"] > 0.6
    thresholds = io.read_json(models / "thresholds.json")
    assert thresholds["threshold"] is not None
    report = io.read_json(olist.paths.extracted / "extract_report.json")
    assert report["tables"]["stages"]["dropped"] == {"entered before the lead was created": 1}
    assert report["normalisation"]["timezone"] == "America/Sao_Paulo"


def test_olist_reaches_the_marketers_pages(olist: Params) -> None:
    """A real export lacks what the sample has (no source attribute, no MQL dates): the pages say so."""
    import html
    import re

    report = olist.paths.models / "report"
    pages = {p.stem: re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", p.read_text()))) for p in report.glob("*.html")}
    assert sorted(pages) == ["01_close_rates", "02_points_vs_model", "03_thresholds_funnel", "04_drift", "index"]
    threshold = io.read_json(olist.paths.models / "thresholds.json")["threshold"]
    # the summary page draws on Olist too, whose fit x engagement grid has 12 empty cells of 16
    assert f"A lead becomes an MQL at {threshold} points" in pages["index"]
    assert "no breakdown by source" in pages["03_thresholds_funnel"]
    assert "follow-up times cannot be measured" in pages["03_thresholds_funnel"]
    average = io.read_json(olist.paths.models / "metrics" / "close_rates.json")["average_close_rate"]
    assert f"average close rate is {average:.1%}" in pages["01_close_rates"]
    sheet = pd.read_csv(olist.paths.models / "exports" / "hubspot_score_properties.csv")
    assert sheet["criteria"].str.contains("origin is any of email").any()  # the CRM sheet speaks Olist's terms


def test_activity_names_outside_the_usual_vocabulary_are_reported(tmp_path: Path) -> None:
    """A CRM spelling that was not mapped shows up in unknown_activities (and is still scored)."""
    (tmp_path / "contacts.csv").write_text("id,created,webinars attended,podcasts\n"
                                           "a,2024-01-02,1,2\nb,2024-01-03,0,1\n")
    (tmp_path / "won.csv").write_text("id,won\na,2024-02-01\n")
    source = {"leads": {"path": "contacts.csv", "columns": {"lead_id": "id", "created_at": "created"}},
              "stages": {"path": "won.csv", "columns": {"lead_id": "id", "entered_at": "won"},
                         "constants": {"stage": "customer"}},
              "wide": {"activities": [{"column": "webinars attended", "activity": "webinar_attendance"},
                                      {"column": "podcasts", "activity": "Podcast Listen"}]}}
    params = params_in(tmp_path, source=source, signals={"fit_attributes": [], "numeric_bins": {}})
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"raw": tmp_path})})
    report = extract(params)
    # the name given in params is respelt like the CRM's own names
    assert report["unknown_activities"] == {"podcast_listen": 3}
    assert report["activities_seen"] == {"podcast_listen": 3, "webinar_attendance": 1}
    assert report["normalisation"]["wide_activities"] == {"webinar_attendance": 1, "podcast_listen": 3}


def test_a_tables_header_alone_gives_the_names_read_path_gives(tmp_path: Path) -> None:
    """extract checks the stages' header before the event log's pass, the whole file after it:
    both must see the same names, and a file the header alone cannot judge is left to the read."""
    from pipeline.data.sources import header_columns, read_path

    frame = pd.DataFrame({"Lead_ID ": ["L1"], "stage": ["customer"], "entered_at": ["2024-01-01"]})
    (tmp_path / "folder").mkdir()
    frame.to_csv(tmp_path / "stages.csv", index=False)
    frame.to_parquet(tmp_path / "stages.parquet", index=False)
    frame.to_csv(tmp_path / "folder" / "2024-01.csv", index=False)
    for path in (tmp_path / "stages.csv", tmp_path / "stages.parquet", tmp_path / "folder"):
        assert header_columns(path) == list(read_path(path)[0].columns)
    (tmp_path / "semicolons.csv").write_text("lead_id;stage;entered_at\nL1;customer;2024-01-01\n")
    with pytest.raises(LeadcalError, match="separated by semicolons"):
        header_columns(tmp_path / "semicolons.csv")
    (tmp_path / "latin1.csv").write_bytes("lead_id,st\xe4ge\n".encode("latin-1"))
    (tmp_path / "blank_first.csv").write_text("\nlead_id,stage\n")
    assert header_columns(tmp_path / "latin1.csv") is None and header_columns(tmp_path / "blank_first.csv") is None
