"""The baseline benchmarks/scale.py measures leadcal against: the same three stages in plain pandas.

The same work as `leadcal extract`, `leadcal features` and `leadcal close-rates`, done
the way one would without a query engine, every table whole in memory:

- extract: each table read into pandas and validated by leadcal's own pandas path (the
  one CSV exports take, pipeline.data.contract: same rules, same counts), written as Parquet;
- features: the same point-in-time table (one row per lead and snapshot it reached open,
  label, counts, ages, rolling-window peaks, the leakage screen) with pandas merges and
  group-bys over the whole event log, labelled by the same pipeline.stages.features.label;
- close rates: leadcal's stage itself, which already works on the per-lead table in pandas.

scale.py checks that the features table and the close-rate table come out equal to
leadcal's, so its ratio compares two ways of doing one job, not two jobs.

    python benchmarks/pandas_baseline.py PARAMS   # paths.* of PARAMS say where to read and write
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.artifacts import FEATURES, SIGNAL_COUNTS
from pipeline.data.contract import OUTCOME_STAGES, WON_STAGE
from pipeline.data.sources import TABLES, find_table, read_path
from pipeline.params import Params, load_params
from pipeline.schema import AGE_PREFIX, COUNT_PREFIX, peak_column
from pipeline.stages import close_rates
from pipeline.stages.extract import contract_order, validate_tables
from pipeline.stages.features import label, screen_table

DAY_US = 86_400_000_000


def extract(params: Params) -> dict[str, pd.DataFrame]:
    """Read and validate the three tables in memory; write them as leadcal's extract does."""
    paths = {name: find_table(params.paths.raw, name) for name in TABLES}
    raw = {name: read_path(path)[0] for name, path in paths.items()}
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    tables, _ = validate_tables(raw, {name: str(path) for name, path in paths.items()}, params,
                                params.extract.on_bad_rows, now)
    tables["leads"] = contract_order(tables["leads"], params.signals.fit_attributes)
    for name in TABLES:
        io.write_parquet(params.paths.extracted / f"{name}.parquet", tables[name])
    return tables


def lead_frame(leads: pd.DataFrame, stages: pd.DataFrame, as_of: pd.Timestamp, params: Params) -> pd.DataFrame:
    """Each lead with its first outcome, win and maturity (pipeline.stages.features' lead frame, in pandas)."""
    o = params.outcome
    frame = leads.sort_values("lead_id").reset_index(drop=True)
    first_outcome = frame["lead_id"].map(stages[stages["stage"].isin(OUTCOME_STAGES)].groupby("lead_id")["entered_at"].min())
    customer_at = frame["lead_id"].map(stages[stages["stage"] == WON_STAGE].groupby("lead_id")["entered_at"].min())
    frame["first_outcome_at"] = first_outcome.astype("datetime64[us]")
    frame["customer_at"] = customer_at.astype("datetime64[us]")
    horizon_end = frame["created_at"] + pd.Timedelta(days=o.horizon_days)
    frame["matured"] = horizon_end <= as_of
    frame["won_in_horizon"] = (customer_at <= horizon_end).fillna(False).astype(bool)
    return frame


def snapshot_rows(frame: pd.DataFrame, as_of: pd.Timestamp, params: Params) -> pd.DataFrame:
    """One row per lead and snapshot age it reached, still open, by the export date."""
    parts = []
    for days in params.outcome.snapshot_days:
        moment = frame["created_at"] + pd.Timedelta(days=days)
        open_then = (moment <= as_of) & (frame["first_outcome_at"].isna() | (frame["first_outcome_at"] > moment))
        parts.append(frame[open_then].assign(snapshot_days=np.int32(days),
                                             cutoff_at=moment[open_then].astype("datetime64[us]")))
    rows = pd.concat(parts, ignore_index=True).sort_values(["lead_id", "snapshot_days"], kind="stable")
    return rows.drop(columns=["first_outcome_at"]).reset_index(drop=True)


