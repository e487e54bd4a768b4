"""The funnel itself: how many leads reach each stage, how fast, and what it takes to win.

Everything here reads the canonical `stages` table (lead_id, stage, entered_at, amount;
docs/data-contract.md) and the leads / features table, and answers the questions a
revenue team asks next to a lead score, one module per analysis:

- `conversion`: `funnel_conversion` (leads reaching each stage and the conversion rates, with
  Wilson intervals, overall or per source / creation month) and `conversion_counts`
  (successes and trials for any chain of stages, the input of `plan_volume`);
- `timing`: `sla_follow_up` (how fast sales picks up MQLs, and how many it accepts) and
  `stage_durations` (days between stages and the sales cycle);
- `feedback`: `mql_outcomes` / `rejection_feedback` (which signals produce MQLs that sales rejects);
- `planning`: `plan_volume` (how many SQLs, MQLs and leads it takes to win N customers, with an
  interval from the uncertainty of the measured rates);
- `common`: the stage order, the input checks and the reached-stage matrix they share.

A lead *reaches* a stage when it has that stage or any later one in
lead -> mql -> sal -> sql -> opportunity -> customer: CRMs skip stages (a sales-sourced
deal may go straight to opportunity), and a customer has certainly been a lead.
`lost` is not in the order: it says nothing about how far a lead got.

Every function of the analysis modules is pure (DataFrames in, DataFrames / dicts out, no I/O);
this module's `run` is the stage: it reads, calls them, and writes.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.artifacts import FEATURES
from pipeline.artifacts.readers import read_frequency_signals
from pipeline.core.funnel.common import FUNNEL, MONTH, PLAN_CHAIN
from pipeline.core.funnel.conversion import conversion_counts, funnel_conversion, monthly_rates
from pipeline.core.funnel.feedback import rejection_feedback, rows_at_mql
from pipeline.core.funnel.timing import sla_follow_up, stage_durations
from pipeline.core.signals import band, build_signals
from pipeline.data.contract import WON_STAGE
from pipeline.design import DATED, SNAPSHOT, SNAPSHOT_NOTE, is_snapshot
from pipeline.errors import LeadcalError
from pipeline.params import Params

log = logging.getLogger(__name__)


TOP_REJECTION_SIGNALS = 15


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict(orient="records")


def segment_attributes(leads: pd.DataFrame, params: Params) -> list[str]:
    """The attributes the funnel is broken down by: params funnel.segments, or (null) every fit
    attribute the leads have, source aside (the funnel is always broken down by source)."""
    if params.funnel.segments is not None:
        return list(params.funnel.segments)
    return [a for a in params.signals.fit_attributes if a in leads.columns and a != "source"]


def _segments(leads: pd.DataFrame, params: Params) -> dict[str, pd.DataFrame]:
    """The leads with each segment attribute readable: numeric ones in their bands, missing as 'unknown'."""
    out = {}
    for attribute in segment_attributes(leads, params):
        if attribute not in leads.columns:
            log.warning("funnel: segment '%s' is not a lead column; skipped", attribute)
            continue
        edges = params.signals.numeric_bins.get(attribute)
        values = band(leads[attribute], edges) if edges else leads[attribute]
        out[attribute] = leads.assign(**{attribute: values})
    return out


POPULATION_NOTE = (
    "A lead reached a stage if it has it or any later one (skipped stages count). "
    "funnel, by_source, plan_steps, durations and rejection_feedback use matured leads only; "
    "by_month uses all leads, its customer rows matured leads only; stages count within "
    "horizon_days of creation."
)


def _matured(leads: pd.DataFrame, export_date: pd.Timestamp | None, horizon: int) -> np.ndarray:
    """Matured as in the features stage (every lead of a snapshot export); every lead counts here, also
    one decided before its first snapshot (won at creation: no point-in-time row, but a lead of the funnel)."""
    if export_date is None:
        return np.ones(len(leads), dtype=bool)
    return (leads["created_at"] + pd.Timedelta(days=horizon) <= export_date).to_numpy()


def _over_time(stages: pd.DataFrame, leads: pd.DataFrame, matured: np.ndarray, export_date: pd.Timestamp | None,
               sla_hours: list[int], horizon: int, confidence: float, has_source: bool) -> tuple[Any, ...]:
    """(funnel by month, monthly rates, SLA follow-up, stage durations); a snapshot export has no months,
    no SLA clock and no durations: only what counts of leads say."""
    if export_date is None:
        durations = {"transitions": pd.DataFrame(), "sales_cycle": {"note": f"not computed: {SNAPSHOT_NOTE}"}, "by": None}
        return pd.DataFrame(), pd.DataFrame(columns=["month"]), {"note": f"not computed: {SNAPSHOT_NOTE}"}, durations
    matured_leads = leads[matured].reset_index(drop=True)
    matured_stages = stages[stages["lead_id"].isin(pd.Index(matured_leads["lead_id"]))]
    return (funnel_conversion(stages, leads, by=MONTH, matured=matured, within_days=horizon, confidence=confidence),
            monthly_rates(stages, leads, matured=matured, within_days=horizon),
            sla_follow_up(stages, sla_hours, as_of=export_date, confidence=confidence),
            stage_durations(matured_stages, matured_leads, by="source" if has_source else None))


def _durations_payload(durations: dict[str, Any]) -> dict[str, Any]:
    return {
        "transitions": _records(durations["transitions"]),
        "sales_cycle": durations["sales_cycle"],
        "by_source": None if durations["by"] is None else {
            "transitions": _records(durations["by"]["transitions"]),
            "sales_cycle": _records(durations["by"]["sales_cycle"]),
        },
    }


def _rejection(features: pd.DataFrame, stages: pd.DataFrame, params: Params) -> dict[str, Any]:
    """Which signals the MQLs showed when they became MQLs, and how often sales rejected them."""
    signals = build_signals(features, params.signals, read_frequency_signals(params.paths.models))
    at = rows_at_mql(features, stages)
    matrix = signals.matrix.iloc[at].set_axis(pd.Index(features["lead_id"].iloc[at]), axis=0)
    return rejection_feedback(stages, matrix, signals.catalog, params.close_rates.confidence)


def _read_inputs(paths: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.Timestamp | None]:
    """The canonical stages and leads, the features, and the export date (None for a snapshot
    export: every lead in it is decided, and nothing in it has a date, pipeline.design)."""
    stages = io.read_parquet(paths.extracted / "stages.parquet")
    leads = io.read_parquet(paths.extracted / "leads.parquet")
    features = io.read_parquet(paths.features / FEATURES)
    export_date = None if is_snapshot(features) else pd.Timestamp(
        io.read_json(paths.features / "features_report.json")["export_date"])
    return stages, leads, features, export_date


def run(params: Params, sla_hours: list[int] | None = None) -> dict[str, Any]:
    """data/extracted (stages, leads) + data/features -> models/funnel.json and two plot CSVs.

    Needs models/signals.json (the close_rates stage) for the rejection feedback.
    Populations: the overall funnel, the funnel by source, the plan steps, durations and
    rejection feedback use matured leads only (every stage has had outcome.horizon_days to
    happen); the funnel by month uses all leads with the customer step on matured leads, so
    recent months show their top-of-funnel rates; the SLA uses every MQL old enough to be
    due. Stages count only within outcome.horizon_days of creation, so `customer` is
    `closed` of the features table.
    """
    paths = params.paths
    horizon = params.outcome.horizon_days
    confidence = params.close_rates.confidence
    sla_hours = params.funnel.sla_hours if sla_hours is None else sla_hours
    stages, leads, features, export_date = _read_inputs(paths)
    matured = _matured(leads, export_date, horizon)
    if not matured.any():
        raise LeadcalError(
            f"{paths.features / FEATURES}: no matured lead (older than horizon_days={horizon}); "
            f"funnel rates toward customer are unknown"
        )
    matured_leads = leads[matured].reset_index(drop=True)

    overall = funnel_conversion(stages, matured_leads, within_days=horizon, confidence=confidence)
    has_source = "source" in leads.columns
    by_source = funnel_conversion(stages, matured_leads, by="source", within_days=horizon, confidence=confidence) \
        if has_source else pd.DataFrame()
    plan_steps = conversion_counts(stages, matured_leads, PLAN_CHAIN, within_days=horizon, confidence=confidence)
    by_month, monthly, sla, durations = _over_time(stages, leads, matured, export_date, sla_hours, horizon, confidence,
                                                   has_source)

    rejection = _rejection(features, stages, params)

    payload = {
        "population": {"leads": int(len(leads)), "matured_leads": int(matured.sum()), "export_date": export_date,
                       "mode": SNAPSHOT if is_snapshot(features) else DATED, "horizon_days": horizon,
                       "confidence": confidence, "funnel_order": list(FUNNEL), "note": POPULATION_NOTE},
        "funnel": _records(overall),
        "by_source": _records(by_source),
        "by_segment": {
            attribute: _records(funnel_conversion(stages, segmented, by=attribute, within_days=horizon, confidence=confidence))
            for attribute, segmented in _segments(matured_leads, params).items()
        },
        "by_month": _records(by_month),
        "plan_steps": _records(plan_steps),
        "sla": sla,
        "durations": _durations_payload(durations),
        "rejection_feedback": {
            "overall": rejection["overall"],
            "signals": _records(rejection["signals"].head(TOP_REJECTION_SIGNALS)),
            "signals_total": int(len(rejection["signals"])),
        },
    }
    io.write_json(paths.models / "funnel.json", payload)
    io.write_csv(paths.models / "plots" / "funnel.csv", overall[["stage", "leads", "rate_from_previous"]])
    io.write_csv(paths.models / "plots" / "funnel_by_month.csv", monthly)
    _log_totals(overall, int(matured.sum()), rejection["overall"])
    return payload


def _log_totals(overall: pd.DataFrame, matured: int, rejection: dict[str, Any]) -> None:
    customers = int(overall.loc[overall["stage"] == WON_STAGE, "leads"].iloc[0])
    log.info("funnel: %d matured leads -> %d customers (%.2f %%); %d MQLs, %.0f %% rejected by sales",
             matured, customers, 100 * customers / max(matured, 1), rejection["mqls"], 100 * (rejection["rate"] or 0))
