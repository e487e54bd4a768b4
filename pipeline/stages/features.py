"""Point-in-time rows: each lead as it was at fixed ages, with its outcome label.

Why fixed ages: a lead that wins on day 5 and a lead still open on day 30 must be seen the
same way. Cutting a lead's history at its outcome ("its first 30 days, or until it won")
makes recency measure the time to the outcome: on Olist, "any activity in the last 7
days" then closed 248 of 248 leads. So the moment a lead is seen never depends on its
outcome. The rules, applied here once for every later stage:

- a lead is seen at each age in `outcome.snapshot_days` (default 0, 7 and 30 days after
  creation) that it reached while still open: no customer or lost stage at or before that
  moment, and the moment is not after the export date. One row per lead and snapshot;
- a row's features use only events strictly before its moment (`cutoff_at`); ages, recency
  and decay are measured at that moment;
- the label is the lead's own, on each of its rows: customer within `horizon_days` of
  creation, known only once the lead is *matured* (created at least `horizon_days` before
  the export date). A younger lead that has not closed yet may still close, so counting it
  as a loss would bias every close rate down.

A lead that wins on day 5 has its day-0 row (who it is, nothing it did yet) and no later
one; a lead open for months has three. Rows of a lead are consecutive, in snapshot order.

Scoring (`moments="now"`) gives one row per lead still open at the export date (or
`--as-of`), seeing the last `snapshot_days[-1]` days of its life, placed in the snapshot of
its age (pipeline.schema.snapshot_stratum).

Each lead's outcome and maturity (`lead_frame`) is SQL run by the engine straight on the
Parquet files. The rows and their activity columns are then built a range of leads at a
time, so the event log is never whole in memory: on DuckDB by NumPy over the range's events
(pipeline.data.local_features: one read of the log, no join of every event to every row);
on Spark by the SQL below (`_aggregate`), where only one row per row and activity reaches the
driver. tests/test_engines.py checks both give the same table.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline import io
from pipeline.artifacts import FEATURES, SIGNAL_COUNTS
from pipeline.data import local_features
from pipeline.data.contract import OUTCOME_STAGES, WON_STAGE
from pipeline.data.engine import DuckDBEngine, Engine, open_engine, parquet_files, timestamp_literal
from pipeline.data.lead_events import EventLog
from pipeline.data.local_features import OutcomeEvents, column_block
from pipeline.design import DATED, FOLD_COLUMN, SNAPSHOT, SNAPSHOT_COHORT, SNAPSHOT_NOTE, validation_folds
from pipeline.errors import LeadcalError
from pipeline.params import Frequency, Outcome, Params, Signals
from pipeline.schema import AGE_PREFIX, COUNT_PREFIX, peak_column, snapshot_stratum
from pipeline.stages.mode import read_mode
from pipeline.staging import staged_folder

if TYPE_CHECKING:
    from pipeline.core.signal_counts import SignalCounts

log = logging.getLogger(__name__)

LEADS_PER_PART = 100_000  # leads aggregated, labelled and written at a time: memory grows with this, not the table
ROW_RANK = "row_rank__"  # a row's position in (lead id, snapshot) order: the integer key of the aggregation


def _lead_frame_sql(horizon_days: int, as_of: str) -> str:
    """Each lead with its first outcome, its win and its maturity; SQL both engines read alike."""
    outcome_list = ", ".join(f"'{s}'" for s in OUTCOME_STAGES)
    return f"""
        SELECT l.*, o.first_outcome_at, c.customer_at,
               l.created_at + INTERVAL '{horizon_days}' DAY <= {as_of} AS matured,
               COALESCE(c.customer_at <= l.created_at + INTERVAL '{horizon_days}' DAY, FALSE) AS won_in_horizon
        FROM leads l
        LEFT JOIN (SELECT lead_id, MIN(entered_at) AS first_outcome_at FROM stages
                   WHERE stage IN ({outcome_list}) GROUP BY lead_id) o USING (lead_id)
        LEFT JOIN (SELECT lead_id, MIN(entered_at) AS customer_at FROM stages
                   WHERE stage = '{WON_STAGE}' GROUP BY lead_id) c USING (lead_id)
    """


def _moment(days: int) -> str:
    return f"created_at + INTERVAL '{days}' DAY"


def _snapshot_rows_sql(snapshot_days: list[int], as_of: str, leads: str = "TRUE") -> str:
    """One row per lead (of those `leads` selects) and snapshot age it reached, open, by the export
    date; it sees every event from the lead's creation (`window_start`) to its moment."""
    branches = [
        f"SELECT lead_id, {days} AS snapshot_days, {_moment(days)} AS cutoff_at, created_at AS window_start "
        f"FROM lead_frame "
        f"WHERE {leads} AND {_moment(days)} <= {as_of} AND (first_outcome_at IS NULL OR first_outcome_at > {_moment(days)})"
        for days in snapshot_days
    ]
    return _ranked(" UNION ALL ".join(branches))


