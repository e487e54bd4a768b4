"""Every chart, in one style a marketer reads at a glance (docs/chart-style.md).

Functions take tables (the same data as the artifacts) and return a matplotlib Figure;
writing happens in pipeline.stages.report. The rules every chart follows:

- one palette, one meaning per colour (the constants below);
- every interval is a 95 % interval (close rates and conversion rates: Wilson, recomputed
  here from the counts wherever the table has them, so the label cannot lie);
- every chart states its population and n under its title (`population`: who the leads are,
  given by the caller; the counts the chart's own table holds are added by the chart);
- titles fit the figure and state a fact computed from the data, never a claim;
- an average is always labelled with the leads it averages;
- immature periods are marked, legends sit outside the data.
"""

from __future__ import annotations

import io as _io
import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no screen needed; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, PercentFormatter  # noqa: E402

from pipeline.core.stats import wilson_interval  # noqa: E402

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

# --- the palette: one colour, one meaning, in every chart (docs/chart-style.md) ----------------
ABOVE = "#2e8b57"      # green: clearly above the comparison the chart names (its 95 % interval lies above it)
BELOW = "#c0392b"      # red: clearly below the comparison (its 95 % interval lies below it)
UNCLEAR = "#8a8a8a"    # grey: can't tell (the interval overlaps the comparison), or not known yet (immature)
REFERENCE = "#1f5fa8"  # blue: what the data is compared with: averages, expected rates, thresholds, diagonals
DATA = "#34495e"       # slate: a plain quantity with no verdict: counts, funnel bars, monthly rates
WHISKER = "black"      # every whisker is a 95 % interval
MODEL = "#6a3d9a"      # purple: the predictive model, wherever it appears
POINTS = "#b8860b"     # dark gold: the points table, wherever it appears
SCORER_COLOURS = {"predictive model": MODEL, "model": MODEL, "points table": POINTS, "points_table": POINTS}
VERDICT_COLOURS = {"above": ABOVE, "below": BELOW, "unclear": UNCLEAR}

CONFIDENCE = 0.95
LEVEL = "95 %"
Z95 = 1.959963984540054  # the normal quantile of 97.5 %: mean ± Z95 sd covers 95 %

TITLE_PT, NOTE_PT, LEGEND_PT = 12, 9, 9
MARGIN_IN = 0.15  # left margin of the title block, inches


def figure_bytes(fig: Figure) -> bytes:
    """PNG bytes without a timestamp or version stamp, so reruns are byte-identical."""
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


# --- population and layout helpers -------------------------------------------------------------

def population(label: str, record: Mapping[str, object] | None = None, counts: bool = True) -> str:
    """Who a chart's leads are, from a record of the artifacts ({from, to, leads, rows, customers}).

    population("held-out months", train["validation"]) ->
    'held-out months 2025-07..2025-10: 4,928 leads (14,662 rows: a lead once per snapshot age it
    reached), 141 customers'. With counts=False only the label and the period: for charts that
    count their own table's leads.
    """
    record = record or {}
    start, end = record.get("from"), record.get("to")
    text = f"{label} {start}..{end}" if start and end and start != end else f"{label} {start}" if start else label
    if not counts or record.get("leads") is None:
        return text
    leads = int(record["leads"])
    parts = [f"{leads:,} leads"]
    rows = record.get("rows")
    if rows is not None and int(rows) != leads:
        parts[0] += f" ({int(rows):,} rows: a lead once per snapshot age it reached)"
    if record.get("customers") is not None:
        parts.append(f"{int(record['customers']):,} customers")
    return f"{text}: " + ", ".join(parts)


def matured_population(rates: Mapping[str, object], horizon_days: int) -> str:
    """The leads the close rates count (models/metrics/close_rates.json), with their n."""
    return population(f"matured leads (had {horizon_days} days to close), all months",
                      {"leads": rates["matured_leads"], "customers": rates["customers"]})


def _population_line(population: str | None, counted: str | None) -> str:
    """The first subtitle line: the caller's population, then what the chart's own table counts."""
    if population and counted:
        return f"{population}: {counted}"
    return population or counted or "population not given"


def _lines(text: str, width_in: float, points: float, bold: bool = False) -> list[str]:
    """`text` wrapped to `width_in` inches at `points` (DejaVu Sans: an average character is
    about 0.55 em wide, 0.62 em in bold; the tests measure the drawn text to keep this honest)."""
    per_char = points * (0.62 if bold else 0.56) / 72
    return textwrap.wrap(text, max(20, int(width_in / per_char)), break_on_hyphens=False)


