"""PointsScorecard and LeadModel as objects (issue 18): small hand-computed cases and planted
effects, without running the pipeline."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from pipeline.core.lead_model import LeadModel
from pipeline.core.scorecard import STATUS_SCORED, PointsScorecard
from pipeline.core.signals import SignalSet
from pipeline.schema import AGE_PREFIX
from pipeline.stages.model import load_model, model_bytes

PDO = 20.0  # points to double the odds


def planted(n: int = 4000, seed: int = 0) -> tuple[SignalSet, pd.DataFrame, np.ndarray]:
    """A demo request that triples the odds, an industry that doubles them; one row per lead.
    `features` holds the demo request's age (days), for the decay."""
    rng = np.random.default_rng(seed)
    demo = (rng.random(n) < 0.3).astype(np.uint8)
    industry = rng.choice(["software", "retail"], size=n)
    log_odds = -2.5 + math.log(3) * demo + math.log(2) * (industry == "software")
    closed = (rng.random(n) < 1 / (1 + np.exp(-log_odds))).astype(int)
    matrix = pd.DataFrame({"demo_request": demo, "industry = software": (industry == "software").astype(np.uint8),
                           "industry = retail": (industry == "retail").astype(np.uint8)})
    catalog = pd.DataFrame({"signal": matrix.columns, "kind": ["engagement", "fit", "fit"],
                            "type": ["activity", "fit", "fit"], "attribute": ["demo_request", "industry", "industry"],
                            "value": ["yes", "software", "retail"]})
    features = pd.DataFrame({AGE_PREFIX + "demo_request": np.where(demo == 1, 10.0, np.nan)})
    return SignalSet(matrix, catalog), features, closed


def evidence_for(signals: SignalSet) -> pd.DataFrame:
    return pd.DataFrame({"signal": signals.matrix.columns, "leads": 0, "customers": 0, "close_rate": 0.0,
                         "ci_low": 0.0, "ci_high": 0.0, "lift": 0.0, "shrunk_lift": 0.0})


def test_the_points_are_the_regressions_coefficients_on_the_pdo_scale() -> None:
    signals, features, closed = planted()
    card = PointsScorecard(PDO, regularization_c=1.0, seed=0)
    card.fit(card.decay(signals, features), closed, evidence_for(signals))
    exact = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-10).fit(signals.matrix, closed)
    points = card.table_.set_index("signal")["points"]
    # centring the industry on its average lead moves both values alike: their difference is the model's
    software_minus_retail = exact.coef_[0][1] - exact.coef_[0][2]
    assert points["industry = software"] - points["industry = retail"] == pytest.approx(
        software_minus_retail * PDO / math.log(2), abs=1)
    assert points["demo_request"] == round(exact.coef_[0][0] * PDO / math.log(2))
    # and near the planted effects: x3 odds is log2(3) * PDO = 31.7 points, x2 is PDO = 20
    assert abs(points["demo_request"] - math.log2(3) * PDO) < 6
    assert abs(software_minus_retail * PDO / math.log(2) - PDO) < 6
    assert set(card.table_["status"]) == {STATUS_SCORED}


def test_a_refit_started_from_another_fold_gives_the_same_table_with_fewer_hessians(monkeypatch) -> None:
    """The train stage refits the points on each validation fold, each started from the previous
    fold's fit: the table is the one a refit from nothing gives, for fewer Hessians."""
    from pipeline.core import logistic

    signals, features, closed = planted(seed=4)
    earlier = PointsScorecard(PDO, seed=0)
    rows = np.arange(len(closed)) < 2500
    earlier.fit(earlier.decay(signals.take(rows), features[rows]), closed[rows], evidence_for(signals))
    built, hessian = [], logistic.hessian
    monkeypatch.setattr(logistic, "hessian", lambda *args: built.append(1) or hessian(*args))
    cold, warm = PointsScorecard(PDO, seed=0), PointsScorecard(PDO, seed=0)
    cold.fit(cold.decay(signals, features), closed, evidence_for(signals))
    cold_hessians = len(built)
    built.clear()
    warm.fit(warm.decay(signals, features), closed, evidence_for(signals), start=earlier)
    assert len(built) < cold_hessians
    pd.testing.assert_frame_equal(warm.table_.drop(columns="coefficient"), cold.table_.drop(columns="coefficient"))
    assert warm.table_["coefficient"].to_numpy() == pytest.approx(cold.table_["coefficient"].to_numpy(), abs=1e-9)
    assert warm.header_["base_log_odds"] == pytest.approx(cold.header_["base_log_odds"], abs=1e-9)


