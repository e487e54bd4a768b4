"""Every chart, in one style a marketer reads at a glance.

Functions take tables (the same data as the artifacts) and return a matplotlib
Figure; writing happens in pipeline.report. Titles say what the chart shows, axes
say it in business words, the average is always drawn for comparison.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no screen needed; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

STYLE = {
    "figure.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
BLUE, GREY, RED, GREEN = "#1f5fa8", "#8a8a8a", "#c0392b", "#2e8b57"


def close_rates_chart(table: pd.DataFrame, average: float, signal_type: str = "activity") -> Figure:
    """Close rate of each signal of one type with its 95 % interval, against the close rate to expect.

    A signal is compared with its expected close rate (`expected_close_rate`: leads seen at the
    same ages, pipeline.close_rates), drawn as a tick where it differs from the average line.
    """
    rows = table[table["type"] == signal_type].sort_values("close_rate")
    expected = rows["expected_close_rate"] if "expected_close_rate" in rows.columns else pd.Series(average, index=rows.index)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.8))
        y = np.arange(len(rows))
        colours = [GREEN if low > e else RED if high < e else GREY
                   for low, high, e in zip(rows["ci_low"], rows["ci_high"], expected)]
        differs = (expected - average).abs().to_numpy() > 1e-9
        if differs.any():
            ax.scatter(expected.to_numpy()[differs], y[differs], marker="|", s=160, color=BLUE, zorder=3,
                       label="expected: leads seen at the same ages")
        ax.barh(y, rows["close_rate"], color=colours, alpha=0.85)
        below = (rows["close_rate"] - rows["ci_low"]).clip(lower=0)
        above = (rows["ci_high"] - rows["close_rate"]).clip(lower=0)
        ax.errorbar(rows["close_rate"], y, xerr=[below, above],
                    fmt="none", ecolor="black", elinewidth=1, capsize=2)
        ax.axvline(average, color=BLUE, linestyle="--", label=f"average lead: {average:.1%}")
        ax.set_yticks(y, [f"{s}  (n={n:,})" for s, n in zip(rows["signal"], rows["leads"])])
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
        ax.set_xlabel("share of these leads that became customers (bar: 95 % interval)")
        ax.set_title(f"Close rate by {signal_type}\ngreen: clearly above the expected close rate, red: clearly below, grey: can't tell")
        ax.legend(loc="lower right")
        fig.tight_layout()
    return fig


def score_distribution_chart(distribution: pd.DataFrame, threshold: int | None, band: int = 5) -> Figure:
    """How many leads get each points total (in bands of `band` points), customers apart, with the MQL threshold."""
    banded = distribution.assign(band=(distribution["total_points"] // band) * band).groupby("band").sum(numeric_only=True)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
        for ax, column, label, colour in zip(axes, ("other_leads", "customers"), ("not customers", "customers"), (GREY, GREEN)):
            ax.bar(banded.index + band / 2, banded[column], width=band * 0.9, color=colour)
            ax.set_ylabel(f"leads ({label})")
            if threshold is not None:
                ax.axvline(threshold - 0.5, color=RED, linestyle="--", label=f"MQL threshold: {threshold} points")
                ax.legend(loc="upper right")
        axes[-1].set_xlabel(f"total points (fit + engagement), in bands of {band}")
        axes[0].set_title("Score distribution: customers sit to the right of the threshold")
        fig.tight_layout()
    return fig


def calibration_chart(curves: dict[str, pd.DataFrame]) -> Figure:
    """Predicted against observed close rate on the held-out cohorts, one line per scorer."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.5, 6))
        top = max(float(max(c["predicted"].max(), c["observed"].max())) for c in curves.values()) * 1.1
        ax.plot([0, top], [0, top], color=GREY, linestyle=":", label="perfect calibration")
        for (scorer, part), colour in zip(curves.items(), (BLUE, GREEN, RED)):
            ax.plot(part["predicted"], part["observed"], marker="o", color=colour, label=scorer)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("predicted chance of closing (10 groups of equal size)")
        ax.set_ylabel("share that actually closed")
        ax.set_title("Does '20 %' mean 20 %? (later cohorts, unseen in training)")
        ax.legend(loc="upper left")
        fig.tight_layout()
    return fig


