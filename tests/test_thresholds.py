"""MQL threshold policies and the fit x interest matrix (issue 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.params import Params, Thresholds
from pipeline.core.thresholds import choose_by_policy, grade, policy_results, quadrant, threshold_curve


@pytest.fixture()
def hand_curve() -> pd.DataFrame:
    # 10 leads over 2 weeks. Scores and outcomes (1 = customer):
    # 50:1  40:1  40:0  30:1  30:0  20:0  20:0  10:0  10:0  10:0   -> 3 customers, average 30 %
    scores = np.array([50, 40, 40, 30, 30, 20, 20, 10, 10, 10])
    closed = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    return threshold_curve(scores, closed)


def test_threshold_curve_by_hand(hand_curve: pd.DataFrame) -> None:
    at = hand_curve.set_index("score")
    assert at.loc[40, "leads_at_or_above"] == 3 and at.loc[40, "customers_at_or_above"] == 2
    assert at.loc[30, "close_rate_at_or_above"] == pytest.approx(3 / 5)
    assert at.loc[30, "customers_captured"] == pytest.approx(1.0)


@pytest.mark.parametrize("policy, settings, expected", [
    # >= 2x the 30 % average: score 30 (5 leads, 60 %) is the lowest that still reaches 60 %
    ("close_rate_multiple", {"mql_lift": 2.0}, 30),
    # <= 1 MQL per week over 2 weeks: at most 2 leads above -> score 50 (1 lead); 40 has 3
    ("sales_capacity", {"capacity_per_week": 1.0}, 50),
    # MQLs closing >= 65 %: 40 (2/3 = 67 %) is the lowest; 30 gives 60 %
    ("target_precision", {"target_precision": 0.65}, 40),
    # MQLs holding >= 60 % of customers: the highest score with 2 of 3 customers is 40
    ("target_recall", {"target_recall": 0.6}, 40),
    # deal 100, touch 30: value(50) = 70, value(40) = 110, value(30) = 150, value(20) = 90 -> 30
    ("cost_benefit", {"cost_per_touch": 30.0}, 30),
])
def test_each_policy_by_hand(hand_curve: pd.DataFrame, policy: str, settings: dict, expected: int) -> None:
    chosen = choose_by_policy(policy, hand_curve, Thresholds(min_mql_leads=1, **settings), weeks=2.0, deal_value=100.0)
    assert chosen == expected


def test_a_policy_nobody_can_meet_returns_none(hand_curve: pd.DataFrame) -> None:
    # score 50 alone closes at 100 % but is one lead; with at least 2 leads no score reaches 99 %
    assert choose_by_policy("target_precision", hand_curve, Thresholds(min_mql_leads=2, target_precision=0.99), 2.0, 100.0) is None
    assert choose_by_policy("cost_benefit", hand_curve, Thresholds(min_mql_leads=1, cost_per_touch=1000.0), 2.0, 100.0) is None


def test_bootstrap_intervals_bracket_the_estimate_and_are_reproducible() -> None:
    rng = np.random.default_rng(4)
    scores = rng.integers(-40, 80, size=5000)
    closed = (rng.random(5000) < 1 / (1 + np.exp(-(scores / 20 - 4)))).astype(int)
    settings = Thresholds(bootstrap_samples=60)
    first = policy_results(scores, closed, 50.0, settings, 5000.0, seed=1)
    again = policy_results(scores, closed, 50.0, settings, 5000.0, seed=1)
    assert first == again
    for name, entry in first.items():
        if entry["threshold"] is None:
            continue
        for key in ("mql_per_week", "mql_close_rate", "customers_captured"):
            low, high = entry["interval_95"][key]
            assert low <= entry[key] <= high, (name, key)


def test_quadrants_and_grades_by_hand() -> None:
    fit = np.array([10, 10, -5, -5])
    engagement = np.array([30, 0, 30, 0])
    assert quadrant(fit, engagement, 0, 20).tolist() == ["hot", "nurture", "quick_check", "drop"]
    assert grade(np.array([9, 5, 1, -3]), [8, 4, 0], ["A", "B", "C", "D"]).tolist() == ["A", "B", "C", "D"]


def test_thresholds_file_reports_every_policy(default_run: Params) -> None:
    result = io.read_json(default_run.paths.models / "thresholds.json")
    assert set(result["policies"]) == {"close_rate_multiple", "sales_capacity", "target_precision", "target_recall", "cost_benefit"}
    assert result["threshold"] == result["policies"][result["policy"]]["threshold"]
    capacity = result["policies"]["sales_capacity"]
    assert capacity["mql_per_week"] <= default_run.thresholds.capacity_per_week
    precision = result["policies"]["target_precision"]
    assert precision["mql_close_rate"] >= default_run.thresholds.target_precision
    recall = result["policies"]["target_recall"]
    assert recall["customers_captured"] >= default_run.thresholds.target_recall
    for entry in result["policies"].values():
        assert "validation" in entry and "how" in entry


def test_matrix_orders_the_quadrants_like_the_truth(default_run: Params) -> None:
    matrix = io.read_json(default_run.paths.models / "thresholds.json")["matrix"]
    for period in ("training", "validation"):
        cells = matrix[period]["quadrants"]
        assert cells["hot"]["close_rate"] > max(cells["nurture"]["close_rate"], cells["quick_check"]["close_rate"])
        assert min(cells["nurture"]["close_rate"], cells["quick_check"]["close_rate"]) > cells["drop"]["close_rate"]
        grades = matrix[period]["grades"]
        assert sum(c["leads"] for c in grades.values()) == sum(c["leads"] for c in cells.values())
    grades = matrix["training"]["grades"]
    assert grades["A1"]["close_rate"] > grades["D4"]["close_rate"] * 5
    plot = pd.read_csv(default_run.paths.models / "plots" / "matrix.csv")
    assert len(plot) == sum(1 for c in grades.values() if c["leads"]) and plot["leads"].sum() == sum(c["leads"] for c in grades.values())


def test_each_lead_is_judged_at_its_peak_row() -> None:
    from pipeline.core.thresholds import peak_rows

    lead = np.array([0, 0, 0, 1, 2, 2])
    total = np.array([10, 40, 25, -5, 7, 7])  # lead 0 peaks on its second row; lead 2 ties: its first
    assert peak_rows(total, lead).tolist() == [1, 3, 4]


def test_grade_cutoffs_keep_the_lowest_grade_when_scores_tie_at_the_minimum() -> None:
    from pipeline.core.thresholds import grade_cutoffs

    engagement = np.array([0] * 60 + [5, 10, 15, 20, 30, 40, 50, 60, 70, 80] * 4)  # 60 % never engaged
    cuts = grade_cutoffs(engagement)
    assert cuts[-1] == 5  # grade 4: the leads with no engagement; grade 3 starts just above them
    grades = grade(engagement, cuts, ["1", "2", "3", "4"])
    assert (grades[:60] == "4").all() and set(grades[60:]) <= {"1", "2", "3"}
    assert grade_cutoffs(np.arange(100)) == [float(q) for q in np.quantile(np.arange(100), [0.75, 0.5, 0.25])]


# --- issue 16: a multiple the data cannot reach, a fallback instead of a null threshold, cost_benefit's needs ---


def _lowest_reaching(scores: np.ndarray, closed: np.ndarray, rate: float, min_leads: int) -> int | None:
    """By hand: the lowest score whose leads at or above it close at `rate` or more, with `min_leads` of them."""
    passing = [s for s in np.unique(scores)
               if (scores >= s).sum() >= min_leads and closed[scores >= s].mean() >= rate - 1e-12]
    return int(min(passing)) if passing else None


@pytest.mark.parametrize("mql_lift, why", [(4.0, "100 % or more"), (3.0, "above the best close rate")])
def test_an_unreachable_mql_lift_is_capped_halfway_to_the_best_close_rate(mql_lift: float, why: str) -> None:
    scores = np.array([50, 40, 40, 30, 30, 20, 20, 10, 10, 10])
    closed = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    average = closed.mean()
    min_leads = 2
    # the best close rate of a group of at least 2 leads at or above a score
    best = max(closed[scores >= s].mean() for s in np.unique(scores) if (scores >= s).sum() >= min_leads)
    assert mql_lift * average > best  # the setting asks for more than any threshold gives
    expected_lift = (1 + best / average) / 2
    expected_rate = (average + best) / 2  # halfway between the average and the best
    assert expected_lift * average == pytest.approx(expected_rate)
    settings = Thresholds(mql_lift=mql_lift, min_mql_leads=min_leads, bootstrap_samples=0)
    entry = policy_results(scores, closed, 2.0, settings, 100.0, seed=1)["close_rate_multiple"]
    assert entry["mql_lift_setting"] == mql_lift
    assert entry["mql_lift_used"] == pytest.approx(expected_lift)
    assert why in entry["capped_because"] and "capped at" in entry["capped_because"]
    assert entry["threshold"] == _lowest_reaching(scores, closed, expected_rate, min_leads) is not None
    assert entry["mql_close_rate"] >= expected_rate


def test_a_reachable_mql_lift_is_used_as_set() -> None:
    scores = np.array([50, 40, 40, 30, 30, 20, 20, 10, 10, 10])
    closed = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    entry = policy_results(scores, closed, 2.0, Thresholds(mql_lift=2.0, min_mql_leads=1, bootstrap_samples=0),
                           100.0, seed=1)["close_rate_multiple"]
    assert entry["mql_lift_used"] == 2.0 and entry["capped_because"] is None
    assert entry["threshold"] == _lowest_reaching(scores, closed, 2.0 * closed.mean(), 1)


def test_scores_that_separate_nothing_have_no_multiple_to_cap_to() -> None:
    scores = np.array([10, 10, 20, 20])
    closed = np.array([1, 0, 1, 0])  # every threshold closes at the average
    entry = policy_results(scores, closed, 1.0, Thresholds(min_mql_leads=1, bootstrap_samples=0), 100.0, seed=1)
    crm = entry["close_rate_multiple"]
    assert crm["threshold"] is None and crm["mql_lift_used"] is None and crm["capped_because"] is None
    assert "do not separate customers" in crm["note"]


def test_cost_benefit_without_a_deal_value_says_what_it_needs() -> None:
    scores = np.array([50, 40, 40, 30, 30, 20, 20, 10, 10, 10])
    closed = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    entry = policy_results(scores, closed, 2.0, Thresholds(min_mql_leads=1, bootstrap_samples=0), None, seed=1)
    assert entry["cost_benefit"]["threshold"] is None
    assert "thresholds.deal_value" in entry["cost_benefit"]["note"] and "customer stages" in entry["cost_benefit"]["note"]


def test_the_fallback_is_the_first_policy_of_the_fixed_order_that_finds_a_threshold() -> None:
    from pipeline.core.thresholds import FALLBACK_ORDER, published_policy

    found = {name: {"threshold": 10 + i, "note": None} for i, name in enumerate(FALLBACK_ORDER)}
    assert published_policy("cost_benefit", found) == ("cost_benefit", None)
    missing = {**found, "cost_benefit": {"threshold": None, "note": "needs a deal value"},
               FALLBACK_ORDER[0]: {"threshold": None, "note": "scores separate nothing"}}
    used, fallback = published_policy("cost_benefit", missing)
    assert used == FALLBACK_ORDER[1] and fallback["from"] == "cost_benefit" and fallback["to"] == used
    assert "needs a deal value" in fallback["reason"] and f"({missing[used]['threshold']} points)" in fallback["reason"]
    nothing = {name: {"threshold": None, "note": "no"} for name in FALLBACK_ORDER}
    assert published_policy("sales_capacity", nothing) == ("sales_capacity", None)


def test_a_policy_that_finds_nothing_falls_back_with_the_reason_in_the_file_and_the_log(
        default_run: Params, tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    """The policy set is cost_benefit on an export without deal amounts, and mql_lift asks for a close
    rate of 150 % (as 3 x a 38.5 % average asks for 115 %). Published: close_rate_multiple, capped, named."""
    import logging
    import shutil

    from pipeline.stages import thresholds

    models, extracted = tmp_path / "models", tmp_path / "extracted"
    shutil.copytree(default_run.paths.models, models, ignore=shutil.ignore_patterns("published", "report", "charts"))
    extracted.mkdir()
    stages = io.read_parquet(default_run.paths.extracted / "stages.parquet")
    io.write_parquet(extracted / "stages.parquet", stages.assign(amount=np.nan))  # no deal amounts
    average = io.read_json(default_run.paths.models / "thresholds.json")["training"]["average_close_rate"]
    lift = float(np.ceil(1.5 / average))  # asks for a 150 % close rate
    params = default_run.model_copy(update={
        "paths": default_run.paths.model_copy(update={"models": models, "extracted": extracted}),
        "thresholds": Thresholds(policy="cost_benefit", deal_value=None, mql_lift=lift, bootstrap_samples=10)})
    with caplog.at_level(logging.INFO, logger="pipeline.stages.thresholds"):
        result = thresholds.run(params)
    written = io.read_json(models / "thresholds.json")
    assert written["requested_policy"] == "cost_benefit" and written["policy"] == "close_rate_multiple"
    assert written["policies"]["cost_benefit"]["threshold"] is None
    assert "thresholds.deal_value" in written["policies"]["cost_benefit"]["note"]
    assert written["fallback"]["from"] == "cost_benefit" and "thresholds.deal_value" in written["fallback"]["reason"]
    assert written["threshold"] is not None and written["threshold"] == written["policies"]["close_rate_multiple"]["threshold"]
    assert written["warning"] == written["fallback"]["reason"] and "Fallback" in written["how"]
    # the cap, by hand from the lead and customer counts of the training curve the stage wrote:
    # MQLs must close halfway between the average and the best group of min_mql_leads leads or more
    curve = pd.read_csv(models / "plots" / "threshold_curve.csv").sort_values("score")
    rate = curve["customers_at_or_above"] / curve["leads_at_or_above"]
    mean = rate.iloc[0]  # the lowest score holds every training lead
    assert lift * mean >= 1
    eligible = curve["leads_at_or_above"] >= params.thresholds.min_mql_leads
    target = (mean + rate[eligible].max()) / 2
    assert written["mql_lift_setting"] == lift and written["mql_lift_used"] == pytest.approx(target / mean)
    assert "100 % or more" in written["capped_because"]
    assert written["threshold"] == int(curve.loc[eligible & (rate >= target - 1e-12), "score"].min())
    assert result["training"]["mql_close_rate"] >= target - 1e-12
    logged = caplog.text
    assert "capped at" in logged and written["fallback"]["reason"] in logged
    assert "cost_benefit finds no threshold: needs a deal value" in logged