class _Frame:
    """Title, subtitle and a legend below the data: their space in inches, known before drawing.

    The figure height is the body's height plus this frame, so a chart never squeezes its
    title or its legend into the data, and the same data always gives the same size.
    """

    def __init__(self, width: float, title: str, notes: Sequence[str], legend: Sequence[tuple[Artist, str]] = ()):
        usable = width - 2 * MARGIN_IN
        self.width = width
        self.title = "\n".join(_lines(title, usable, TITLE_PT, bold=True))
        self.notes = "\n".join(line for note in notes if note for line in _lines(note, usable, NOTE_PT))
        self.legend = list(legend)
        title_rows = self.title.count("\n") + 1
        note_rows = self.notes.count("\n") + 1 if self.notes else 0
        self.top = 0.12 + title_rows * 0.21 + 0.05 + note_rows * 0.16 + 0.12
        longest = max((len(label) for _, label in self.legend), default=0) * LEGEND_PT * 0.56 / 72 + 0.6
        self.columns = max(1, min(len(self.legend), int(usable // longest))) if self.legend else 0
        rows = math.ceil(len(self.legend) / self.columns) if self.legend else 0
        self.bottom = rows * 0.22 + 0.15 if rows else 0.0

    def height(self, body: float) -> float:
        return round(body + self.top + self.bottom, 2)

    def finish(self, fig: Figure) -> None:
        """Draw the title block and the legend, then lay the axes out in the space between."""
        _, height = fig.get_size_inches()
        x = MARGIN_IN / self.width
        fig.suptitle(self.title, x=x, y=1 - 0.12 / height, ha="left", va="top",
                     fontsize=TITLE_PT, fontweight="bold").set_in_layout(False)  # its space is in `rect`
        title_rows = self.title.count("\n") + 1
        if self.notes:
            fig.text(x, 1 - (0.12 + title_rows * 0.21 + 0.05) / height, self.notes, ha="left", va="top",
                     fontsize=NOTE_PT, color="#333333")
        if self.legend:
            fig.legend([h for h, _ in self.legend], [label for _, label in self.legend], loc="lower left",
                       bbox_to_anchor=(x, 0.05 / height), ncol=self.columns, frameon=False, fontsize=LEGEND_PT,
                       handlelength=2.2, columnspacing=1.5)
        fig.tight_layout(rect=(0, self.bottom / height, 1, 1 - self.top / height))


def _swatch(colour: str, label: str, **kwargs) -> tuple[Artist, str]:
    return Patch(facecolor=colour, edgecolor="none", alpha=0.85, **kwargs), label


def _line(colour: str, label: str, **kwargs) -> tuple[Artist, str]:
    return Line2D([], [], color=colour, **kwargs), label


def _whisker_handle() -> tuple[Artist, str]:
    return Line2D([], [], color=WHISKER, marker="|", markersize=8, linewidth=1), f"whisker: {LEVEL} interval"


def verdicts(low: np.ndarray, high: np.ndarray, comparison: np.ndarray | float) -> np.ndarray:
    """'above' where the whole interval is above the comparison, 'below' where below, else 'unclear'."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    return np.select([low > comparison, high < comparison], ["above", "below"], "unclear")


def _pct(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}%}"


# --- the charts ---------------------------------------------------------------------------------

def rate_interval(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The 95 % Wilson interval of each close rate: from the counts when the table has them (so it
    is 95 % whatever close_rates.confidence was), else the table's own ci_low / ci_high."""
    if "customers" in rows.columns:
        return wilson_interval(rows["customers"].to_numpy(), rows["leads"].to_numpy(), CONFIDENCE)
    return rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float)


def _differs(values: pd.Series | np.ndarray, average: float) -> np.ndarray:
    """Where an expected close rate is not the average (the CSV keeps 6 significant digits)."""
    return ~np.isclose(np.asarray(values, dtype=float), average, rtol=1e-4, atol=1e-7)


NOUNS = {"activity": "activities", "fit": "fit values", "frequency": "frequency signals", "recency": "recency signals"}


def _close_rates_panel(ax: Axes, name: str | None, part: pd.DataFrame, average: float, average_of: str) -> None:
    """One panel of close rates (an attribute's values, or every signal of the type): bars coloured
    by verdict, whiskers, the expected rate's tick where it differs from the average line."""
    y = np.arange(len(part))
    expected = part["expected_close_rate"].to_numpy(dtype=float)
    ax.barh(y, part["close_rate"], color=[VERDICT_COLOURS[v] for v in part["verdict"]], alpha=0.85)
    below = (part["close_rate"] - part["low"]).clip(lower=0)
    above = (part["high"] - part["close_rate"]).clip(lower=0)
    ax.errorbar(part["close_rate"], y, xerr=[below, above], fmt="none", ecolor=WHISKER, elinewidth=1,
                capsize=2)
    moved = _differs(expected, average)
    if moved.any():
        ax.scatter(expected[moved], y[moved], marker="|", s=160, color=REFERENCE, zorder=3,
                   label="expected: leads seen at the same ages")
    ax.axvline(average, color=REFERENCE, linestyle="--", label=f"average of {average_of}: {_pct(average)}")
    names = part["value"].astype(str) if name is not None and "value" in part.columns else part["signal"]
    ax.set_yticks(y, [f"{s}  (n={n:,})" for s, n in zip(names, part["leads"])])
    ax.set_ylim(-0.6, len(part) - 0.4)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
    ax.tick_params(labelbottom=True)
    if name is not None:
        ax.set_title(name, loc="left", fontsize=10)


def close_rates_chart(table: pd.DataFrame, average: float, signal_type: str = "activity",
                      population: str | None = None, average_of: str = "all matured leads") -> Figure:
    """Close rate of each signal of one type with its 95 % interval, against the close rate to expect.

    A signal is compared with its expected close rate (`expected_close_rate`: leads seen at the
    same ages, pipeline.stages.close_rates), drawn as a tick where it differs from the average line. Its
    colour says whether its 95 % interval lies above (ABOVE), below (BELOW) or across (UNCLEAR)
    that expected rate. Fit values get one panel per attribute (company size, industry...), on one
    shared axis, so a value is ranked among its own attribute's values. `population`: who the
    close rates count, with their n (`population(...)`); `average_of`: which leads `average` averages.
    """
    rows = table[table["type"] == signal_type].copy()
    if "expected_close_rate" not in rows.columns:
        rows["expected_close_rate"] = average
    rows["low"], rows["high"] = rate_interval(rows)
    rows["verdict"] = verdicts(rows["low"], rows["high"], rows["expected_close_rate"].to_numpy(dtype=float))
    if signal_type == "fit" and "attribute" in rows.columns:
        groups = [(str(name), part) for name, part in rows.groupby("attribute", sort=True)]
    else:
        groups = [(None, rows)]
    groups = [(name, part.sort_values("close_rate", kind="mergesort")) for name, part in groups]
    differs = _differs(rows["expected_close_rate"], average)
    against = "their expected close rate" if differs.any() else f"the average of {average_of}"
    counts = rows["verdict"].value_counts()
    noun = NOUNS.get(signal_type, f"{signal_type} signals")
    title = (f"{counts.get('above', 0)} of {len(rows)} {noun} close clearly above {against}, "
             f"{counts.get('below', 0)} clearly below")
    compared = "expected" if differs.any() else "the average"
    legend = [
        _swatch(ABOVE, f"clearly above {compared} ({LEVEL} interval above it)"),
        _swatch(BELOW, f"clearly below {compared} ({LEVEL} interval below it)"),
        _swatch(UNCLEAR, f"can't tell (the {LEVEL} interval overlaps it)"),
        _line(REFERENCE, f"average of {average_of}: {_pct(average)}", linestyle="--"),
    ]
    if differs.any():
        legend.append(_line(REFERENCE, "expected: leads seen at the same ages", marker="|", markersize=10,
                            linestyle="none"))
    legend.append(_whisker_handle())
    notes = [_population_line(population, None if population else "leads showing each signal"),
             f"bar: share of the n leads showing the signal that became customers; whisker: its {LEVEL} "
             "Wilson interval" + ("; one panel per attribute" if groups[0][0] is not None else "")]
    frame = _Frame(9, title, notes, legend)
    sizes = [len(part) for _, part in groups]
    panel_extra = 0.75 if groups[0][0] is not None else 0.5  # panel title and its x tick labels
    body = 0.27 * sum(sizes) + panel_extra * len(groups) + 0.45
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(groups), 1, figsize=(9, frame.height(body)), sharex=True, squeeze=False,
                                 gridspec_kw={"height_ratios": [max(n, 1) + 1.2 for n in sizes]})
        for ax, (name, part) in zip(axes[:, 0], groups):
            _close_rates_panel(ax, name, part, average, average_of)
        axes[-1, 0].set_xlabel("close rate: share of these leads that became customers")
        frame.finish(fig)
    return fig


def score_distribution_chart(distribution: pd.DataFrame, threshold: int | None, band: int = 5,
                             population: str | None = None) -> Figure:
    """How many leads get each points total (in bands of `band` points), customers apart, with the MQL threshold.

    The title is computed from the table: the share of customers (and of the other leads) at or
    above the threshold. `population`: who the leads are (the chart counts them).
    """
    banded = distribution.assign(band=(distribution["total_points"] // band) * band).groupby("band").sum(numeric_only=True)
    customers, others = int(distribution["customers"].sum()), int(distribution["other_leads"].sum())
    if threshold is None:
        title = "Leads by points total (this run has no MQL threshold)"
    else:
        at_or_above = distribution["total_points"] >= threshold
        customers_above = int(distribution.loc[at_or_above, "customers"].sum())
        others_above = int(distribution.loc[at_or_above, "other_leads"].sum())
        title = (f"{customers_above / customers:.0%} of customers score at or above the MQL threshold of "
                 f"{threshold} points, {others_above / others:.0%} of the other leads" if customers and others else
                 f"{customers_above:,} of {customers:,} customers score at or above the MQL threshold of {threshold} points")
    notes = [_population_line(population, f"{customers + others:,} leads, {customers:,} customers"),
             f"bars: leads per band of {band} points; top: leads that did not become customers, bottom: customers"]
    legend = [] if threshold is None else [_line(REFERENCE, f"MQL threshold: {threshold} points", linestyle="--")]
    frame = _Frame(9, title, notes, legend)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 1, figsize=(9, frame.height(5.2)), sharex=True)
        for ax, column, label in zip(axes, ("other_leads", "customers"), ("not customers", "customers")):
            ax.bar(banded.index + band / 2, banded[column], width=band * 0.9, color=DATA, alpha=0.85)
            ax.set_ylabel(f"leads ({label})")
            if threshold is not None:
                ax.axvline(threshold - 0.5, color=REFERENCE, linestyle="--", label=f"MQL threshold: {threshold} points")
        axes[-1].set_xlabel(f"total points (fit + engagement), in bands of {band}")
        frame.finish(fig)
    return fig


def _log_ticks(low: float, high: float) -> list[float]:
    """0.1 %, 0.2 %, 0.5 %, 1 %, 2 %, 5 %... within [low, high]."""
    ticks = [m * 10.0**e for e in range(-5, 1) for m in (1, 2, 5)]
    return [t for t in ticks if low <= t <= high]


def _percent_label(value: float, _position: object = None) -> str:
    return f"{value * 100:.2g}%" if value < 0.01 else f"{value * 100:.0f}%"


def calibration_table(part: pd.DataFrame) -> pd.DataFrame:
    """A calibration curve's bins with their customers and the 95 % Wilson interval of the observed rate.

    customers = round(observed x leads): the curve (pipeline.core.stats.calibration_table) keeps the
    rate and the bin size; the count is exact up to rounding. When the curve counts rows (a lead
    once per snapshot age) and says how many distinct leads are behind them (`distinct_leads`),
    the interval takes those leads as its n: a lead's rows share one outcome, so counting each row
    would make the interval too narrow (an effective sample size, as for clustered data).
    """
    leads = part["leads"].to_numpy(dtype=np.int64)
    observed = part["observed"].to_numpy(dtype=float)
    customers = np.rint(observed * leads).astype(np.int64)
    n = part["distinct_leads"].to_numpy(dtype=float) if "distinct_leads" in part.columns else leads.astype(float)
    low, high = wilson_interval(observed * n, n, CONFIDENCE)
    predicted = part["predicted"].to_numpy(dtype=float)
    bins = part["bin"].to_numpy() if "bin" in part.columns else np.arange(1, len(part) + 1)
    return pd.DataFrame({"bin": bins, "leads": leads, "customers": customers, "predicted": predicted,
                         "observed": part["observed"].to_numpy(dtype=float), "low": low, "high": high,
                         "inside": (low <= predicted) & (predicted <= high)})


def _calibration_panel(ax: Axes, part: pd.DataFrame, scorer: str, limits: tuple[float, float],
                       ticks: list[float]) -> None:
    """One scorer's groups on log axes against the diagonal; a group with no customer sits on the floor."""
    low, high = limits
    colour = SCORER_COLOURS.get(scorer, DATA)
    ax.plot([low, high], [low, high], color=REFERENCE, linestyle=":", label="perfect calibration")
    shown = np.maximum(part["observed"], low)  # a group with no customer sits on the floor
    ax.errorbar(part["predicted"], shown, yerr=[(shown - part["low"]).clip(lower=0),
                                                (part["high"] - shown).clip(lower=0)],
                fmt="none", ecolor=colour, elinewidth=1.2, capsize=3)
    closed = part["observed"] > 0
    ax.plot(part.loc[closed, "predicted"], part.loc[closed, "observed"], marker="o", linestyle="none",
            color=colour, label=scorer)
    if (~closed).any():
        ax.plot(part.loc[~closed, "predicted"], shown[~closed], marker="v", linestyle="none",
                markerfacecolor="white", color=colour, label=f"{scorer}: no customer")
    for x, y, group in zip(part["predicted"], shown, part["bin"]):
        ax.annotate(str(group), (x, y), xytext=(-5, 3), textcoords="offset points", ha="right",
                    fontsize=7, color="#333333")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # set_*scale resets the locators
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(_percent_label))
        axis.set_minor_locator(NullLocator())
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_box_aspect(1)
    ax.set_anchor("N")
    ax.set_title(scorer, loc="left", fontsize=11)
    ax.set_xlabel("predicted chance of closing (group mean)")
    ax.set_ylabel("share that actually closed")


def _reliability_table(below: Axes, part: pd.DataFrame, unit: str, rows: int) -> None:
    """The panel's groups as a table under it: n, customers, predicted, observed with its interval."""
    below.set_axis_off()
    cells = [[str(g), f"{n:,}", f"{k:,}", _pct(p, 2), f"{_pct(o, 2)} ({_pct(lo, 2)}–{_pct(hi, 2)})"]
             for g, n, k, p, o, lo, hi in zip(part["bin"], part["leads"], part["customers"],
                                               part["predicted"], part["observed"], part["low"], part["high"])]
    drawn = below.table(cellText=cells, colLabels=["group", unit, "customers", "predicted",
                                                   f"observed ({LEVEL} interval)"],
                        colWidths=[0.1, 0.15, 0.16, 0.16, 0.43], loc="upper center", cellLoc="right")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    for (row, _), cell in drawn.get_celld().items():
        cell.set_height(1 / (rows + 1.5))
        cell.set_linewidth(0.3)
        if row == 0:
            cell.set_text_props(fontweight="bold")


def calibration_chart(curves: dict[str, pd.DataFrame], population: str | None = None, unit: str = "leads") -> Figure:
    """Predicted against observed close rate on the held-out cohorts: one panel and one reliability table per scorer.

    Each curve is the scorer's leads in groups of equal size by predicted chance (columns bin,
    leads, predicted, observed). A dot is a group: mean prediction across, observed close rate up,
    whisker the 95 % Wilson interval of the group's count. Log axes, the same range on both (so the
    diagonal is the diagonal), zoomed to the groups: equal-size groups of small, skewed predictions
    bunch up near 0 % on linear axes. Below each panel, its table: n, customers, predicted,
    observed with the interval. `unit`: what a bin counts ("leads", or "rows" when a lead is scored
    at several ages); `population`: who they are, with their n.
    """
    tables = {scorer: calibration_table(part) for scorer, part in curves.items()}
    values = np.concatenate([np.r_[t["predicted"], t["observed"]] for t in tables.values()])
    positive = values[values > 0]
    low, high = (float(positive.min()) / 1.4, float(positive.max()) * 1.4) if len(positive) else (1e-3, 1.0)
    low, high = max(low, 1e-5), min(high, 1.0)
    ticks = _log_ticks(low, high)
    facts = [f"{int(t['inside'].sum())} of {len(t)} groups ({scorer})" for scorer, t in tables.items()]
    title = "The predicted close rate lies inside the observed 95 % interval in " + ", ".join(facts)
    first = next(iter(tables.values()))
    sizes = sorted(set(first["leads"]))
    size = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}-{sizes[-1]:,}"
    counted = None if population else (f"{int(first['leads'].sum()):,} {unit}, "
                                        f"{int(first['customers'].sum()):,} of them customers")
    notes = [_population_line(population, counted),
             f"{len(first)} groups of equal size by predicted chance ({size} {unit} each); dot: a group's mean "
             f"prediction and its observed close rate; whisker: {LEVEL} Wilson interval "
             + ("on its distinct leads" if "distinct_leads" in next(iter(curves.values())).columns else "of its count")
             + "; "
             "log axes, zoomed to the groups (a hollow triangle: no customer in the group)"]
    legend = [_line(REFERENCE, "perfect calibration: observed = predicted", linestyle=":"),
              *[_line(SCORER_COLOURS.get(s, DATA), s, marker="o", linestyle="none") for s in tables],
              _whisker_handle()]
    frame = _Frame(11, title, notes, legend)
    rows = max(len(t) for t in tables.values())
    table_height = 0.2 * (rows + 1) + 0.2
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(11, frame.height(4.6 + table_height)))
        grid = fig.add_gridspec(2, len(tables), height_ratios=[4.6, table_height])
        for column, (scorer, part) in enumerate(tables.items()):
            _calibration_panel(fig.add_subplot(grid[0, column]), part, scorer, (low, high), ticks)
            _reliability_table(fig.add_subplot(grid[1, column]), part, unit, rows)
        frame.finish(fig)
    return fig