def matrix_chart(cells: pd.DataFrame, average: float) -> Figure:
    """Fit grade (A-D) x engagement grade (1-4): close rate in colour, leads in each cell."""
    cells = cells.assign(engagement_grade=cells["engagement_grade"].astype(str))
    grid = cells.pivot(index="fit_grade", columns="engagement_grade", values="close_rate")
    grid = grid.reindex(index=list("ABCD"), columns=list("1234"))  # empty cells are absent from the data
    leads = cells.pivot(index="fit_grade", columns="engagement_grade", values="leads").reindex_like(grid).fillna(0)
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(7.5, 6))
        image = ax.imshow(grid.to_numpy(dtype=float), cmap="Greens", vmin=0)
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                rate, count = grid.iat[i, j], leads.iat[i, j]
                text = "no leads" if count == 0 or pd.isna(rate) else f"{rate:.1%}\n{int(count):,} leads"
                ax.text(j, i, text, ha="center", va="center", fontsize=9,
                        color="white" if not pd.isna(rate) and rate > grid.max().max() * 0.6 else "black")
        ax.set_xticks(range(grid.shape[1]), [f"{c}" for c in grid.columns])
        ax.set_yticks(range(grid.shape[0]), list(grid.index))
        ax.set_xlabel("engagement grade (1 = most engaged quarter)")
        ax.set_ylabel("fit grade (A = best-fitting quarter)")
        ax.set_title(f"Close rate by fit x engagement (average lead: {average:.1%})")
        fig.colorbar(image, ax=ax, format=PercentFormatter(1.0, decimals=0), label="close rate")
        fig.tight_layout()
    return fig


def funnel_chart(funnel: list[dict]) -> Figure:
    """Leads reaching each stage, with the conversion from the stage before."""
    stages = [row["stage"] for row in funnel]
    leads = np.array([row["leads"] for row in funnel], dtype=float)
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(8, 4.8))
        y = np.arange(len(stages))[::-1]
        ax.barh(y, leads, color=BLUE, alpha=0.85)
        for position, row in zip(y, funnel):
            rate = row.get("rate_from_previous")
            label = f"{row['leads']:,}" + ("" if row["stage"] == stages[0] or rate is None else f"  ({rate:.1%} of previous)")
            ax.text(row["leads"], position, "  " + label, va="center", fontsize=9)
        ax.set_yticks(y, stages)
        ax.set_xlim(0, leads.max() * 1.45)
        ax.set_xlabel("matured leads reaching the stage (or a later one)")
        ax.set_title("Funnel: how many leads reach each stage")
        fig.tight_layout()
    return fig


