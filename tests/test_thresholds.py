"""MQL threshold policies and the fit x interest matrix (issue 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.params import Params, Thresholds
from pipeline.thresholds import choose_by_policy, grade, policy_results, quadrant, threshold_curve


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
    from pipeline.thresholds import peak_rows

    lead = np.array([0, 0, 0, 1, 2, 2])
    total = np.array([10, 40, 25, -5, 7, 7])  # lead 0 peaks on its second row; lead 2 ties: its first
    assert peak_rows(total, lead).tolist() == [1, 3, 4]


def test_grade_cutoffs_keep_the_lowest_grade_when_scores_tie_at_the_minimum() -> None:
    from pipeline.thresholds import grade_cutoffs

    engagement = np.array([0] * 60 + [5, 10, 15, 20, 30, 40, 50, 60, 70, 80] * 4)  # 60 % never engaged
    cuts = grade_cutoffs(engagement)
    assert cuts[-1] == 5  # grade 4: the leads with no engagement; grade 3 starts just above them
    grades = grade(engagement, cuts, ["1", "2", "3", "4"])
    assert (grades[:60] == "4").all() and set(grades[60:]) <= {"1", "2", "3"}
    assert grade_cutoffs(np.arange(100)) == [float(q) for q in np.quantile(np.arange(100), [0.75, 0.5, 0.25])]
