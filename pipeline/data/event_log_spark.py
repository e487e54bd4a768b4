"""The event log validated and written by Spark (`engine: spark`): the DuckDB path's rules, as Spark jobs.

Why: pipeline.data.event_log validates a Parquet event log with DuckDB on one machine. On a
cluster the log can outgrow any one machine, so with `engine: spark` extract hands it to this
module instead: the same rules (event_log.RULES and the problems that stop the run), in the
same order, with the same counts, report and messages, run on the executors.

What reaches the driver: counts (rows per verdict and per problem), the distinct spellings of
the activity names (few; each is normalised once in Python, as the DuckDB path does, and goes
back to the executors as a small broadcast table), the number of rows written (from the
written files' footers) and, when a run is refused, a handful of example rows. Never the
events. The leads (one row per lead, validated in pandas before) go the other way, as a table.

The jobs: (1) the distinct spellings; (2) one aggregation: rows per verdict and per problem,
where DuckDB judges each row on its way into its sort; (3) only when leads were dropped at
extract and some events match no lead: the events of those leads; (4) the kept rows without
duplicates, sorted by lead id, time and activity, written as a folder of Parquet files
(`activities.parquet/part-00000.parquet`, ...: in name order they hold the rows in that order;
DuckDB, Spark and pandas read the folder as one table). The log is read three times where
DuckDB reads it once; a refused log costs one more job for its example rows. A refused log
is refused before anything is written, except duplicates under on_bad_rows: fail, which are
counted from what was written (as on the DuckDB path).

Messages name rows as the DuckDB path does: 'row N' counts a file's data rows from 1 (Spark's
`_metadata.row_index`), the file is named when there are several. One difference: Spark gives
a file's name percent-encoded ('a%20b.parquet'). Names are decoded for messages, but examples
from several files are ordered by the encoded name: the same order unless the names hold
characters a URI escapes.

Dates given as text are read as DuckDB reads them (ISO 8601, with or without a zone or offset,
UTC without one), with one known difference: DuckDB reads an hour of 24 ('2024-03-01T24:00:00')
as the next midnight, Spark refuses it as not a date. A Spark-only form, a date without a day
('2024', '2024-03'), is refused here as DuckDB refuses it. Files of one folder whose columns
differ in type (dates as text in one, typed in another) are refused by Spark's schema merge
(a one-line error naming the folder); DuckDB's union_by_name reads them together.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DateType, LongType, TimestampNTZType, TimestampType

from pipeline.data.contract import EXAMPLE_ROWS, TableReport, rule_refusal, unmatched_error
from pipeline.data.engine import hadoop_path, parquet_files
from pipeline.data.event_log import (
    BAD_DATE,
    LONG,
    NO_DATE,
    NO_ID,
    NO_ROWS,
    PROBLEM,
    RULES,
    UNKNOWN,
    WHITESPACE,
    example_list,
    matching,
    name_ranks,
    normalised,
    nul_error,
    problem_error,
    require_columns,
    verdict_report,
)
from pipeline.errors import LeadcalError
from pipeline.staging import os_error

log = logging.getLogger(__name__)

# event_log.RULES' conditions (all but duplicates), in their order, over the judged rows. A name too
# long is the name table's rank -1 here: DuckDB's condition is an IN subquery, which Spark takes in
# no CASE. The others are DuckDB's own SQL, which Spark reads alike.
CONDITIONS: tuple[str, ...] = tuple("name_rank < 0" if verdict == LONG else condition
                                    for verdict, (_, condition) in enumerate(RULES[:-1], start=1))
NO_NAME = "name_rank IS NULL"  # no spelling or a blank one: the name table holds only the named spellings
PROBLEMS = (NO_ID, BAD_DATE, NO_DATE, NO_NAME)  # in event_log.problem_error's order
VERDICT = (f"CASE WHEN occurred_at IS NULL OR name_rank IS NULL OR coalesce(lead_id, '') = '' THEN {PROBLEM} "
           + " ".join(f"WHEN {condition} THEN {verdict}" for verdict, condition in enumerate(CONDITIONS, start=1))
           + " ELSE 0 END")
# Spark also reads '2024' and '2024-03' (and '12345' as the year 12345) as timestamps; DuckDB
# and the pandas path do not: text must start with a full date to be read as one
ISO_DATE = "^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
ORDER = ("lead_id", "occurred_at", "activity")  # the canonical table's order (DuckDB's: lead, time, name)


def _in_nanoseconds(files: list[Path]) -> bool:
    """Whether a file stores a timestamp in nanoseconds (pandas before 3.0 does by default). Spark
    refuses those unless it reads them as integers (spark.sql.legacy.parquet.nanosAsLong), which
    _timestamp turns back into timestamps; DuckDB reads them as they are. Footers only."""
    for file in files:
        try:
            schema = pq.read_schema(file)
        except (OSError, pa.ArrowException):
            continue  # not Parquet: Spark's read names it
        if any(pa.types.is_timestamp(field.type) and field.type.unit == "ns" for field in schema):
            return True
    return False


def _read(spark: SparkSession, files: list[Path], shown: str) -> tuple[DataFrame, dict[str, str], bool]:
    """The files as one table (columns merged by name, as DuckDB's union_by_name), its columns
    (stripped, lower-case name -> name in the files), and whether nanosecond timestamps are read
    as integers. A log without a required column is refused."""
    nanos = _in_nanoseconds(files)
    # set on each run: it changes only how files that Spark would otherwise refuse are read
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", str(nanos).lower())
    try:
        frame = spark.read.option("mergeSchema", "true").parquet(*map(hadoop_path, files))
    except Exception as exc:  # noqa: BLE001 - any reading failure is the file's: named, one line
        raise LeadcalError(f"{shown}: cannot read as Parquet: {_first_line(exc)}") from exc
    columns = {name.strip().lower(): name for name in frame.columns}
    require_columns(list(columns), shown)
    return frame, columns, nanos


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _timestamp(column: Column, kind: DataType, nanos: bool, column_sql: str) -> Column:
    """occurred_at as UTC without a zone (TIMESTAMP_NTZ), whatever type the files store it as.
    A zoned timestamp is converted in the session's time zone, which spark_session sets to UTC."""
    if isinstance(kind, TimestampNTZType):
        return column
    if isinstance(kind, (TimestampType, DateType)):
        return column.cast("timestamp_ntz")
    if isinstance(kind, LongType) and nanos:  # nanoseconds since 1970 (_in_nanoseconds), cut to microseconds
        return F.timestamp_micros(F.expr(f"{column_sql} div 1000")).cast("timestamp_ntz")
    text = F.trim(column.cast("string"))
    return F.when(text.rlike(ISO_DATE), text.try_cast("timestamp").cast("timestamp_ntz"))


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _parsed(frame: DataFrame, columns: dict[str, str], nanos: bool) -> DataFrame:
    """Every row with its file and row number (read only for messages), its id trimmed and its
    timestamp as UTC: DuckDB's view `parsed`, column for column."""
    lead, activity, occurred = (F.col(_quoted(columns[name])) for name in ("lead_id", "activity", "occurred_at"))
    kind = frame.schema[columns["occurred_at"]].dataType
    nanos = nanos and isinstance(kind, LongType)
    typed = nanos or isinstance(kind, (TimestampType, TimestampNTZType, DateType))
    raw_lead = lead.cast("string")
    return frame.select(
        F.col("_metadata.file_name").alias("file_name"), (F.col("_metadata.row_index") + 1).alias("row_number"),
        raw_lead.alias("raw_lead_id"), activity.cast("string").alias("raw_activity"),
        F.trim(raw_lead, F.lit(WHITESPACE)).alias("lead_id"),
        # a typed timestamp needs no text: only its absence is checked
        (F.when(occurred.isNotNull(), F.lit("x")) if typed else occurred.cast("string")).alias("occurred_text"),
        _timestamp(occurred, kind, nanos, _quoted(columns["occurred_at"])).alias("occurred_at"))


def _examples(rows: DataFrame, column: str, files: int) -> str:
    """A few of `rows` as messages name them (event_log.example_list): the first by file and row."""
    found = rows.orderBy("file_name", "row_number").select("file_name", "row_number", column) \
        .limit(EXAMPLE_ROWS).collect()
    return example_list([(unquote(name), number, value) for name, number, value in found], files)


def _name_table(spark: SparkSession, parsed: DataFrame, shown: str, files: int) -> DataFrame:
    """The activity spellings (few) normalised once on the driver, as the DuckDB path does: a table
    raw spelling -> rank among the names (-1: too long) and the name written. A NUL byte in a
    name is refused, as both other paths refuse it."""
    spellings = [(raw, normalised(raw)) for raw, in
                 parsed.where("raw_activity IS NOT NULL").select("raw_activity").distinct().collect()]
    if any("\x00" in raw for raw, _ in spellings):
        hits = parsed.where(F.col("raw_activity").contains("\x00"))
        raise nul_error(shown, hits.count(), _examples(hits, "raw_activity", files))
    _, ranks = name_ranks(spellings)
    named = [(raw, name) for raw, name in spellings if name]
    return spark.createDataFrame([(raw, rank, name) for (raw, name), rank in zip(named, ranks)],
                                 "raw string, name_rank int, activity string")


def _lead_table(spark: SparkSession, leads: pd.DataFrame) -> DataFrame:
    """The validated leads (id, creation) as a Spark table. Creation goes as microseconds since
    1970, not as a timestamp, so no time zone of the driver or the session can shift it."""
    table = pa.table({"lead_key": pa.array(leads["lead_id"], type=pa.string()),
                      "created_us": pa.array(leads["created_at"].to_numpy(dtype="datetime64[us]").view("int64"))})
    created = F.timestamp_micros("created_us").cast("timestamp_ntz")  # the session is UTC: the same wall clock
    return spark.createDataFrame(table).select("lead_key", created.alias("created_at"))


def _judged(parsed: DataFrame, names: DataFrame, leads: DataFrame, now: pd.Timestamp | None) -> DataFrame:
    """Each row with its name's rank, its lead's creation (NULL: no such lead), the moment after
    which an event is in the future, and its verdict (0: kept; 1..4: RULES[verdict - 1]; PROBLEM).

    Ids are matched after trimming: validated lead ids are trimmed, so an id matching as written
    matches trimmed too (DuckDB tries as written first only to trim fewer strings)."""
    limit = "9999-12-31 00:00:00" if now is None else f"{pd.Timestamp(now):%Y-%m-%d %H:%M:%S.%f}"
    judged = (parsed.join(F.broadcast(names), parsed["raw_activity"] == names["raw"], "left").drop("raw")
              .join(leads, F.col("lead_id") == F.col("lead_key"), "left").drop("lead_key")
              .withColumn("now", F.expr(f"TIMESTAMP_NTZ '{limit}'")))
    return judged.withColumn("verdict", F.expr(VERDICT))


def _counts(judged: DataFrame) -> tuple[np.ndarray, tuple[int, ...]]:
    """One pass: rows per verdict, and rows with each problem that stops the run (PROBLEMS)."""
    verdict = F.col("verdict")
    row = judged.agg(*(F.count(F.when(verdict == v, 1)) for v in range(PROBLEM + 1)),
                     *(F.count(F.when(F.expr(condition), 1)) for condition in PROBLEMS)).collect()[0]
    return np.array(row[:PROBLEM + 1], dtype=np.int64), tuple(int(n) for n in row[PROBLEM + 1:])


def _refuse_stopping(judged: DataFrame, shown: str, files: int, policy: str, verdicts: np.ndarray,
                     problems: tuple[int, ...], leads: pd.DataFrame, leads_source: str | None) -> None:
    """Raise what the DuckDB path raises for a log with a row that stops the run: a problem, named
    in the pandas path's order; under on_bad_rows: fail, the first rule that drops a row (no row
    matching any lead is a mapping error before the unknown-lead rule)."""
    if verdicts[PROBLEM]:
        error = problem_error(shown, problems, NO_NAME,
                              lambda condition, column: _examples(judged.where(condition), column, files))
        raise error or LeadcalError(f"{shown}: {int(verdicts[PROBLEM])} row(s) cannot be read as events")
    if policy != "fail" or not verdicts[1:PROBLEM].any():
        return
    verdict = next(v for v in range(1, PROBLEM) if verdicts[v])
    rows = judged.where(f"verdict = {verdict}")
    if verdict == UNKNOWN and verdicts[UNKNOWN] == matching(verdicts, 0)[0]:
        raise unmatched_error(shown, "activities", int(verdicts[UNKNOWN]), _examples(rows, "lead_id", files),
                              leads["lead_id"], leads_source)
    raise rule_refusal(shown, RULES[verdict - 1][0], int(verdicts[verdict]), _examples(rows, "lead_id", files))


def _of_dropped(spark: SparkSession, judged: DataFrame, dropped_ids: pd.Series | None,
                verdicts: np.ndarray) -> tuple[int, DataFrame]:
    """(events of leads dropped at extract, the unknown-lead rows without them). The events of
    dropped leads are counted only when leads were dropped and some events matched no lead."""
    unknown = judged.where(f"verdict = {UNKNOWN}")
    if dropped_ids is None or not len(dropped_ids) or not verdicts[UNKNOWN]:
        return 0, unknown
    dropped = spark.createDataFrame(pa.table({"dropped_id": pa.array(dropped_ids, type=pa.string())}))
    matches = F.col("lead_id") == F.col("dropped_id")
    return unknown.join(dropped, matches, "left_semi").count(), unknown.join(dropped, matches, "left_anti")


def _write(judged: DataFrame, folder: Path) -> int:
    """The kept rows, without duplicates, sorted (lead id, time, name), written by the executors
    as `folder`/part-NNNNN.parquet; returns the rows written, from the files' footers."""
    kept = judged.where("verdict = 0").select("lead_id", "activity", "occurred_at").dropDuplicates()
    kept.orderBy(*ORDER).write.parquet(hadoop_path(folder))
    parts = sorted(p for p in folder.iterdir() if p.name.startswith("part-") and p.suffix == ".parquet")
    for leftover in set(folder.iterdir()) - set(parts):  # _SUCCESS, checksums: not part of the table
        leftover.unlink()
    # the part files' names hold a random job id: numbered instead, so two runs write the same names
    renamed = [part.rename(folder / f"part-{number:05d}.parquet") for number, part in enumerate(parts)]
    return sum(pq.read_metadata(part).num_rows for part in renamed)


def _refusal_of_duplicates(judged: DataFrame, shown: str, duplicates: int, files: int) -> LeadcalError:
    """Duplicates under on_bad_rows: fail: every copy after a row's first (by file and row) is named."""
    first = Window.partitionBy("lead_id", "name_rank", "occurred_at").orderBy("file_name", "row_number")
    copies = judged.where("verdict = 0").withColumn("copy", F.row_number().over(first)).where("copy > 1")
    return rule_refusal(shown, RULES[-1][0], duplicates, _examples(copies, "lead_id", files))


def _validate(spark: SparkSession, files: list[Path], shown: str, leads: pd.DataFrame, partial: Path, policy: str,
              now: pd.Timestamp | None, dropped_ids: pd.Series | None, leads_source: str | None) -> TableReport:
    """Judge every row, refuse what the DuckDB path refuses, write the kept rows to `partial`."""
    frame, columns, nanos = _read(spark, files, shown)
    parsed = _parsed(frame, columns, nanos)
    judged = _judged(parsed, _name_table(spark, parsed, shown, len(files)), _lead_table(spark, leads), now)
    verdicts, problems = _counts(judged)
    _refuse_stopping(judged, shown, len(files), policy, verdicts, problems, leads, leads_source)
    if not verdicts.sum():
        raise LeadcalError(f"{shown}: {NO_ROWS}")
    of_dropped, unknown = _of_dropped(spark, judged, dropped_ids, verdicts)
    reaching, unmatched = matching(verdicts, of_dropped)
    if reaching and unmatched == reaching:
        raise unmatched_error(shown, "activities", reaching, _examples(unknown, "lead_id", len(files)),
                              leads["lead_id"], leads_source)
    written = _write(judged, partial)
    duplicates = int(verdicts[0]) - written
    if duplicates and policy == "fail":
        raise _refusal_of_duplicates(judged, shown, duplicates, len(files))
    return verdict_report(shown, verdicts, written, of_dropped, leads_source)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_event_log_spark(
    spark: SparkSession, source: Path, leads: pd.DataFrame, out: Path, policy: str, now: pd.Timestamp | None,
    dropped_ids: pd.Series | None = None, leads_source: str | None = None,
) -> TableReport:
    """Validate the Parquet event log at `source` against `leads` with Spark and write `out` (a
    folder of sorted Parquet files, replaced whole). The arguments are event_log.write_event_log's;
    `spark`: the session (pipeline.data.engine.spark_session)."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    files = parquet_files(source)
    shown = str(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    _remove(partial)
    try:
        report = _validate(spark, files, shown, leads, partial, policy, now, dropped_ids, leads_source)
    except (PySparkException, Py4JError) as exc:  # a corrupt row group, a lost executor, a full disk...
        _remove(partial)
        raise LeadcalError(f"{shown}: Spark could not read or write the event log: {_first_line(exc)}") from exc
    except OSError as exc:  # tidying the written folder
        _remove(partial)
        raise os_error(exc, out) or LeadcalError(f"{out}: could not write the event log: {exc}") from exc
    except BaseException:
        _remove(partial)
        raise
    _remove(out)
    os.replace(partial, out)
    log.info("extract: %s: event log validated by Spark (%d rows kept of %d)", shown, report.rows_written,
             report.rows_read)
    return report
