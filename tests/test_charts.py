"""Charts are checked by the data they draw, not only by the file existing.

Each chart function is fed a small hand-made table and the drawn artists (bar widths,
line data, whiskers, reference lines, cell texts, axis limits, title and subtitle) are
compared with that table; every chart is checked against the style guide
(docs/chart-style.md): a title that fits and states a fact of the data, the population and n
under it, 95 % intervals, legends outside the data. Then the report's PNGs are shown to be
exactly the charts of the run's artifacts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.image import imread

from pipeline import io
from pipeline.params import Params
from pipeline.report import charts
from pipeline.report.charts import figure_bytes

# Wilson 95 % interval of 10 customers out of 100 leads, by hand: z = 1.959964, p = 0.1,
# centre = (p + z²/2n) / (1 + z²/n) = 0.119207 / 1.038415 = 0.114797,
# half = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²) = 1.887461 * 0.031560 = 0.059568
WILSON_10_OF_100 = (0.055229, 0.174366)
# 0 customers out of 50: low 0, high = z²/n / (1 + z²/n) = 0.076829 / 1.076829 = 0.071348
WILSON_0_OF_50 = (0.0, 0.071348)
WILSON_5_OF_50 = (0.043476, 0.213602)  # by hand: p = 0.1, n = 50, z = 1.959964


@pytest.fixture(autouse=True)
def _close_figures():
    """Each test's figures are closed after it: pyplot keeps every figure it opened."""
    yield
    charts.plt.close("all")


def _bar_widths(ax) -> list[float]:
    return [patch.get_width() for patch in ax.patches]


def _colours(ax) -> list[tuple[float, float, float]]:
    return [tuple(patch.get_facecolor()[:3]) for patch in ax.patches]


def _rgb(*colours: str) -> list:
    return [pytest.approx(to_rgb(c)) for c in colours]


def _whiskers(ax) -> list[tuple[float, float]]:
    """(low, high) of each error bar drawn in `ax`, in drawing order."""
    spans = []
    for collection in ax.collections:
        for segment in getattr(collection, "get_segments", lambda: [])():
            (x0, y0), (x1, y1) = segment
            spans.append((min(x0, x1), max(x0, x1)) if y0 == y1 else (min(y0, y1), max(y0, y1)))
    return spans


def _subtitle(fig: Figure) -> str:
    return " ".join(" ".join(t.get_text().split()) for t in fig.texts)


def _title(fig: Figure) -> str:
    return " ".join(fig.get_suptitle().split())


def _data_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]


def _readable(fig: Figure) -> None:
    """One style for every chart (docs/chart-style.md): a title and a population line that fit the
    figure, labelled axes, no top/right frame, fits a screen at 100 %, legends outside the data."""
    width, _ = fig.get_size_inches() * fig.dpi
    assert width <= 1100
    assert _title(fig), "every chart has a title"
    assert _subtitle(fig), "every chart states its population and n under the title"
    axes = _data_axes(fig)
    assert any(ax.get_xlabel() for ax in axes)
    for ax in axes:
        assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
        assert ax.get_legend() is None, "legends go outside the data, below the chart"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    drawn = [fig._suptitle, *fig.texts, *fig.legends, *(ax.get_tightbbox(renderer) for ax in fig.axes)]
    for artist in drawn:
        box = artist if not hasattr(artist, "get_window_extent") else artist.get_window_extent(renderer)
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= page.x1 + 1 and box.y1 <= page.y1 + 1, \
            f"cut off: {getattr(artist, 'get_text', lambda: artist)()}"
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        for ax in axes:
            assert not box.overlaps(ax.bbox), "a legend covers the data"
    for header in (fig._suptitle, *fig.texts):  # the title block never runs into a panel, its title or a table
        box = header.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_tightbbox(renderer)), f"the title block overlaps: {header.get_text()}"