def _now_rows_sql(as_of: str, window_days: int, leads: str = "TRUE") -> str:
    """One row per lead still open at the export date (scoring); its snapshot is set from its age afterwards.

    A row sees the last `window_days` of the lead's life (the span a training row sees: its
    creation to its snapshot), so "4+ pricing visits in 30 days" means the last 30 days, as in
    a CRM's live rule, and a lead a year old is not scored on its first month. Leads won or
    lost by then, or created after it, get no row.
    """
    return _ranked(
        f"SELECT lead_id, 0 AS snapshot_days, {as_of} AS cutoff_at, "
        f"GREATEST(created_at, {as_of} - INTERVAL '{window_days}' DAY) AS window_start FROM lead_frame "
        f"WHERE {leads} AND created_at <= {as_of} AND (first_outcome_at IS NULL OR first_outcome_at > {as_of})")


def _ranked(rows_sql: str) -> str:
    # ranked on the id and snapshot alone: a window over every lead column sorts 30 % slower
    return f"SELECT r.*, ROW_NUMBER() OVER (ORDER BY r.lead_id, r.snapshot_days) - 1 AS {ROW_RANK} FROM ({rows_sql}) r"


def _after_outcome_sql() -> str:
    """Per activity: events of leads with an outcome, and how many of those come at or after it (the leakage screen)."""
    return """
        SELECT a.activity,
               COALESCE(SUM(CASE WHEN f.first_outcome_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS events_of_decided_leads,
               COALESCE(SUM(CASE WHEN a.occurred_at >= f.first_outcome_at THEN 1 ELSE 0 END), 0) AS after_outcome
        FROM activities a JOIN lead_frame f ON a.lead_id = f.lead_id
        GROUP BY a.activity
    """


def _snapshot_counts_sql(snapshot_days: list[int], as_of: str) -> str:
    """Per snapshot age: leads old enough to be seen there, and those already decided (won or lost) by then."""
    return " UNION ALL ".join(
        f"SELECT {days} AS snapshot_days, COUNT(*) AS leads_old_enough, "
        f"COALESCE(SUM(CASE WHEN first_outcome_at <= {_moment(days)} THEN 1 ELSE 0 END), 0) AS decided_before, "
        f"COALESCE(SUM(CASE WHEN customer_at <= {_moment(days)} THEN 1 ELSE 0 END), 0) AS won_before "
        f"FROM lead_frame WHERE {_moment(days)} <= {as_of}"
        for days in snapshot_days
    )


