# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
from pathlib import Path

MODELS = Path("models") if Path("models").exists() else Path("../models")

# %% [markdown]
# # 1. Which leads become customers?
#
# This page shows the evidence behind the lead score. For every activity a lead can do
# (a demo request, a webinar, a visit to the pricing page) and every fact about who the
# lead is (industry, company size, job level), it shows how many of those leads became
# customers: their **close rate**. Each close rate is compared with the close rate to expect
# of comparable leads.
#
# Every number on this page is read from the files of the last run (`models/`); none is typed in.

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown

from pipeline.report import charts, interactive

from pipeline import io, spreadsheet
from pipeline.report.notebooks import HoverChart, design_note, interval, pct, show, table

rates = spreadsheet.read_csv(MODELS / "close_rates.csv")
summary = io.read_json(MODELS / "metrics" / "close_rates.json")
weights = spreadsheet.read_csv(MODELS / "weights.csv").set_index("signal")
points = weights["points"]
population = io.read_json(MODELS / "funnel.json")["population"]
average = summary["average_close_rate"]

# %%
design_note(MODELS)

# %% [markdown]
# ## The average lead

# %%
by_snapshot = {int(age): rate for age, rate in (summary.get("close_rate_by_snapshot") or {}).items()}
ages = sorted(by_snapshot)
Markdown(
    f"We looked at **{summary['matured_leads']:,} leads** old enough to know how they ended: "
    f"each had {population['horizon_days']} days to become a customer. "
    f"**{summary['customers']:,}** of them did. "
    f"So the **average close rate is {pct(average)}**.\n\n"
    + (f"Each lead is looked at on fixed days of its life, **{', '.join(f'day {a}' for a in ages)}**, as long as "
       f"it is still open, with only what it had done before that day: a lead that won on day 5 is never seen "
       f"as of its win. Leads still open later close less often, because the quick deciders are gone: "
       + ", ".join(f"{pct(by_snapshot[a])} of those still open on day {a}" for a in ages) + ". "
       if len(ages) > 1 else "")
    + "So each signal is compared with the **expected close rate**: that of the leads seen on the same days "
    f"(for who a lead is, on day {ages[0] if ages else 0}: the average). Its **lift** is its close rate divided by "
    f"that: a lift of 2.0 means these leads closed twice as often as comparable leads; 0.5 means half as often."
)

# %% [markdown]
# ## Too good to be true? The leak check
#
# A signal that closes nearly every lead that shows it is usually not a buying signal but
# the outcome leaking in: an activity logged *because* the deal was won (an onboarding call),
# or a field sales fills in after the deal. leadcal flags signals closing 99 % of 30 or more
# leads, signals that on their own separate customers almost perfectly, and activities
# logged mostly after the outcome. Check each before importing the points.

# %%
screen = summary.get("leakage_screen") or {"signals": [], "activities_after_outcome": []}
flags = ([f"**{s['signal']}**: {s['why']}" for s in screen["signals"]]
         + [f"**{a['activity']}**: {a['why']}" for a in screen["activities_after_outcome"]])
Markdown("**Warning, check before publishing:**\n\n" + "\n".join(f"- {f}" for f in flags) if flags else
         "Nothing flagged: no signal closes 99 % of its leads, none separates customers on its own, "
         "and no activity is logged mostly after the outcome.")

# %% [markdown]
# **How sure are we?** A close rate measured on few leads can be high or low by luck.
# So each close rate comes with a **95 % interval**: the range the true close rate very
# probably lies in. We call a signal *clearly above* only when its whole interval is above
# its expected close rate, and *clearly below* when its whole interval is below it.
# Otherwise we *can't tell*.

# %%
verdicts = np.select([rates["ci_low"] > rates["expected_close_rate"], rates["ci_high"] < rates["expected_close_rate"]],
                     ["clearly above", "clearly below"], "can't tell")
rates = rates.assign(verdict=verdicts, interval=[interval(lo, hi) for lo, hi in zip(rates["ci_low"], rates["ci_high"])])


def evidence(rows: pd.DataFrame) -> pd.DataFrame:
    """The columns a marketer reads, best close rate first."""
    return rows.sort_values("close_rate", ascending=False)[
        ["signal", "leads", "customers", "close_rate", "interval", "expected_close_rate", "lift", "verdict"]
    ].rename(columns={"close_rate": "close rate", "interval": "95 % interval", "expected_close_rate": "expected"})


# %% [markdown]
# ## Activities: what leads did

# %%
activities = rates[rates["type"] == "activity"]
counts = activities["verdict"].value_counts()
unclear = counts.get("can't tell", 0)
Markdown(
    f"Of the {len(activities)} activities, **{counts.get('clearly above', 0)}** are clearly above their expected "
    f"close rate, **{counts.get('clearly below', 0)}** clearly below, and for **{unclear}** "
    f"we can't tell them apart from comparable leads. In the chart, green bars are clearly above the "
    f"expected close rate (blue tick; the dashed line is the average lead), red ones clearly below, grey ones "
    f"can't be told apart. Hover a bar for its leads, customers and interval."
)

# %%
HoverChart(interactive.close_rates_chart(rates, average, charts.matured_population(summary, population["horizon_days"])),
           "The close rate of each activity with its 95 % interval, against its expected close rate")

# %%
table(evidence(activities), percent=["close rate", "expected"])