def test_population_names_the_leads_and_counts_them() -> None:
    record = {"from": "2025-07", "to": "2025-10", "leads": 4928, "rows": 14662, "customers": 141}
    assert charts.population("held-out months", record) == (
        "held-out months 2025-07..2025-10: 4,928 leads (14,662 rows: a lead once per snapshot age it reached), "
        "141 customers")
    assert charts.population("training leads", record, counts=False) == "training leads 2025-07..2025-10"
    assert charts.matured_population({"matured_leads": 34445, "customers": 1072}, 90) == (
        "matured leads (had 90 days to close), all months: 34,445 leads, 1,072 customers")


def test_close_rates_chart_draws_each_rate_and_colours_by_interval() -> None:
    table = pd.DataFrame({
        "signal": ["demo", "blog", "ebook", "size = 1-10"],
        "type": ["activity", "activity", "activity", "fit"],
        "leads": [100, 500, 80, 300],
        "close_rate": [0.20, 0.02, 0.06, 0.01],
        "ci_low": [0.13, 0.01, 0.02, 0.005],
        "ci_high": [0.29, 0.035, 0.13, 0.03],
    })
    fig = charts.close_rates_chart(table, average=0.05, signal_type="activity",
                                   population="matured leads: 1,000 leads, 50 customers")
    ax = fig.axes[0]
    # sorted by close rate, fit rows left out
    assert _bar_widths(ax) == pytest.approx([0.02, 0.06, 0.20])
    assert _colours(ax) == _rgb(charts.BELOW, charts.UNCLEAR, charts.ABOVE)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["blog  (n=500)", "ebook  (n=80)", "demo  (n=100)"]
    assert _whiskers(ax) == [pytest.approx(w) for w in [(0.01, 0.035), (0.02, 0.13), (0.13, 0.29)]]
    average_line = [line for line in ax.get_lines() if "average" in line.get_label()][0]
    assert average_line.get_xdata()[0] == pytest.approx(0.05)
    # the average says which leads it averages, in the legend too
    assert average_line.get_label() == "average of all matured leads: 5.0%"
    assert "average of all matured leads: 5.0%" in [t.get_text() for t in fig.legends[0].get_texts()]
    # the title counts the verdicts; the population and the interval level are stated
    assert _title(fig) == "1 of 3 activities close clearly above the average of all matured leads, 1 clearly below"
    assert "matured leads: 1,000 leads, 50 customers" in _subtitle(fig) and "95 % Wilson" in _subtitle(fig)
    _readable(fig)


def test_close_rates_chart_recomputes_95_percent_wilson_from_the_counts() -> None:
    """A table computed at another confidence (here 90 %) still gets 95 % whiskers: the chart says 95 %."""
    table = pd.DataFrame({"signal": ["demo", "quiet"], "type": ["activity", "activity"], "leads": [100, 50],
                          "customers": [10, 0], "close_rate": [0.1, 0.0], "ci_low": [0.06, 0.0],
                          "ci_high": [0.16, 0.05], "expected_close_rate": [0.03, 0.03]})
    fig = charts.close_rates_chart(table, average=0.03)
    ax = fig.axes[0]
    assert _whiskers(ax) == [pytest.approx(WILSON_0_OF_50, abs=1e-6), pytest.approx(WILSON_10_OF_100, abs=1e-6)]
    assert _colours(ax) == _rgb(charts.UNCLEAR, charts.ABOVE)  # 0 of 50: [0, 7.1 %] overlaps 3 %


