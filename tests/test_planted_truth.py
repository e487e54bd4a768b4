"""The default pipeline run recovers the effects planted in the default sample."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from pipeline import io
from pipeline.params import Params


def _truth(params: Params) -> dict:
    return io.read_json(params.paths.sample / "truth.json")


def _activities(params: Params, table: str) -> pd.DataFrame:
    frame = pd.read_csv(params.paths.models / table)
    frame = frame[frame["type"] == "activity"].set_index("signal")
    coef = pd.Series({name: spec["coef"] for name, spec in _truth(params)["activities"].items()})
    return frame.assign(true_coef=coef)


def test_default_sample_has_the_required_shape(default_run: Params) -> None:
    truth = _truth(default_run)
    report = io.read_json(default_run.paths.features / "features_report.json")
    assert len(truth["activities"]) >= 15
    assert report["leads"] == default_run.generate.n_leads >= 20_000
    assert 0.01 <= report["average_close_rate"] <= 0.035
    coefs = [spec["coef"] for spec in truth["activities"].values()]
    assert min(coefs) < 0 < max(coefs) and coefs.count(0.0) >= 3  # negative, null and positive effects


def test_lift_ranking_agrees_with_true_effects(default_run: Params) -> None:
    activities = _activities(default_run, "close_rates.csv")
    assert activities["true_coef"].notna().all()
    rho = spearmanr(activities["lift"], activities["true_coef"]).statistic
    assert rho >= 0.9, f"Spearman {rho:.3f}"


def test_points_rank_activities_like_their_planted_effects(default_run: Params) -> None:
    """Fast deciders' bursts and point-in-time rows included, the fitted points keep the planted order."""
    weights = _activities(default_run, "weights.csv")
    assert weights["true_coef"].notna().all() and len(weights) >= 16
    rho = spearmanr(weights["points"], weights["true_coef"]).statistic
    assert rho >= 0.95, f"Spearman {rho:.3f}"


def test_the_sample_has_fast_deciders_and_they_do_not_leak(default_run: Params) -> None:
    """A share of wins falls inside the first 30 days; none of them makes recency look like a sure thing."""
    report = io.read_json(default_run.paths.features / "features_report.json")
    day30 = next(s for s in report["snapshots"] if s["snapshot_days"] == 30)
    assert day30["won_before"] >= 0.15 * report["customers_in_horizon"]
    assert report["leakage_screen"]["signals"] == [] and report["leakage_screen"]["activities_after_outcome"] == []
    rates = pd.read_csv(default_run.paths.models / "close_rates.csv")
    assert (rates.loc[rates["leads"] >= 30, "close_rate"] < 0.5).all()


def test_null_activities_look_null_despite_post_outcome_activity(default_run: Params) -> None:
    # Customers keep opening e-mails after the deal; a leak would push email_open's lift up.
    activities = _activities(default_run, "close_rates.csv")
    null = activities[activities["true_coef"] == 0.0]
    assert len(null) >= 3
    assert ((null["lift_ci_low"] <= 1.0) & (null["lift_ci_high"] >= 1.0)).all(), null[["lift", "lift_ci_low", "lift_ci_high"]]


def test_points_follow_the_planted_effects(default_run: Params) -> None:
    weights = _activities(default_run, "weights.csv")
    strongest = weights["points"].max()
    null = weights[weights["true_coef"] == 0.0]
    negative = weights.loc[weights["true_coef"] < 0, "points"]
    strong = weights.loc[weights["true_coef"] >= 1.5, "points"]
    assert strongest >= 40
    # A null activity's points are consistent with zero: within 2.5 bootstrap standard deviations.
    assert (null["points"].abs() <= 2.5 * null["points_sd"]).all(), null[["points", "points_sd"]]
    # and small next to the strongest signal (a quarter of it: about 1.5 bootstrap SDs of a null here)
    assert (null["points"].abs() <= 0.25 * strongest).all()
    assert (negative <= -15).all(), negative
    assert (strong >= 25).all(), strong
    # Points are ordered like the truth among the clearly separated effects.
    assert weights.loc["demo_request", "points"] > weights.loc["form_submission", "points"] > null["points"].max()