def test_probability_follows_the_published_formula() -> None:
    """P = 1 / (1 + exp(-(base + snapshot offset + points * ln2 / PDO))), by hand."""
    header = {"points_to_double_odds": PDO, "base_log_odds": -2.0, "snapshot_log_odds": {"0": 0.0, "30": -0.5},
              "half_life_days": None, "caps": {}, "numeric_attributes": []}
    card = PointsScorecard.from_published(pd.DataFrame({"signal": [], "points": []}), header)
    p = card.probability(np.array([0, 20, 40]), snapshot=np.array([0, 0, 30]))
    expected = [1 / (1 + math.exp(2.0)), 1 / (1 + math.exp(2.0 - math.log(2))),
                1 / (1 + math.exp(2.0 + 0.5 - 2 * math.log(2)))]
    assert p == pytest.approx(expected)


def test_scores_decay_and_caps_by_hand() -> None:
    """A demo request worth 40 points, done 10 days ago with a 10-day half-life, counts 20; the
    engagement cap of 15 then cuts it to 15; the fit points are untouched. Three leads: a demo
    request and software, a demo request and retail, nothing and retail."""
    matrix = pd.DataFrame({"demo_request": [1, 1, 0], "industry = software": [1, 0, 0], "industry = retail": [0, 1, 1]},
                          dtype=np.uint8)
    catalog = pd.DataFrame({"signal": matrix.columns, "kind": ["engagement", "fit", "fit"],
                            "type": ["activity", "fit", "fit"], "attribute": ["demo_request", "industry", "industry"],
                            "value": ["yes", "software", "retail"]})
    signals, features = SignalSet(matrix, catalog), pd.DataFrame({AGE_PREFIX + "demo_request": [10.0, 0.0, np.nan]})
    table = catalog.assign(points=[40, 7, -3])
    header = {"points_to_double_odds": PDO, "base_log_odds": -2.0, "half_life_days": 10.0,
              "caps": {"engagement": 15}, "numeric_attributes": []}
    scores = PointsScorecard.from_published(table, header).score(signals, features)
    assert scores["engagement_points"].tolist() == [15, 15, 0]  # 20 and 40, capped at 15
    assert scores["fit_points"].tolist() == [7, -3, -3]
    assert scores["total_points"].tolist() == [22, 12, -3]
    uncapped = PointsScorecard.from_published(table, {**header, "caps": {}}).score(signals, features)
    assert uncapped["engagement_points"].tolist() == [20, 40, 0]
    halved = PointsScorecard.from_published(table, {**header, "caps": {}}).with_points(np.array([20, 7, -3]))
    assert halved.score(signals, features)["engagement_points"].tolist() == [10, 20, 0]


def test_the_bootstrap_is_seeded_and_spreads_around_the_fit() -> None:
    signals, features, closed = planted(n=1500)
    card = PointsScorecard(PDO, seed=3).fit(signals, closed, evidence_for(signals))
    runs = card.bootstrap(signals, closed, evidence_for(signals), samples=8)
    assert runs.shape == (3, 8)
    pd.testing.assert_frame_equal(runs, PointsScorecard(PDO, seed=3).fit(signals, closed, evidence_for(signals))
                                  .bootstrap(signals, closed, evidence_for(signals), samples=8))
    published = card.table_.set_index("signal")["points"]
    assert (runs.min(axis=1) <= published + 1).all() and (runs.max(axis=1) >= published - 1).all()
    assert runs.loc["demo_request"].std() > 0  # resampled leads move the points


