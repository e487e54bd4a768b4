"""Charts are checked by the data they draw, not only by the file existing.

Each chart function is fed a small hand-made table and the drawn artists (bar widths,
line data, reference lines, cell texts) are compared with that table; then the report's
PNGs are shown to be exactly the charts of the run's artifacts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from pipeline import charts, io
from pipeline.params import Params
from pipeline.report import figure_bytes


def _bar_widths(ax) -> list[float]:
    return [patch.get_width() for patch in ax.patches]


def _readable(fig: Figure) -> None:
    """One style for every chart: a title, labelled axes, no top/right frame, fits a screen at 100 %."""
    width, _ = fig.get_size_inches() * fig.dpi
    assert width <= 1100
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert any(ax.get_title() or ax.get_title(loc="left") for ax in axes) or fig._suptitle is not None
    assert any(ax.get_xlabel() for ax in axes)
    for ax in axes:
        assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()


def test_close_rates_chart_draws_each_rate_and_colours_by_interval() -> None:
    table = pd.DataFrame({
        "signal": ["demo", "blog", "ebook", "size = 1-10"],
        "type": ["activity", "activity", "activity", "fit"],
        "leads": [100, 500, 80, 300],
        "close_rate": [0.20, 0.02, 0.06, 0.01],
        "ci_low": [0.13, 0.01, 0.02, 0.005],
        "ci_high": [0.29, 0.035, 0.13, 0.03],
    })
    fig = charts.close_rates_chart(table, average=0.05, signal_type="activity")
    ax = fig.axes[0]
    # sorted by close rate, fit rows left out
    assert _bar_widths(ax) == pytest.approx([0.02, 0.06, 0.20])
    colours = [patch.get_facecolor()[:3] for patch in ax.patches]
    from matplotlib.colors import to_rgb
    assert colours == [pytest.approx(to_rgb(c)) for c in (charts.RED, charts.GREY, charts.GREEN)]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["blog  (n=500)", "ebook  (n=80)", "demo  (n=100)"]
    average_line = [line for line in ax.get_lines() if "average" in line.get_label()][0]
    assert average_line.get_xdata()[0] == pytest.approx(0.05)
    _readable(fig)


def test_points_table_chart_shows_scored_signals_by_kind() -> None:
    signals = pd.DataFrame({
        "signal": ["demo", "blog", "recency 7d", "size = 1-10", "industry = software"],
        "kind": ["engagement", "engagement", "engagement", "fit", "fit"],
        "points": [80, -3, 0, -13, 14],
        "points_p05": [70.0, -9.0, 0.0, -20.0, 10.0],
        "points_p95": [95.0, 6.0, 0.0, -4.0, 18.0],
        "status": ["scored", "scored", "recency is already in the decay: no points", "scored", "scored"],
    })
    fig = charts.points_table_chart(signals)
    engagement, fit = fig.axes[:2]
    assert _bar_widths(engagement) == [-3, 80] and _bar_widths(fit) == [-13, 14]
    assert [t.get_text() for t in engagement.get_yticklabels()] == ["blog", "demo"]  # unscored recency left out
    assert {t.get_text().strip() for t in fit.texts} == {"-13", "+14"}
    _readable(fig)


def test_cumulative_gain_chart_draws_gain_and_lift() -> None:
    gain = pd.DataFrame({"share_of_leads": [0.0, 0.5, 1.0], "model": [0.0, 0.8, 1.0],
                         "points_table": [0.0, 0.7, 1.0], "random": [0.0, 0.5, 1.0]})
    fig = charts.cumulative_gain_chart(gain)
    left, right = fig.axes
    lines = {line.get_label(): line for line in left.get_lines()}
    assert list(lines["predictive model"].get_ydata()) == [0.0, 0.8, 1.0]
    assert list(lines["points table"].get_ydata()) == [0.0, 0.7, 1.0]
    lift = {line.get_label(): line for line in right.get_lines()}
    assert list(lift["predictive model"].get_ydata()) == pytest.approx([1.6, 1.0])  # 0.8 / 0.5, 1.0 / 1.0
    _readable(fig)


def test_score_distribution_chart_counts_and_threshold() -> None:
    distribution = pd.DataFrame({"total_points": [-3, 0, 4, 12, 13], "customers": [0, 1, 0, 2, 3],
                                 "other_leads": [10, 20, 5, 4, 1]})
    fig = charts.score_distribution_chart(distribution, threshold=12, band=5)
    others, customers = fig.axes
    assert [p.get_height() for p in others.patches] == [10, 25, 5]  # bands -5, 0, 10
    assert [p.get_height() for p in customers.patches] == [0, 1, 5]
    threshold = [line for line in customers.get_lines() if "threshold" in line.get_label()][0]
    assert threshold.get_xdata()[0] == pytest.approx(11.5)
    _readable(fig)


def test_matrix_funnel_and_trend_charts_draw_their_numbers() -> None:
    cells = pd.DataFrame({"fit_grade": ["A", "A", "D"], "engagement_grade": [1, 2, 4],
                          "close_rate": [0.12, 0.05, 0.004], "leads": [400, 300, 900]})
    matrix = charts.matrix_chart(cells, average=0.03)
    texts = [t.get_text() for t in matrix.axes[0].texts]
    assert "12.0%\n400 leads" in texts and "0.4%\n900 leads" in texts
    assert texts.count("no leads") == 16 - 3

    funnel = charts.funnel_chart([{"stage": "lead", "leads": 1000}, {"stage": "mql", "leads": 200, "rate_from_previous": 0.2},
                                  {"stage": "customer", "leads": 20, "rate_from_previous": 0.1}])
    assert _bar_widths(funnel.axes[0]) == [1000, 200, 20]
    assert "200  (20.0% of previous)" in [t.get_text().strip() for t in funnel.axes[0].texts]

    monthly = pd.DataFrame({"month": ["2024-01", "2024-02"], "lead_to_mql": [0.2, 0.25],
                            "mql_to_sql": [0.4, 0.35], "sql_to_customer": [0.3, 0.32]})
    trend = charts.monthly_trend_chart(monthly)
    assert [list(line.get_ydata()) for line in trend.axes[0].get_lines()] == [[0.2, 0.25], [0.4, 0.35], [0.3, 0.32]]
    for fig in (matrix, funnel, trend):
        width, _ = fig.get_size_inches() * fig.dpi
        assert width <= 1100 and fig.axes[0].get_title()


def test_report_charts_are_the_charts_of_the_artifacts(default_run: Params) -> None:
    """Each PNG the report wrote is byte-for-byte the chart drawn from the artifact it names."""
    models = default_run.paths.models
    expected = {
        "points_table.png": charts.points_table_chart(pd.DataFrame(io.read_json(models / "weights.json")["signals"])),
        "cumulative_gain.png": charts.cumulative_gain_chart(io.read_csv(models / "plots" / "cumulative_gain.csv")),
        "close_rate_by_activity.png": charts.close_rates_chart(
            io.read_csv(models / "close_rates.csv"),
            io.read_json(models / "metrics" / "close_rates.json")["average_close_rate"], "activity"),
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


def test_points_table_chart_without_bootstrap_draws_no_whiskers() -> None:
    """weights.bootstrap_samples = 0 leaves no spread columns: the bars alone, no error."""
    signals = pd.DataFrame({"signal": ["demo", "size = 1-10"], "kind": ["engagement", "fit"],
                            "points": [80, -13], "status": ["scored", "scored"]})
    fig = charts.points_table_chart(signals)
    assert _bar_widths(fig.axes[0]) == [80] and _bar_widths(fig.axes[1]) == [-13]
    assert [t.get_text().strip() for t in fig.axes[0].texts] == ["+80"]


def test_calibration_chart_draws_each_scorer_and_the_diagonal() -> None:
    curves = {"predictive model": pd.DataFrame({"predicted": [0.01, 0.05, 0.2], "observed": [0.012, 0.04, 0.25]}),
              "points table": pd.DataFrame({"predicted": [0.02, 0.06, 0.18], "observed": [0.01, 0.07, 0.2]})}
    fig = charts.calibration_chart(curves)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    for scorer, part in curves.items():
        assert list(lines[scorer].get_xdata()) == part["predicted"].tolist()
        assert list(lines[scorer].get_ydata()) == part["observed"].tolist()
    diagonal = lines["perfect calibration"]
    assert list(diagonal.get_xdata()) == list(diagonal.get_ydata()) and diagonal.get_xdata()[1] == pytest.approx(0.275)
    _readable(fig)