def matrix_chart(cells: pd.DataFrame, average: float, population: str | None = None,
                 average_of: str = "these leads") -> Figure:
    """Fit grade (A-D) x engagement grade (1-4): close rate in colour; in each cell the close rate,
    its 95 % Wilson interval and the leads. `average`: the close rate of `average_of`."""
    cells = cells.assign(engagement_grade=cells["engagement_grade"].astype(str))
    if "customers" not in cells.columns:
        cells = cells.assign(customers=np.rint(cells["close_rate"] * cells["leads"]).astype(int))
    low, high = wilson_interval(cells["customers"].to_numpy(), cells["leads"].to_numpy(), CONFIDENCE)
    cells = cells.assign(low=low, high=high)
    shape = {"index": list("ABCD"), "columns": list("1234")}  # empty cells are absent from the data
    grid, lows, highs, leads = (cells.pivot(index="fit_grade", columns="engagement_grade", values=v).reindex(**shape)
                                for v in ("close_rate", "low", "high", "leads"))
    leads = leads.fillna(0)
    best = cells.sort_values(["close_rate", "fit_grade", "engagement_grade"], ascending=[False, True, True],
                             kind="mergesort").iloc[0]
    times = f", {best['close_rate'] / average:.1f} times" if average > 0 else ""
    title = (f"Fit {best['fit_grade']} x engagement {best['engagement_grade']} closes best: "
             f"{_pct(best['close_rate'])}{times} the average of {average_of} ({_pct(average)})")
    notes = [_population_line(population, f"{int(cells['leads'].sum()):,} leads, "
                                          f"{int(cells['customers'].sum()):,} customers; "
                                          f"average of {average_of}: {_pct(average)}"),
             f"each cell: close rate, its {LEVEL} Wilson interval, leads; darker: higher close rate"]
    frame = _Frame(7.5, title, notes)
    colours = LinearSegmentedColormap.from_list("data", ["#ffffff", DATA])
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(7.5, frame.height(5.4)))
        image = ax.imshow(grid.to_numpy(dtype=float), cmap=colours, vmin=0, aspect="auto")
        top = np.nanmax(grid.to_numpy(dtype=float)) if grid.notna().any().any() else 0.0
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                rate, count = grid.iat[i, j], leads.iat[i, j]
                text = ("no leads" if count == 0 or pd.isna(rate) else
                        f"{_pct(rate)}\n({_pct(lows.iat[i, j])}–{_pct(highs.iat[i, j])})\n{int(count):,} leads")
                ax.text(j, i, text, ha="center", va="center", fontsize=9,
                        color="white" if not pd.isna(rate) and rate > top * 0.6 else "black")
        ax.set_xticks(range(grid.shape[1]), [f"{c}" for c in grid.columns])
        ax.set_yticks(range(grid.shape[0]), list(grid.index))
        ax.set_xlabel("engagement grade (1 = most engaged quarter)")
        ax.set_ylabel("fit grade (A = best-fitting quarter)")
        fig.colorbar(image, ax=ax, format=PercentFormatter(1.0, decimals=0), label="close rate")
        frame.finish(fig)
    return fig


