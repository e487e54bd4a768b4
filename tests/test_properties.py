"""Properties that must hold for any data, checked with hypothesis."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.signal_counts import count_signals
from pipeline.core.signals import SignalSet
from pipeline.core.stats import top_fraction_lift, wilson_interval
from pipeline.core.thresholds import threshold_curve
from pipeline.stages.close_rates import close_rate_table

counts = st.integers(min_value=0, max_value=100_000)


@given(counts, counts, st.floats(min_value=0.51, max_value=0.999))
def test_wilson_interval_is_inside_0_1_and_contains_the_rate(a: int, b: int, confidence: float) -> None:
    customers, leads = min(a, b), max(a, b)
    low, high = wilson_interval(np.array([customers]), np.array([leads]), confidence)
    assert 0.0 <= low[0] <= high[0] <= 1.0
    if leads:
        assert low[0] - 1e-12 <= customers / leads <= high[0] + 1e-12


@st.composite
def lead_tables(draw: st.DrawFn) -> tuple[SignalSet, np.ndarray]:
    n = draw(st.integers(min_value=1, max_value=60))
    k = draw(st.integers(min_value=1, max_value=5))
    cells = draw(st.lists(st.integers(0, 1), min_size=n * k, max_size=n * k))
    closed = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    matrix = pd.DataFrame(np.array(cells, dtype=np.uint8).reshape(n, k), columns=[f"s{i}" for i in range(k)])
    catalog = pd.DataFrame({"signal": matrix.columns, "kind": "engagement", "type": "activity",
                            "attribute": matrix.columns, "value": "yes"})
    return SignalSet(matrix, catalog), closed


@given(lead_tables(), st.lists(st.integers(0, 1), min_size=5, max_size=5))
@settings(max_examples=200, deadline=None)
def test_a_lead_that_never_closes_never_raises_a_close_rate(data: tuple[SignalSet, np.ndarray], extra: list[int]) -> None:
    signals, closed = data
    before, average_before = close_rate_table(count_signals(signals, closed), min_support=1)
    row = pd.DataFrame([extra[: signals.matrix.shape[1]]], columns=signals.matrix.columns, dtype=np.uint8)
    grown = SignalSet(pd.concat([signals.matrix, row], ignore_index=True), signals.catalog)
    after, average_after = close_rate_table(count_signals(grown, np.append(closed, 0)), min_support=1)
    assert (after["close_rate"].to_numpy() <= before["close_rate"].to_numpy() + 1e-12).all()
    assert average_after <= average_before
    assert after["close_rate"].between(0, 1).all() and (after["ci_low"] <= after["close_rate"] + 1e-12).all()


@given(st.lists(st.tuples(st.integers(-50, 50), st.integers(0, 1)), min_size=1, max_size=200),
       st.floats(min_value=0.01, max_value=1.0), st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_top_fraction_lift_ignores_row_order(rows: list[tuple[int, int]], fraction: float, rnd) -> None:
    score = np.array([s for s, _ in rows], dtype=float)
    y = np.array([c for _, c in rows])
    shuffled = list(range(len(rows)))
    rnd.shuffle(shuffled)
    lift, capture = top_fraction_lift(y, score, fraction)
    lift2, capture2 = top_fraction_lift(y[shuffled], score[shuffled], fraction)
    if y.sum():
        assert np.isclose(lift, lift2) and np.isclose(capture, capture2)
        assert -1e-12 <= capture <= 1 + 1e-12
        assert np.isclose(top_fraction_lift(y, score, 1.0)[0], 1.0)  # everybody: the average


@given(st.lists(st.tuples(st.integers(-30, 30), st.integers(0, 1)), min_size=1, max_size=200))
@settings(max_examples=200, deadline=None)
def test_threshold_curve_counts_are_cumulative_from_the_top(rows: list[tuple[int, int]]) -> None:
    score = np.array([s for s, _ in rows])
    closed = np.array([c for _, c in rows])
    curve = threshold_curve(score, closed)
    for _, row in curve.iterrows():
        above = score >= row["score"]
        assert row["leads_at_or_above"] == above.sum()
        assert row["customers_at_or_above"] == closed[above].sum()
    assert curve["leads_at_or_above"].is_monotonic_decreasing
    assert curve["leads_at_or_above"].iloc[0] == len(rows)