def test_close_rates_chart_by_fit_has_one_panel_per_attribute() -> None:
    table = pd.DataFrame({
        "signal": ["size = 1-10", "size = 11-50", "industry = software", "industry = retail", "industry = other",
                   "demo"],
        "type": ["fit"] * 5 + ["activity"],
        "attribute": ["size", "size", "industry", "industry", "industry", "demo"],
        "value": ["1-10", "11-50", "software", "retail", "other", "yes"],
        "leads": [400, 300, 500, 200, 100, 90],
        "customers": [4, 9, 25, 4, 3, 9],
        "close_rate": [0.01, 0.03, 0.05, 0.02, 0.03, 0.1],
        "ci_low": [0.0] * 6, "ci_high": [1.0] * 6,
        "expected_close_rate": [0.03] * 6,
    })
    fig = charts.close_rates_chart(table, average=0.03, signal_type="fit", population="matured leads")
    panels = _data_axes(fig)
    assert [ax.get_title(loc="left") for ax in panels] == ["industry", "size"]  # one group per attribute
    industry, size = panels
    assert [t.get_text() for t in industry.get_yticklabels()] == ["retail  (n=200)", "other  (n=100)",
                                                                   "software  (n=500)"]
    assert _bar_widths(size) == pytest.approx([0.01, 0.03])
    assert industry.get_shared_x_axes().joined(industry, size)  # one scale: panels compare
    assert len(industry.patches) + len(size.patches) == 5  # the activity is not a fit value
    assert "one panel per attribute" in _subtitle(fig)
    _readable(fig)


def test_points_table_chart_shows_scored_signals_by_kind_with_95_percent_whiskers() -> None:
    signals = pd.DataFrame({
        "signal": ["demo", "blog", "recency 7d", "size = 1-10", "industry = software"],
        "kind": ["engagement", "engagement", "engagement", "fit", "fit"],
        "points": [80, -3, 0, -13, 14],
        "points_p05": [70.0, -9.0, 0.0, -20.0, 10.0],
        "points_p95": [95.0, 6.0, 0.0, -4.0, 18.0],
        "points_sd": [5.0, 4.0, 0.0, 5.0, 10.0],
        "status": ["scored", "scored", "recency is already in the decay: no points", "scored", "scored"],
    })
    fig = charts.points_table_chart(signals, population="fitted on the training leads: 1,000 leads")
    engagement, fit = fig.axes[:2]
    assert _bar_widths(engagement) == [-3, 80] and _bar_widths(fit) == [-13, 14]
    assert [t.get_text() for t in engagement.get_yticklabels()] == ["blog", "demo"]  # unscored recency left out
    assert {t.get_text().strip() for t in fit.texts} == {"-13", "+14"}
    # 95 %: an older table with only a 90 % range (p05 / p95) gets points ± 1.96 sd; the 90 % range is not drawn
    assert _whiskers(engagement) == [pytest.approx((-3 - 1.959964 * 4, -3 + 1.959964 * 4), abs=1e-4),
                                     pytest.approx((80 - 1.959964 * 5, 80 + 1.959964 * 5), abs=1e-4)]
    # green / red only where the 95 % interval excludes 0: -13 ± 9.8 is below, 14 ± 19.6 is not above
    assert _colours(fit) == _rgb(charts.BELOW, charts.UNCLEAR)
    assert _colours(engagement) == _rgb(charts.UNCLEAR, charts.ABOVE)
    assert _title(fig) == "1 of 4 signals clearly add points, 1 clearly take points away"
    assert "fitted on the training leads: 1,000 leads" in _subtitle(fig) and "95 % interval" in _subtitle(fig)
    _readable(fig)


def test_points_table_chart_prefers_the_percentiles_of_a_95_percent_range() -> None:
    signals = pd.DataFrame({"signal": ["demo"], "kind": ["engagement"], "points": [80], "points_sd": [50.0],
                            "points_p025": [61.0], "points_p975": [99.0], "status": ["scored"]})
    fig = charts.points_table_chart(signals)
    assert _whiskers(fig.axes[0]) == [pytest.approx((61.0, 99.0))]
    assert _colours(fig.axes[0]) == _rgb(charts.ABOVE)


