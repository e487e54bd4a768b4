"""Where the per-lead aggregation runs: DuckDB in process (default) or Apache Spark.

The features SQL (pipeline.stages.features) is written once, in the dialect both engines share:
the few functions that differ (epoch microseconds, quoting a column name) come from
the engine. DuckDB streams Parquet on one machine; Spark runs the same statements on a
cluster when one machine is not enough (params `engine: spark`, `spark.master`). From Spark only
aggregated rows come back: per lead (to pandas, for scikit-learn), or per lead and
activity (as Arrow batches, placed into per-lead arrays); never the events. On DuckDB the
events of a range of leads are read in process instead (pipeline.data.local_features): one
machine reads them either way, and NumPy places them faster than a join.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa

from pipeline.errors import LeadcalError
from pipeline.params import Params

log = logging.getLogger(__name__)



class Engine(Protocol):
    """What the aggregation needs from a SQL engine."""

    name: str

    def epoch_us(self, expression: str) -> str:
        """Microseconds since 1970 of a timestamp expression (for arithmetic and range windows)."""

    def quote(self, name: str) -> str:
        """A derived column name as a quoted identifier."""

    def literal(self, text: str) -> str:
        """A string literal (activity names are user data)."""

    def view_parquet(self, name: str, path: Path) -> None:
        """Make a Parquet file (or folder) queryable as `name`, without loading it."""

    def view_frame(self, name: str, frame: pd.DataFrame) -> None:
        """Make a table already in memory queryable as `name` (`leadcal score`'s input: no file to read)."""

    def create(self, name: str, sql: str) -> None:
        """Materialise a query as `name` for the statements that follow."""

    def fetch(self, sql: str) -> pd.DataFrame:
        """Run a query and return its (per-lead, already aggregated) result to pandas."""

    def batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        """Run a query and stream its result as Arrow record batches (for results too long for pandas)."""

    def close(self) -> None: ...


def sql_literal(text: str) -> str:
    """A string literal for DuckDB (standard SQL: quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def parquet_files(path: Path) -> list[Path]:
    """The Parquet file, or the folder's Parquet files in name order (Spark writes a table as a
    folder of part files: extract's event log under `engine: spark`)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".parquet")
        if not files:
            raise LeadcalError(f"{path}: the folder holds no .parquet file")
        return files
    return [path]


def parquet_scan(path: Path) -> str:
    """DuckDB's read of a Parquet file or folder (its files listed: a path may hold a quote or a '*')."""
    return "read_parquet([" + ", ".join(sql_literal(f.as_posix()) for f in parquet_files(path)) + "])"


def hadoop_path(path: Path) -> str:
    """A local path as Spark takes it: absolute, its glob characters escaped (Spark reads '[', '*',
    '?' and '{' in a path as a pattern)."""
    return re.sub(r"([\\*?\[\]{}])", r"\\\1", path.resolve().as_posix())


def timestamp_literal(value: pd.Timestamp) -> str:
    return f"TIMESTAMP '{pd.Timestamp(value).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def duckdb_connection(memory_gb: float, threads: int, **config: object):  # noqa: ANN201 - a DuckDB connection
    """A DuckDB connection as every stage uses it: capped memory, UTC, no progress bar.

    `config`: further settings at connect time (e.g. temp_directory for spilling,
    preserve_insertion_order=False where the query sorts anyway).
    """
    import duckdb

    con = duckdb.connect(config={"memory_limit": f"{memory_gb}GB", **config})
    con.execute(f"SET threads TO {max(1, threads)}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, threads: int = 2, memory_gb: float = 3.0) -> None:
        self._memory_gb = memory_gb
        self._con = duckdb_connection(memory_gb, threads)

    def epoch_us(self, expression: str) -> str:
        return f"epoch_us({expression})"

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def literal(self, text: str) -> str:
        return sql_literal(text)

    def view_parquet(self, name: str, path: Path) -> None:
        self._con.execute(f"CREATE VIEW {name} AS SELECT * FROM {parquet_scan(path)}")

    def view_frame(self, name: str, frame: pd.DataFrame) -> None:
        # as Arrow, the types a Parquet file of the frame would have (pipeline.io.write_parquet): the same SQL results
        self._con.register(name, pa.Table.from_pandas(frame, preserve_index=False))

    def create(self, name: str, sql: str) -> None:
        self._run(lambda: self._con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}"))

    def fetch(self, sql: str) -> pd.DataFrame:
        # through Arrow: a million-row, 60-column result converts in a third of the time .df() takes
        return self._run(lambda: self._con.sql(sql).to_arrow_table().to_pandas())

    def batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        yield from self.reader(sql)

    def reader(self, sql: str) -> pa.RecordBatchReader:
        """The result streamed as Arrow, its schema known even when it has no row."""
        return self._run(lambda: self._con.sql(sql).to_arrow_reader(1_000_000))

    def _run(self, query):  # noqa: ANN001, ANN202 - a thunk and its result
        import duckdb

        try:
            return query()
        except duckdb.OutOfMemoryException as exc:
            raise LeadcalError(f"DuckDB needs more than duckdb_memory_gb = {self._memory_gb:g} GB for the per-lead "
                               "aggregation even when spilling to disk; raise it in params.yaml") from exc

    def close(self) -> None:
        self._con.close()


def spark_session(master: str | None, config: dict[str, str]):  # noqa: ANN201 - a pyspark SparkSession
    """The one way leadcal starts Spark (features' SparkEngine, extract's event log): a session on
    `master` with leadcal's settings, `config` (params spark.config) over them.

    `master` None: the master the launcher gives (spark-submit --master, a Databricks cluster);
    a session already running there is reused, only its SQL settings set. The session time zone
    is always UTC: the contract's timestamps are UTC without a zone, and Spark reads and writes
    them through it."""
    try:
        from pyspark.sql import SparkSession
    except ModuleNotFoundError as exc:
        raise LeadcalError("params engine is 'spark' but PySpark is not installed: pip install 'leadcal[spark]'") \
            from exc
    active = SparkSession.getActiveSession()
    if master is not None and active is not None and active.sparkContext.master != master:
        active.stop()  # getOrCreate would silently reuse a session on another master
    builder = SparkSession.builder.appName("leadcal")
    if master is not None:
        builder = builder.master(master)
    if (master or "").startswith("local"):
        # local executors run leadcal's code (close rates) with this interpreter, where leadcal is
        # installed, not the first `python3` on the PATH (PySpark reads only the environment variable);
        # a cluster's Python is the cluster's setting
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                "spark.sql.shuffle.partitions": "8", "spark.sql.ansi.enabled": "false", **config,
                "spark.sql.session.timeZone": "UTC"}
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM could not start: no Java, bad master URL...
        raise LeadcalError(f"cannot start Spark (master {master!r}): {str(exc).splitlines()[0]}; "
                           "Spark needs Java 17 or later") from exc
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class SparkEngine:
    """Spark SQL through PySpark: `spark.master` local[N] on one machine, or a cluster URL."""

    name = "spark"

    def __init__(self, master: str | None, config: dict[str, str]) -> None:
        self._spark = spark_session(master, config)
        self._created: set[str] = set()  # the views to drop at close (a table made per part: once)
        self._cached: dict[str, object] = {}

    def epoch_us(self, expression: str) -> str:
        return f"unix_micros({expression})"

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def literal(self, text: str) -> str:  # Spark reads backslash escapes inside literals
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def view_parquet(self, name: str, path: Path) -> None:
        self._spark.read.parquet(hadoop_path(path)).createOrReplaceTempView(name)
        self._created.add(name)

    def view_frame(self, name: str, frame: pd.DataFrame) -> None:
        self._spark.createDataFrame(pa.Table.from_pandas(frame, preserve_index=False)).createOrReplaceTempView(name)
        self._created.add(name)

    def create(self, name: str, sql: str) -> None:
        frame = self._spark.sql(sql).cache()
        frame.createOrReplaceTempView(name)
        if name in self._cached:  # a table made again (the next part of the leads): the last one's cache goes
            self._cached[name].unpersist()
        self._cached[name] = frame
        self._created.add(name)

    def fetch(self, sql: str) -> pd.DataFrame:
        with warnings.catch_warnings():
            # PySpark 4.x warns about pandas 3 in general; the conversion used here (typed columns,
            # no Arrow UDFs) is checked against DuckDB's result in tests/test_engines.py
            warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
            frame = self._spark.sql(sql).toPandas()
        # Spark returns nanosecond timestamps; the tables keep microseconds like DuckDB and Parquet
        for column in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[column]):
                frame[column] = frame[column].astype("datetime64[us]")
        return frame

    def batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        yield from self._spark.sql(sql).toArrow().to_batches()

    def close(self) -> None:
        for name in self._created:
            self._spark.catalog.dropTempView(name)
        self._spark.catalog.clearCache()


def open_engine(params: Params) -> Engine:
    """The engine params ask for (`engine:`), ready for queries."""
    if params.engine == "spark":
        return SparkEngine(params.spark.master, params.spark.config)
    return DuckDBEngine(threads=min(2, os.cpu_count() or 1), memory_gb=params.duckdb_memory_gb)
