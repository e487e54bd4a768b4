"""The per-lead aggregation gives the same table on DuckDB and on Spark (local mode).

The features SQL is written once; this is what makes `engine: spark` safe to switch on:
same fixture, same params, identical table, column for column and type for type.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.data.generate import write_sample
from pipeline.errors import LeadcalError
from pipeline.params import Params, Spark
from pipeline.schema import COUNT_PREFIX, peak_column
from pipeline.stages import features as features_stage
from pipeline.stages.extract import extract
from pipeline.stages.features import build_features
from tests.conftest import params_in


def require_spark() -> None:
    """Skip unless PySpark (the spark extra) and Java are here: Spark cannot start without them."""
    pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install 'leadcal[spark]')")
    if shutil.which("java") is None:
        pytest.skip("no Java on this machine: Spark cannot start")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Params:
    params = params_in(tmp_path_factory.mktemp("engines"), generate={"n_leads": 1500, "months": 8},
                       signals={"frequency": {"windows_days": [7, 30], "discover": True, "max_p_value": 0.001,
                                              "fixed": []}})
    write_sample(params)
    extract(params)
    return params


def test_duckdb_and_spark_give_identical_features(extracted: Params) -> None:
    require_spark()
    duck, duck_report = build_features(extracted)
    spark, spark_report = build_features(extracted.model_copy(update={"engine": "spark",
                                                                      "spark": Spark(master="local[1]")}))
    pd.testing.assert_frame_equal(spark, duck)  # dtypes included
    assert spark_report == duck_report
    # not a vacuous comparison: real counts, ages strictly inside the window, peaks for both windows
    assert duck.filter(like="n__").to_numpy().sum() > 1000
    ages = duck.filter(like="age__").to_numpy().ravel()
    ages = ages[~pd.isna(ages)]
    assert len(ages) > 500 and ((ages >= 0) & (ages <= extracted.outcome.snapshot_days[-1])).all()
    assert any(c.endswith("__7d") for c in duck.columns) and any(c.endswith("__30d") for c in duck.columns)


class _NotLocal:
    """Stands in for DuckDBEngine in features' check: DuckDB then runs Spark's SQL path."""


@pytest.mark.parametrize("moments", ["snapshots", "now"])
def test_numpy_rows_on_duckdb_equal_the_sql_path_run_by_duckdb(extracted: Params, moments: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """On DuckDB the rows come from NumPy (pipeline.data.local_features); on Spark from the SQL,
    which DuckDB runs as well: the same table and report, with or without Spark on this machine.
    The 7-day window is narrower than the rows' 30 days, so the rolling peaks are exercised."""
    local, local_report = build_features(extracted, require_outcomes=moments == "snapshots", moments=moments)
    monkeypatch.setattr(features_stage, "DuckDBEngine", _NotLocal)
    sql, sql_report = build_features(extracted, require_outcomes=moments == "snapshots", moments=moments)
    pd.testing.assert_frame_equal(local, sql)  # dtypes included
    assert local_report == sql_report
    activities = [c[len(COUNT_PREFIX):] for c in local.columns if c.startswith(COUNT_PREFIX)]
    peaks = local[[peak_column(a, 7) for a in activities]].to_numpy()
    assert (peaks < local[[COUNT_PREFIX + a for a in activities]].to_numpy()).any()  # some peak below its count