def test_cumulative_gain_chart_draws_gain_and_lift() -> None:
    gain = pd.DataFrame({"share_of_leads": [0.0, 0.2, 0.5, 1.0], "model": [0.0, 0.6, 0.8, 1.0],
                         "points_table": [0.0, 0.5, 0.7, 1.0], "random": [0.0, 0.2, 0.5, 1.0]})
    fig = charts.cumulative_gain_chart(gain, population="held-out months: 500 leads, 20 customers")
    left, right = fig.axes
    lines = {line.get_label(): line for line in left.get_lines()}
    assert list(lines["predictive model"].get_ydata()) == [0.0, 0.6, 0.8, 1.0]
    assert list(lines["points table"].get_ydata()) == [0.0, 0.5, 0.7, 1.0]
    assert lines["predictive model"].get_color() == charts.MODEL and lines["points table"].get_color() == charts.POINTS
    lift = {line.get_label(): line for line in right.get_lines()}
    assert list(lift["predictive model"].get_ydata()) == pytest.approx([3.0, 1.6, 1.0])  # 0.6 / 0.2, 0.8 / 0.5
    assert _title(fig) == ("Calling the top 20% of leads reaches 60% (predictive model), 50% (points table) "
                           "of the customers; at random: 20%")
    assert "held-out months: 500 leads, 20 customers" in _subtitle(fig)
    _readable(fig)


def test_score_distribution_chart_counts_threshold_and_states_the_share_above_it() -> None:
    distribution = pd.DataFrame({"total_points": [-3, 0, 4, 12, 13], "customers": [0, 1, 0, 2, 3],
                                 "other_leads": [10, 20, 5, 4, 1]})
    fig = charts.score_distribution_chart(distribution, threshold=12, band=5, population="training leads")
    others, customers = fig.axes
    assert [p.get_height() for p in others.patches] == [10, 25, 5]  # bands -5, 0, 10
    assert [p.get_height() for p in customers.patches] == [0, 1, 5]
    threshold = [line for line in customers.get_lines() if "threshold" in line.get_label()][0]
    assert threshold.get_xdata()[0] == pytest.approx(11.5)
    # computed from the table: 5 of 6 customers and 5 of 40 other leads score 12 or more
    assert _title(fig) == "83% of customers score at or above the MQL threshold of 12 points, 12% of the other leads"
    assert "training leads: 46 leads, 6 customers" in _subtitle(fig)
    _readable(fig)


def test_score_distribution_title_follows_the_data_not_a_claim() -> None:
    """Most customers below the threshold: the title says so, it never claims they sit to the right."""
    distribution = pd.DataFrame({"total_points": [0, 50], "customers": [7, 3], "other_leads": [90, 10]})
    fig = charts.score_distribution_chart(distribution, threshold=40)
    assert _title(fig).startswith("30% of customers score at or above")
    assert "right" not in _title(fig)


def test_matrix_chart_cells_state_rate_interval_and_leads() -> None:
    cells = pd.DataFrame({"fit_grade": ["A", "A", "D"], "engagement_grade": [1, 2, 4],
                          "close_rate": [0.1, 0.05, 0.004], "leads": [100, 300, 1000], "customers": [10, 15, 4]})
    fig = charts.matrix_chart(cells, average=29 / 1400, population="training leads",
                              average_of="these training leads")
    texts = [t.get_text() for t in fig.axes[0].texts]
    low, high = WILSON_10_OF_100
    assert f"10.0%\n({low:.1%}–{high:.1%})\n100 leads" in texts
    assert texts.count("no leads") == 16 - 3
    assert _title(fig) == "Fit A x engagement 1 closes best: 10.0%, 4.8 times the average of these training leads (2.1%)"
    assert "training leads: 1,400 leads, 29 customers; average of these training leads: 2.1%" in _subtitle(fig)
    _readable(fig)


def test_funnel_chart_draws_counts_and_95_percent_intervals_of_each_step() -> None:
    funnel = charts.funnel_chart([{"stage": "lead", "leads": 1000}, {"stage": "mql", "leads": 100, "rate_from_previous": 0.1},
                                  {"stage": "customer", "leads": 10, "rate_from_previous": 0.1}],
                                 population="matured leads")
    ax = funnel.axes[0]
    assert _bar_widths(ax) == [1000, 100, 10]
    texts = [t.get_text().strip() for t in ax.texts]
    low, high = WILSON_10_OF_100
    assert f"10.0% of previous (95 %: {low:.1%}–{high:.1%})" in texts  # 10 customers of 100 MQLs
    assert _title(funnel) == "10 of 1,000 leads (1.0%) reached the customer stage"
    assert "matured leads: 1,000 leads" in _subtitle(funnel)
    _readable(funnel)