def funnel_chart(funnel: list[dict], population: str | None = None) -> Figure:
    """Leads reaching each stage, with the conversion from the stage before and its 95 % Wilson interval.

    The interval is computed from the counts (a stage's leads out of the stage before's, or the
    row's `previous` when the table has it). `population`: who the leads are (the chart counts them).
    """
    stages = [row["stage"] for row in funnel]
    leads = np.array([row["leads"] for row in funnel], dtype=float)
    previous = np.array([row.get("previous", leads[max(i - 1, 0)]) for i, row in enumerate(funnel)], dtype=float)
    low, high = wilson_interval(leads, previous, CONFIDENCE)
    first, last = funnel[0], funnel[-1]
    title = (f"{last['leads']:,} of {first['leads']:,} leads ({last['leads'] / first['leads']:.1%}) "
             f"reached the {last['stage']} stage" if first["leads"] else "No leads in the funnel")
    notes = [_population_line(population, f"{first['leads']:,} leads"),
             "a lead counts at a stage if it reached it or a later one (CRMs skip stages); "
             f"right: share of the stage before, with its {LEVEL} Wilson interval"]
    frame = _Frame(9, title, notes)
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(9, frame.height(0.45 * len(stages) + 1.2)))
        y = np.arange(len(stages))[::-1]
        ax.barh(y, leads, color=DATA, alpha=0.85)
        for i, (position, row) in enumerate(zip(y, funnel)):
            ax.text(row["leads"], position, f"  {row['leads']:,}", va="center", fontsize=9)
            rate = row.get("rate_from_previous")
            if i == 0 or rate is None or previous[i] == 0:
                continue
            ax.text(1.02, position, f"{rate:.1%} of previous ({LEVEL}: {_pct(low[i])}–{_pct(high[i])})",
                    va="center", fontsize=9, transform=ax.get_yaxis_transform())
        ax.set_yticks(y, stages)
        ax.set_xlim(0, leads.max() * 1.15 if leads.max() > 0 else 1)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        ax.set_xlabel("leads reaching the stage (or a later one)")
        frame.finish(fig)
    return fig


