"""Per-lead features as of each lead's cut-off, and its outcome label.

Leakage rules, applied here once for every later stage:
- cut-off = created_at + observation_days, or the lead's first outcome stage
  (customer / lost) or the export date if that comes earlier: nothing after the
  outcome is seen, and a lead younger than its window is seen as it is now;
- only events strictly before the cut-off count;
- a lead is labelled (closed or not) only once it is *matured*: created at least
  horizon_days before the export date. A younger lead that has not closed yet
  may still close, so counting it as a loss would bias every close rate down.

The aggregation is SQL run by DuckDB straight on the Parquet files, so the event
log is streamed, never loaded whole into pandas; only the per-lead result is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pipeline import io
from pipeline.contract import OUTCOME_STAGES, WON_STAGE
from pipeline.errors import LeadcalError
from pipeline.params import Params

log = logging.getLogger(__name__)

COUNT_PREFIX = "n__"  # events of an activity in the window
AGE_PREFIX = "age__"  # days from the latest such event to the cut-off (NaN: never)
PEAK_PREFIX = "peak__"  # most events of an activity within any rolling window
NEVER_DAYS = 10_000.0  # the age given to an activity a lead never did, where a number is needed


def peak_column(activity: str, window_days: int) -> str:
    return f"{PEAK_PREFIX}{activity}__{window_days}d"


def _lead_frame_sql(observation_days: int, horizon_days: int, as_of: str) -> str:
    outcome_list = ", ".join(f"'{s}'" for s in OUTCOME_STAGES)
    return f"""
        SELECT l.*,
               LEAST(l.created_at + INTERVAL {observation_days} DAY,
                     COALESCE(o.first_outcome_at, TIMESTAMP '9999-12-31'),
                     TIMESTAMP '{as_of}') AS cutoff_at,
               o.first_outcome_at < l.created_at + INTERVAL {observation_days} DAY AS window_truncated,
               c.customer_at,
               l.created_at + INTERVAL {horizon_days} DAY <= TIMESTAMP '{as_of}' AS matured,
               COALESCE(c.customer_at <= l.created_at + INTERVAL {horizon_days} DAY, FALSE) AS won_in_horizon
        FROM leads l
        LEFT JOIN (SELECT lead_id, MIN(entered_at) AS first_outcome_at FROM stages
                   WHERE stage IN ({outcome_list}) GROUP BY lead_id) o USING (lead_id)
        LEFT JOIN (SELECT lead_id, MIN(entered_at) AS customer_at FROM stages
                   WHERE stage = '{WON_STAGE}' GROUP BY lead_id) c USING (lead_id)
    """


def _connect(extracted: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    for table in ("leads", "activities", "stages"):
        path = extracted / f"{table}.parquet"
        if not path.exists():
            raise LeadcalError(f"{path}: not found (run `leadcal extract` first)")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path.as_posix()}')")
    return con


def export_date(con: duckdb.DuckDBPyConnection) -> pd.Timestamp:
    """The latest timestamp anywhere in the data: what 'now' was when it was exported."""
    value = con.execute(
        "SELECT GREATEST((SELECT MAX(created_at) FROM leads), (SELECT MAX(occurred_at) FROM activities),"
        " (SELECT MAX(entered_at) FROM stages))"
    ).fetchone()[0]
    return pd.Timestamp(value)


def build_features(params: Params, require_outcomes: bool = True) -> tuple[pd.DataFrame, dict[str, object]]:
    """One row per lead: fit attributes, activity counts/ages/peaks, cohort, label.

    `require_outcomes=False` is for scoring new leads, whose outcomes are not known yet.
    """
    o = params.outcome
    con = _connect(params.paths.extracted)
    as_of = pd.Timestamp(o.as_of) if o.as_of else export_date(con)
    con.execute(f"CREATE TEMP TABLE lead_frame AS {_lead_frame_sql(o.observation_days, o.horizon_days, as_of.isoformat())}")
    con.execute("""
        CREATE TEMP TABLE window_events AS
        SELECT a.lead_id, a.activity, a.occurred_at, f.cutoff_at
        FROM activities a JOIN lead_frame f USING (lead_id)
        WHERE a.occurred_at < f.cutoff_at
    """)
    per_activity = con.execute("""
        SELECT lead_id, activity, COUNT(*) AS n,
               DATE_DIFF('second', MAX(occurred_at), ANY_VALUE(cutoff_at)) / 86400.0 AS age_days
        FROM window_events GROUP BY lead_id, activity
    """).df()
    activities = sorted(con.execute("SELECT DISTINCT activity FROM activities").df()["activity"])
    frequency = params.signals.frequency
    for spec in frequency.fixed:
        if spec.activity not in activities:
            raise LeadcalError(
                f"params signals.frequency.fixed: activity '{spec.activity}' does not occur in the data; "
                f"known activities: {activities}"
            )
    peaks = []
    for window_days in sorted({*frequency.windows_days, *(s.window_days for s in frequency.fixed)}):
        peak = con.execute(
            """
            SELECT lead_id, activity, MAX(n) AS peak FROM (
                SELECT lead_id, activity, COUNT(*) OVER (
                    PARTITION BY lead_id, activity ORDER BY occurred_at
                    -- half-open like the cut-off: events exactly W days apart are not "within W days"
                    RANGE BETWEEN (TO_DAYS(?) - INTERVAL 1 MICROSECOND) PRECEDING AND CURRENT ROW) AS n
                FROM window_events)
            GROUP BY lead_id, activity
            """,
            [window_days],
        ).df()
        wide = peak.pivot(index="lead_id", columns="activity", values="peak").reindex(columns=activities)
        peaks.append(wide.rename(columns=lambda a, w=window_days: peak_column(a, w)))
    frame = con.execute("SELECT * FROM lead_frame ORDER BY lead_id").df()
    con.close()

    frame = frame.set_index("lead_id")
    counts = per_activity.pivot(index="lead_id", columns="activity", values="n").reindex(columns=activities)
    ages = per_activity.pivot(index="lead_id", columns="activity", values="age_days").reindex(columns=activities)
    counts = counts.reindex(frame.index).fillna(0).astype("int32").add_prefix(COUNT_PREFIX)
    ages = ages.reindex(frame.index).astype("float64").add_prefix(AGE_PREFIX)
    blocks = [frame, counts, ages]
    blocks += [peak.reindex(frame.index).fillna(0).astype("int32") for peak in peaks]
    features = pd.concat(blocks, axis=1).reset_index()
    features["cohort"] = features["created_at"].dt.strftime("%Y-%m")
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
