"""The features' per-lead aggregation on one machine (`engine: duckdb`).

DuckDB computes each lead's outcome and maturity (`lead_frame`, the SQL both engines share)
and streams the leads in id order. For each range of `leads_per_part` of them, the rows and
their activity columns are built in NumPy (pipeline.data.point_in_time) from the range's
events (pipeline.data.lead_events), and the events of the leads' outcomes are counted for the
leakage screen in the same read: the event log is read once, a range at a time.

Measured at 1M leads / 30M events (benchmarks/scale.py): the SQL join of events to rows and its
group-by on (row, activity) took 4.9 CPU seconds of the stage's 12; reading and placing the
events here takes about 2. Spark keeps the SQL (pipeline.stages.features): there no event may
reach the driver. tests/test_engines.py checks both give the same table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.data.engine import DuckDBEngine, duckdb_connection
from pipeline.data.lead_events import EventLog, microseconds
from pipeline.data.point_in_time import (
    DAY_US,
    NO_OUTCOME,
    Cells,
    Moments,
    activity_cells,
    longest_window_us,
    now_moments,
    outcome_events,
    snapshot_moments,
    window_events,
)
from pipeline.params import Params
from pipeline.schema import AGE_PREFIX, COUNT_PREFIX, peak_column, snapshot_stratum


@dataclass
class OutcomeEvents:
    """Per activity, added up over the ranges: events, those of leads with an outcome, and those
    at or after it (what `_after_outcome_sql` counts on Spark)."""

    activities: list[str]
    events: np.ndarray = field(init=False)
    decided: np.ndarray = field(init=False)
    after: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.events, self.decided, self.after = (np.zeros(len(self.activities), dtype=np.int64) for _ in range(3))

    def add(self, counts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        self.events += counts[0]
        self.decided += counts[1]
        self.after += counts[2]

    def frame(self) -> pd.DataFrame:
        """The activities that have an event of a known lead, as the SQL's GROUP BY gives them."""
        seen = self.events > 0
        return pd.DataFrame({"activity": np.asarray(self.activities, dtype=object)[seen],
                             "events_of_decided_leads": self.decided[seen], "after_outcome": self.after[seen]})


def lead_parts(engine: DuckDBEngine, leads_per_part: int | None) -> Iterator[pa.Table]:
    """`lead_frame` in lead id order (the rows' order), `leads_per_part` leads at a time (all: None);
    one empty part when there is no lead."""
    reader = engine.reader("SELECT * FROM lead_frame ORDER BY lead_id")
    buffer, yielded = reader.schema.empty_table(), False
    for batch in reader:
        buffer = pa.concat_tables([buffer, pa.Table.from_batches([batch])])
        while leads_per_part is not None and buffer.num_rows >= leads_per_part:
            yield buffer.slice(0, leads_per_part).combine_chunks()
            buffer, yielded = buffer.slice(leads_per_part), True
    if buffer.num_rows or not yielded:
        yield buffer.combine_chunks()


def part_moments(part: pa.Table, outcome: np.ndarray, params: Params, as_of: pd.Timestamp,
                 moments: Literal["snapshots", "now"]) -> Moments:
    """The rows of a range of leads (pipeline.stages.features' rules); `outcome`: each lead's
    first outcome in microseconds (NO_OUTCOME without one)."""
    created = microseconds(part.column("created_at"), 0)
    as_of_us = pd.Timestamp(as_of).value // 1000  # the SQL literal's microseconds (timestamp_literal)
    if moments == "snapshots":
        return snapshot_moments(created, outcome, as_of_us, params.outcome.snapshot_days)
    return now_moments(created, outcome, as_of_us, max(params.outcome.snapshot_days[-1], 1))