STEPS = (("lead_to_mql", "lead", "mql", "lead → MQL"), ("mql_to_sql", "mql", "sql", "MQL → SQL"),
         ("sql_to_customer", "sql", "customer", "SQL → customer"))


def immature_months(months: Sequence[str], export_date: str | None, horizon_days: int = 90) -> np.ndarray:
    """True for a month not all of whose leads are mature: a lead created at its very end has not had
    `horizon_days` by `export_date` (pipeline.stages.funnel: mature = created + horizon_days <= export date).
    Without an export date, the last ceil(horizon_days / 30) months."""
    months = [str(m) for m in months]
    if export_date is None:
        flags = np.zeros(len(months), dtype=bool)
        flags[max(len(months) - math.ceil(horizon_days / 30), 0):] = True
        return flags
    export = pd.Timestamp(export_date)
    ends = [pd.Period(m, freq="M").end_time for m in months]  # a lead matures at created + horizon_days
    return np.array([end + pd.Timedelta(days=horizon_days) > export for end in ends], dtype=bool)


def _monthly_counts(counts: pd.DataFrame | list[dict] | None, months: Sequence[str]) -> pd.DataFrame | None:
    """Leads at each stage per month (funnel.json's by_month, population 'all'), in `months` order."""
    if counts is None:
        return None
    frame = pd.DataFrame(counts)
    if frame.empty:
        return None
    if "population" in frame.columns:
        frame = frame[frame["population"] == "all"]
    frame = frame.assign(month=frame["month"].astype(str))
    return frame.pivot(index="month", columns="stage", values="leads").reindex(list(months))