def monthly_trend_chart(monthly: pd.DataFrame) -> Figure:
    """Stage-to-stage conversion by month of lead creation (recent months are still maturing)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(10, 4.8))
        if monthly.empty:  # a snapshot export: no creation months (pipeline.design)
            ax.set_axis_off()
            ax.text(0.5, 0.5, "No conversion by month: the export has no dates\n(one row per lead, a snapshot)",
                    ha="center", va="center", fontsize=13)
            return fig
        # months are labels, not numbers: positions + tick labels (matplotlib would guess dates and log about it)
        x = np.arange(len(monthly))
        for column, colour in zip(("lead_to_mql", "mql_to_sql", "sql_to_customer"), (BLUE, GREEN, RED)):
            ax.plot(x, monthly[column], marker="o", color=colour, label=column.replace("_", " "))
        ax.set_xticks(x, monthly["month"].astype(str))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylabel("conversion rate")
        ax.set_xlabel("month the leads were created")
        ax.tick_params(axis="x", rotation=60)
        ax.set_title("Conversion by month (the last months have not had time to convert yet)")
        ax.legend(loc="upper right")
        fig.tight_layout()
    return fig


def points_table_chart(signals: pd.DataFrame) -> Figure:
    """The points each signal gives, engagement and fit side by side, with the bootstrap's 90 % range.

    A marketer checks two things here: that the order makes sense (demo request above blog
    read) and which points are shaky (a long whisker means the data cannot pin the value
    down, so a CRM admin should not fine-tune it by hand).
    """
    scored = signals[signals["status"] == "scored"]
    if "points_p05" not in scored.columns:  # weights.bootstrap_samples = 0: no spread to draw
        scored = scored.assign(points_p05=scored["points"], points_p95=scored["points"])
    groups = [(kind, scored[scored["kind"] == kind].sort_values("points")) for kind in ("engagement", "fit")]
    groups = [(kind, rows) for kind, rows in groups if len(rows)]
    heights = [max(len(rows), 3) for _, rows in groups]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(groups), 1, figsize=(9, 0.26 * sum(heights) + 2.2 * len(groups)),
                                 gridspec_kw={"height_ratios": heights}, squeeze=False)
        for ax, (kind, rows) in zip(axes[:, 0], groups):
            y = np.arange(len(rows))
            ax.barh(y, rows["points"], color=[GREEN if p > 0 else RED if p < 0 else GREY for p in rows["points"]],
                    alpha=0.85)
            low = (rows["points"] - rows["points_p05"]).clip(lower=0)
            high = (rows["points_p95"] - rows["points"]).clip(lower=0)
            ax.errorbar(rows["points"], y, xerr=[low, high], fmt="none", ecolor="black", elinewidth=1, capsize=2)
            for position, points, p05, p95 in zip(y, rows["points"], rows["points_p05"], rows["points_p95"]):
                # the label sits past the whisker, so the two never overlap
                ax.text(max(points, p95) if points >= 0 else min(points, p05), position, f" {points:+d} ",
                        va="center", fontsize=8, ha="left" if points >= 0 else "right")
            ax.axvline(0, color="black", linewidth=0.8)
            ax.set_ylim(-0.7, len(rows) - 0.3)
            ax.margins(x=0.08)
            ax.set_yticks(y, rows["signal"], fontsize=8 if len(rows) > 25 else 9)
            ax.set_title(f"{kind} points" + (" (per activity, before decay)" if kind == "engagement" else
                                            " (who the lead is)"), loc="left", fontsize=11)
        axes[-1, 0].set_xlabel("points (bar: the table; whisker: 90 % of bootstrap refits, if any)")
        fig.suptitle("Points table: what each signal adds to a lead's score", fontweight="bold")
        fig.tight_layout(rect=(0, 0, 1, 0.98))
    return fig


def cumulative_gain_chart(gain: pd.DataFrame) -> Figure:
    """Share of customers found by calling the top X % of leads, for each scorer, against random calls.

    Left: cumulative gain ("call the top 20 %, reach 60 % of the customers"). Right: the
    same as lift, how many times better than calling leads at random.
    """
    scorers = [c for c in gain.columns if c not in ("share_of_leads", "random")]
    labels = {"model": "predictive model", "points_table": "points table"}
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
        left.plot(gain["share_of_leads"], gain["random"], color=GREY, linestyle=":", label="random order")
        tail = gain[gain["share_of_leads"] > 0]
        right.axhline(1.0, color=GREY, linestyle=":", label="random order")
        for scorer, colour in zip(scorers, (BLUE, GREEN, RED)):
            label = labels.get(scorer, scorer.replace("_", " "))
            left.plot(gain["share_of_leads"], gain[scorer], marker="o", markersize=3, color=colour, label=label)
            right.plot(tail["share_of_leads"], tail[scorer] / tail["share_of_leads"], marker="o", markersize=3,
                       color=colour, label=label)
        for ax in (left, right):
            ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            ax.set_xlabel("top share of leads, best score first (later cohorts, unseen in training)")
        left.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        left.set_ylabel("share of all customers among them")
        left.set_title("Cumulative gain: customers reached")
        right.set_ylabel("times the close rate of a random lead")
        right.set_title("Lift: how much better than random")
        left.legend(loc="lower right")
        right.legend(loc="upper right")
        fig.tight_layout()
    return fig
