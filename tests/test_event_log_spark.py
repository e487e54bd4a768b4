"""With `engine: spark`, extract validates a Parquet event log as Spark jobs and gets DuckDB's results.

Each case writes one raw folder and extracts it twice, with `engine: duckdb` (the reference:
tests/test_event_log.py holds it to the pandas path) and with `engine: spark` (local mode):
- clean data and each drop rule: the same extract_report.json (rows read and written, drops
  by reason, warnings, activities seen, date range) and the same event table, row for row
  in the same order; each case also checks its rule really dropped the rows it planted;
- each refusal rule: both stop with the same one-line message (same rule, same count, same
  example rows: Spark's row index numbers rows as DuckDB's file row number does);
- features and close rates computed from the Spark-written table equal DuckDB's.
One Spark session (local[2]) serves the whole module; it starts with the first Spark extract.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipeline import io
from pipeline.data.contract import FUTURE, LONG_NAME, OF_DROPPED_LEAD
from pipeline.data.generate import write_sample
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.stages.extract import extract
from tests.conftest import params_in

pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install 'leadcal[spark]')")
pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="no Java on this machine: Spark cannot start")

# two shuffle partitions: the test data is small, and each partition is a task on two cores
SPARK = {"master": "local[2]", "config": {"spark.sql.shuffle.partitions": "2"}}
Outcome = tuple[Params, dict | LeadcalError]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated export (leads, stages, events as text), clean: no rule drops a row of it."""
    params = params_in(tmp_path_factory.mktemp("spark_log"), generate={"n_leads": 800, "months": 8})
    write_sample(params)
    return params.paths.raw


def _events(export: Path) -> pd.DataFrame:
    return pd.read_csv(export / "activities.csv", dtype=str, keep_default_na=False)


def _raw(export: Path, root: Path, events: pd.DataFrame, layout: str, leads: pd.DataFrame | None) -> Path:
    """root/raw: the export's leads (or `leads`) and stages, and `events` as Parquet: one file
    (timestamps as text), a folder of two files (text), a folder of monthly files (typed, in
    microseconds), or one file typed in nanoseconds without a zone (pandas' default before 3.0)."""
    raw = root / "raw"
    raw.mkdir(parents=True)
    shutil.copy(export / "stages.csv", raw / "stages.csv")
    if leads is None:
        shutil.copy(export / "leads.csv", raw / "leads.csv")
    else:
        leads.to_csv(raw / "leads.csv", index=False)
    if layout == "file":
        events.to_parquet(raw / "activities.parquet", index=False)
        return raw
    (raw / "activities").mkdir()
    if layout == "folder":
        half = len(events) // 2
        events.iloc[:half].to_parquet(raw / "activities" / "part-a.parquet", index=False)
        events.iloc[half:].to_parquet(raw / "activities" / "part-b.parquet", index=False)
        return raw
    typed = events.assign(occurred_at=pd.to_datetime(events["occurred_at"], utc=True, format="ISO8601"))
    if layout == "nanoseconds":
        # without a zone: DuckDB cannot cast a zoned nanosecond timestamp (TIMESTAMPTZ_NS) yet
        naive = typed["occurred_at"].dt.tz_convert(None).astype("datetime64[ns]")
        typed.assign(occurred_at=naive).to_parquet(raw / "activities" / "all.parquet", index=False)
        return raw
    for month, part in typed.groupby(typed["occurred_at"].dt.strftime("%Y-%m")):
        part.to_parquet(raw / "activities" / f"{month}.parquet", index=False)
    return raw


def _extract(raw: Path, root: Path, engine: str, policy: str) -> Outcome:
    params = params_in(root, engine=engine, spark=SPARK, extract={"on_bad_rows": policy})
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"raw": raw})})
    try:
        return params, extract(params)
    except LeadcalError as exc:
        return params, exc


def _both(export: Path, root: Path, events: pd.DataFrame, policy: str = "drop", layout: str = "file",
          leads: pd.DataFrame | None = None) -> tuple[Outcome, Outcome]:
    """The same raw folder extracted with DuckDB and with Spark (each into its own folder)."""
    raw = _raw(export, root, events, layout, leads)
    return _extract(raw, root / "duckdb", "duckdb", policy), _extract(raw, root / "spark", "spark", policy)


def _assert_same_extract(duck: Outcome, spark: Outcome) -> dict:
    """Both engines kept the log: the same report (file and in memory) and the same table, in order."""
    (duck_params, duck_report), (spark_params, spark_report) = duck, spark
    assert not isinstance(duck_report, LeadcalError), duck_report
    assert not isinstance(spark_report, LeadcalError), spark_report
    assert spark_report == duck_report
    assert io.read_json(spark_params.paths.extracted / "extract_report.json") == \
        io.read_json(duck_params.paths.extracted / "extract_report.json")
    written = spark_params.paths.extracted / "activities.parquet"
    assert written.is_dir() and sorted(p.name for p in written.iterdir())[0] == "part-00000.parquet"
    expected = io.read_parquet(duck_params.paths.extracted / "activities.parquet")
    pd.testing.assert_frame_equal(io.read_parquet(written), expected, check_dtype=False)
    assert len(expected) == duck_report["tables"]["activities"]["rows_written"] > 1000
    return duck_report["tables"]["activities"]


