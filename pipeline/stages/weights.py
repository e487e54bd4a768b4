"""The weights stage: the points scorecard (pipeline.core.scorecard) fitted on the training
cohorts, its bootstrap spread, written to models/weights.csv and models/weights.json
(read back by pipeline.artifacts.read_scorecard)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipeline import io, spreadsheet
from pipeline.artifacts import CLOSE_RATES, FEATURES, WEIGHTS
from pipeline.artifacts.readers import read_frequency_signals
from pipeline.core.scorecard import (
    STATUS_SCORED,
    PointsScorecard,
    check_outcomes,
    half_life,
    rank_stability,
)
from pipeline.core.signals import SignalSet, build_signals, count_leads, decay_inputs, fit_rows, time_split
from pipeline.params import Params

log = logging.getLogger(__name__)


def _spread(card: PointsScorecard, decayed: SignalSet, closed: np.ndarray, evidence: pd.DataFrame,
            valid_ages: pd.DataFrame, valid_signals: SignalSet, samples: int) -> dict[str, object]:
    """The bootstrap's spread of each signal's points (points_p025, points_p975, points_sd: added to
    `card.table_` in place) and how the held-out leads' ranking holds across the refits (rank_spearman).
    `valid_ages`: the held-out rows' decay inputs (decay_inputs)."""
    stability: dict[str, object] = {"samples": samples}
    if not samples:
        return stability
    log.info("weights: %d bootstrap refits for the spread of the points", samples)
    runs = card.bootstrap(decayed, closed, evidence, samples)
    table = card.table_
    table["points_p025"] = runs.quantile(0.025, axis=1).round(1).to_numpy()
    table["points_p975"] = runs.quantile(0.975, axis=1).round(1).to_numpy()
    table["points_sd"] = runs.std(axis=1).round(2).to_numpy()
    if len(valid_ages):
        decayed_valid = card.decay(valid_signals, valid_ages).matrix  # once, for every table
        # the published table and every bootstrap table at once (score_leads' arithmetic, bit for bit)
        points = np.column_stack([table["points"].to_numpy(), runs.to_numpy()])
        totals = card.score_decayed_many(decayed_valid, points)
        stability["rank_spearman"] = rank_stability(totals[:, 0], list(np.ascontiguousarray(totals[:, 1:].T)))
    return stability


def run(params: Params) -> dict[str, object]:
    """features + close rates -> models/weights.csv and models/weights.json (fit on training cohorts)."""
    features = io.read_parquet(params.paths.features / FEATURES)
    evidence = spreadsheet.read_csv(params.paths.models / CLOSE_RATES)
    signals = build_signals(features, params.signals, read_frequency_signals(params.paths.models))
    train_mask, valid_mask = time_split(features, params.train.validation_months, params.outcome.horizon_days)
    rows = fit_rows(train_mask.to_numpy(), params.train.max_fit_leads, params.seed, signals.leads())
    fitted_leads, training_leads = count_leads(signals.leads(), rows), count_leads(signals.leads(), train_mask.to_numpy())
    if fitted_leads < training_leads:
        log.info("weights: fitted on a sample of %d of the %d training leads (train.max_fit_leads)",
                 fitted_leads, training_leads)
    w = params.weights
    train_signals = signals.take(rows)
    ages = decay_inputs(features)
    train_ages, closed = ages[rows], features.loc[rows, "closed"].to_numpy()
    check_outcomes(closed)
    decay = half_life(train_signals, train_ages, closed, decay=w.decay, fixed_days=w.half_life_days,
                      min_support=params.signals.min_support, regularization_c=w.regularization_c, seed=params.seed)
    half_life_days = decay["days"]
    log.info("weights: half-life %s (%s)", f"{half_life_days:.1f} days" if half_life_days else "none", decay["source"])
    card = PointsScorecard(w.points_to_double_odds, w.regularization_c, params.seed, params.signals.min_support,
                           half_life_days, w.caps, params.signals.numeric_bins)
    decayed = card.decay(train_signals, train_ages)
    card.fit(decayed, closed, evidence)
    stability = _spread(card, decayed, closed, evidence, ages[valid_mask.to_numpy()],
                        signals.take(valid_mask.to_numpy()), w.bootstrap_samples)
    table, header = card.table_, card.header_
    cohorts = features.loc[train_mask, "cohort"]
    header = {
        **header,
        "formula": "P(close) = 1 / (1 + exp(-(base_log_odds + snapshot_log_odds[latest snapshot age reached] "
                   "+ total_points * ln(2) / points_to_double_odds)))",
        "decay": (
            f"an activity's points are multiplied by 2^(-age_days / {half_life_days:.1f}), age counted from the activity"
            if half_life_days else "none"
        ),
        "half_life_source": decay["source"],
        "half_life_interval_95": decay.get("interval_95"),
        "half_life_profile": decay.get("profile", []),
        "bootstrap": stability,
        "fitted_on": {"from": cohorts.min(), "to": cohorts.max(), "leads": fitted_leads, "rows": int(rows.sum()),
                      **({"sampled_from_leads": training_leads} if fitted_leads < training_leads else {})},
    }
    models = params.paths.models
    spreadsheet.write_csv(models / "weights.csv", table)  # for people: formula-like names escaped
    io.write_json(models / WEIGHTS, {**header, "signals": table.to_dict(orient="records")})
    io.write_json(models / "metrics" / "weights.json", {
        "half_life_days": half_life_days, "half_life_interval_95": decay.get("interval_95"),
        "signals_with_points": int((table["points"] != 0).sum()),
        "bootstrap_rank_spearman": stability.get("rank_spearman"),
    })
    log.info("weights: %d signals scored, %d without points", int((table["status"] == STATUS_SCORED).sum()),
             int((table["status"] != STATUS_SCORED).sum()))
    return header