def _open(params: Params, tables: Mapping[str, pd.DataFrame] | None = None) -> Engine:
    """The configured engine with the three canonical tables as views: of paths.extracted's Parquet
    files (nothing is loaded), or of `tables` already in memory (`leadcal score`)."""
    engine = open_engine(params)
    if tables is not None:
        for table in ("leads", "activities", "stages"):
            engine.view_frame(table, tables[table])
        return engine
    for table in ("leads", "activities", "stages"):
        path = params.paths.extracted / f"{table}.parquet"
        if not path.exists():
            engine.close()
            raise LeadcalError(f"{path}: not found (run `leadcal extract` first)")
        engine.view_parquet(table, path)
    return engine


def export_date(engine: Engine) -> pd.Timestamp:
    """The latest timestamp anywhere in the data: what 'now' was when it was exported."""
    value = engine.fetch(
        "SELECT GREATEST((SELECT MAX(created_at) FROM leads), (SELECT MAX(occurred_at) FROM activities),"
        " (SELECT MAX(entered_at) FROM stages)) AS as_of"
    )["as_of"].iloc[0]
    return pd.Timestamp(value)


def _lead_ranges(engine: Engine, leads_per_part: int | None) -> list[str]:
    """SQL conditions on `lead_id` that split the leads into consecutive ranges of `leads_per_part`
    (in id order, the order of the rows); ["TRUE"] for one part."""
    if leads_per_part is None or int(engine.fetch("SELECT COUNT(*) AS n FROM lead_frame")["n"].iloc[0]) <= leads_per_part:
        return ["TRUE"]
    bounds = [engine.literal(b) for b in engine.fetch(
        f"SELECT lead_id FROM (SELECT lead_id, ROW_NUMBER() OVER (ORDER BY lead_id) - 1 AS k FROM lead_frame) "
        f"WHERE k > 0 AND k % {int(leads_per_part)} = 0 ORDER BY lead_id")["lead_id"]]
    return [" AND ".join(([f"lead_id >= {low}"] if low else []) + ([f"lead_id < {high}"] if high else []))
            for low, high in zip([None, *bounds], [*bounds, None])]


def _aggregate(
    engine: Engine, params: Params, activities: list[str], as_of: str,
    moments: Literal["snapshots", "now"] = "snapshots", leads_per_part: int | None = None,
) -> Iterator[pd.DataFrame]:
    """One row per lead and moment, computed by Spark's SQL: no event reaches the driver (on DuckDB:
    pipeline.data.local_features, the same rows).

    Yields the rows of `leads_per_part` leads at a time (all at once: None), in lead id order,
    so memory grows with a part, not with the table. Needs the table `lead_frame`; `as_of` is
    the export date as an SQL literal.

    For each part the engine reads the part's events once into one row per row x activity
    (events, first, latest); those rows stream back as Arrow batches and are placed straight
    into per-row arrays (a pivot in SQL keeps 48 aggregates per row in memory: at 10M leads it
    spilled for minutes). Ages are whole seconds between the latest event and the row's moment
    (floor of each timestamp's seconds), in days. Peaks count events in half-open rolling
    windows, like the cut-off: events exactly W days apart are not "within W days". A row x
    activity whose events all lie within W days has its count as its peak, so the rolling
    window (a sort of the events) only runs on the others; with the default 30-day window and
    snapshots up to day 30 that is none of them.
    """
    o, frequency = params.outcome, params.signals.frequency
    windows = sorted({*frequency.windows_days, *(s.window_days for s in frequency.fixed)})
    for leads in _lead_ranges(engine, leads_per_part):
        engine.create("snapshot_rows", _snapshot_rows_sql(o.snapshot_days, as_of, leads) if moments == "snapshots"
                      else _now_rows_sql(as_of, max(o.snapshot_days[-1], 1), leads))
        frame = _row_frame(engine, o, moments, leads)
        counts, blocks = _count_and_age_blocks(engine, activities, frame, leads)
        for window_days in windows:
            blocks.append(_peak_block(engine, activities, frame, counts, window_days, leads))
        yield pd.concat([frame, *blocks], axis=1)