def _plus(rows: dict[str, list[str]]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda events: pd.concat([events, pd.DataFrame(rows)], ignore_index=True)


def _padded(events: pd.DataFrame) -> pd.DataFrame:
    """Ids padded with spaces and tabs, names in other cases with spaces: matched and normalised."""
    events = events.copy()
    events.loc[::7, "lead_id"] = " " + events.loc[::7, "lead_id"] + "\t"
    events.loc[::5, "activity"] = events.loc[::5, "activity"].str.upper() + "  "
    return events


DROPS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], dict[str, int]]] = {
    "clean": (lambda events: events, {}),
    "padded ids, names in other cases": (_padded, {}),
    "name too long": (_plus({"lead_id": ["L000003"], "activity": ["x" * 201], "occurred_at": ["2024-03-01"]}),
                      {LONG_NAME: 1}),
    "unknown lead": (_plus({"lead_id": ["NOBODY", "NOBODY"], "activity": ["demo_request"] * 2,
                            "occurred_at": ["2024-03-01T10:00:00Z", "2024-03-02T10:00:00+02:00"]}),
                     {"unknown lead_id": 2}),
    "before the lead was created": (_plus({"lead_id": ["L000001"], "activity": ["Demo_Request "],
                                           "occurred_at": ["2020-01-01T00:00:00Z"]}),
                                    {"occurred before the lead was created": 1}),
    "in the future": (_plus({"lead_id": ["L000002"] * 2, "activity": ["webinar_attendance"] * 2,
                             "occurred_at": ["2099-01-01T00:00:00Z"] * 2}), {FUTURE: 2}),
    "duplicates": (lambda events: pd.concat([events, events.iloc[[5, 17, 17]]], ignore_index=True),
                   {"duplicate event": 3}),
}


@pytest.mark.parametrize("case", list(DROPS))
def test_spark_keeps_and_drops_what_duckdb_does(export: Path, tmp_path: Path, case: str) -> None:
    change, dropped = DROPS[case]
    report = _assert_same_extract(*_both(export, tmp_path, change(_events(export))))
    assert report["dropped"] == dropped


@pytest.mark.parametrize("layout", ["typed folder", "nanoseconds"])
def test_every_rule_at_once_in_typed_files(export: Path, tmp_path: Path, layout: str) -> None:
    """Typed (zoned) timestamps, in monthly files or in nanoseconds, every drop rule in them, a
    lead dropped at extract (created in the future) with an event of its own."""
    events = _events(export)
    for change, _ in DROPS.values():
        events = change(events)
    events = _plus({"lead_id": ["L999999"], "activity": ["blog_read"], "occurred_at": ["2024-03-01"]})(events)
    leads = pd.read_csv(export / "leads.csv", dtype=str, keep_default_na=False)
    leads = pd.concat([leads, pd.DataFrame({"lead_id": ["L999999"], "created_at": ["2099-01-01"]})]).fillna("")
    report = _assert_same_extract(*_both(export, tmp_path, events, layout=layout, leads=leads))
    assert report["dropped"] == {LONG_NAME: 1, OF_DROPPED_LEAD: 1, "unknown lead_id": 2,
                                 "occurred before the lead was created": 1, FUTURE: 2, "duplicate event": 3}


