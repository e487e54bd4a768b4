"""Pure statistics against hand-computed and published values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.core.stats import (
    calibration_table,
    classification_metrics,
    cumulative_gain,
    gain_table,
    top_fraction_lift,
    wilson_interval,
)


def test_wilson_matches_hand_computation() -> None:
    # 3 customers among 10 leads, z = 1.959964 (95 %):
    # centre = (0.3 + z^2/20) / (1 + z^2/10) = 0.49207 / 1.38415 = 0.35550
    # half   = z / 1.38415 * sqrt(0.021 + z^2/400) = 1.41600 * 0.17520 = 0.24774
    low, high = wilson_interval(np.array([3]), np.array([10]), 0.95)
    z = 1.959963984540054
    centre = (0.3 + z**2 / 20) / (1 + z**2 / 10)
    half = z / (1 + z**2 / 10) * math.sqrt(0.3 * 0.7 / 10 + z**2 / 400)
    assert low[0] == pytest.approx(centre - half, abs=1e-12)
    assert high[0] == pytest.approx(centre + half, abs=1e-12)
    # Published value (Newcombe 1998, table I): 0.1078 to 0.6032.
    assert (round(low[0], 4), round(high[0], 4)) == (0.1078, 0.6032)


def test_wilson_zero_successes_is_not_degenerate() -> None:
    low, high = wilson_interval(np.array([0, 0]), np.array([20, 0]), 0.95)
    assert low[0] == 0.0
    assert high[0] == pytest.approx(0.1611, abs=1e-4)  # published: 0 to 0.1611
    assert (low[1], high[1]) == (0.0, 1.0)  # no leads: nothing is known


def test_wilson_narrows_with_confidence() -> None:
    low90, high90 = wilson_interval(np.array([5]), np.array([100]), 0.90)
    low99, high99 = wilson_interval(np.array([5]), np.array([100]), 0.99)
    assert low99[0] < low90[0] < 0.05 < high90[0] < high99[0]


def test_top_decile_lift_hand_case() -> None:
    # 20 leads, 4 customers (average 20 %); the top 10 % is 2 leads.
    y = np.array([1, 1] + [0] * 16 + [1, 1])
    score = np.array([10, 9] + [5] * 16 + [1, 1])
    lift, capture = top_fraction_lift(y, score, 0.1)
    assert lift == pytest.approx((2 / 2) / 0.2)  # both top leads closed: 100 % vs 20 %
    assert capture == pytest.approx(0.5)


def test_top_decile_shares_ties_pro_rata() -> None:
    # All 10 leads tie: the top 10 % (one lead) holds on average 3/10 of a customer.
    y = np.array([1, 1, 1] + [0] * 7)
    lift, capture = top_fraction_lift(y, np.zeros(10), 0.1)
    assert lift == pytest.approx(1.0)
    assert capture == pytest.approx(0.1)
    # and the result does not depend on row order
    assert top_fraction_lift(y[::-1], np.zeros(10), 0.1) == (lift, capture)


def test_classification_metrics_perfect_ranking() -> None:
    y = np.array([0, 0, 0, 1])
    metrics = classification_metrics(y, np.array([0.1, 0.2, 0.3, 0.9]))
    assert metrics["auc"] == 1.0
    assert metrics["brier"] == pytest.approx((0.01 + 0.04 + 0.09 + 0.01) / 4)
    assert metrics["observed_rate"] == 0.25


def test_calibration_table_bins_are_equal_count_and_ordered() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.3, 10_000)
    y = rng.random(10_000) < p
    table = calibration_table(y, p, bins=10)
    assert [row["leads"] for row in table] == [1000] * 10
    predicted = [row["predicted"] for row in table]
    assert predicted == sorted(predicted)
    # well-calibrated input: observed within 3 points of predicted in every bin
    assert all(abs(row["observed"] - row["predicted"]) < 0.03 for row in table)


def test_calibration_table_counts_the_distinct_leads_behind_the_rows() -> None:
    """Hand case: 4 rows in 2 bins; rows 0 and 1 are one lead seen twice, so bin 1 holds 2 rows
    but 1 lead; bin 2 holds 2 rows of 2 leads."""
    p = np.array([0.1, 0.2, 0.3, 0.4])
    y = np.array([1, 1, 0, 1])
    table = calibration_table(y, p, bins=2, groups=np.array([7, 7, 8, 9]))
    assert [(row["leads"], row["distinct_leads"]) for row in table] == [(2, 1), (2, 2)]
    assert "distinct_leads" not in calibration_table(y, p, bins=2)[0]


def test_cumulative_gain_hand_case_with_ties() -> None:
    # scores 3, 3, 1, 0: the tied top pair holds 1 of the 2 customers, the third lead the other.
    y = np.array([1, 0, 1, 0])
    score = np.array([3, 3, 1, 0])
    gain = cumulative_gain(y, score, np.array([0.0, 0.25, 0.5, 0.75, 1.0]))
    # a cut through the tie takes half of the pair's one customer: 0.5 / 2 customers
    assert gain.tolist() == pytest.approx([0.0, 0.25, 0.5, 1.0, 1.0])
    # row order does not matter
    assert cumulative_gain(y[::-1], score[::-1], np.array([0.25]))[0] == pytest.approx(0.25)


def test_gain_table_perfect_and_random_scorers() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    table = gain_table(y, {"perfect": y + rng.random(2000) * 0.5, "none": np.zeros(2000)}, steps=10)
    base = y.mean()
    for row in table:
        # a perfect ranking finds every customer first; a constant score is the diagonal
        assert row["perfect"] == pytest.approx(min(row["share_of_leads"] / base, 1.0))
        assert row["none"] == pytest.approx(row["share_of_leads"])
        assert row["random"] == row["share_of_leads"]
    # top-fraction lift is the gain divided by the fraction
    lift, capture = top_fraction_lift(y, y + rng.random(2000) * 0.5, 0.1)
    assert capture == pytest.approx(table[1]["perfect"]) and lift == pytest.approx(capture / 0.1)


def test_stratified_auc_compares_only_leads_of_the_same_snapshot() -> None:
    from pipeline.core.stats import stratified_auc

    # stratum 0: customer 0.9 vs others 0.5, 0.95 -> 1 of 2 pairs; stratum 1: customer 0.2 vs other 0.1 -> 1 of 1
    y = np.array([1, 0, 0, 1, 0])
    score = np.array([0.9, 0.5, 0.95, 0.2, 0.1])
    strata = np.array([0, 0, 0, 1, 1])
    assert stratified_auc(y, score, strata) == pytest.approx((1 + 1) / 3)
    # pooled, the day-1 customer at 0.2 loses to both day-0 others: a different number
    assert stratified_auc(y, score) == pytest.approx(3 / 6)
    assert np.isnan(stratified_auc(np.array([1, 0]), np.array([0.3, 0.2]), np.array([0, 1])))  # no stratum has both


def test_lead_rows_helpers_count_each_lead_once() -> None:
    from pipeline.core.signals import first_shown, per_lead_max, resample_leads

    lead = np.array([0, 0, 0, 1, 2, 2])
    present = np.array([[0, 1], [1, 1], [1, 0], [1, 0], [0, 0], [1, 1]], dtype=bool)
    first = first_shown(present, lead, 3)
    assert first.tolist() == [[False, True], [True, False], [False, False], [True, False], [False, False], [True, True]]
    assert per_lead_max(present, lead).tolist() == [[True, True], [True, False], [True, True]]
    rows, drawn = resample_leads(np.random.default_rng(0), lead)
    # every drawn lead comes with all its rows, in order, under a code of its own
    for code in np.unique(drawn):
        picked = rows[drawn == code]
        assert len(np.unique(lead[picked])) == 1 and list(picked) == list(np.flatnonzero(lead == lead[picked[0]]))
    assert len(np.unique(drawn)) == 3


def test_calibration_folds_keep_a_lead_together_and_share_out_customers() -> None:
    from pipeline.core.calibration import lead_folds

    lead = np.repeat(np.arange(100), 3)
    y = np.repeat((np.arange(100) < 20).astype(int), 3)
    folds = lead_folds(y, lead, 5, seed=1)
    for train, test in folds.split():
        assert not set(lead[train]) & set(lead[test])
        assert len(set(lead[test])) == 20 and y[test].sum() == 4 * 3  # 4 of the 20 customers in each fold