def _known_activities(engine: Engine, frequency: Frequency) -> list[str]:
    """The activities in the event log, sorted; a fixed frequency signal on an activity the data
    never has is a mistake in params (a typo, another CRM's name), refused before any work."""
    activities = sorted(engine.fetch("SELECT DISTINCT activity FROM activities")["activity"])
    for spec in frequency.fixed:
        if spec.activity not in activities:
            raise LeadcalError(
                f"params signals.frequency.fixed: activity '{spec.activity}' does not occur in the data; "
                f"known activities: {activities}"
            )
    return activities


def _row_frame(engine: Engine, outcome: Outcome, moments: Literal["snapshots", "now"], leads: str = "TRUE") -> pd.DataFrame:
    """The lead columns of every row (lead and moment) in row-rank order; a scoring row ("now")
    takes the snapshot of its lead's age, as its rows were trained on."""
    name = engine.quote
    columns = [c for c in engine.fetch("SELECT * FROM lead_frame WHERE FALSE").columns if c != "first_outcome_at"]
    frame = engine.fetch(
        f"SELECT {', '.join('f.' + name(c) for c in columns)}, r.snapshot_days, r.cutoff_at "
        f"FROM snapshot_rows r JOIN (SELECT * FROM lead_frame WHERE {leads}) f ON r.lead_id = f.lead_id "
        f"ORDER BY r.{ROW_RANK}"
    )
    if moments == "now":
        age_days = (frame["cutoff_at"] - frame["created_at"]).to_numpy() / np.timedelta64(1, "D")
        frame["snapshot_days"] = snapshot_stratum(age_days, outcome.snapshot_days).astype(frame["snapshot_days"].dtype)
    return frame