def test_lead_model_is_calibrated_and_round_trips_through_its_file(tmp_path: Path) -> None:
    signals, _, closed = planted(n=3000)
    X = signals.matrix.astype(float)
    lead = np.arange(len(X))
    model = LeadModel("logistic", seed=0).fit(X, closed, lead)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(proba[:, 1], model.probability(X))
    assert not model.method_.startswith("none")  # enough customers to calibrate
    # calibrated on out-of-fold scores: the mean prediction is the observed close rate, near enough
    assert model.probability(X).mean() == pytest.approx(closed.mean(), abs=0.01)
    saved = tmp_path / "model.skops"  # through the model file, as the train stage writes it and score reads it
    saved.write_bytes(model_bytes(model.bundle()))
    again = LeadModel.from_bundle(load_model(saved), model.method_)
    assert again.kind == "logistic" and again.method_ == model.method_
    assert np.array_equal(again.probability(X), model.probability(X))


def test_lead_model_with_few_customers_stays_uncalibrated_and_says_so() -> None:
    signals, _, closed = planted(n=3000)
    few = np.zeros_like(closed)
    few[:6] = 1  # 6 customer leads: fewer than two per calibration fold
    model = LeadModel("logistic").fit(signals.matrix.astype(float), few, np.arange(len(few)))
    assert model.calibrator_ is None and model.method_.startswith("none")


def test_explain_gives_each_signals_effect_on_the_log_odds() -> None:
    """For a logistic base model and a lead that differs from the reference only by a demo
    request, the demo request's effect is its coefficient."""
    signals, _, closed = planted(n=3000)
    X = signals.matrix.astype(float)
    model = LeadModel("logistic").fit(X, closed, np.arange(len(X)))
    lead = X.iloc[[int(np.flatnonzero((X["demo_request"] == 1).to_numpy())[0])]]
    reference = {"industry": "software" if lead["industry = software"].iloc[0] == 1 else "retail"}
    effects = model.explain(lead, signals.catalog, reference)
    assert effects["demo_request"].iloc[0] == pytest.approx(model.base_.coef_[0][0], rel=1e-6)


def test_a_boosting_model_comes_back_as_one(tmp_path: Path) -> None:
    signals, _, closed = planted(n=2000)
    X = signals.matrix.astype(float)
    model = LeadModel("hgb", seed=0).fit(X, closed, np.arange(len(X)))
    saved = tmp_path / "model.skops"
    saved.write_bytes(model_bytes(model.bundle()))
    again = LeadModel.from_bundle(load_model(saved))
    assert again.kind == "hgb"
    assert np.array_equal(again.probability(X), model.probability(X))


