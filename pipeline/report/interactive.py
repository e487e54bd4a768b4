"""The report's interactive charts: Vega-Lite specs, built with Altair, with the numbers behind each mark on hover.

The PNG charts (pipeline.report.charts) are what DVC diffs and what a slide takes; these are what a
marketer explores in the HTML report (pipeline.report.summary, the notebooks): the same palette and
the same rules (docs/chart-style.md): 95 % intervals, the population and n in the subtitle,
the average named. Each function takes a table and returns a spec (a dict, JSON-ready) that
pipeline.report.page.vega_chart places on a page; nothing here reads or writes files.

Specs carry their data inline (`alt.Data(values=...)`, rounded), and every selection has a
fixed name, so the same table gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.core.stats import wilson_interval
from pipeline.report import charts
from pipeline.report.charts import ABOVE, BELOW, DATA, REFERENCE, UNCLEAR, WHISKER, rate_interval, verdicts
from pipeline.report.page import pct

WIDTH = 640
VERDICTS = {"above": ABOVE, "below": BELOW, "unclear": UNCLEAR}
VERDICT_WORDS = {"above": "adds points (95 % interval above 0)", "below": "takes points away (95 % interval below 0)",
                 "unclear": "can't tell from 0"}


def _altair():
    import altair as alt  # imported here: about 0.3 s, only for the pages that draw charts

    return alt


def _records(frame: pd.DataFrame, digits: int = 6) -> list[dict[str, object]]:
    """JSON-ready rows: floats rounded (stable bytes), NaN and infinities as null (JSON has neither),
    numpy scalars as Python ones."""
    rows = []
    for record in frame.to_dict(orient="records"):
        row = {}
        for key, value in record.items():
            if isinstance(value, (float, np.floating)):
                row[key] = round(float(value), digits) if np.isfinite(value) else None
            elif isinstance(value, np.integer):
                row[key] = int(value)
            elif isinstance(value, np.bool_):
                row[key] = bool(value)
            else:
                row[key] = value
        rows.append(row)
    return rows


def wilson_text(customers: np.ndarray, leads: np.ndarray) -> list[str]:
    """Each close rate's 95 % Wilson interval as text ('7.8% to 12.1%'), for tooltips."""
    low, high = wilson_interval(np.asarray(customers), np.asarray(leads), 0.95)
    return [f"{pct(lo)} to {pct(hi)}" for lo, hi in zip(low, high)]


def _title(text: str, subtitle: str | None) -> dict[str, object]:
    title: dict[str, object] = {"text": text, "anchor": "start", "fontSize": 14}
    if subtitle:  # one line per clause: Vega-Lite does not wrap titles
        title["subtitle"] = [part.strip() for part in subtitle.split("; ") if part.strip()]
        title["subtitleColor"] = "#333333"
    return title


def points_interval(signals: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, bool]:
    """Each signal's 95 % range of the bootstrap refits (the PNG chart's, pipeline.report.charts.points_interval),
    and whether there is one."""
    low, high, how = charts.points_interval(signals)
    return low, high, how is not None