def _count_and_age_blocks(engine: Engine, activities: list[str], frame: pd.DataFrame,
                          leads: str = "TRUE") -> tuple[np.ndarray, list[pd.DataFrame]]:
    """The one read of the event log: the table `pairs` (row x activity: events, first, latest),
    placed into the count and age columns. Returns the counts (activities x rows; the peaks
    start from them) and the two blocks of columns."""
    us = engine.epoch_us
    engine.create("pairs", f"""
        SELECT r.{ROW_RANK}, a.activity, COUNT(*) AS n, MIN({us('a.occurred_at')}) AS first_us,
               MAX({us('a.occurred_at')}) AS last_us
        FROM (SELECT * FROM activities WHERE {leads}) a JOIN snapshot_rows r ON a.lead_id = r.lead_id
        WHERE a.occurred_at < r.cutoff_at AND a.occurred_at >= r.window_start
        GROUP BY r.{ROW_RANK}, a.activity
    """)
    # one row per activity, one column per row of the table: each becomes a pandas block without a copy
    shape = (len(activities), len(frame))
    counts, ages = np.zeros(shape, dtype=np.int32), np.full(shape, np.nan)
    cutoff_seconds = frame["cutoff_at"].to_numpy().astype("datetime64[us]").astype(np.int64) // 1_000_000
    for row, activity, (n, last_us) in _pairs(engine, "n, last_us", "pairs", activities):
        cell = _cells(activity, row, len(frame))
        np.put(counts, cell, n)
        np.put(ages, cell, (cutoff_seconds[row] - last_us // 1_000_000) / 86400.0)
    blocks = [column_block(counts, [f"{COUNT_PREFIX}{a}" for a in activities], frame.index),
              column_block(ages, [f"{AGE_PREFIX}{a}" for a in activities], frame.index)]
    return counts, blocks


def _peak_block(engine: Engine, activities: list[str], frame: pd.DataFrame, counts: np.ndarray,
                window_days: int, leads: str = "TRUE") -> pd.DataFrame:
    """The peak columns of one window: most events within `window_days` (half-open). A row x
    activity whose events all lie within the window has its count as its peak; the rolling
    window (a sort of the events) runs only on the others, and only when there are any."""
    us = engine.epoch_us
    peaks = counts
    width = window_days * 86_400_000_000  # events less than this many microseconds apart share a window
    spread = f"last_us - first_us >= {width}"
    if int(engine.fetch(f"SELECT COUNT(*) AS n FROM pairs WHERE {spread}")["n"].iloc[0]):
        engine.create(f"peaks_{window_days}", f"""
                SELECT {ROW_RANK}, activity, MAX(n) AS peak FROM (
                    SELECT r.{ROW_RANK}, a.activity, COUNT(*) OVER (
                        PARTITION BY r.{ROW_RANK}, a.activity ORDER BY {us('a.occurred_at')}
                        RANGE BETWEEN {width - 1} PRECEDING AND CURRENT ROW) AS n
                    FROM (SELECT * FROM activities WHERE {leads}) a JOIN snapshot_rows r ON a.lead_id = r.lead_id
                    JOIN (SELECT {ROW_RANK}, activity FROM pairs WHERE {spread}) s
                      ON r.{ROW_RANK} = s.{ROW_RANK} AND a.activity = s.activity
                    WHERE a.occurred_at < r.cutoff_at AND a.occurred_at >= r.window_start) w
                GROUP BY {ROW_RANK}, activity
            """)
        peaks = counts.copy()
        for row, activity, (peak,) in _pairs(engine, "peak", f"peaks_{window_days}", activities):
            np.put(peaks, _cells(activity, row, len(frame)), peak)
    return column_block(peaks, [peak_column(a, window_days) for a in activities], frame.index)


def _cells(activity: np.ndarray, row: np.ndarray, rows: int) -> np.ndarray:
    """Flat positions of (activity, row) in an (activities x rows) array, for np.put: a 2-D
    fancy index is 3x slower. In 64 bits: activities x rows can pass 2**31."""
    return activity.astype(np.int64) * rows + row


def _pairs(engine: Engine, values: str, table: str, activities: list[str]):  # noqa: ANN202 - a generator
    """`values` of each (row rank, activity) row of `table`, batch by batch, as (row positions,
    activity positions, [value arrays]); the engine numbers the activities, so no string comes back."""
    if not activities:  # no event at all (leads to score that did nothing yet): nothing to place
        return
    position = " ".join(f"WHEN {engine.literal(a)} THEN {k}" for k, a in enumerate(activities))
    sql = f"SELECT {ROW_RANK}, CASE activity {position} END AS activity_position, {values} FROM {table}"
    for batch in engine.batches(sql):
        row, activity, *rest = (column.to_numpy() for column in batch.columns)
        yield row, activity, rest


def build_features(
    params: Params, require_outcomes: bool = True, moments: Literal["snapshots", "now"] = "snapshots",
    tables: Mapping[str, pd.DataFrame] | None = None, as_of: object = None,
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Point-in-time rows: fit attributes, activity counts/ages/peaks, snapshot, cohort, label.

    `moments="now"` with `require_outcomes=False` is for scoring leads as they are today.
    `tables` (leads, activities, stages, validated) replaces paths.extracted, and `as_of` params
    outcome.as_of: `leadcal score` passes the leads it read. The whole table at once; the
    features stage writes it part by part (`write_features`).
    """
    parts: list[pd.DataFrame] = []
    report, _ = _build(params, parts.append, require_outcomes, moments, tables, as_of)  # one part: every lead
    (features,) = parts
    return features, report


def _build(
    params: Params, sink: Callable[[pd.DataFrame], None], require_outcomes: bool = True,
    moments: Literal["snapshots", "now"] = "snapshots", tables: Mapping[str, pd.DataFrame] | None = None,
    as_of: object = None, leads_per_part: int | None = None,
) -> tuple[dict[str, object], dict[str, object] | None]:
    """Hand the labelled rows to `sink`, `leads_per_part` leads at a time (all at once: None), in
    row order, and return the stage's report and, for snapshot rows, the signals' counts
    (`signal_counts`), both added up over the parts."""
    from pipeline.core.signal_counts import add_counts, count_labelled, customers_any_time

    engine = _open(params, tables)
    try:
        as_of = as_of or params.outcome.as_of
        as_of = utc_naive(pd.Timestamp(as_of)) if as_of else export_date(engine)
        moment = timestamp_literal(as_of)
        engine.create("lead_frame", _lead_frame_sql(params.outcome.horizon_days, moment))
        activities = _known_activities(engine, params.signals.frequency)
        tally, screened, any_time = Tally(), [], 0
        local = isinstance(engine, DuckDBEngine)  # on Spark the SQL path: no event reaches the driver
        outcome_events = OutcomeEvents(activities) if local and moments == "snapshots" else None
        parts = (local_features.aggregate(engine, _event_log(params, tables), params, activities, as_of, moments,
                                          leads_per_part, outcome_events) if local else
                 _aggregate(engine, params, activities, moment, moments, leads_per_part))
        for rows in parts:
            rows = label_rows(rows)
            tally.add(rows)
            if moments == "snapshots":
                screened.append(count_labelled(rows, params.signals))
                any_time += customers_any_time(rows, params.outcome.snapshot_days[0])
            sink(rows)
        snapshots = engine.fetch(_snapshot_counts_sql(params.outcome.snapshot_days, moment)) \
            if moments == "snapshots" else None
        after_outcome = None if moments != "snapshots" else \
            outcome_events.frame() if outcome_events is not None else engine.fetch(_after_outcome_sql())
    finally:
        engine.close()
    report = tally.report(activities, as_of, params, require_outcomes, snapshots)
    if after_outcome is None:
        return report, None
    signals = add_counts(screened, params.signals.fit_attributes, params.signals.numeric_bins)
    report["leakage_screen"] = _screen(signals, after_outcome)
    return report, signal_counts(signals, any_time, params.signals)


def utc_naive(moment: pd.Timestamp) -> pd.Timestamp:
    """A moment as the tables hold theirs: UTC without a zone. An `as_of` given with an offset
    (`--as-of 2025-06-30T18:00+02:00`) is that instant, not its wall-clock time."""
    return moment.tz_convert("UTC").tz_localize(None) if moment.tzinfo is not None else moment


def signal_counts(signals: SignalCounts, any_time: int, settings: Signals) -> dict[str, object]:
    """The artifact SIGNAL_COUNTS: every signal's counts over the labelled rows (params `signals`:
    activities, fixed frequency signals, recency, fit values) and the matured leads that became
    customers at any time. The close-rates stage adds the frequency signals it discovers and
    publishes the rest as counted here, instead of reading and counting the whole table again;
    the settings they were counted with let it refuse counts that params no longer describe."""
    from pipeline.core.signal_counts import settings_fingerprint

    return {"signals": signals.as_dict(), "customers_any_time": any_time, "settings": settings_fingerprint(settings)}


def _event_log(params: Params, tables: Mapping[str, pd.DataFrame] | None) -> EventLog:
    """The canonical activities the local aggregation reads: the frame given, or paths.extracted's file."""
    return EventLog(tables["activities"] if tables is not None else params.paths.extracted / "activities.parquet")


def _screen(signals: SignalCounts, after_outcome: pd.DataFrame) -> dict[str, object]:
    """Signals too good to be true and activities logged after the outcome (pipeline.core.leakage)."""
    from pipeline.core.leakage import activities_after_outcome, suspicious_signals

    return {
        "signals": suspicious_signals(signals),
        "activities_after_outcome": activities_after_outcome(after_outcome),
        "rule": "flagged: a signal closing at 99 % or more on 30+ leads, a single signal with AUC >= 0.95 (or <= 0.05), "
                "an activity half or more of whose events (of won or lost leads) come at or after the outcome",
    }


def screen_table(features: pd.DataFrame, params: Params, after_outcome: pd.DataFrame
                 ) -> tuple[dict[str, object], dict[str, object]]:
    """The leakage screen and the SIGNAL_COUNTS artifact of a whole labelled table (the pandas baseline's)."""
    from pipeline.core.signal_counts import count_labelled, customers_any_time

    signals = count_labelled(features, params.signals)
    return _screen(signals, after_outcome), signal_counts(
        signals, customers_any_time(features, params.outcome.snapshot_days[0]), params.signals)


def cohort_of(created_at: pd.Series) -> pd.Series:
    """Each lead's creation month as 'YYYY-MM': the few distinct months are formatted once, then
    looked up (strftime on a million timestamps takes half a second)."""
    months, position = np.unique(created_at.to_numpy().astype("datetime64[M]"), return_inverse=True)
    labels = pa.array(np.datetime_as_string(months, unit="M")).take(pa.array(position.ravel()))
    return pd.Series(labels, index=created_at.index, dtype="str")


def label_rows(features: pd.DataFrame) -> pd.DataFrame:
    """The engine's rows -> their cohort and closed label (-1 until the lead matured)."""
    features["cohort"] = cohort_of(features["created_at"])
    features["closed"] = np.where(features["matured"], features["won_in_horizon"].astype(int), -1).astype("int8")
    return features.drop(columns=["won_in_horizon"])


@dataclass
class Tally:
    """What the stage's report counts, added up over parts of the table (parts hold disjoint leads)."""

    leads: int = 0
    rows: Counter[int] = field(default_factory=Counter)  # per snapshot age
    matured: Counter[int] = field(default_factory=Counter)  # labelled rows per snapshot age
    customers: Counter[int] = field(default_factory=Counter)  # of them, customers

    def add(self, features: pd.DataFrame) -> None:
        snapshot, closed = features["snapshot_days"].to_numpy(), features["closed"].to_numpy()
        self.leads += int(features["lead_id"].nunique())
        for age in np.unique(snapshot):
            at = snapshot == age
            self.rows[int(age)] += int(at.sum())
            self.matured[int(age)] += int((at & (closed >= 0)).sum())
            self.customers[int(age)] += int((at & (closed == 1)).sum())

    def report(self, activities: list[str], as_of: pd.Timestamp, params: Params, require_outcomes: bool = True,
               snapshots: pd.DataFrame | None = None) -> dict[str, object]:
        """The report; `snapshots`: per snapshot age, the leads old enough to be seen there and those
        already decided by then (from `_snapshot_counts_sql`)."""
        o = params.outcome
        # every lead with a row has one at the first snapshot (open later means open earlier): one row per lead
        matured, customers = self.matured[o.snapshot_days[0]], self.customers[o.snapshot_days[0]]
        report: dict[str, object] = {
            "export_date": as_of,
            "leads": self.leads,
            "rows": sum(self.rows.values()),
            "snapshot_days": list(o.snapshot_days),
            "matured_leads": matured,
            "customers_in_horizon": customers,
            "average_close_rate": customers / matured if matured else None,
            "activities": activities,
        }
        if snapshots is not None:
            # won or lost before the first snapshot (at creation, with the default day 0): in no statistic,
            # though the funnel counts them
            report["leads_decided_before_first_snapshot"] = int(snapshots.sort_values("snapshot_days")["decided_before"].iloc[0] or 0)
            report["snapshots"] = [
                {"snapshot_days": int(s.snapshot_days), "rows": self.rows[int(s.snapshot_days)],
                 "leads_old_enough": int(s.leads_old_enough), "decided_before": int(s.decided_before or 0),
                 "won_before": int(s.won_before or 0),
                 "matured_rows": self.matured[int(s.snapshot_days)],
                 "close_rate": self.customers[int(s.snapshot_days)] / self.matured[int(s.snapshot_days)]
                 if self.matured[int(s.snapshot_days)] else None}
                for s in snapshots.sort_values("snapshot_days").itertuples(index=False)
            ]
        if require_outcomes and not sum(self.matured.values()):
            raise LeadcalError(
                f"{params.paths.extracted}: no lead is older than horizon_days={o.horizon_days} at the export date "
                f"{as_of.date()}, so no outcome is known yet; lower outcome.horizon_days or add older leads"
            )
        return report


def label(features: pd.DataFrame, activities: list[str], as_of: pd.Timestamp, params: Params,
          require_outcomes: bool = True, snapshots: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, object]]:
    """A whole table of the engine's rows -> labelled rows and the stage's report (the pandas baseline's)."""
    features = label_rows(features)
    tally = Tally()
    tally.add(features)
    return features, tally.report(activities, as_of, params, require_outcomes, snapshots)


def _require_events(params: Params) -> None:
    """No event left after extract (every row dropped): a clear line saying what extract dropped,
    instead of an empty aggregation further on."""
    import pyarrow.parquet as pq

    path = params.paths.extracted / "activities.parquet"
    # a file, or a folder of part files (written by Spark: README "Scale")
    if not path.exists() or any(pq.read_metadata(part).num_rows for part in parquet_files(path)):
        return  # a missing table is named by the engine's own check
    report = params.paths.extracted / "extract_report.json"
    dropped = io.read_json(report).get("tables", {}).get("activities", {}).get("dropped") if report.exists() else None
    raise LeadcalError(f"{path}: no event left after extract (dropped: {dropped or 'none'}); the features need at "
                       f"least one activity: see {report} for what was dropped and why")


def write_features(params: Params) -> dict[str, object]:
    """The point-in-time rows of paths.extracted -> features.parquet and features_report.json.

    Built and written `LEADS_PER_PART` leads at a time (`parquet_parts`: the same file as one
    write); a snapshot export's random folds are dealt over all its leads at once, so it is one part.
    """
    _require_events(params)
    snapshot = read_mode(params.paths.extracted) == SNAPSHOT  # one row per lead, no months: pipeline.design
    with staged_folder(params.paths.features) as out:  # the table and its report replace the folder together
        with io.parquet_parts(out / FEATURES) as write:
            def sink(features: pd.DataFrame) -> None:
                if snapshot:
                    features["cohort"] = SNAPSHOT_COHORT
                    features[FOLD_COLUMN] = validation_folds(features["closed"].to_numpy(), params.train.folds, params.seed)
                write(features)

            report, counts = _build(params, sink, leads_per_part=None if snapshot else LEADS_PER_PART)
        if snapshot:
            report.update(mode=SNAPSHOT, export_date=None, validation=SNAPSHOT_NOTE)
        else:
            report["mode"] = DATED
        io.write_json(out / "features_report.json", report)
        io.write_json(out / SIGNAL_COUNTS, counts)
    log.info(
        "features: %d leads, %d matured, %d customers (average close rate %.2f %%); %d point-in-time rows (%s)",
        report["leads"], report["matured_leads"], report["customers_in_horizon"], 100 * (report["average_close_rate"] or 0),
        report["rows"], ", ".join(f"day {s['snapshot_days']}: {s['rows']}" for s in report["snapshots"]),
    )
    screen = report["leakage_screen"]
    for found in screen["signals"]:
        log.warning("features: signal '%s' looks too good to be true: %s. Is an outcome leaking into the data "
                    "(an activity logged because of the deal)? Check it before publishing", found["signal"], found["why"])
    for found in screen["activities_after_outcome"]:
        log.warning("features: activity '%s' is logged mostly after the outcome (%s): it may record the deal, not "
                    "the interest before it", found["activity"], found["why"])
    for s in report["snapshots"][1:]:
        if s["decided_before"]:
            log.info("features: %d of the %d leads old enough to be seen at day %d were decided before it "
                     "(%d won): they are not seen there", s["decided_before"], s["leads_old_enough"],
                     s["snapshot_days"], s["won_before"])
    return report