def _monthly_panel(ax: Axes, x: np.ndarray, rate: np.ndarray, n: np.ndarray | None, immature: np.ndarray,
                   label: str) -> None:
    """One conversion step by month: mature months as a line with their Wilson band (when the
    counts `n` are known), immature ones grey and hollow over a hatched span."""
    ax.plot(x, np.where(immature, np.nan, rate), marker="o", markersize=4, color=DATA, label=label)
    if n is not None:
        known = ~immature & ~np.isnan(rate) & (n > 0)
        k = np.rint(np.nan_to_num(rate) * n)
        band_low, band_high = wilson_interval(k[known], n[known], CONFIDENCE)
        ax.fill_between(x[known], band_low, band_high, color=DATA, alpha=0.18, linewidth=0,
                        label=f"{LEVEL} interval")
    if immature.any():
        start = int(np.argmax(immature))
        ax.axvspan(start - 0.5, len(x) - 0.5, facecolor=UNCLEAR, alpha=0.15, hatch="//",
                   edgecolor=UNCLEAR, linewidth=0, gid="immature")
        joined = np.r_[max(start - 1, 0):len(x)]  # from the last mature month, so the line continues
        ax.plot(x[joined], rate[joined], linestyle=":", color=UNCLEAR)
        ax.plot(x[immature], rate[immature], marker="o", markersize=4, markerfacecolor="white",
                linestyle="none", color=UNCLEAR, label=f"{label}: not mature yet")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title(label, loc="left", fontsize=10)
    ax.set_ylabel("conversion")