def test_registration_and_attendance_are_not_double_counted(default_run: Params) -> None:
    # Every attendee registered, so registration's own lift already includes attendance's
    # effect: points taken from each single-signal lift and added up count it twice.
    # The jointly fitted points of a lead who did both must match the true combined
    # effect, not that naive sum. Points (like the true coefficients) are for an activity
    # done at the cut-off; lifts are averages over the window, so both are compared after
    # the average decay over the window.
    weights = _activities(default_run, "weights.csv")
    rates = _activities(default_run, "close_rates.csv")
    both = ["webinar_registration", "webinar_attendance"]
    scale = default_run.weights.points_to_double_odds / np.log(2)
    half_life = _truth(default_run)["decay"]["half_life_days"]
    window = _truth(default_run)["window_days"]
    mean_decay = half_life / (window * np.log(2)) * (1 - 2 ** (-window / half_life))  # age uniform over the window
    fitted_decay = io.read_json(default_run.paths.models / "weights.json")["half_life_days"]
    fitted_mean_decay = fitted_decay / (window * np.log(2)) * (1 - 2 ** (-window / fitted_decay))
    true_points = scale * mean_decay * weights.loc[both, "true_coef"].sum()
    naive_points = scale * np.log(rates.loc[both, "lift"]).sum()
    joint_points = fitted_mean_decay * weights.loc[both, "points"].sum()
    assert naive_points - joint_points >= 5
    assert abs(joint_points - true_points) < abs(naive_points - true_points)


def test_planted_frequency_signal_earns_points_of_its_own(default_run: Params) -> None:
    weights = pd.read_csv(default_run.paths.models / "weights.csv").set_index("signal")
    frequency = _truth(default_run)["frequency"]
    name = f"{frequency['activity']} {frequency['min_count']}+ in {frequency['window_days']} days"
    assert weights.loc[name, "points"] >= 10  # on top of the points for visiting at all
    assert weights.loc[name, "lift"] > weights.loc[frequency["activity"], "lift"]


def test_fit_points_follow_the_planted_fit_effects(default_run: Params) -> None:
    weights = pd.read_csv(default_run.paths.models / "weights.csv").set_index("signal")
    fit = _truth(default_run)["fit"]
    for attribute in ("industry", "seniority", "source", "email_type"):
        effects = pd.Series(fit[attribute])
        points = weights.loc[[f"{attribute} = {v}" for v in effects.index], "points"]
        # Effects 0.1 apart are within noise of each other: check the linear agreement, and the
        # order of every pair whose true effects differ by 0.5 or more (14 points, ~2.5 standard errors).
        assert np.corrcoef(points.to_numpy(), effects.to_numpy())[0, 1] >= 0.85, attribute
        for better, worse in itertools.permutations(effects.index, 2):
            if effects[better] - effects[worse] >= 0.5:
                assert points[f"{attribute} = {better}"] > points[f"{attribute} = {worse}"], (better, worse)
    assert weights.loc["email_type = student", "points"] < -15


def test_threshold_is_the_lowest_score_reaching_the_target_lift(default_run: Params) -> None:
    thresholds = io.read_json(default_run.paths.models / "thresholds.json")
    curve = pd.read_csv(default_run.paths.models / "plots" / "threshold_curve.csv")
    k, t = thresholds["mql_lift_target"], thresholds["threshold"]
    assert t is not None
    ok = (curve["lift_at_or_above"] >= k) & (curve["leads_at_or_above"] >= thresholds["min_mql_leads"])
    assert ok[curve["score"] == t].all()
    assert not ok[curve["score"] < t].any()
    training = thresholds["training"]
    assert training["mql_close_rate"] >= k * training["average_close_rate"]
    assert 0 < training["mql_share"] < 0.5


def test_model_and_points_table_rank_leads_on_later_cohorts(default_run: Params) -> None:
    metrics = io.read_json(default_run.paths.models / "metrics" / "report.json")
    assert metrics["validation"]["from"] > io.read_json(default_run.paths.models / "metrics" / "train.json")["training"]["to"]
    for scorer in ("model", "points_table"):
        assert metrics[scorer]["auc"] > 0.72, scorer
        assert metrics[scorer]["top_decile_lift"] > 2.5, scorer
    assert metrics["close_rates"]["average_close_rate"] == pytest.approx(
        io.read_json(default_run.paths.features / "features_report.json")["average_close_rate"])