def features(tables: dict[str, pd.DataFrame], params: Params
             ) -> tuple[pd.DataFrame, dict[str, object], dict[str, object]]:
    """The point-in-time table from the whole event log in memory, its report and its signals' counts."""
    leads, events, stages = tables["leads"], tables["activities"], tables["stages"]
    as_of = pd.Timestamp(params.outcome.as_of) if params.outcome.as_of else max(
        leads["created_at"].max(), events["occurred_at"].max(), stages["entered_at"].max())
    leads_frame = lead_frame(leads, stages, as_of, params)
    frame = snapshot_rows(leads_frame, as_of, params)
    key = ["lead_id", "snapshot_days"]
    window = events.merge(frame[[*key, "cutoff_at"]], on="lead_id")
    window = window[window["occurred_at"] < window["cutoff_at"]]
    window = window.assign(us=window["occurred_at"].astype("int64"), cutoff_us=window["cutoff_at"].astype("int64"))
    pairs = window.groupby([*key, "activity"])[["us", "cutoff_us"]].agg(
        n=("us", "size"), first_us=("us", "min"), last_us=("us", "max"), cutoff_us=("cutoff_us", "max"))
    activities = sorted(events["activity"].unique())
    rows = pd.MultiIndex.from_frame(frame[key])

    def per_row(values: pd.Series, fill: float | None) -> pd.DataFrame:
        wide = values.unstack("activity").reindex(index=rows, columns=activities)
        return wide if fill is None else wide.fillna(fill)

    counts = per_row(pairs["n"], 0).astype("int32").add_prefix(COUNT_PREFIX)
    ages = per_row((np.floor(pairs["cutoff_us"] / 1e6) - np.floor(pairs["last_us"] / 1e6)) / 86400.0, None)
    columns = [counts, ages.astype("float64").add_prefix(AGE_PREFIX)]
    frequency = params.signals.frequency
    for window_days in sorted({*frequency.windows_days, *(s.window_days for s in frequency.fixed)}):
        peak = pairs["n"].copy()
        wide = pairs.index[(pairs["last_us"] - pairs["first_us"]) >= window_days * DAY_US]
        if len(wide):  # events less than window_days apart, counted per event over a time-based rolling window
            spread = window.set_index([*key, "activity"]).loc[wide].reset_index()
            spread = spread.sort_values([*key, "activity", "occurred_at"])
            rolling = (spread.set_index("occurred_at").groupby([*key, "activity"])["us"]
                       .rolling(pd.Timedelta(days=window_days)).count())
            peak.loc[wide] = rolling.groupby(level=[*key, "activity"]).max().reindex(wide).astype(int)
        named = per_row(peak, 0).astype("int32")
        named.columns = [peak_column(a, window_days) for a in named.columns]
        columns.append(named)
    lead_columns = [c for c in frame.columns if c not in ("snapshot_days", "cutoff_at")]
    table = pd.concat([frame.set_index(key), *columns], axis=1).reset_index()
    table = table[[*lead_columns, "snapshot_days", "cutoff_at", *table.columns[len(frame.columns):]]]
    counts_by_age = pd.DataFrame([
        {"snapshot_days": days, "leads_old_enough": int(old.sum()),
         "decided_before": int((old & (leads_frame["first_outcome_at"] <= moment)).sum()),
         "won_before": int((old & (leads_frame["customer_at"] <= moment)).sum())}
        for days in params.outcome.snapshot_days
        for moment in [leads_frame["created_at"] + pd.Timedelta(days=days)]
        for old in [moment <= as_of]])
    table, report = label(table, activities, as_of, params, True, counts_by_age)
    decided = events.merge(leads_frame[["lead_id", "first_outcome_at"]], on="lead_id")
    decided = decided[decided["first_outcome_at"].notna()]
    after = decided.assign(after=decided["occurred_at"] >= decided["first_outcome_at"]).groupby("activity").agg(
        events_of_decided_leads=("after", "size"), after_outcome=("after", "sum")).reset_index()
    report["leakage_screen"], counts = screen_table(table, params, after)
    return table, report, counts


def main() -> None:
    params = load_params(sys.argv[1])
    tables = extract(params)
    table, report, counts = features(tables, params)
    io.write_parquet(params.paths.features / FEATURES, table)
    io.write_json(params.paths.features / "features_report.json", report)
    io.write_json(params.paths.features / SIGNAL_COUNTS, counts)
    close_rates.run(params)


if __name__ == "__main__":
    main()