def monthly_trend_chart(monthly: pd.DataFrame, counts: pd.DataFrame | list[dict] | None = None,
                        export_date: str | None = None, horizon_days: int = 90,
                        population: str | None = None) -> Figure:
    """Stage-to-stage conversion by month of lead creation: one panel per step.

    Months whose leads have not all had `horizon_days` before `export_date` are immature: their
    rates will still rise, so they are drawn grey and hollow over a hatched span, never as a drop.
    Without an export date the last ceil(horizon_days / 30) months are marked, and the chart says
    so. `counts` (funnel.json's by_month: leads at each stage per month) gives each mature month's
    n and its 95 % Wilson band. `population`: who the leads are.
    """
    with plt.rc_context(STYLE):
        if monthly.empty:  # a snapshot export: no creation months (pipeline.design)
            fig, ax = plt.subplots(figsize=(10, 4.8))
            ax.set_axis_off()
            ax.text(0.5, 0.5, "No conversion by month: the export has no dates\n(one row per lead, a snapshot)",
                    ha="center", va="center", fontsize=13)
            return fig
    months = monthly["month"].astype(str).tolist()
    immature = immature_months(months, export_date, horizon_days)
    stage_counts = _monthly_counts(counts, months)
    x = np.arange(len(months))
    unripe = int(immature.sum())
    title = "Conversion by month of lead creation" + (
        f": the last {unripe} months are not mature yet (grey)" if unripe > 1 else
        ": the last month is not mature yet (grey)" if unripe else "")
    if export_date is not None:
        when = f"leads had fewer than {horizon_days} days to convert before the export of {str(export_date)[:10]}"
    else:
        when = (f"no export date given: the last {unripe} months (ceil({horizon_days} / 30)) are assumed "
                f"to be younger than {horizon_days} days")
    counted = (f"{int(stage_counts['lead'].sum()):,} leads, {months[0]}..{months[-1]}"
               if stage_counts is not None and "lead" in stage_counts.columns else f"{months[0]}..{months[-1]}")
    notes = [_population_line(population, counted),
             f"grey, hatched: months not mature yet ({when}); their rates will still rise"
             + (f"; band: {LEVEL} Wilson interval of each mature month's count" if stage_counts is not None else "")]
    legend = [_line(DATA, "mature months", marker="o")]
    if stage_counts is not None:
        legend.append((Patch(facecolor=DATA, alpha=0.18, edgecolor="none"), f"{LEVEL} interval"))
    if unripe:
        legend.append((Patch(facecolor=UNCLEAR, alpha=0.15, hatch="//", edgecolor=UNCLEAR, linewidth=0),
                       f"not mature yet: younger than {horizon_days} days"))
        legend.append(_line(UNCLEAR, "rate so far (will still rise)", marker="o", markerfacecolor="white",
                            linestyle=":"))
    frame = _Frame(11, title, notes, legend)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(STEPS), 1, figsize=(11, frame.height(6.6)), sharex=True)
        for ax, (column, source, target, label) in zip(axes, STEPS):
            rate = monthly[column].to_numpy(dtype=float) if column in monthly.columns else np.full(len(x), np.nan)
            n = (stage_counts[source].fillna(0).to_numpy(dtype=float)
                 if stage_counts is not None and source in stage_counts.columns else None)
            _monthly_panel(ax, x, rate, n, immature, label)
        if unripe:
            axes[0].text(int(np.argmax(immature)) - 0.4, 1.0, "not mature yet", transform=axes[0].get_xaxis_transform(),
                         va="bottom", ha="left", fontsize=8, color="#333333")
        axes[-1].set_xticks(x, months)
        axes[-1].tick_params(axis="x", rotation=60)
        axes[-1].set_xlabel("month the leads were created")
        frame.finish(fig)
    return fig


