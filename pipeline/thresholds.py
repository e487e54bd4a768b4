"""The MQL threshold: the points total above which a lead goes to sales.

Default policy (params thresholds.mql_lift = k): the lowest total score t such that
the leads scoring t or more close at k times the average close rate or more, with at
least `min_mql_leads` of them. Lowest, because among the thresholds that keep the
MQLs k times better than average it sends sales the most leads.
The threshold is chosen on the training cohorts and reported on the held-out ones.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.params import Params
from pipeline.signals import build_signals, read_frequency_signals, time_split
from pipeline.weights import read_weights, score_features

log = logging.getLogger(__name__)


def threshold_curve(total_points: np.ndarray, closed: np.ndarray) -> pd.DataFrame:
    """For every candidate score t: leads and customers at or above t, their close rate and lift."""
    total_points = np.asarray(total_points)
    closed = np.asarray(closed, dtype=int)
    frame = pd.DataFrame({"score": total_points, "closed": closed})
    per_score = frame.groupby("score")["closed"].agg(leads="size", customers="sum").sort_index(ascending=False)
    curve = per_score.cumsum().rename(columns={"leads": "leads_at_or_above", "customers": "customers_at_or_above"})
    curve = curve.sort_index().reset_index()
    average = closed.mean() if len(closed) else 0.0
    curve["share_at_or_above"] = curve["leads_at_or_above"] / len(closed)
    curve["close_rate_at_or_above"] = curve["customers_at_or_above"] / curve["leads_at_or_above"]
    curve["lift_at_or_above"] = curve["close_rate_at_or_above"] / average if average > 0 else 0.0
    curve["customers_captured"] = curve["customers_at_or_above"] / closed.sum() if closed.sum() else 0.0
    return curve


def score_distribution(total_points: np.ndarray, closed: np.ndarray) -> pd.DataFrame:
    """Leads per points total, customers and the others side by side (one row per score)."""
    frame = pd.DataFrame({"total_points": np.asarray(total_points), "closed": np.asarray(closed, dtype=int)})
    counts = frame.groupby("total_points")["closed"].agg(customers="sum", leads="size")
    counts["other_leads"] = counts["leads"] - counts["customers"]
    return counts[["customers", "other_leads"]].reset_index()


def choose_threshold(curve: pd.DataFrame, mql_lift: float, min_leads: int) -> int | None:
    """Lowest score whose leads at or above it reach `mql_lift` x average; None if no score does."""
    passing = curve[(curve["lift_at_or_above"] >= mql_lift) & (curve["leads_at_or_above"] >= min_leads)]
    if passing.empty:
        return None
    return int(passing["score"].min())


def summarise(total_points: np.ndarray, closed: np.ndarray, threshold: int | None) -> dict[str, float | int | None]:
    """What the threshold does on a set of leads: share passing, their close rate and lift."""
    total_points = np.asarray(total_points)
    closed = np.asarray(closed, dtype=int)
    average = float(closed.mean()) if len(closed) else None
    summary: dict[str, float | int | None] = {"leads": int(len(closed)), "customers": int(closed.sum()), "average_close_rate": average}
    if threshold is None or not len(closed):
        return summary
    above = total_points >= threshold
    mql_rate = float(closed[above].mean()) if above.any() else None
    summary.update({
        "mql_leads": int(above.sum()),
        "mql_share": float(above.mean()),
        "mql_close_rate": mql_rate,
        "mql_lift": mql_rate / average if mql_rate is not None and average else None,
        "customers_captured": float(closed[above].sum() / closed.sum()) if closed.sum() else None,
    })
    return summary


def run(params: Params) -> dict[str, object]:
    """features + weights -> models/thresholds.json and the threshold curve for `dvc plots`."""
    features = io.read_parquet(params.paths.features / "features.parquet")
    signals = build_signals(features, params, read_frequency_signals(params.paths.models))
    weights, header = read_weights(params.paths.models)
    scores = score_features(features, signals, weights, header)
    train_mask, valid_mask = time_split(features, params.train.validation_months, params.outcome.horizon_days)
    closed = features["closed"].to_numpy()
    t = params.thresholds
    train_rows = train_mask.to_numpy()
    curve = threshold_curve(scores["total_points"].to_numpy()[train_rows], closed[train_rows])
    threshold = choose_threshold(curve, t.mql_lift, t.min_mql_leads)
    average = float(closed[train_rows].mean())
    result = {
        "policy": "close_rate_multiple",
        "threshold": threshold,
        "mql_lift_target": t.mql_lift,
        "min_mql_leads": t.min_mql_leads,
        "how": (
            f"lowest total score whose leads (score >= threshold) close at {t.mql_lift:g} x the average "
            f"close rate ({100 * average:.2f} %) or more on the training cohorts, with at least {t.min_mql_leads} leads"
        ),
        "training": summarise(scores["total_points"].to_numpy()[train_rows], closed[train_rows], threshold),
        "validation": summarise(scores["total_points"].to_numpy()[valid_mask.to_numpy()], closed[valid_mask.to_numpy()], threshold),
    }
    if threshold is None:
        result["warning"] = (
            f"no score reaches {t.mql_lift:g} x the average close rate with at least {t.min_mql_leads} leads; "
            "lower thresholds.mql_lift or thresholds.min_mql_leads"
        )
        log.warning("thresholds: %s", result["warning"])
    models = params.paths.models
    io.write_json(models / "thresholds.json", result)
    io.write_csv(models / "plots" / "threshold_curve.csv", curve)
    io.write_csv(models / "plots" / "score_distribution.csv",
                 score_distribution(scores["total_points"].to_numpy()[train_rows], closed[train_rows]))
    log.info("thresholds: MQL at %s points", threshold)
    return result