def row_frame(part: pa.Table, rows: Moments, params: Params, moments: Literal["snapshots", "now"]) -> pd.DataFrame:
    """The lead columns of every row, then its snapshot and cut-off: the columns and types the
    SQL's rows have. A scoring row ("now") takes the snapshot of its lead's age."""
    frame = part.drop_columns(["first_outcome_at"]).take(pa.array(rows.lead)).to_pandas()
    days = np.asarray(params.outcome.snapshot_days if moments == "snapshots" else [0], dtype=np.int32)
    frame["snapshot_days"] = days[rows.moment]
    frame["cutoff_at"] = rows.row_cutoff_us().astype("datetime64[us]")
    if moments == "now":
        age_days = (frame["cutoff_at"] - frame["created_at"]).to_numpy() / np.timedelta64(1, "D")
        frame["snapshot_days"] = snapshot_stratum(age_days, params.outcome.snapshot_days).astype(np.int32)
    return frame


def column_block(values: np.ndarray, columns: list[str], index: pd.Index) -> pd.DataFrame:
    """(columns x rows) array -> a frame with one column per row of it, without a copy (both
    paths of pipeline.stages.features build their activity columns so)."""
    return pd.DataFrame(values.T, columns=columns, index=index, copy=False)


def _peaks(rows: Moments, cells: Cells, events: tuple[np.ndarray, np.ndarray, np.ndarray], window_days: int,
           memory_gb: float) -> np.ndarray:
    """Most events within `window_days` (half-open, like the cut-off) per cell. A cell whose events
    all lie within the window has its count as its peak; the others' events go to DuckDB's
    rolling window (a sort), only when there are any. On a connection of its own: the leads'
    stream holds the features' one open."""
    width = window_days * DAY_US
    spread = cells.spread(width)
    if not spread.any():
        return cells.counts
    cell, us = window_events(rows, spread, *events)
    peaks = cells.counts.copy()
    con = duckdb_connection(memory_gb, min(2, os.cpu_count() or 1))
    try:
        con.register("spread_events", pa.table({"cell": cell, "us": us}))
        found = con.sql(f"""
            SELECT cell, MAX(n) AS peak FROM (
                SELECT cell, COUNT(*) OVER (PARTITION BY cell ORDER BY us
                                            RANGE BETWEEN {width - 1} PRECEDING AND CURRENT ROW) AS n
                FROM spread_events) GROUP BY cell""").to_arrow_table()
    finally:
        con.close()
    np.put(peaks, found.column("cell").to_numpy(), found.column("peak").to_numpy())
    return peaks


def aggregate(engine: DuckDBEngine, log: EventLog, params: Params, activities: list[str], as_of: pd.Timestamp,
              moments: Literal["snapshots", "now"], leads_per_part: int | None,
              outcome_events_seen: OutcomeEvents | None = None) -> Iterator[pd.DataFrame]:
    """One row per lead and moment, `leads_per_part` leads at a time, in lead id order: the lead
    columns, then per activity its count, age and peak per window (pipeline.stages.features).
    With `outcome_events_seen` the leakage screen's counts are added up on the way."""
    frequency = params.signals.frequency
    windows = sorted({*frequency.windows_days, *(s.window_days for s in frequency.fixed)})
    names = pa.array(activities, pa.string())
    for part in lead_parts(engine, leads_per_part):
        outcome = microseconds(part.column("first_outcome_at"), NO_OUTCOME)
        rows = part_moments(part, outcome, params, as_of, moments)
        frame = row_frame(part, rows, params, moments)
        events = log.of_leads(part.column("lead_id").combine_chunks(), names)
        if outcome_events_seen is not None:
            outcome_events_seen.add(outcome_events(outcome, *events, len(activities)))
        # a rolling window at least as wide as every row's span counts what the row counts
        cells = activity_cells(rows, *events, len(activities),
                               earliest=any(w * DAY_US < longest_window_us(rows) for w in windows))
        blocks = [column_block(cells.counts, [f"{COUNT_PREFIX}{a}" for a in activities], frame.index),
                  column_block(cells.ages_days(rows.row_cutoff_us()), [f"{AGE_PREFIX}{a}" for a in activities],
                               frame.index)]
        blocks += [column_block(_peaks(rows, cells, events, w, params.duckdb_memory_gb),
                                [peak_column(a, w) for a in activities], frame.index) for w in windows]
        yield pd.concat([frame, *blocks], axis=1)