def test_the_weighted_bootstrap_equals_refits_on_copied_rows() -> None:
    """A lead drawn k times enters its refit once with weight k: the same points as fitting k copies
    of its rows (support, centring and the regression all count it k times)."""
    import dataclasses

    from pipeline.core.scorecard import bootstrap_points, fit_points
    from pipeline.core.signals import resample_leads

    signals, _, closed = planted(n=1500, seed=3)
    # two snapshots per lead (rows consecutive), the later with the signal more often
    lead = np.repeat(np.arange(len(closed)), 2)
    matrix = signals.matrix.iloc[lead // 1].reset_index(drop=True)
    matrix.iloc[1::2, 0] = np.maximum(matrix.iloc[1::2, 0].to_numpy(), (np.arange(len(closed)) % 7 == 0))
    two = SignalSet(matrix, signals.catalog, lead=lead, snapshot=np.tile([0, 30], len(closed)))
    y = closed[lead]
    full, _ = fit_points(two, y, evidence_for(two), PDO, 1.0, 0, min_support=30)
    runs = bootstrap_points(two, y, evidence_for(two), PDO, 1.0, seed=5, samples=6, min_support=30,
                            start=full.attrs["fit"])
    rng = np.random.default_rng(5)
    for index in range(6):
        rows, drawn = resample_leads(rng, lead)
        copied = dataclasses.replace(two.take(rows), lead=drawn)
        table, _ = fit_points(copied, y[rows], evidence_for(two), PDO, 1.0, 0, min_support=30)
        assert (runs[f"sample_{index}"].to_numpy() == table["points"].to_numpy()).all()


@pytest.mark.parametrize("caps", [{}, {"email_open": 30.5, "engagement": 60.0, "industry": 5.0, "fit": 12.0}])
def test_many_tables_at_once_score_every_lead_as_score_leads_does_to_the_last_bit(caps) -> None:
    from pipeline.core.scorecard import SCORE_BLOCK_ROWS, STATUS_LOW_SUPPORT_FIT, score_leads, total_points_many

    rng = np.random.default_rng(7)
    rows = [(a, "engagement", "activity", a, "yes") for a in ["demo_request", "email_open", "webinar"]]
    rows.append(("email_open 3+ in 30 days", "engagement", "frequency", "email_open", ">= 3 in 30 days"))
    rows += [(f"industry = {v}", "fit", "fit", "industry", v) for v in ["retail", "software", "unknown", "media"]]
    rows += [(f"seniority = {v}", "fit", "fit", "seniority", v) for v in ["vp", "intern"]]
    table = pd.DataFrame(rows, columns=["signal", "kind", "type", "attribute", "value"])
    table["status"] = np.where(table["signal"] == "industry = media", STATUS_LOW_SUPPORT_FIT, STATUS_SCORED)
    n = SCORE_BLOCK_ROWS + 1000  # more than one block of rows
    matrix = pd.DataFrame({s: rng.integers(0, 2, n).astype(float) for s in table["signal"]})
    for name in ["demo_request", "email_open", "webinar"]:  # decayed activities, a missing value or two
        matrix[name] = matrix[name] * rng.uniform(0, 1, n)
    matrix.loc[::97, "webinar"] = np.nan
    matrix = matrix.drop(columns=["industry = media"])  # a value never seen: the "any other value" rule
    matrix.loc[::5, ["industry = retail", "industry = software", "industry = unknown"]] = 0.0
    points = rng.integers(-40, 60, (len(table), 6)).astype(float)
    many = total_points_many(matrix, table, points, caps)
    for j in range(points.shape[1]):
        alone = score_leads(matrix, table.assign(points=points[:, j].astype(int)), caps)["total_points"].to_numpy()
        assert np.array_equal(many[:, j], alone)


def _compensated_totals(matrix: pd.DataFrame, table: pd.DataFrame, caps: dict[str, float]) -> np.ndarray:
    """total_points by the compensated sum alone (pipeline.core.scorecard._group_sum for every
    group), written out here: what the whole-number path must give to the last bit."""
    from pipeline.core.scorecard import _group_sum

    points = table.set_index("signal")["points"].astype(float)
    unlisted = matrix[[s for s in table["signal"] if s.startswith("industry = ") and s in matrix]].sum(axis=1) == 0
    total = np.zeros(len(matrix))
    for kind in ("fit", "engagement"):
        kind_total = np.zeros(len(matrix))
        for attribute, group in sorted(table[table["kind"] == kind].groupby("attribute")):
            columns = [matrix[s].to_numpy() * points[s] for s in group["signal"] if s in matrix]
            if attribute == "industry":  # the "any other value" rule: the rare value's points
                columns.append(np.where(unlisted, points["industry = media"], 0.0))
            grouped = _group_sum(columns, len(matrix))
            kind_total = kind_total + (np.minimum(grouped, caps[attribute]) if attribute in caps else grouped)
        total = total + np.round(np.minimum(kind_total, caps[kind]) if kind in caps else kind_total)
    return total.astype(np.int64)


@pytest.mark.parametrize("caps", [{}, {"email_open": 30.5, "engagement": 60.0, "industry": 5.0, "fit": 12.0}])
def test_whole_number_groups_score_as_the_compensated_sum_does(caps) -> None:
    """Undecayed 0/1 signals and whole points sum exactly, so their groups take a matrix product
    (`_exact_groups`); a group with a decayed value keeps the compensated sum. Both give the bits
    of the compensated sum everywhere (negative points, caps, the "any other value" rule)."""
    from pipeline.core.scorecard import (SCORE_BLOCK_ROWS, STATUS_LOW_SUPPORT_FIT, _exact_groups, _ScoringLayout,
                                         score_leads)

    rng = np.random.default_rng(11)
    rows = [(a, "engagement", "activity", a, "yes") for a in ["demo_request", "email_open"]]
    rows += [(f"industry = {v}", "fit", "fit", "industry", v) for v in ["retail", "software", "unknown", "media"]]
    rows += [(f"seniority = {v}", "fit", "fit", "seniority", v) for v in ["vp", "intern"]]
    table = pd.DataFrame(rows, columns=["signal", "kind", "type", "attribute", "value"])
    table["status"] = np.where(table["signal"] == "industry = media", STATUS_LOW_SUPPORT_FIT, STATUS_SCORED)
    table["points"] = rng.integers(-40, 60, len(table))
    n = SCORE_BLOCK_ROWS + 1000
    matrix = pd.DataFrame({s: rng.integers(0, 2, n).astype(float) for s in table["signal"]})
    matrix["demo_request"] = matrix["demo_request"] * rng.uniform(0, 1, n)  # decayed: not whole
    matrix = matrix.drop(columns=["industry = media"])
    matrix.loc[::5, ["industry = retail", "industry = software", "industry = unknown"]] = 0.0
    layout = _ScoringLayout(matrix, table.set_index("signal"), ())
    exact = _exact_groups(layout, table["points"].to_numpy(dtype=float)[:, None])
    assert exact == {("fit", "industry"), ("fit", "seniority"), ("engagement", "email_open")}
    assert not _exact_groups(layout, np.full((len(table), 1), 0.5))  # points that are not whole
    scored = score_leads(matrix, table, caps)["total_points"].to_numpy()
    assert np.array_equal(scored, _compensated_totals(matrix, table, caps))


def test_the_half_life_profile_is_the_likelihood_of_decay_matrixs_values() -> None:
    """estimate_half_life decays the activities itself, once per half-life tried: each point of its
    profile is the likelihood of the matrix decay_matrix gives at that half-life (fitted cold here,
    warm there: the same optimum to the solver's tolerance)."""
    from pipeline.core.scorecard import estimate_half_life, fit_logistic
    from pipeline.core.signals import decay_matrix

    signals, features, closed = planted(n=3000, seed=4)
    ages = np.random.default_rng(4).uniform(0, 60, len(closed))
    features[AGE_PREFIX + "demo_request"] = np.where(signals.matrix["demo_request"] == 1, ages, np.nan)
    usable = np.array([True, True, False])  # retail: the reference
    _, _, profile = estimate_half_life(signals, features, closed, usable, 1.0, 0, grid_points=5)
    names = list(signals.matrix.columns[usable])
    for point in profile[:3]:
        X = decay_matrix(signals, features, point["half_life_days"]).matrix.loc[:, usable].to_numpy(dtype=float)
        assert fit_logistic(X, closed, 1.0, 0, columns=names).log_likelihood == pytest.approx(point["log_likelihood"], rel=1e-9)


def test_rank_stability_is_scipys_spearman_to_the_last_bit() -> None:
    """The published scores ranked once give each table's rho exactly as scipy's spearmanr does
    (ties included); a constant table is left out, a constant published ranking has no stability."""
    from scipy.stats import spearmanr

    from pipeline.core.scorecard import rank_stability

    rng = np.random.default_rng(9)
    scores = rng.integers(-20, 60, 5_000)
    tables = [scores + rng.integers(-15, 15, len(scores)) for _ in range(6)] + [np.full(len(scores), 3)]
    rhos = [spearmanr(scores, other).statistic for other in tables[:-1]]
    assert rank_stability(scores, tables) == {"median": float(np.median(rhos)), "min": float(np.min(rhos))}
    assert rank_stability(np.full(len(scores), 3), tables) == {"median": None, "min": None}