MONTHLY = pd.DataFrame({"month": ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05"],
                        "lead_to_mql": [0.2, 0.25, 0.2, 0.2, 0.1], "mql_to_sql": [0.4, 0.35, 0.3, 0.2, 0.05],
                        "sql_to_customer": [0.3, 0.32, 0.2, None, None]})


def test_monthly_trend_chart_marks_immature_months_from_the_export_date() -> None:
    counts = [{"month": m, "stage": stage, "leads": n, "population": "all"}
              for m in MONTHLY["month"] for stage, n in (("lead", 100), ("mql", 20), ("sql", 10))]
    counts += [{"month": "2024-01", "stage": "customer", "leads": 3, "population": "matured"}]
    # a lead created on 31 January has had its 90 days on 30 April: by 15 May January is mature, February not
    fig = charts.monthly_trend_chart(MONTHLY, counts=counts, export_date="2024-05-15", horizon_days=90,
                                     population="all leads")
    panels = _data_axes(fig)
    assert [ax.get_title(loc="left") for ax in panels] == ["lead → MQL", "MQL → SQL", "SQL → customer"]
    lead_to_mql = panels[0]
    mature = [line for line in lead_to_mql.get_lines() if line.get_label() == "lead → MQL"][0]
    assert list(mature.get_ydata()[:1]) == [0.2] and np.isnan(mature.get_ydata()[1:]).all()  # no drop drawn
    unripe = [line for line in lead_to_mql.get_lines() if line.get_label().endswith("not mature yet")][0]
    assert list(unripe.get_xdata()) == [1, 2, 3, 4] and unripe.get_color() == charts.UNCLEAR
    span = [p for p in lead_to_mql.patches if p.get_gid() == "immature"][0]
    assert span.get_x() == pytest.approx(0.5) and span.get_width() == pytest.approx(4.0)
    # the band is the 95 % Wilson interval of the mature month's count: 20 MQLs of 100 leads
    band = lead_to_mql.collections[0].get_paths()[0].vertices[:, 1]
    from pipeline.core.stats import wilson_interval
    low, high = wilson_interval(np.array([20]), np.array([100]), 0.95)
    assert band.min() == pytest.approx(low[0]) and band.max() == pytest.approx(high[0])
    assert _title(fig) == "Conversion by month of lead creation: the last 4 months are not mature yet (grey)"
    assert "all leads: 500 leads, 2024-01..2024-05" in _subtitle(fig) and "export of 2024-05-15" in _subtitle(fig)
    _readable(fig)


def test_monthly_trend_chart_without_export_date_greys_the_last_horizon_months_and_says_so() -> None:
    fig = charts.monthly_trend_chart(MONTHLY, horizon_days=90)
    spans = [p for p in _data_axes(fig)[2].patches if p.get_gid() == "immature"]
    assert len(spans) == 1 and spans[0].get_x() == pytest.approx(1.5)  # ceil(90 / 30) = 3 months: March to May
    assert "no export date given: the last 3 months" in _subtitle(fig)
    assert list(charts.immature_months(["2024-01", "2024-02"], None, 30)) == [False, True]
    _readable(fig)


