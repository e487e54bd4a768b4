"""The points table: integer points per signal, split into a fit and an engagement score.

Why a model and not the close rates directly: signals overlap (every webinar
attendee also registered), so adding up points derived from single-signal close
rates counts the same interest twice. The points come from one L2-penalised
logistic regression on all signals together, scaled like a credit scorecard:

    points(signal) = round(coefficient * PDO / ln 2)

where PDO ("points to double the odds") is a parameter: a lead with PDO more
points has twice the odds of closing. For each fit attribute the coefficients are
centred on the attribute's average lead, so 0 fit points means "as good a fit as
the average lead" and negative points mean a worse fit. A lead's probability of
closing follows from its total:

    P(close) = 1 / (1 + exp(-(base_log_odds + total_points * ln 2 / PDO)))

The single-signal close rates stay beside each line as the evidence.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from pipeline import io
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.signals import SignalSet, build_signals, time_split

log = logging.getLogger(__name__)

STATUS_SCORED = "scored"
STATUS_LOW_SUPPORT = "below minimum support: no points"
STATUS_CONSTANT = "same for every lead: no points"

COLUMNS = [
    "signal", "kind", "type", "attribute", "value", "points", "coefficient", "status",
    "leads", "customers", "close_rate", "ci_low", "ci_high", "lift",
]


def fit_points(
    signals: SignalSet, closed: np.ndarray, evidence: pd.DataFrame, points_to_double_odds: float, c: float, seed: int
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Fit the scorecard on the given leads; returns (table, header with base_log_odds).

    `evidence` is the close-rate table (pipeline.close_rates), joined on `signal`.
    """
    closed = np.asarray(closed, dtype=int)
    if closed.sum() == 0 or closed.sum() == len(closed):
        raise LeadcalError(
            f"cannot fit points: the training leads are all {'lost' if closed.sum() == 0 else 'won'} "
            f"({len(closed)} leads, {int(closed.sum())} customers); points need both outcomes"
        )
    matrix = signals.matrix
    present = matrix.to_numpy().sum(axis=0)
    support = evidence.set_index("signal").loc[matrix.columns, "low_support"].to_numpy()
    constant = (present == 0) | (present == len(matrix))
    usable = ~support & ~constant
    if not usable.any():
        raise LeadcalError("cannot fit points: every signal is below the minimum support or the same for every lead")
    X = matrix.loc[:, usable].to_numpy(dtype=float)
    model = LogisticRegression(C=c, l1_ratio=0, solver="lbfgs", max_iter=5000, random_state=seed)
    model.fit(X, closed)
    coefficient = pd.Series(0.0, index=matrix.columns)
    coefficient[matrix.columns[usable]] = model.coef_[0]
    intercept = float(model.intercept_[0])

    # Centre each fit attribute on its average lead: predictions are unchanged,
    # the intercept absorbs the shift, and 0 fit points reads "average fit".
    catalog = signals.catalog.set_index("signal")
    prevalence = matrix.mean(axis=0)
    for attribute, group in catalog[catalog["type"] == "fit"].groupby("attribute", sort=False):
        names = [s for s in group.index if usable[matrix.columns.get_loc(s)]]
        if not names:
            continue
        share = prevalence[names]
        mean = float((coefficient[names] * share).sum() / share.sum())
        coefficient[names] -= mean
        intercept += mean * float(share.sum())

    scale = points_to_double_odds / math.log(2)
    table = signals.catalog.copy()
    table["coefficient"] = coefficient.to_numpy()
    table["points"] = np.where(usable, np.round(coefficient.to_numpy() * scale), 0).astype(int)
    table["status"] = np.select([constant, support], [STATUS_CONSTANT, STATUS_LOW_SUPPORT], STATUS_SCORED)
    evidence_columns = ["signal", "leads", "customers", "close_rate", "ci_low", "ci_high", "lift"]
    table = table.merge(evidence[evidence_columns], on="signal", how="left")
    header = {"points_to_double_odds": points_to_double_odds, "base_log_odds": intercept}
    return table[COLUMNS], header


def score_leads(matrix: pd.DataFrame, weights: pd.DataFrame) -> pd.DataFrame:
    """fit_points, engagement_points and total_points per lead from a points table.

    A signal of the table that the leads do not have as a column counts as absent.
    """
    points = weights.set_index("signal")["points"]
    aligned = matrix.reindex(columns=points.index, fill_value=0).to_numpy(dtype=np.int64)
    is_fit = (weights.set_index("signal")["kind"] == "fit").to_numpy()
    values = points.to_numpy(dtype=np.int64)
    fit = aligned[:, is_fit] @ values[is_fit]
    engagement = aligned[:, ~is_fit] @ values[~is_fit]
    return pd.DataFrame(
        {"fit_points": fit, "engagement_points": engagement, "total_points": fit + engagement}, index=matrix.index
    )


def points_probability(total_points: np.ndarray, header: dict[str, float]) -> np.ndarray:
    """P(close) implied by a points total (the scorecard's own calibration)."""
    log_odds = header["base_log_odds"] + np.asarray(total_points, dtype=float) * math.log(2) / header["points_to_double_odds"]
    return 1.0 / (1.0 + np.exp(-log_odds))


def run(params: Params) -> dict[str, object]:
    """features + close rates -> models/weights.csv and models/weights.json (fit on training cohorts)."""
    features = io.read_parquet(params.paths.features / "features.parquet")
    evidence = pd.read_csv(params.paths.models / "close_rates.csv")
    signals = build_signals(features, params)
    train_mask, _ = time_split(features, params.train.validation_months)
    rows = train_mask.to_numpy()
    w = params.weights
    table, header = fit_points(
        SignalSet(signals.matrix[rows], signals.catalog), features.loc[rows, "closed"].to_numpy(),
        evidence, w.points_to_double_odds, w.regularization_c, params.seed,
    )
    cohorts = features.loc[train_mask, "cohort"]
    header = {
        **header,
        "formula": "P(close) = 1 / (1 + exp(-(base_log_odds + total_points * ln(2) / points_to_double_odds)))",
        "fitted_on": {"from": cohorts.min(), "to": cohorts.max(), "leads": int(rows.sum())},
    }
    models = params.paths.models
    io.write_csv(models / "weights.csv", table)
    io.write_json(models / "weights.json", {**header, "signals": table.to_dict(orient="records")})
    log.info("weights: %d signals scored, %d without points", int((table["status"] == STATUS_SCORED).sum()),
             int((table["status"] != STATUS_SCORED).sum()))
    return header


def read_weights(models: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """The published points table and its header (base log-odds, PDO)."""
    payload = io.read_json(models / "weights.json")
    table = pd.DataFrame(payload["signals"])
    header = {k: payload[k] for k in ("points_to_double_odds", "base_log_odds")}
    return table, header