def range_text(low: float, high: float) -> str:
    """A points range as the tables and tooltips show it: '+0.4 to +12.3' (one decimal, so a range
    that does not reach 0 never reads as '+0 to ...'); a missing bound: 'not measured'."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not measured"
    return f"{low:+.1f} to {high:+.1f}"


def points_chart(signals: pd.DataFrame, population: str) -> dict[str, object]:
    """The points of every scored signal, engagement and fit in two panels, with their 95 % range.

    Colour is the verdict of the range against 0 (the PNG chart's rule); hovering a bar shows
    the signal's points, range, leads, customers, close rate and lift.
    """
    alt = _altair()
    scored = signals[signals["status"] == "scored"].copy()
    low, high, has_range = points_interval(scored)
    scored["low"], scored["high"] = np.round(low, 1), np.round(high, 1)
    scored["verdict"] = np.select([scored["low"] > 0, scored["high"] < 0], ["above", "below"], "unclear") \
        if has_range else "unclear"
    scored["verdict_words"] = scored["verdict"].map(VERDICT_WORDS)
    scored["range"] = [range_text(lo, hi) if has_range else "not measured" for lo, hi in zip(low, high)]
    scored["close_rate_text"] = [pct(v) for v in scored["close_rate"]]
    scored["close_rate_interval"] = wilson_text(scored["customers"], scored["leads"])
    columns = ["signal", "kind", "points", "low", "high", "verdict", "verdict_words", "range", "leads", "customers",
               "close_rate_text", "close_rate_interval", "lift"]
    data = scored.reindex(columns=columns)
    panels = []
    for kind, heading in (("engagement", "Engagement points (per activity, before decay)"),
                          ("fit", "Fit points (who the lead is)")):
        rows = data[data["kind"] == kind].sort_values(["points", "signal"], ascending=[False, True], kind="stable")
        if rows.empty:
            continue
        base = alt.Chart(alt.Data(values=_records(rows)), title=alt.Title(heading, anchor="start", fontSize=12))
        y = alt.Y("signal:N", sort=list(rows["signal"]), title=None, axis=alt.Axis(labelLimit=260))
        tooltip = [alt.Tooltip("signal:N"), alt.Tooltip("points:Q"), alt.Tooltip("range:N", title="95 % range"),
                   alt.Tooltip("leads:Q", format=","), alt.Tooltip("customers:Q", format=","),
                   alt.Tooltip("close_rate_text:N", title="close rate"),
                   alt.Tooltip("close_rate_interval:N", title="close rate, 95 % Wilson"),
                   alt.Tooltip("lift:Q", format=".2f"), alt.Tooltip("verdict_words:N", title="verdict")]
        bars = base.mark_bar(opacity=0.85).encode(
            x=alt.X("points:Q", title="points"), y=y,
            color=alt.Color("verdict:N", scale=alt.Scale(domain=list(VERDICTS), range=list(VERDICTS.values())),
                            legend=alt.Legend(title="95 % range of the refits", labelExpr=_legend_words(),
                                              orient="bottom", direction="vertical", labelLimit=400)),
            tooltip=tooltip)
        layers = [bars]
        if has_range:
            layers.append(base.mark_rule(color=WHISKER).encode(x="low:Q", x2="high:Q", y=y, tooltip=tooltip))
        layers.append(alt.Chart(alt.Data(values=[{"zero": 0}])).mark_rule(color="black").encode(x="zero:Q"))
        panels.append(alt.layer(*layers).properties(width=WIDTH, height=max(18 * len(rows), 60)))
    counts = data["verdict"].value_counts()
    title = (f"{counts.get('above', 0)} of {len(data)} signals clearly add points, "
             f"{counts.get('below', 0)} clearly take points away" if has_range else
             f"The points of {len(data)} signals (no bootstrap refits: no ranges)")
    subtitle = f"{population}; bar: the points in the table; black line: 95 % range of the bootstrap refits; hover for the evidence"
    chart = alt.vconcat(*panels, title=_title(title, subtitle)).resolve_scale(x="shared")
    return chart.to_dict()


def _legend_words() -> str:
    cases = " : ".join(f"datum.label === {json.dumps(key)} ? {json.dumps(words)}" for key, words in VERDICT_WORDS.items())
    return f"{cases} : datum.label"


def threshold_curve(distribution: pd.DataFrame, weeks: float | None) -> pd.DataFrame:
    """For each candidate threshold t (a points total in score_distribution.csv): leads and customers at or
    above t, their share, close rate, lift, the customers they hold and, with `weeks`, MQLs per week."""
    counts = distribution.assign(leads=distribution["customers"] + distribution["other_leads"])
    counts = counts.sort_values("total_points", ascending=False, kind="stable")
    leads, customers = counts["leads"].cumsum(), counts["customers"].cumsum()
    total_leads, total_customers = int(counts["leads"].sum()), int(counts["customers"].sum())
    average = total_customers / total_leads if total_leads else 0.0
    curve = pd.DataFrame({
        "threshold": counts["total_points"].astype(int).to_numpy(),
        "mql_leads": leads.astype(int).to_numpy(),
        "mql_share": (leads / total_leads).to_numpy() if total_leads else 0.0,
        "mql_close_rate": (customers / leads).to_numpy(),
        "customers_captured": (customers / total_customers).to_numpy() if total_customers else 0.0,
    })
    curve["mql_lift"] = curve["mql_close_rate"] / average if average else np.nan
    curve["mql_per_week"] = curve["mql_leads"] / weeks if weeks else np.nan
    return curve.sort_values("threshold", kind="stable").reset_index(drop=True)


def threshold_chart(curve: pd.DataFrame, threshold: int | None, average: float, population: str,
                    min_leads: int = 1) -> dict[str, object]:
    """What each possible threshold would give: MQLs per week (or share of leads) and their close rate.

    Two panels share the points axis; hovering anywhere shows every figure at that threshold;
    the chosen threshold and the average close rate are the blue reference lines. Thresholds
    leaving fewer than `min_leads` MQLs (thresholds.min_mql_leads) are not drawn: their close
    rate is noise, and no policy may pick them.
    """
    alt = _altair()
    curve = curve[curve["mql_leads"] >= min_leads]
    weekly = curve["mql_per_week"].notna().any()
    volume, volume_title = ("mql_per_week", "MQLs per week") if weekly else ("mql_share", "share of leads that are MQLs")
    data = curve.assign(close_rate_text=[pct(v) for v in curve["mql_close_rate"]],
                        share_text=[pct(v) for v in curve["mql_share"]],
                        captured_text=[pct(v) for v in curve["customers_captured"]])
    base = alt.Chart(alt.Data(values=_records(data)))
    hover = alt.selection_point(name="hover_threshold", fields=["threshold"], nearest=True, on="pointerover",
                                clear="pointerout", empty=False)
    tooltip = [alt.Tooltip("threshold:Q", title="threshold (points)"),
               alt.Tooltip("mql_per_week:Q", title="MQLs per week", format=",.0f")] if weekly else \
        [alt.Tooltip("threshold:Q", title="threshold (points)")]
    tooltip += [alt.Tooltip("mql_leads:Q", title="MQL leads", format=","),
                alt.Tooltip("share_text:N", title="share of leads"), alt.Tooltip("close_rate_text:N", title="MQL close rate"),
                alt.Tooltip("mql_lift:Q", title="x the average", format=".1f"),
                alt.Tooltip("captured_text:N", title="customers captured")]
    x = alt.X("threshold:Q", title="MQL threshold (total points)")

    def panel(field: str, title: str, axis_format: str) -> object:
        # between two observed totals the MQLs are those at or above the next total up: step-before
        line = base.mark_line(color=DATA, interpolate="step-before").encode(
            x=x, y=alt.Y(f"{field}:Q", title=title, axis=alt.Axis(format=axis_format)))
        points = base.mark_point(filled=True, size=60, color=DATA).encode(
            x=x, y=f"{field}:Q", opacity=alt.condition(hover, alt.value(1), alt.value(0)), tooltip=tooltip)
        layers = [line, points.add_params(hover) if field == volume else points]
        if threshold is not None:
            layers.append(alt.Chart(alt.Data(values=[{"threshold": threshold}])).mark_rule(
                color=REFERENCE, strokeWidth=2).encode(x="threshold:Q"))
        if field == "mql_close_rate":
            layers.append(alt.Chart(alt.Data(values=[{"average": average}])).mark_rule(
                color=REFERENCE, strokeDash=[4, 4]).encode(y="average:Q"))
        return alt.layer(*layers).properties(width=WIDTH, height=170)

    top = panel(volume, volume_title, ",.0f" if weekly else ".0%")
    bottom = panel("mql_close_rate", "close rate of the MQLs", ".0%")
    chosen = f"the chosen threshold ({threshold} points)" if threshold is not None else "no threshold chosen"
    subtitle = (f"{population}; thresholds leaving at least {min_leads:,} MQLs; solid blue: {chosen}; dashed blue: "
                f"the average close rate of these leads ({pct(average)}); hover for every figure at a threshold")
    title = "Raising the threshold: fewer MQLs, each more likely to close"
    return alt.vconcat(top, bottom, title=_title(title, subtitle)).resolve_scale(x="shared").to_dict()


def matrix_chart(grades: Mapping[str, Mapping[str, float]], average: float, population: str) -> dict[str, object]:
    """The fit grade (A best .. D) by engagement grade (1 best .. 4) grid: each cell's close rate as colour
    and text, its leads, customers and shares on hover."""
    alt = _altair()
    def rate(cell: Mapping[str, float]) -> float | None:  # an empty cell has no close rate (thresholds.json: null)
        return None if not cell["leads"] or cell.get("close_rate") is None else float(cell["close_rate"])

    rows = [{"fit": name[0], "engagement": name[1:], "leads": int(cell["leads"]), "customers": int(cell["customers"]),
             "close_rate": rate(cell), "close_rate_text": "no leads" if rate(cell) is None else pct(rate(cell)),
             "lift": rate(cell) / average if average and rate(cell) is not None else None,
             "share_of_leads": pct(cell["share_of_leads"]), "share_of_customers": pct(cell["share_of_customers"])}
            for name, cell in sorted(grades.items())]
    frame = pd.DataFrame(rows)
    frame["close_rate_interval"] = [text if leads else "no leads" for text, leads in
                                    zip(wilson_text(frame["customers"], frame["leads"]), frame["leads"])]
    base = alt.Chart(alt.Data(values=_records(frame)))
    encode = {"x": alt.X("engagement:O", title="engagement grade (1 = most engaged)", axis=alt.Axis(labelAngle=0)),
              "y": alt.Y("fit:O", title="fit grade (A = best fit)")}
    tooltip = [alt.Tooltip("fit:N", title="fit grade"), alt.Tooltip("engagement:N", title="engagement grade"),
               alt.Tooltip("leads:Q", format=","), alt.Tooltip("customers:Q", format=","),
               alt.Tooltip("close_rate_text:N", title="close rate"),
               alt.Tooltip("close_rate_interval:N", title="close rate, 95 % Wilson"),
               alt.Tooltip("lift:Q", title="x the average", format=".1f"),
               alt.Tooltip("share_of_leads:N", title="share of leads"),
               alt.Tooltip("share_of_customers:N", title="share of customers")]
    cells = base.mark_rect(stroke="white").encode(
        **encode, color=alt.Color("close_rate:Q", title="close rate", scale=alt.Scale(range=["#f4f4f4", ABOVE]),
                                  legend=alt.Legend(format=".0%")), tooltip=tooltip)
    text = base.mark_text(fontSize=13).encode(**encode, text="close_rate_text:N", tooltip=tooltip)
    subtitle = f"{population}; average close rate of these leads {pct(average)}; hover a cell for its leads"
    title = "Close rate by fit and engagement grade"
    return alt.layer(cells, text).properties(width=360, height=240, title=_title(title, subtitle)).to_dict()


def close_rates_chart(table: pd.DataFrame, average: float, population: str) -> dict[str, object]:
    """The close rate of each activity with its 95 % Wilson interval, against its expected close rate.

    The PNG chart's rules (pipeline.report.charts.close_rates_chart): colour says whether the interval
    lies above, below or across the expected rate (a blue tick where it differs from the average,
    the dashed line); hovering a bar shows its leads, customers, interval, expected rate and lift.
    """
    alt = _altair()
    rows = table[table["type"] == "activity"].copy()
    if "expected_close_rate" not in rows.columns:
        rows["expected_close_rate"] = average
    rows["low"], rows["high"] = rate_interval(rows)
    rows["verdict"] = verdicts(rows["low"], rows["high"], rows["expected_close_rate"].to_numpy(dtype=float))
    rows["close_rate_text"] = [pct(v) for v in rows["close_rate"]]
    rows["close_rate_interval"] = [f"{pct(lo)} to {pct(hi)}" for lo, hi in zip(rows["low"], rows["high"])]
    rows["expected_text"] = [pct(v) for v in rows["expected_close_rate"]]
    rows = rows.sort_values(["close_rate", "signal"], ascending=[False, True], kind="stable")
    data = rows.reindex(columns=["signal", "leads", "customers", "close_rate", "low", "high", "verdict", "close_rate_text",
                                 "close_rate_interval", "expected_close_rate", "expected_text", "lift"])
    words = {"above": "clearly above expected (95 % interval above it)",
             "below": "clearly below expected (95 % interval below it)", "unclear": "can't tell (the interval overlaps it)"}
    base = alt.Chart(alt.Data(values=_records(data)))
    y = alt.Y("signal:N", sort=list(rows["signal"]), title=None, axis=alt.Axis(labelLimit=260))
    tooltip = [alt.Tooltip("signal:N", title="activity"), alt.Tooltip("leads:Q", format=","),
               alt.Tooltip("customers:Q", format=","), alt.Tooltip("close_rate_text:N", title="close rate"),
               alt.Tooltip("close_rate_interval:N", title="95 % Wilson"),
               alt.Tooltip("expected_text:N", title="expected (same ages)"), alt.Tooltip("lift:Q", format=".2f")]
    bars = base.mark_bar(opacity=0.85).encode(
        x=alt.X("close_rate:Q", title="close rate: share of these leads that became customers",
                axis=alt.Axis(format=".0%")), y=y,
        color=alt.Color("verdict:N", scale=alt.Scale(domain=list(VERDICTS), range=list(VERDICTS.values())),
                        legend=alt.Legend(title="against the expected close rate", orient="bottom", direction="vertical",
                                          labelLimit=400, labelExpr=" : ".join(
                                              f"datum.label === {json.dumps(k)} ? {json.dumps(v)}" for k, v in words.items())
                                          + " : datum.label")),
        tooltip=tooltip)
    whiskers = base.mark_rule(color=WHISKER).encode(x="low:Q", x2="high:Q", y=y, tooltip=tooltip)
    expected = base.mark_tick(color=REFERENCE, thickness=2).encode(x="expected_close_rate:Q", y=y, tooltip=tooltip)
    mean = alt.Chart(alt.Data(values=[{"average": average}])).mark_rule(color=REFERENCE, strokeDash=[4, 4]).encode(
        x="average:Q")
    counts = data["verdict"].value_counts()
    title = (f"{counts.get('above', 0)} of {len(data)} activities close clearly above their expected close rate, "
             f"{counts.get('below', 0)} clearly below")
    subtitle = (f"{population}; bar: close rate; black line: its 95 % Wilson interval; blue tick: expected (leads seen "
                f"at the same ages); dashed: the average ({pct(average)}); hover for the counts")
    return alt.layer(bars, whiskers, expected, mean).properties(
        width=WIDTH, height=max(18 * len(data), 60), title=_title(title, subtitle)).to_dict()
