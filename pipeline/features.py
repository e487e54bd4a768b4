"""Per-lead features as of each lead's cut-off, and its outcome label.

Leakage rules, applied here once for every later stage:
- cut-off = created_at + observation_days, or the lead's first outcome stage
  (customer / lost) or the export date if that comes earlier: nothing after the
  outcome is seen, and a lead younger than its window is seen as it is now;
- only events strictly before the cut-off count;
- a lead is labelled (closed or not) only once it is *matured*: created at least
  horizon_days before the export date. A younger lead that has not closed yet
  may still close, so counting it as a loss would bias every close rate down.

The aggregation is SQL run by the engine (DuckDB, or Spark) straight on the Parquet
files, so the event log is streamed, never loaded into pandas; only one row per lead
and activity comes back, and the per-lead table is built from those.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline import io
from pipeline.contract import OUTCOME_STAGES, WON_STAGE
from pipeline.engine import Engine, open_engine, timestamp_literal
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.schema import AGE_PREFIX, COUNT_PREFIX, peak_column

log = logging.getLogger(__name__)

LEAD_RANK = "lead_rank__"  # a lead's position in id order: the integer key of the aggregation (not an output)


def _lead_frame_sql(observation_days: int, horizon_days: int, as_of: str) -> str:
    """Each lead with its cut-off, outcome and maturity; SQL both engines read alike."""
    outcome_list = ", ".join(f"'{s}'" for s in OUTCOME_STAGES)
    return f"""
        SELECT l.*,
               LEAST(l.created_at + INTERVAL '{observation_days}' DAY,
                     COALESCE(o.first_outcome_at, TIMESTAMP '9999-12-31 00:00:00'),
                     {as_of}) AS cutoff_at,
               o.first_outcome_at < l.created_at + INTERVAL '{observation_days}' DAY AS window_truncated,
               c.customer_at,
               l.created_at + INTERVAL '{horizon_days}' DAY <= {as_of} AS matured,
               COALESCE(c.customer_at <= l.created_at + INTERVAL '{horizon_days}' DAY, FALSE) AS won_in_horizon,
               r.{LEAD_RANK}
        FROM leads l
        -- ranked on the id alone: a window over every lead column sorts 30 % slower
        JOIN (SELECT lead_id, ROW_NUMBER() OVER (ORDER BY lead_id) - 1 AS {LEAD_RANK} FROM leads) r USING (lead_id)
        LEFT JOIN (SELECT lead_id, MIN(entered_at) AS first_outcome_at FROM stages
                   WHERE stage IN ({outcome_list}) GROUP BY lead_id) o USING (lead_id)
        LEFT JOIN (SELECT lead_id, MIN(entered_at) AS customer_at FROM stages
                   WHERE stage = '{WON_STAGE}' GROUP BY lead_id) c USING (lead_id)
    """


def _open(params: Params) -> Engine:
    """The configured engine with the three canonical tables as views (nothing is loaded)."""
    engine = open_engine(params)
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


def _aggregate(engine: Engine, params: Params, as_of: pd.Timestamp) -> tuple[pd.DataFrame, list[str]]:
    """One row per lead, computed by the engine: the long event table never reaches pandas.

    The engine reads the event log once into one row per lead x activity (events, first,
    latest); those rows stream back as Arrow batches and are placed straight into per-lead
    arrays (a pivot in SQL keeps 48 aggregates per lead in memory: at 10M leads it spilled
    for minutes). Ages are whole seconds between the latest event and the cut-off (floor of
    each timestamp's seconds), in days. Peaks count events in half-open rolling windows, like
    the cut-off: events exactly W days apart are not "within W days". A lead x activity whose
    events all lie within W days has its count as its peak, so the rolling window (a sort of
    the events) only runs on the others; with the default 30-day window and 30-day
    observation that is none of them.
    """
    o, frequency = params.outcome, params.signals.frequency
    us, name = engine.epoch_us, engine.quote
    engine.create("lead_frame", _lead_frame_sql(o.observation_days, o.horizon_days, timestamp_literal(as_of)))
    activities = sorted(engine.fetch("SELECT DISTINCT activity FROM activities")["activity"])
    for spec in frequency.fixed:
        if spec.activity not in activities:
            raise LeadcalError(
                f"params signals.frequency.fixed: activity '{spec.activity}' does not occur in the data; "
                f"known activities: {activities}"
            )
    windows = sorted({*frequency.windows_days, *(s.window_days for s in frequency.fixed)})
    columns = [c for c in engine.fetch("SELECT * FROM lead_frame WHERE FALSE").columns if c != LEAD_RANK]
    frame = engine.fetch(f"SELECT {', '.join(name(c) for c in columns)} FROM lead_frame ORDER BY {LEAD_RANK}")
    engine.create("pairs", f"""
        SELECT f.{LEAD_RANK}, a.activity, COUNT(*) AS n, MIN({us('a.occurred_at')}) AS first_us,
               MAX({us('a.occurred_at')}) AS last_us
        FROM activities a JOIN lead_frame f ON a.lead_id = f.lead_id
        WHERE a.occurred_at < f.cutoff_at
        GROUP BY f.{LEAD_RANK}, a.activity
    """)
    # one row per activity, one column per lead: each becomes a pandas block without a copy
    shape = (len(activities), len(frame))
    counts, ages = np.zeros(shape, dtype=np.int32), np.full(shape, np.nan)
    cutoff_seconds = frame["cutoff_at"].to_numpy().astype("datetime64[us]").astype(np.int64) // 1_000_000
    for lead, activity, (n, last_us) in _pairs(engine, "n, last_us", "pairs", activities):
        cell = _cells(activity, lead, len(frame))
        np.put(counts, cell, n)
        np.put(ages, cell, (cutoff_seconds[lead] - last_us // 1_000_000) / 86400.0)
    blocks = [_block(counts, [f"{COUNT_PREFIX}{a}" for a in activities], frame.index),
              _block(ages, [f"{AGE_PREFIX}{a}" for a in activities], frame.index)]
    for window_days in windows:
        peaks = counts
        width = window_days * 86_400_000_000  # events less than this many microseconds apart share a window
        spread = f"last_us - first_us >= {width}"
        if int(engine.fetch(f"SELECT COUNT(*) AS n FROM pairs WHERE {spread}")["n"].iloc[0]):
            engine.create(f"peaks_{window_days}", f"""
                SELECT {LEAD_RANK}, activity, MAX(n) AS peak FROM (
                    SELECT f.{LEAD_RANK}, a.activity, COUNT(*) OVER (
                        PARTITION BY f.{LEAD_RANK}, a.activity ORDER BY {us('a.occurred_at')}
                        RANGE BETWEEN {width - 1} PRECEDING AND CURRENT ROW) AS n
                    FROM activities a JOIN lead_frame f ON a.lead_id = f.lead_id
                    JOIN (SELECT {LEAD_RANK}, activity FROM pairs WHERE {spread}) s
                      ON f.{LEAD_RANK} = s.{LEAD_RANK} AND a.activity = s.activity
                    WHERE a.occurred_at < f.cutoff_at) w
                GROUP BY {LEAD_RANK}, activity
            """)
            peaks = counts.copy()
            for lead, activity, (peak,) in _pairs(engine, "peak", f"peaks_{window_days}", activities):
                np.put(peaks, _cells(activity, lead, len(frame)), peak)
        blocks.append(_block(peaks, [peak_column(a, window_days) for a in activities], frame.index))
    return pd.concat([frame, *blocks], axis=1), activities


def _cells(activity: np.ndarray, lead: np.ndarray, leads: int) -> np.ndarray:
    """Flat positions of (activity, lead) in an (activities x leads) array, for np.put: a 2-D
    fancy index is 3x slower. In 64 bits: activities x leads can pass 2**31."""
    return activity.astype(np.int64) * leads + lead


def _block(values: np.ndarray, columns: list[str], index: pd.Index) -> pd.DataFrame:
    """(columns x leads) array -> a frame with one column per row of it."""
    return pd.DataFrame(values.T, columns=columns, index=index, copy=False)


def _pairs(engine: Engine, values: str, table: str, activities: list[str]):  # noqa: ANN202 - a generator
    """`values` of each (lead rank, activity) row of `table`, batch by batch, as (lead positions,
    activity positions, [value arrays]); the engine numbers the activities, so no string comes back."""
    position = " ".join(f"WHEN {engine.literal(a)} THEN {k}" for k, a in enumerate(activities))
    sql = f"SELECT {LEAD_RANK}, CASE activity {position} END AS activity_position, {values} FROM {table}"
    for batch in engine.batches(sql):
        lead, activity, *rest = (column.to_numpy() for column in batch.columns)
        yield lead, activity, rest


def build_features(params: Params, require_outcomes: bool = True) -> tuple[pd.DataFrame, dict[str, object]]:
    """One row per lead: fit attributes, activity counts/ages/peaks, cohort, label.

    `require_outcomes=False` is for scoring new leads, whose outcomes are not known yet.
    """
    engine = _open(params)
    try:
        as_of = pd.Timestamp(params.outcome.as_of) if params.outcome.as_of else export_date(engine)
        features, activities = _aggregate(engine, params, as_of)
    finally:
        engine.close()
    return label(features, activities, as_of, params, require_outcomes)


def cohort_of(created_at: pd.Series) -> pd.Series:
    """Each lead's creation month as 'YYYY-MM': the few distinct months are formatted once, then
    looked up (strftime on a million timestamps takes half a second)."""
    months, position = np.unique(created_at.to_numpy().astype("datetime64[M]"), return_inverse=True)
    labels = pa.array(np.datetime_as_string(months, unit="M")).take(pa.array(position.ravel()))
    return pd.Series(labels, index=created_at.index, dtype="str")


def label(features: pd.DataFrame, activities: list[str], as_of: pd.Timestamp, params: Params,
          require_outcomes: bool = True) -> tuple[pd.DataFrame, dict[str, object]]:
    """The engine's per-lead aggregate -> cohort and closed label, and the stage's report."""
    o = params.outcome
    counts = features[[COUNT_PREFIX + a for a in activities]]
    features["cohort"] = cohort_of(features["created_at"])
    features["closed"] = np.where(features["matured"], features["won_in_horizon"].astype(int), -1).astype("int8")
    features = features.drop(columns=["won_in_horizon"])
    features["window_truncated"] = features["window_truncated"].fillna(False).astype(bool)

    labelled = features["matured"]
    report = {
        "export_date": as_of,
        "leads": len(features),
        "matured_leads": int(labelled.sum()),
        "customers_in_horizon": int((features["closed"] == 1).sum()),
        "average_close_rate": float(features.loc[labelled, "closed"].mean()) if labelled.any() else None,
        "windows_truncated_by_outcome": int(features["window_truncated"].sum()),
        "events_in_windows": int(counts.to_numpy().sum()),
        "activities": activities,
    }
    if require_outcomes and not labelled.any():
        raise LeadcalError(
            f"{params.paths.extracted}: no lead is older than horizon_days={o.horizon_days} at the export date "
            f"{as_of.date()}, so no outcome is known yet; lower outcome.horizon_days or add older leads"
        )
    return features, report


def write_features(params: Params) -> dict[str, object]:
    features, report = build_features(params)
    io.write_parquet(params.paths.features / "features.parquet", features)
    io.write_json(params.paths.features / "features_report.json", report)
    log.info(
        "features: %d leads, %d matured, %d customers (average close rate %.2f %%)",
        report["leads"], report["matured_leads"], report["customers_in_horizon"], 100 * (report["average_close_rate"] or 0),
    )
    return report
