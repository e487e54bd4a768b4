"""The statistician's layer (issue 3): shrinkage, discovered frequency thresholds,
decay with an estimated half-life, caps, bootstrap spread, recency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency

from pipeline import io
from pipeline.artifacts.readers import read_frequency_signals
from pipeline.core.frequency import best_threshold, g_statistic
from pipeline.core.scorecard import score_leads
from pipeline.core.signal_counts import count_signals
from pipeline.core.signals import SignalSet, band_labels, build_signals
from pipeline.core.stats import beta_binomial_strength, shrink_close_rate
from pipeline.params import Params
from pipeline.stages.close_rates import close_rate_table

# --- shrinkage ---------------------------------------------------------------------------

def test_shrinkage_formula_by_hand() -> None:
    # 2 of 2 leads closed, average 3 %, prior strength 100: (2 + 100 * 0.03) / (2 + 100) = 5 / 102
    assert shrink_close_rate(np.array([2]), np.array([2]), 0.03, 100.0)[0] == pytest.approx(5 / 102)
    # 300 of 10,000 leads: barely moves from 3 %
    assert shrink_close_rate(np.array([600]), np.array([10_000]), 0.03, 100.0)[0] == pytest.approx(603 / 10_100)


def test_prior_strength_is_recovered_from_simulated_signals() -> None:
    rng = np.random.default_rng(3)
    average, strength = 0.05, 200.0
    rates = rng.beta(strength * average, strength * (1 - average), size=400)
    leads = rng.integers(200, 5_000, size=400)
    customers = rng.binomial(leads, rates)
    estimate = beta_binomial_strength(customers, leads, average)
    assert 0.7 * strength < estimate < 1.4 * strength


def test_shrinkage_pulls_a_two_lead_signal_towards_the_average(default_run: Params) -> None:
    features = io.read_parquet(default_run.paths.features / "features.parquet")
    known = (features["closed"] >= 0).to_numpy()
    features, closed = features[known].reset_index(drop=True), features.loc[known, "closed"].to_numpy()
    signals = build_signals(features, default_run.signals, read_frequency_signals(default_run.paths.models))
    rare = np.zeros(len(features), dtype=np.uint8)
    rare[np.flatnonzero(closed == 1)[:2]] = 1  # two leads, both customers: raw close rate 100 %
    matrix = signals.matrix.assign(rare_signal=rare)
    catalog = pd.concat([signals.catalog, pd.DataFrame([{"signal": "rare_signal", "kind": "engagement",
                                                         "type": "activity", "attribute": "rare", "value": "yes"}])])
    table, average = close_rate_table(count_signals(SignalSet(matrix, catalog), closed))
    rows = table.set_index("signal")
    assert rows.loc["rare_signal", "close_rate"] == 1.0 and bool(rows.loc["rare_signal", "low_support"])
    assert abs(rows.loc["rare_signal", "shrunk_close_rate"] - average) < 0.1 * (1.0 - average)
    demo = rows.loc["demo_request"]  # hundreds of leads: keeps most of its own rate
    assert abs(demo["shrunk_close_rate"] - demo["close_rate"]) < 0.2 * abs(demo["close_rate"] - average)


# --- frequency thresholds ------------------------------------------------------------------

def test_g_statistic_matches_scipy() -> None:
    table = np.array([[12, 88], [20, 380]])
    expected = chi2_contingency(table, correction=False, lambda_="log-likelihood")[0]
    assert g_statistic(table) == pytest.approx(expected)


def test_best_threshold_finds_a_planted_step() -> None:
    rng = np.random.default_rng(0)
    peak = rng.integers(1, 12, size=20_000)
    closed = rng.random(20_000) < np.where(peak >= 6, 0.12, 0.04)  # the step is at 6
    n, _ = best_threshold(peak, closed, min_support=30)
    assert n == 6


def test_planted_frequency_threshold_is_found_within_one_step(default_run: Params) -> None:
    truth = io.read_json(default_run.paths.sample / "truth.json")["frequency"]
    found = io.read_json(default_run.paths.models / "signals.json")["frequency"]
    planted = [f for f in found if f["activity"] == truth["activity"] and f["window_days"] == truth["window_days"]]
    assert len(planted) == 1 and abs(planted[0]["min_count"] - truth["min_count"]) <= 1
    nulls = {a for a, spec in io.read_json(default_run.paths.sample / "truth.json")["activities"].items() if spec["coef"] == 0}
    assert not nulls & {f["activity"] for f in found}  # nothing discovered in null activities


# --- decay, caps, scores ----------------------------------------------------------------------

def test_estimated_half_life_is_within_25_percent_of_the_planted_one(default_run: Params) -> None:
    planted = io.read_json(default_run.paths.sample / "truth.json")["decay"]["half_life_days"]
    weights = io.read_json(default_run.paths.models / "weights.json")
    assert weights["half_life_days"] == pytest.approx(planted, rel=0.25)
    low, high = weights["half_life_interval_95"]
    assert low <= weights["half_life_days"] <= high
    assert low <= planted <= high  # the interval covers the planted half-life
    assert high / low < 3  # and says something: not the whole search range


def test_half_life_from_params_overrides_the_estimate(default_run: Params, tmp_path) -> None:
    from pipeline.stages import weights as weights_stage

    params = default_run.model_copy(update={
        "paths": default_run.paths.model_copy(update={"models": tmp_path}),
        "weights": default_run.weights.model_copy(update={"half_life_days": 45.0, "bootstrap_samples": 0}),
    })
    for name in ("close_rates.csv", "signals.json"):
        (tmp_path / name).write_bytes((default_run.paths.models / name).read_bytes())
    header = weights_stage.run(params)
    assert header["half_life_days"] == 45.0 and header["half_life_source"] == "params weights.half_life_days"


def test_decay_and_caps_by_hand() -> None:
    weights = pd.DataFrame({
        "signal": ["demo_request", "email_open", "industry = software"],
        "kind": ["engagement", "engagement", "fit"],
        "attribute": ["demo_request", "email_open", "industry"],
        "points": [40, 10, 12],
    })
    # lead 0: a demo request one half-life old (weight 0.5), an e-mail open today; lead 1: e-mail only
    matrix = pd.DataFrame({"demo_request": [0.5, 0.0], "email_open": [1.0, 1.0], "industry = software": [1, 0]})
    scores = score_leads(matrix, weights)
    assert scores["engagement_points"].tolist() == [30, 10]
    assert scores["fit_points"].tolist() == [12, 0] and scores["total_points"].tolist() == [42, 10]
    capped = score_leads(matrix, weights, caps={"email_open": 4, "engagement": 20})
    assert capped["engagement_points"].tolist() == [20, 4]


# --- quality of the table ------------------------------------------------------------------------

def test_points_table_is_nearly_as_good_as_the_model_on_later_cohorts(default_run: Params) -> None:
    metrics = io.read_json(default_run.paths.models / "metrics.json")
    assert metrics["points"]["auc"] >= metrics["model"]["auc"] - 0.02


def test_bootstrap_spread_is_reported_and_the_ranking_is_stable(default_run: Params) -> None:
    weights = pd.read_csv(default_run.paths.models / "weights.csv")
    scored = weights[weights["status"] == "scored"]
    assert (scored["points_p025"] <= scored["points_p975"]).all() and (scored["points_sd"] > 0).all()
    # the published points sit inside their own bootstrap range for nearly every signal
    inside = (scored["points"] >= scored["points_p025"] - 1) & (scored["points"] <= scored["points_p975"] + 1)
    assert inside.mean() >= 0.9
    stability = io.read_json(default_run.paths.models / "weights.json")["bootstrap"]["rank_spearman"]
    assert stability["median"] >= 0.9 and stability["min"] >= 0.8


def test_recency_is_evidence_but_not_double_points(default_run: Params) -> None:
    rates = pd.read_csv(default_run.paths.models / "close_rates.csv").set_index("signal")
    weights = pd.read_csv(default_run.paths.models / "weights.csv").set_index("signal")
    recent = rates[rates["type"] == "recency"]
    assert len(recent) == 1 and recent["lift"].iloc[0] > 1.0  # recent engagement closes at least as often
    assert (weights.loc[recent.index, "points"] == 0).all()
    assert weights.loc[recent.index, "status"].str.contains("decay").all()


def test_band_labels_read_like_a_marketer_writes_them() -> None:
    assert band_labels([1, 11, 51, 201]) == ["1-10", "11-50", "51-200", "201+"]
    assert band_labels([0, 1e6, 1e7, 2.5e8]) == ["0-1M", "1M-10M", "10M-250M", "250M+"]