@pytest.mark.parametrize("path", ["numpy", "sql"])
def test_an_as_of_with_an_offset_is_its_instant_in_utc(extracted: Params, path: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`--as-of 2024-05-01T02:00+02:00` is midnight UTC: the rows, their cut-offs and maturity are
    those of the naive UTC moment (the contract's timestamps are UTC without a zone), on both paths."""
    if path == "sql":
        monkeypatch.setattr(features_stage, "DuckDBEngine", _NotLocal)
    naive, _ = build_features(extracted, require_outcomes=False, moments="now", as_of="2024-05-01T00:00:00")
    zoned, _ = build_features(extracted, require_outcomes=False, moments="now",
                              as_of=pd.Timestamp("2024-05-01T02:00:00+02:00"))
    pd.testing.assert_frame_equal(zoned, naive)
    assert len(naive) > 50


def test_activity_names_with_quotes_and_backslashes_survive_both_dialects(extracted: Params, tmp_path) -> None:
    """Activity names are user data: they are quoted as literals and column names on each engine."""
    require_spark()
    root = tmp_path / "odd"
    shutil.copytree(extracted.paths.extracted, root / "extracted")
    path = root / "extracted" / "activities.parquet"
    events = pd.read_parquet(path)
    events.loc[events["activity"] == "blog_read", "activity"] = "o'brien\\blog `read` \"x\""
    events.to_parquet(path, index=False)
    params = extracted.model_copy(update={"paths": extracted.paths.model_copy(update={"extracted": root / "extracted"})})
    duck, _ = build_features(params)
    spark, _ = build_features(params.model_copy(update={"engine": "spark", "spark": Spark(master="local[1]")}))
    pd.testing.assert_frame_equal(spark, duck)
    assert duck["n__o'brien\\blog `read` \"x\""].sum() > 0


def test_spark_problems_are_one_clear_line(extracted: Params) -> None:
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    bad = extracted.model_copy(update={"engine": "spark", "spark": Spark(master="nonsense://")})
    with pytest.raises(LeadcalError, match=r"cannot start Spark \(master 'nonsense://'\)"):
        build_features(bad)


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_tables_in_memory_give_the_features_of_their_parquet_files(extracted: Params, engine: str) -> None:
    """`leadcal score` hands the tables it read to the engine (no temporary Parquet folder): the
    same rows as reading them from paths.extracted, on each engine, at a given as_of too."""
    if engine == "spark":
        require_spark()
    params = extracted.model_copy(update={"engine": engine, "spark": Spark(master="local[1]")})
    tables = {name: pd.read_parquet(extracted.paths.extracted / f"{name}.parquet")
              for name in ("leads", "activities", "stages")}
    for as_of in (None, "2024-05-01"):
        dated = params.model_copy(update={"outcome": params.outcome.model_copy(update={"as_of": as_of})})
        from_files, _ = build_features(dated, require_outcomes=False, moments="now")
        in_memory, _ = build_features(params, require_outcomes=False, moments="now", tables=tables, as_of=as_of)
        pd.testing.assert_frame_equal(in_memory, from_files)  # dtypes included
        assert len(in_memory) > 50


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_features_written_part_by_part_are_the_table_built_at_once(extracted: Params, engine: str, tmp_path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The features stage builds, labels, screens and writes a few leads at a time
    (LEADS_PER_PART): the file and the report are those of the whole table built at once. A lead
    column of whole numbers missing in one part only (integer in the others, as pandas reads
    them) is written as one column."""
    if engine == "spark":
        require_spark()
    root = tmp_path / "parts"
    shutil.copytree(extracted.paths.extracted, root / "extracted")
    leads = pd.read_parquet(root / "extracted" / "leads.parquet")
    leads["employees"] = pd.array(range(len(leads)), dtype="Int64")
    leads.loc[len(leads) - 3, "employees"] = pd.NA  # missing in the last part only
    leads.to_parquet(root / "extracted" / "leads.parquet", index=False)
    params = extracted.model_copy(update={
        "paths": extracted.paths.model_copy(update={"extracted": root / "extracted", "features": root / "features"})})
    whole, report = build_features(params)  # on DuckDB: Spark's whole table is DuckDB's (above)
    monkeypatch.setattr(features_stage, "LEADS_PER_PART", 500)
    written = features_stage.write_features(params.model_copy(update={"engine": engine, "spark": Spark(master="local[1]")}))
    table = pd.read_parquet(root / "features" / "features.parquet")
    # 1,500 leads: a first, a middle and a last range of ids
    assert pq.ParquetFile(root / "features" / "features.parquet").metadata.num_row_groups == 3
    pd.testing.assert_frame_equal(table, whole)  # dtypes included
    assert whole["employees"].dtype == "float64"
    assert {k: v for k, v in written.items() if k != "mode"} == report


def test_close_rates_counted_on_spark_executors_are_duckdbs_byte_for_byte(extracted: Params, tmp_path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `engine: spark` the close-rates stage counts features.parquet on the executors (a Spark
    job per count: frequency discovery, then the signals) and adds the counts up on the driver:
    every file it writes is the one the DuckDB engine's part-by-part reading writes."""
    require_spark()
    from pipeline.data import parts_spark
    from pipeline.stages import close_rates

    root = tmp_path / "close_rates"
    shutil.copytree(extracted.paths.extracted, root / "extracted")
    events = pd.read_parquet(root / "extracted" / "activities.parquet")
    # a dot in an activity's name (and so in its columns): Spark reads a bare 'email.open' as a field of 'email'
    events["activity"] = events["activity"].replace({"email_open": "email.open"})
    events.to_parquet(root / "extracted" / "activities.parquet", index=False)
    params = extracted.model_copy(update={
        "paths": extracted.paths.model_copy(update={"extracted": root / "extracted", "features": root / "features",
                                                    "models": root / "duckdb"}),
        "train": extracted.train.model_copy(update={"validation_months": 2}),  # 8 months: 4 would leave no training
        # every best cut counts as found: the discovery's counts are compared too
        "signals": extracted.signals.model_copy(update={"min_support": 10, "frequency": extracted.signals.frequency.model_copy(
            update={"max_p_value": 0.99})})})
    features_stage.write_features(params)
    monkeypatch.setattr(close_rates, "CHUNK_ROWS", 700)  # several parts in each of Spark's partitions
    duck = close_rates.run(params)
    jobs: list[int] = []
    counted = parts_spark.count_by_lead
    monkeypatch.setattr(parts_spark, "count_by_lead", lambda *args: jobs.append(1) or counted(*args))
    spark = close_rates.run(params.model_copy(update={
        "engine": "spark", "spark": Spark(master="local[2]"),
        "paths": params.paths.model_copy(update={"models": root / "spark"})}))

    assert len(jobs) == 2 and spark == duck
    found = [f for f in pd.read_json(root / "duckdb" / "signals.json", typ="series")["frequency"] if f["source"] == "discovered"]
    assert found  # the discovery's counts were compared too, not only the fixed signals'
    assert "email.open" in set(pd.read_csv(root / "duckdb" / "close_rates.csv")["signal"])
    for name in ("close_rates.csv", "signals.json", "metrics/close_rates.json"):
        assert (root / "spark" / name).read_bytes() == (root / "duckdb" / name).read_bytes(), name


def test_an_executors_python_error_is_named_by_its_last_line() -> None:
    """A Python error on Spark's executors reaches the driver as a long trace: the line that says
    what went wrong is its last, and leadcal missing there gets the README's pointer."""
    from pipeline.data.parts_spark import _cause

    trace = ("An exception was thrown from the Python worker. Please see the stack trace below.\n"
             "Traceback (most recent call last):\n  File \"worker.py\", line 1, in main\n"
             "ModuleNotFoundError: No module named 'pipeline'\n")
    assert _cause(RuntimeError(trace)) == ("ModuleNotFoundError: No module named 'pipeline' "
                                           "(the executors need leadcal installed: README, \"Scale\")")
    assert _cause(RuntimeError("[PATH_NOT_FOUND] Path does not exist: /x.\n  at org.apache...")) == \
        "[PATH_NOT_FOUND] Path does not exist: /x."
