"""The thresholds stage: the MQL threshold by every policy, each CRM's own rule and the fit x
interest matrix, chosen on the training cohorts and judged on the held-out ones, written to
models/thresholds.json and its plot files. The method is pipeline.core.thresholds."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.artifacts import FEATURES, THRESHOLDS
from pipeline.artifacts.readers import read_frequency_signals, read_scorecard
from pipeline.core.signals import build_signals, time_split
from pipeline.core.thresholds import (
    HOW,
    crm_thresholds,
    fit_interest_matrix,
    matrix_cells,
    peak_rows,
    policy_results,
    published_policy,
    score_distribution,
    summarise,
    threshold_curve,
)
from pipeline.data.contract import customer_amounts
from pipeline.design import SNAPSHOT_NOTE, is_snapshot
from pipeline.params import Params, Thresholds

log = logging.getLogger(__name__)


def median_deal_value(params: Params) -> float | None:
    """params deal_value, or the median amount of the customer stages in the data (None if there is none:
    cost_benefit then finds no threshold and its note says what it needs)."""
    if params.thresholds.deal_value is not None:
        return params.thresholds.deal_value
    amounts = customer_amounts(io.read_parquet(params.paths.extracted / "stages.parquet", columns=["stage", "amount"]))
    return float(amounts.median()) if len(amounts) else None


def _population(snapshot_export: bool, snapshot_days: list[int]) -> str:
    """Which leads the thresholds are chosen and judged on, in words for thresholds.json's reader."""
    if snapshot_export:
        return f"decided leads of a snapshot export, one row each; {SNAPSHOT_NOTE}"
    return (f"matured leads, each judged at its peak: its highest total at any of the snapshots it reached while "
            f"open (days {', '.join(str(d) for d in snapshot_days)}). A lead won between two snapshots "
            "is judged on the snapshots before its win; a CRM scoring live could make it an MQL earlier, so "
            "customers_captured is a lower bound (more snapshot ages give a finer view)")


def _describe_policies(policies: dict[str, dict[str, object]], t: Thresholds, valid_total: np.ndarray,
                       valid_closed: np.ndarray) -> None:
    """Each policy's rule in words (`how`, with the lift actually used and why it was capped) and what
    its threshold does on the held-out months (`validation`), in place."""
    for name, entry in policies.items():
        settings = t.model_dump()
        if name == "close_rate_multiple" and entry["mql_lift_used"] is not None:
            settings["mql_lift"] = entry["mql_lift_used"]
        entry["how"] = HOW[name].format(**settings)
        if entry.get("capped_because"):
            entry["how"] += f" (capped: {entry['capped_because']})"
        entry["validation"] = summarise(valid_total, valid_closed, entry["threshold"])


def _matrix(scores: pd.DataFrame, closed: np.ndarray, train_rows: np.ndarray, valid_rows: np.ndarray,
            min_support: int) -> dict[str, object]:
    """The fit x interest matrix chosen on the training leads, with its cells on training and held-out leads."""
    fit, engagement = scores["fit_points"].to_numpy(), scores["engagement_points"].to_numpy()
    matrix = fit_interest_matrix(fit[train_rows], engagement[train_rows], closed[train_rows], min_support)
    matrix["training"] = matrix_cells(matrix, fit[train_rows], engagement[train_rows], closed[train_rows])
    matrix["validation"] = matrix_cells(matrix, fit[valid_rows], engagement[valid_rows], closed[valid_rows])
    return matrix


def _warn(result: dict[str, object], t: Thresholds) -> None:
    """Log what a reader must know (a capped lift, policies without a threshold) and set `warning` when
    the published threshold fell back to another policy or there is none (the run is then not published)."""
    policies, fallback, threshold = result["policies"], result["fallback"], result["threshold"]
    if result["capped_because"]:
        log.warning("thresholds: close_rate_multiple: %s", result["capped_because"])
    for name, entry in policies.items():
        if entry["threshold"] is None:
            log.info("thresholds: %s finds no threshold: %s", name, entry["note"])
    if fallback:
        result["warning"] = fallback["reason"]
        log.warning("thresholds: %s", result["warning"])
    elif threshold is None:
        result["warning"] = (
            f"no policy finds a threshold on the training leads (with at least {t.min_mql_leads} leads): "
            + "; ".join(f"{name}: {entry['note']}" for name, entry in policies.items())
            + ". This run is not published (the publish stage rejects a null threshold)"
        )
        log.warning("thresholds: %s", result["warning"])