def test_most_events_matching_no_lead_is_the_same_warning(export: Path, tmp_path: Path) -> None:
    events = _events(export)
    ghosts = events.assign(lead_id="GHOST").iloc[:len(events) // 2 + 600]
    report = _assert_same_extract(*_both(export, tmp_path, pd.concat([events.iloc[:1200], ghosts])))
    assert len(report["warnings"]) == 1 and "have a lead_id that is not in" in report["warnings"][0]


def _tiny(**column: list[str]) -> pd.DataFrame:
    """Four events of one lead, `column` replacing one of their columns."""
    events = pd.DataFrame({"lead_id": ["L000001"] * 4, "activity": ["blog_read", "demo_request", "email_open", "x"],
                           "occurred_at": ["2024-06-01T00:00:00Z"] * 4})
    return events.assign(**column)


REFUSALS: dict[str, tuple[pd.DataFrame, str, str, str]] = {  # events, policy, layout, the message (a regex)
    "empty id": (_tiny(lead_id=["L000001", "L000001", " \t", "L000001"]), "drop", "file",
                 r"column 'lead_id': 1 empty id\(s\); row 3: ''$"),
    "not a date": (_tiny(occurred_at=["2024-06-01", "2024-06-01", "yesterday", "2024"]), "drop", "file",
                   r"column 'occurred_at': 2 value\(s\) are not ISO-8601 dates .* row 3: 'yesterday', row 4: '2024'$"),
    "empty date": (_tiny(occurred_at=["2024-06-01", " ", "2024-06-01", "2024-06-01"]), "drop", "file",
                   r"column 'occurred_at': 1 empty value\(s\); every row needs a date; row 2: ' '$"),
    "empty name, in the second of two files": (_tiny(activity=["blog_read", "demo_request", "email_open", " "]),
                                               "drop", "folder",
                                               r"column 'activity': 1 empty activity name\(s\); "
                                               r"part-b.parquet row 2: 'L000001'$"),
    "NUL byte": (_tiny(activity=["blog_read", "blog\x00read", "email_open", "x"]), "drop", "file",
                 r"column 'activity': 1 value\(s\) hold a NUL byte .* row 2: 'blog\\x00read'$"),
    "no event of any lead": (_tiny(lead_id=["NOBODY", "NOBODY", "ELSE", "NOBODY"]), "drop", "file",
                             r"none of the 4 rows has a lead_id of .*leads.csv \(here e.g. row 1: 'NOBODY', "
                             r"row 2: 'NOBODY', row 3: 'ELSE'; leads e.g. 'L000001'"),
    "no rows": (_tiny().iloc[:0], "drop", "file", r"activities.parquet: the table has a header but no rows$"),
    "missing column": (_tiny().rename(columns={"activity": "event"}), "drop", "file",
                       r"missing required column\(s\) \['activity'\]; found \['lead_id', 'event', 'occurred_at'\]"),
    "fail: name too long": (_tiny(activity=["blog_read", "y" * 201, "email_open", "x"]), "fail", "file",
                            r"1 row\(s\): activity name longer than 200 characters .* row 2: 'L000001'$"),
    "fail: unknown lead": (_tiny(lead_id=["L000001", "NOBODY", "L000001", "NOBODY"]), "fail", "file",
                           r"2 row\(s\): unknown lead_id .* row 2: 'NOBODY', row 4: 'NOBODY'$"),
    "fail: before the lead was created": (_tiny(occurred_at=["2024-06-01", "2020-01-01", "2024-06-01", "2024-06-01"]),
                                          "fail", "file",
                                          r"1 row\(s\): occurred before the lead was created .* row 2: 'L000001'$"),
    "fail: in the future": (_tiny(occurred_at=["2024-06-01", "2024-06-01", "2099-01-01", "2024-06-01"]), "fail",
                            "file", r"1 row\(s\): dated in the future .* row 3: 'L000001'$"),
    "fail: duplicates": (_tiny(activity=["blog_read", "demo_request", "blog_read", "blog_read"]), "fail", "folder",
                         r"2 row\(s\): duplicate event .* part-b.parquet row 1: 'L000001', "
                         r"part-b.parquet row 2: 'L000001'$"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_spark_refuses_what_duckdb_refuses_with_the_same_message(export: Path, tmp_path: Path, case: str) -> None:
    events, policy, layout, message = REFUSALS[case]
    (duck_params, duck), (spark_params, spark) = _both(export, tmp_path, events, policy, layout)
    assert isinstance(duck, LeadcalError), f"DuckDB kept the log: {duck}"
    assert isinstance(spark, LeadcalError), f"Spark kept the log: {spark}"
    assert str(spark) == str(duck)
    assert re.search(message, str(spark)), f"not the expected refusal: {spark}"
    # nothing of the refused run is left beside the previous outputs (none here)
    assert not spark_params.paths.extracted.exists() or not any(spark_params.paths.extracted.iterdir())
    assert not any(spark_params.paths.extracted.parent.glob(".*partial*"))


def test_features_and_close_rates_of_the_spark_table_are_duckdbs(export: Path, tmp_path: Path) -> None:
    """The Spark-written folder feeds the next stages as DuckDB's file does: features on Spark (the
    whole `engine: spark` path) and on DuckDB (a folder read by the default engine), close rates after."""
    from pipeline.stages import close_rates, features

    events = _events(export)
    for change, _ in DROPS.values():
        events = change(events)
    (duck, _), (spark, _) = _both(export, tmp_path, events)
    # eight months of history: two held out leave training rows whose outcome was known before them
    duck, spark = (p.model_copy(update={"train": p.train.model_copy(update={"validation_months": 2})})
                   for p in (duck, spark))
    on_duckdb = spark.model_copy(update={"engine": "duckdb", "paths": spark.paths.model_copy(
        update={"features": tmp_path / "duckdb_on_spark_table" / "features", "models": tmp_path / "m3"})})
    for params in (duck, spark, on_duckdb):
        features.write_features(params)
        close_rates.run(params)
    expected = io.read_parquet(duck.paths.features / "features.parquet")
    assert len(expected) > 1000 and expected.filter(like="n__").to_numpy().sum() > 1000
    for params in (spark, on_duckdb):
        pd.testing.assert_frame_equal(io.read_parquet(params.paths.features / "features.parquet"), expected)
        assert (params.paths.models / "close_rates.csv").read_text() == (duck.paths.models / "close_rates.csv").read_text()
        assert io.read_json(params.paths.features / "features_report.json") == \
            io.read_json(duck.paths.features / "features_report.json")
