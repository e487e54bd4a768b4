"""The report's interactive charts (pipeline.report.interactive): what each spec draws, against hand-computed
figures and the pipeline's own threshold curve."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from pipeline.core.stats import wilson_interval
from pipeline.report import interactive
from pipeline.core import thresholds


def values(spec: dict) -> list[list[dict]]:
    """Every inline dataset of a spec (Altair keeps them under the layers, in drawing order)."""
    found: list[list[dict]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), dict) and "values" in node["data"]:
                found.append(node["data"]["values"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(spec)
    return found


def test_threshold_curve_by_hand() -> None:
    # totals -10: 4 leads (0 customers), 0: 4 leads (1), 20: 2 leads (1); 10 leads, 2 customers, 5 weeks
    distribution = pd.DataFrame({"total_points": [-10, 0, 20], "customers": [0, 1, 1], "other_leads": [4, 3, 1]})
    curve = interactive.threshold_curve(distribution, weeks=5.0)
    assert curve["threshold"].tolist() == [-10, 0, 20]
    assert curve["mql_leads"].tolist() == [10, 6, 2]
    assert curve["mql_share"].tolist() == pytest.approx([1.0, 0.6, 0.2])
    assert curve["mql_close_rate"].tolist() == pytest.approx([0.2, 2 / 6, 0.5])
    assert curve["customers_captured"].tolist() == pytest.approx([1.0, 1.0, 0.5])
    assert curve["mql_lift"].tolist() == pytest.approx([1.0, (2 / 6) / 0.2, 2.5])
    assert curve["mql_per_week"].tolist() == pytest.approx([2.0, 1.2, 0.4])
    assert interactive.threshold_curve(distribution, weeks=None)["mql_per_week"].isna().all()  # a snapshot export


def test_threshold_curve_agrees_with_the_stage_that_chose_the_threshold() -> None:
    rng = np.random.default_rng(7)
    total = rng.integers(-30, 60, 3000)
    closed = rng.random(3000) < 1 / (1 + np.exp(-(total - 40) / 10))
    mine = interactive.threshold_curve(thresholds.score_distribution(total, closed), weeks=None).set_index("threshold")
    theirs = thresholds.threshold_curve(total, closed).set_index("score")
    assert mine["mql_leads"].tolist() == theirs["leads_at_or_above"].tolist()
    assert mine["mql_close_rate"].to_numpy() == pytest.approx(theirs["close_rate_at_or_above"].to_numpy())
    assert mine["mql_lift"].to_numpy() == pytest.approx(theirs["lift_at_or_above"].to_numpy())
    assert mine["customers_captured"].to_numpy() == pytest.approx(theirs["customers_captured"].to_numpy())


def test_threshold_chart_leaves_out_thresholds_with_too_few_mqls() -> None:
    distribution = pd.DataFrame({"total_points": [0, 10, 20, 30], "customers": [1, 1, 1, 1], "other_leads": [99, 49, 19, 4]})
    spec = interactive.threshold_chart(interactive.threshold_curve(distribution, 10.0), 10, 0.02, "test leads", min_leads=25)
    drawn = {row["threshold"] for rows in values(spec) for row in rows if "mql_leads" in row}
    assert drawn == {0, 10, 20}  # 30 leaves 5 MQLs
    assert "thresholds leaving at least 25 MQLs" in spec["title"]["subtitle"]
    assert {row.get("threshold") for rows in values(spec) for row in rows if set(row) == {"threshold"}} == {10}


SIGNALS = pd.DataFrame({
    "signal": ["demo", "blog", "size = 1-10", "recency"],
    "kind": ["engagement", "engagement", "fit", "engagement"],
    "points": [40, -2, -8, 0], "points_p025": [30.0, -6.0, -12.0, 0.0], "points_p975": [50.0, 3.0, -1.0, 0.0],
    "leads": [100, 400, 300, 50], "customers": [20, 8, 3, 1], "close_rate": [0.2, 0.02, 0.01, 0.02],
    "lift": [4.0, 0.4, 0.2, 0.4], "status": ["scored", "scored", "scored", "no points"],
})


def test_points_chart_marks_each_range_against_zero_with_95_percent_wilson_on_hover() -> None:
    spec = interactive.points_chart(SIGNALS, "fitted on 850 leads")
    rows = {row["signal"]: row for rows in values(spec) for row in rows if "signal" in row}
    assert set(rows) == {"demo", "blog", "size = 1-10"}  # unscored signals are not drawn
    assert {s: r["verdict"] for s, r in rows.items()} == {"demo": "above", "blog": "unclear", "size = 1-10": "below"}
    assert rows["demo"]["range"] == "+30.0 to +50.0"
    low, high = wilson_interval(np.array([20]), np.array([100]), 0.95)
    assert rows["demo"]["close_rate_interval"] == f"{low[0]:.1%} to {high[0]:.1%}"
    assert spec["title"]["text"] == "1 of 3 signals clearly add points, 1 clearly take points away"
    assert "fitted on 850 leads" in spec["title"]["subtitle"]
    tooltips = json.dumps(spec)
    assert "close rate, 95 % Wilson" in tooltips and "95 % range" in tooltips


def test_points_chart_without_refits_has_no_verdict() -> None:
    spec = interactive.points_chart(SIGNALS.drop(columns=["points_p025", "points_p975"]), "fitted")
    rows = [row for rows in values(spec) for row in rows if "signal" in row]
    assert {row["verdict"] for row in rows} == {"unclear"} and {row["range"] for row in rows} == {"not measured"}
    assert spec["title"]["text"] == "The points of 3 signals (no bootstrap refits: no ranges)"


def test_matrix_chart_has_sixteen_cells_with_their_counts_and_intervals() -> None:
    grades = {f"{fit}{engagement}": {"leads": 100 + i, "customers": i, "close_rate": i / (100 + i),
                                     "share_of_leads": 1 / 16, "share_of_customers": 1 / 16}
              for i, (fit, engagement) in enumerate((f, e) for f in "ABCD" for e in "1234")}
    spec = interactive.matrix_chart(grades, 0.05, "training leads")
    rows = values(spec)[0]
    assert len(rows) == 16 and {(r["fit"], r["engagement"]) for r in rows} == {(f, e) for f in "ABCD" for e in "1234"}
    d4 = next(r for r in rows if r["fit"] == "D" and r["engagement"] == "4")
    assert (d4["leads"], d4["customers"]) == (115, 15)
    low, high = wilson_interval(np.array([15]), np.array([115]), 0.95)
    assert d4["close_rate_interval"] == f"{low[0]:.1%} to {high[0]:.1%}"


def test_same_tables_give_the_same_spec() -> None:
    first = json.dumps(interactive.points_chart(SIGNALS, "p"), sort_keys=True)
    assert json.dumps(interactive.points_chart(SIGNALS.copy(), "p"), sort_keys=True) == first


def test_matrix_chart_says_no_leads_for_an_empty_cell() -> None:
    """Olist: every lead has the same engagement, so 12 of the 16 cells are empty (close_rate null)."""
    full = {"leads": 10, "customers": 1, "close_rate": 0.1, "share_of_leads": 0.5, "share_of_customers": 0.5}
    empty = {"leads": 0, "customers": 0, "close_rate": None, "share_of_leads": 0.0, "share_of_customers": 0.0}
    spec = interactive.matrix_chart({"A1": full, "A2": empty}, 0.1, "training leads")
    rows = {row["engagement"]: row for row in values(spec)[0]}
    assert rows["2"]["close_rate"] is None and rows["2"]["close_rate_text"] == "no leads"
    assert rows["2"]["close_rate_interval"] == "no leads" and rows["2"]["lift"] is None
    assert rows["1"]["lift"] == pytest.approx(1.0)


# --- review fixes: one-decimal ranges, non-finite values, the threshold curve's steps and tooltip --

def test_points_ranges_show_one_decimal_and_a_missing_bound_as_not_measured() -> None:
    """'+0 to +12' hid that the range does not reach 0; a NaN bound printed '+nan'."""
    signals = SIGNALS.assign(points_p025=[0.4, -6.04, np.nan, 0.0], points_p975=[12.3, 3.0, -1.0, 0.0])
    spec = interactive.points_chart(signals, "fitted")
    rows = {row["signal"]: row for rows in values(spec) for row in rows if "signal" in row}
    assert {s: r["range"] for s, r in rows.items()} == {"demo": "+0.4 to +12.3", "blog": "-6.0 to +3.0",
                                                       "size = 1-10": "not measured"}
    assert interactive.range_text(-0.04, np.inf) == "not measured"


def test_records_write_infinities_as_null() -> None:
    """JSON has no Infinity: page.vega_chart (allow_nan=False) would raise on an infinite lift."""
    frame = pd.DataFrame({"lift": [1.25, np.inf, -np.inf, np.nan], "n": np.arange(4)})
    assert [row["lift"] for row in interactive._records(frame)] == [1.25, None, None, None]


def test_threshold_curve_steps_down_to_the_next_total_and_the_tooltip_counts_the_mqls() -> None:
    """Between observed totals 10 and 20 a threshold of 15 makes MQLs of the leads at 20 or more:
    the line must hold the next total's value (step-before), not the previous one's (step-after)."""
    distribution = pd.DataFrame({"total_points": [0, 10, 20], "customers": [1, 1, 1], "other_leads": [99, 49, 19]})
    spec = interactive.threshold_chart(interactive.threshold_curve(distribution, 10.0), 10, 0.02, "test leads")
    text = json.dumps(spec)
    lines = re.findall(r'"mark": \{[^}]*"type": "line"[^}]*\}', text)
    assert len(lines) == 2 and all('"interpolate": "step-before"' in line for line in lines), lines
    tooltips = [tip for tips in re.findall(r'"tooltip": (\[[^\]]*\])', text) for tip in json.loads(tips)]
    assert {"field": "mql_leads", "format": ",", "title": "MQL leads", "type": "quantitative"} in tooltips


def test_close_rates_chart_colours_each_activity_against_its_expected_rate_with_95_percent_wilson() -> None:
    """demo: 30 of 100 (Wilson 22-40 %) against an expected 5 %: above; blog: 2 of 200 (0.3-3.6 %) against
    expected 8 %: below; quiet: 1 of 20 (0.9-23.6 %) against 5 %: can't tell. The fit row is not drawn."""
    table = pd.DataFrame({"signal": ["demo", "blog", "quiet", "size = 1-10"], "type": ["activity"] * 3 + ["fit"],
                          "leads": [100, 200, 20, 50], "customers": [30, 2, 1, 5], "close_rate": [0.3, 0.01, 0.05, 0.1],
                          "expected_close_rate": [0.05, 0.08, 0.05, 0.05], "lift": [6.0, 0.2, 1.0, 2.0]})
    spec = interactive.close_rates_chart(table, 0.05, "matured leads: 370 leads")
    rows = {row["signal"]: row for rows in values(spec) for row in rows if "signal" in row}
    assert {s: r["verdict"] for s, r in rows.items()} == {"demo": "above", "blog": "below", "quiet": "unclear"}
    low, high = wilson_interval(np.array([30]), np.array([100]), 0.95)
    assert (rows["demo"]["low"], rows["demo"]["high"]) == (pytest.approx(low[0], abs=1e-6), pytest.approx(high[0], abs=1e-6))
    assert rows["demo"]["close_rate_interval"] == f"{low[0]:.1%} to {high[0]:.1%}"
    assert spec["title"]["text"] == "1 of 3 activities close clearly above their expected close rate, 1 clearly below"
    assert "matured leads: 370 leads" in spec["title"]["subtitle"]