def _write(models: Path, result: dict[str, object], curve: pd.DataFrame, distribution: pd.DataFrame) -> None:
    """thresholds.json and the plot data of the threshold curve, the score distribution and the matrix."""
    io.write_json(models / THRESHOLDS, result)
    io.write_csv(models / "plots" / "threshold_curve.csv", curve)
    io.write_csv(models / "plots" / "score_distribution.csv", distribution)
    # Empty cells (no training lead) have no close rate: they are left out, not written as NaN or 0.
    io.write_csv(models / "plots" / "matrix.csv", pd.DataFrame([
        {"fit_grade": cell[0], "engagement_grade": cell[1], **values}
        for cell, values in result["matrix"]["training"]["grades"].items() if values["leads"]]))


def run(params: Params) -> dict[str, object]:
    """features + weights -> models/thresholds.json (every policy, the matrix) and plot data."""
    features = io.read_parquet(params.paths.features / FEATURES)
    signals = build_signals(features, params.signals, read_frequency_signals(params.paths.models))
    card = read_scorecard(params.paths.models)
    scores = card.score(signals, features)
    train_mask, valid_mask = time_split(features, params.train.validation_months, params.outcome.horizon_days)
    # every snapshot row, before the peak selection below: crm_thresholds picks each tool's own peaks
    snapshot_features, snapshot_signals = features, signals
    # one row per lead from here on: its peak row (the highest total it reached while open)
    peak = peak_rows(scores["total_points"].to_numpy(), signals.leads())
    features, scores = features.iloc[peak].reset_index(drop=True), scores.iloc[peak].reset_index(drop=True)
    closed = features["closed"].to_numpy()
    t = params.thresholds
    train_rows, valid_rows = train_mask.to_numpy()[peak], valid_mask.to_numpy()[peak]
    total = scores["total_points"].to_numpy()
    created = features.loc[train_rows, "created_at"]
    snapshot = is_snapshot(features)  # no dates: no lead flow per week (pipeline.design)
    weeks = None if snapshot else max((created.max() - created.min()).days + 1, 7) / 7
    deal_value = median_deal_value(params)
    curve = threshold_curve(total[train_rows], closed[train_rows])
    policies = policy_results(total[train_rows], closed[train_rows], weeks, t, deal_value, params.seed)
    _describe_policies(policies, t, total[valid_rows], closed[valid_rows])
    used, fallback = published_policy(t.policy, policies)
    threshold = policies[used]["threshold"]
    average = float(closed[train_rows].mean())
    crm = policies["close_rate_multiple"]
    matrix = _matrix(scores, closed, train_rows, valid_rows, params.signals.min_support)
    result = {
        "population": _population(snapshot, params.outcome.snapshot_days),
        "policy": used,  # the policy whose threshold this is: params thresholds.policy, or its fallback
        "requested_policy": t.policy,
        "fallback": fallback,
        "threshold": threshold,
        # the multiple close_rate_multiple asked for (mql_lift_used; notebook 1 compares signals with it)
        "mql_lift_target": crm["mql_lift_used"] if crm["mql_lift_used"] is not None else t.mql_lift,
        "mql_lift_setting": t.mql_lift,
        "mql_lift_used": crm["mql_lift_used"],
        "capped_because": crm["capped_because"],
        "min_mql_leads": t.min_mql_leads,
        "how": f"{policies[used]['how']}, on the training cohorts (average close rate {100 * average:.2f} %), "
               f"with at least {t.min_mql_leads} leads"
               + (f". Fallback: {fallback['reason']}" if fallback else ""),
        "training": {**summarise(total[train_rows], closed[train_rows], threshold), "weeks": weeks},
        "validation": summarise(total[valid_rows], closed[valid_rows], threshold),
        "deal_value": deal_value,
        "policies": policies,
        "matrix": matrix,
    }
    rule = t.model_copy(update={"mql_lift": policies[used]["mql_lift_used"]}) \
        if used == "close_rate_multiple" and policies[used].get("mql_lift_used") is not None else t
    log.info("thresholds: the threshold inside each CRM (its decay, caps and grading)")
    result["crm"] = crm_thresholds(snapshot_features, snapshot_signals, card.table_, card.header_, train_mask.to_numpy(),
                                   valid_mask.to_numpy(), used, rule,
                                   weeks, deal_value, threshold)
    _warn(result, t)
    _write(params.paths.models, result, curve, score_distribution(total[train_rows], closed[train_rows]))
    log.info("thresholds: MQL at %s points (%s); %s", threshold, used,
             ", ".join(f"{name} {entry['threshold']}" for name, entry in policies.items()))
    return result