def points_interval(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The 95 % interval of each signal's points over the bootstrap refits, and how it was taken.

    Percentiles 2.5 / 97.5 when the table has them (weights.py writes them); else points ± 1.96 sd
    of the refits (a table from before they were written); None without refits."""
    points = rows["points"].to_numpy(dtype=float)
    if {"points_p025", "points_p975"} <= set(rows.columns):
        return rows["points_p025"].to_numpy(dtype=float), rows["points_p975"].to_numpy(dtype=float), \
            "2.5th to 97.5th percentile of the bootstrap refits"
    if "points_sd" in rows.columns:
        sd = rows["points_sd"].to_numpy(dtype=float)
        return points - Z95 * sd, points + Z95 * sd, "points ± 1.96 sd of the bootstrap refits"
    return points, points, None


def points_table_chart(signals: pd.DataFrame, population: str | None = None) -> Figure:
    """The points each signal gives, engagement and fit side by side, with a 95 % interval of the refits.

    A marketer checks two things here: that the order makes sense (demo request above blog
    read) and which points are shaky (a long whisker means the data cannot pin the value
    down, so a CRM admin should not fine-tune it by hand). Colour: whether the interval lies
    above 0 (ABOVE: the signal clearly adds points), below it (BELOW) or across it (UNCLEAR).
    `population`: the leads the table was fitted on.
    """
    scored = signals[signals["status"] == "scored"].copy()
    scored["low"], scored["high"], how = points_interval(scored)
    scored["verdict"] = verdicts(scored["low"], scored["high"], 0.0) if how else "unclear"
    groups = [(kind, scored[scored["kind"] == kind].sort_values("points", kind="mergesort"))
              for kind in ("engagement", "fit")]
    groups = [(kind, rows) for kind, rows in groups if len(rows)]
    heights = [max(len(rows), 3) for _, rows in groups]
    counts = scored["verdict"].value_counts()
    title = (f"{counts.get('above', 0)} of {len(scored)} signals clearly add points, "
             f"{counts.get('below', 0)} clearly take points away" if how else
             f"The points of {len(scored)} signals (no bootstrap refits: no intervals)")
    notes = [population or "population not given",
             f"{len(scored)} scored signals; bar: the points in the table; whisker: {LEVEL} interval ({how})" if how else
             f"{len(scored)} scored signals; bar: the points in the table; weights.bootstrap_samples = 0: no refits, "
             "so no interval and no colour verdict"]
    legend = [_swatch(ABOVE, f"adds points: {LEVEL} interval above 0"),
              _swatch(BELOW, f"takes points away: {LEVEL} interval below 0"),
              _swatch(UNCLEAR, "can't tell from 0" if how else "no interval")]
    if how:
        legend.append(_whisker_handle())
    frame = _Frame(9, title, notes, legend)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(groups), 1, figsize=(9, frame.height(0.26 * sum(heights) + 1.4 * len(groups))),
                                 gridspec_kw={"height_ratios": heights}, squeeze=False)
        for ax, (kind, rows) in zip(axes[:, 0], groups):
            y = np.arange(len(rows))
            ax.barh(y, rows["points"], color=[VERDICT_COLOURS[v] for v in rows["verdict"]], alpha=0.85)
            if how:
                low = (rows["points"] - rows["low"]).clip(lower=0)
                high = (rows["high"] - rows["points"]).clip(lower=0)
                ax.errorbar(rows["points"], y, xerr=[low, high], fmt="none", ecolor=WHISKER, elinewidth=1, capsize=2)
            for position, points, lo, hi in zip(y, rows["points"], rows["low"], rows["high"]):
                # the label sits past the whisker, so the two never overlap
                ax.text(max(points, hi) if points >= 0 else min(points, lo), position, f" {points:+d} ",
                        va="center", fontsize=8, ha="left" if points >= 0 else "right")
            ax.axvline(0, color="black", linewidth=0.8)
            ax.set_ylim(-0.7, len(rows) - 0.3)
            ax.margins(x=0.08)
            ax.set_yticks(y, rows["signal"], fontsize=8 if len(rows) > 25 else 9)
            ax.set_title(f"{kind} points" + (" (per activity, before decay)" if kind == "engagement" else
                                            " (who the lead is)"), loc="left", fontsize=11)
        axes[-1, 0].set_xlabel("points")
        frame.finish(fig)
    return fig


def cumulative_gain_chart(gain: pd.DataFrame, population: str | None = None, at: float = 0.2) -> Figure:
    """Share of customers found by calling the top X % of leads, for each scorer, against random calls.

    Left: cumulative gain ("call the top 20 %, reach 60 % of the customers"). Right: the
    same as lift, how many times better than calling leads at random. The title reads the
    curve at the share nearest `at`. `population`: the held-out leads, with their n.
    """
    scorers = [c for c in gain.columns if c not in ("share_of_leads", "random")]
    labels = {"model": "predictive model", "points_table": "points table"}
    row = gain.iloc[int((gain["share_of_leads"] - at).abs().to_numpy().argmin())]
    reached = ", ".join(f"{row[s]:.0%} ({labels.get(s, s.replace('_', ' '))})" for s in scorers)
    title = f"Calling the top {row['share_of_leads']:.0%} of leads reaches {reached} of the customers"
    if "random" in gain.columns:
        title += f"; at random: {row['random']:.0%}"
    notes = [_population_line(population, None if population else "held-out leads"),
             "one held-out period, ranked best score first; no interval drawn (the folds' spread is in "
             "models/metrics/train.json)"]
    legend = [_line(REFERENCE, "random order", linestyle=":"),
              *[_line(SCORER_COLOURS.get(s, DATA), labels.get(s, s.replace("_", " ")), marker="o", markersize=3)
                for s in scorers]]
    frame = _Frame(11, title, notes, legend)
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, frame.height(4.4)))
        left.plot(gain["share_of_leads"], gain["random"], color=REFERENCE, linestyle=":", label="random order")
        tail = gain[gain["share_of_leads"] > 0]
        right.axhline(1.0, color=REFERENCE, linestyle=":", label="random order")
        for scorer in scorers:
            label = labels.get(scorer, scorer.replace("_", " "))
            colour = SCORER_COLOURS.get(scorer, DATA)
            left.plot(gain["share_of_leads"], gain[scorer], marker="o", markersize=3, color=colour, label=label)
            right.plot(tail["share_of_leads"], tail[scorer] / tail["share_of_leads"], marker="o", markersize=3,
                       color=colour, label=label)
        for ax in (left, right):
            ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            ax.set_xlabel("top share of leads, best score first")
        left.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        left.set_ylabel("share of all customers among them")
        left.set_title("Cumulative gain: customers reached", loc="left", fontsize=11)
        right.set_ylabel("times the close rate of a random lead")
        right.set_title("Lift: how much better than random", loc="left", fontsize=11)
        frame.finish(fig)
    return fig
