"""A per-lead table counted where it lies: on Spark's executors, part by part; only counts travel.

Close rates need counts that add up over disjoint sets of leads (pipeline.core.signal_counts,
pipeline.core.frequency.count_peaks): a map over parts of whole leads, then an addition on the
driver. Under `engine: spark` the map runs as one Spark job per count: the table is
repartitioned by lead, each partition sorted by lead and snapshot (a lead's rows consecutive,
in snapshot order, as features.parquet stores them), cut into parts of whole leads
(pipeline.io.whole_leads) and counted there. What comes back is one small pickled result per
part, never the rows.

On a cluster the executors import `pipeline` as the driver does: install leadcal on them
(README "Scale").
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa

from pipeline.data.engine import hadoop_path
from pipeline.errors import LeadcalError
from pipeline.io import whole_leads

Result = TypeVar("Result")

LEAD_ORDER = ("lead_id", "snapshot_days")  # a lead's rows together, in snapshot order


def count_by_lead(spark: Any, path: Path, columns: list[str], count: Callable[[pd.DataFrame], Result],
                  rows: int) -> list[Result]:
    """`count` of each part of the Parquet table at `path` (`columns` only), every part a set of
    whole leads of about `rows` rows, run on Spark's executors; the results in no set order (they
    are added up). An empty table gives `count` of an empty frame, as pipeline.io.read_parquet_by_lead does.

    `count` must be picklable (a module-level function or a functools.partial of one)."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    wanted = list(dict.fromkeys([*LEAD_ORDER, *columns]))
    # Spark reads a dot in a name ('n__email.open': an activity's count) as a field of a struct,
    # and mapInArrow names its input columns unquoted: they travel as c0, c1, ... and get their
    # names back on the executor
    aliases = [f"c{i}" for i in range(len(wanted))]
    frame = spark.read.parquet(hadoop_path(path)).select(
        *(F.col("`" + name.replace("`", "``") + "`").alias(alias) for name, alias in zip(wanted, aliases)))
    lead_parts = frame.repartition(aliases[0]).sortWithinPartitions(*aliases[:len(LEAD_ORDER)])

    def per_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for part in whole_leads((batch.rename_columns(wanted) for batch in batches), rows):
            counted = pickle.dumps(count(part.select(columns).to_pandas()), protocol=pickle.HIGHEST_PROTOCOL)
            yield pa.record_batch([pa.array([counted], type=pa.binary())], names=["counted"])

    try:
        results = [pickle.loads(row["counted"])
                   for row in lead_parts.mapInArrow(per_partition, "counted binary").collect()]
    except (PySparkException, Py4JError) as exc:  # a lost executor, a corrupt file, leadcal missing on the executors
        raise LeadcalError(f"{path}: Spark could not count the table: {_cause(exc)}") from exc
    if not results:
        return [count(frame.limit(0).toPandas().set_axis(wanted, axis=1)[columns])]
    return results


def _cause(exc: BaseException) -> str:
    """The line of a Spark error that says what went wrong: an executor's Python error is its
    traceback's last line ('ModuleNotFoundError: ...'), Spark's own its first."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    python_error = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    cause = python_error[-1] if python_error else (lines or [type(exc).__name__])[0]
    if "No module named 'pipeline'" in cause:
        cause += " (the executors need leadcal installed: README, \"Scale\")"
    return cause