def test_calibration_intervals_take_the_distinct_leads_as_n_when_rows_repeat_leads() -> None:
    """100 rows of 50 leads (each seen at two ages), 10 % closed: the whisker is Wilson's for 5 of
    50 leads, wider than 10 of 100 rows would give; the note says what n is."""
    curve = pd.DataFrame({"bin": [1], "leads": [100], "distinct_leads": [50], "predicted": [0.09], "observed": [0.1]})
    table = charts.calibration_table(curve)
    assert (table["low"].iloc[0], table["high"].iloc[0]) == pytest.approx(WILSON_5_OF_50, abs=1e-6)
    assert table["customers"].iloc[0] == 10  # the rows' count, as the table shows it
    fig = charts.calibration_chart({"predictive model": curve}, population="held-out: 50 leads")
    assert "Wilson interval on its distinct leads" in " ".join(" ".join(t.get_text().split()) for t in fig.texts)
    rows_only = charts.calibration_table(curve.drop(columns="distinct_leads"))
    assert (rows_only["low"].iloc[0], rows_only["high"].iloc[0]) == pytest.approx(WILSON_10_OF_100, abs=1e-6)


def test_calibration_chart_draws_wilson_intervals_zoomed_to_the_predictions_and_a_reliability_table() -> None:
    curves = {"predictive model": pd.DataFrame({"bin": [1, 2, 3], "leads": [50, 100, 100],
                                                "predicted": [0.01, 0.08, 0.2], "observed": [0.0, 0.1, 0.25]}),
              "points table": pd.DataFrame({"bin": [1, 2, 3], "leads": [100, 100, 50],
                                            "predicted": [0.02, 0.06, 0.18], "observed": [0.01, 0.07, 0.2]})}
    fig = charts.calibration_chart(curves, population="held-out months: 250 leads, 32 customers")
    model, points = [ax for ax in fig.axes if ax.axison]
    lines = {line.get_label(): line for line in model.get_lines()}
    assert list(lines["predictive model"].get_xdata()) == [0.08, 0.2]  # bins with a customer
    assert list(lines["predictive model"].get_ydata()) == [0.1, 0.25]
    assert list(lines["predictive model: no customer"].get_xdata()) == [0.01]  # 0 of 50 sits on the floor
    # whiskers: the 95 % Wilson interval of each bin's count (0 of 50, 10 of 100, 25 of 100)
    whiskers = [(lo, hi) for lo, hi in _whiskers(model)]
    assert whiskers[1] == pytest.approx(WILSON_10_OF_100, abs=1e-6)
    assert whiskers[0][1] == pytest.approx(WILSON_0_OF_50[1], abs=1e-6)
    # zoomed to the predictions and observations, the same range on both log axes: the diagonal is the diagonal
    low, high = model.get_xlim()
    assert model.get_ylim() == pytest.approx((low, high)) and points.get_xlim() == pytest.approx((low, high))
    assert low <= 0.01 and high >= 0.25 and high < 0.5 and low > 0.001
    assert model.get_xscale() == "log" and model.get_yscale() == "log"
    diagonal = lines["perfect calibration"]
    assert list(diagonal.get_xdata()) == list(diagonal.get_ydata()) == pytest.approx([low, high])
    # the reliability table under each panel: n, customers, predicted, observed with its interval
    table = [ax for ax in fig.axes if not ax.axison][0].tables[0]
    cells = {key: cell.get_text().get_text() for key, cell in table.get_celld().items()}
    assert [cells[(0, c)] for c in range(5)] == ["group", "leads", "customers", "predicted", "observed (95 % interval)"]
    assert [cells[(2, c)] for c in range(4)] == ["2", "100", "10", "8.00%"]
    assert cells[(2, 4)] == f"10.00% ({WILSON_10_OF_100[0]:.2%}–{WILSON_10_OF_100[1]:.2%})"
    # 10 of 100 holds 8 %; 25 of 100 ([17.3 %, 34.5 %]) holds 20 %; 0 of 50 ([0, 7.1 %]) holds 1 %
    assert _title(fig) == ("The predicted close rate lies inside the observed 95 % interval in 3 of 3 groups "
                           "(predictive model), 3 of 3 groups (points table)")
    assert "held-out months: 250 leads, 32 customers" in _subtitle(fig) and "95 % Wilson" in _subtitle(fig)
    _readable(fig)