# %% [markdown]
# ### Repeated and recent activity
#
# Some signals count *how often* or *how recently* a lead was active ("N times or more
# within so many days"). How many times makes a difference was found in the data, not
# typed in.

# %%
table(evidence(rates[rates["type"].isin(["frequency", "recency"])]), percent=["close rate", "expected"])

# %% [markdown]
# ## Fit: who the lead is

# %%
fit = rates[rates["type"] == "fit"]
fit_counts = fit["verdict"].value_counts()
best_fit = fit.sort_values("lift", ascending=False).iloc[0]
Markdown(
    f"Of the {len(fit)} fit values (industry, company size, job level, country, source, e-mail type...), "
    f"**{fit_counts.get('clearly above', 0)}** are clearly above the average and "
    f"**{fit_counts.get('clearly below', 0)}** clearly below. The best is **{best_fit['signal']}**: "
    f"{pct(best_fit['close_rate'])} of these leads became customers ({best_fit['lift']:.1f} times the average)."
)

# %%
show(charts.close_rates_chart(rates, average, "fit",
                              population=charts.matured_population(summary, population["horizon_days"])))

# %%
table(evidence(fit), percent=["close rate", "expected"])

# %% [markdown]
# ## Signals seen too rarely
#
# A signal seen in only a handful of leads has a close rate that is mostly luck. Such a
# signal is flagged as *low support* and gets **no points** (the minimum number of leads is
# the setting `signals.min_support`).

# %%
rare = rates[rates["low_support"]]
rarest = rates.sort_values("leads").iloc[0]
if len(rare):
    answer = Markdown(f"**{len(rare)}** signal(s) were seen too rarely to trust and get no points:")
else:
    answer = Markdown(
        f"No signal was seen too rarely: all {summary['signals']} signals are backed by enough leads. "
        f"The rarest is **{rarest['signal']}**, seen in {rarest['leads']:,} leads "
        f"(close rate {pct(rarest['close_rate'])}, interval {rarest['interval']}): "
        f"see how wide its interval is. The rarest signals:"
    )
answer

# %%
table(evidence(rare if len(rare) else rates.sort_values("leads").head(5)), percent=["close rate", "expected"])

# %% [markdown]
# ## Shrinkage: small signals pulled towards the average
#
# Two leads, both customers, make a close rate of 100 %, and nobody should believe it.
# So every close rate is also given in a **shrunk** version: pulled towards the average
# close rate, strongly when the signal was seen in few leads, hardly at all when it was
# seen in thousands.

# %%
strength = summary["shrinkage_prior_strength"]
rates = rates.assign(pulled=(rates["close_rate"] - rates["shrunk_close_rate"]).abs())
pulled = rates.sort_values("pulled", ascending=False).head(8)
Markdown(
    f"The pull is as strong as **{strength:,.0f} average leads**: a signal seen in {strength:,.0f} leads "
    f"is pulled half-way to the average, one seen in ten times as many hardly moves. "
    f"The signals that moved most:"
)

# %%
table(pulled[["signal", "leads", "close_rate", "shrunk_close_rate", "lift", "shrunk_lift"]].rename(columns={
    "close_rate": "close rate", "shrunk_close_rate": "shrunk close rate", "shrunk_lift": "shrunk lift"}),
    percent=["close rate", "shrunk close rate"])

# %% [markdown]
# ## What goes into the MQL definition, and why
#
# A lead becomes an MQL (marketing-qualified lead) when its points reach the MQL threshold
# (page 3). The points that carry a lead there come from the **activities clearly above the
# average**: even the low end of their interval beats the average close rate. They are the
# buying signals.

# %%
mql_signals = rates[(rates["kind"] == "engagement") & (rates["verdict"] == "clearly above") & ~rates["low_support"]]
policy = io.read_json(MODELS / "thresholds.json")
target = policy["mql_lift_target"]
strong = mql_signals[mql_signals["lift"] >= target]["signal"].tolist()
Markdown(
    f"**{len(mql_signals)} engagement signals** are clearly above the average. "
    f"On their own, **{', '.join(strong) if strong else 'none of them'}** already close at {target:.1f} times "
    f"the average or more, the close rate asked of MQLs as a group. "
    + (f"With the points each gets (page 2), these are what push a lead to the MQL threshold of "
       f"**{policy['threshold']} points**." if policy["threshold"] is not None else
       "This run found no MQL threshold (page 3 says why).")
)

# %%
table(evidence(mql_signals).assign(points=lambda f: f["signal"].map(points)), percent=["close rate", "expected"])

# %%
unpointed = weights.loc[mql_signals["signal"]].query("status != 'scored'")
Markdown(" ".join(f"**{signal}** gets no points: {status.removesuffix(': no points')}."
                 for signal, status in unpointed["status"].items()))

# %%
not_in = rates[(rates["kind"] == "engagement") & (rates["verdict"] != "clearly above") & (rates["type"] == "activity")]
Markdown(
    "**Not buying signals**, because they are not clearly above the average: "
    + ", ".join(f"{s} (lift {lift:.2f}, {v}, {points[s]:+d} points)" for s, lift, v in
                not_in.sort_values("lift", ascending=False)[["signal", "lift", "verdict"]].itertuples(index=False))
    + ". Their points come from all signals fitted together (page 2), so they can differ from what "
    "the close rate alone suggests: a signal's own close rate also carries the effect of whatever else "
    "its leads tend to do."
)