def test_points_table_chart_without_bootstrap_draws_no_whiskers() -> None:
    """weights.bootstrap_samples = 0 leaves no spread columns: the bars alone, no error, and it says so."""
    signals = pd.DataFrame({"signal": ["demo", "size = 1-10"], "kind": ["engagement", "fit"],
                            "points": [80, -13], "status": ["scored", "scored"]})
    fig = charts.points_table_chart(signals)
    assert _bar_widths(fig.axes[0]) == [80] and _bar_widths(fig.axes[1]) == [-13]
    assert [t.get_text().strip() for t in fig.axes[0].texts] == ["+80"]
    assert _whiskers(fig.axes[0]) == [] and "no interval" in _subtitle(fig)


def test_every_colour_has_one_meaning() -> None:
    """The verdict colours, the reference colour, the data colour and the scorers' are all different."""
    palette = [charts.ABOVE, charts.BELOW, charts.UNCLEAR, charts.REFERENCE, charts.DATA, charts.MODEL, charts.POINTS]
    assert len({to_rgb(c) for c in palette}) == len(palette)


def test_report_charts_are_the_charts_of_the_artifacts(default_run: Params) -> None:
    """Each PNG the report wrote is byte-for-byte the chart drawn from the artifact it names."""
    models = default_run.paths.models
    train = io.read_json(models / "metrics" / "train.json")
    held_out = charts.population("held-out months", train["validation"])
    rates = io.read_json(models / "metrics" / "close_rates.json")
    funnel = io.read_json(models / "funnel.json")
    expected = {
        "points_table.png": charts.points_table_chart(
            pd.DataFrame(io.read_json(models / "weights.json")["signals"]),
            population=charts.population("fitted on the training leads", io.read_json(models / "weights.json")["fitted_on"])),
        "cumulative_gain.png": charts.cumulative_gain_chart(io.read_csv(models / "plots" / "cumulative_gain.csv"),
                                                            population=held_out),
        "close_rate_by_activity.png": charts.close_rates_chart(
            io.read_csv(models / "close_rates.csv"), rates["average_close_rate"], "activity",
            population=charts.matured_population(rates, default_run.outcome.horizon_days)),
        "funnel_by_month.png": charts.monthly_trend_chart(
            io.read_csv(models / "plots" / "funnel_by_month.csv"), counts=funnel["by_month"],
            export_date=funnel["population"]["export_date"], horizon_days=default_run.outcome.horizon_days,
            population="all leads by month of creation (SQL → customer: matured leads only)"),
        "calibration.png": charts.calibration_chart(
            {"predictive model": io.read_csv(models / "plots" / "calibration_model.csv"),
             "points table": io.read_csv(models / "plots" / "calibration_points.csv")},
            population=held_out, unit="rows" if train["validation"]["rows"] != train["validation"]["leads"] else "leads"),
    }
    for name, fig in expected.items():
        assert (models / "charts" / name).read_bytes() == figure_bytes(fig), name
    image = imread(models / "charts" / "cumulative_gain.png")
    assert image.shape[1] == 1100  # 11 in at 100 dpi: readable without zooming


def test_held_out_gain_beats_random_and_matches_the_fold_metrics(default_run: Params) -> None:
    """The gain curve is the last fold's held-out ranking: its top-10 % capture is the fold's."""
    models = default_run.paths.models
    gain = io.read_csv(models / "plots" / "cumulative_gain.csv")
    last = io.read_json(models / "metrics" / "train.json")["model"]["folds"][-1]
    at_10 = gain.loc[np.isclose(gain["share_of_leads"], 0.1), "model"].item()
    assert at_10 == pytest.approx(last["top_decile_capture"], abs=1e-6)
    assert (gain["model"] >= gain["random"] - 1e-9).all() and (gain["points_table"] >= gain["random"] - 1e-9).all()
    assert gain["model"].is_monotonic_increasing and gain["model"].iloc[-1] == pytest.approx(1.0)
