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
# # 3. The MQL threshold, the fit x interest matrix and the funnel
#
# A lead goes to sales as an **MQL** (marketing-qualified lead) when its points reach the
# **MQL threshold**. This page shows where that threshold sits, the other thresholds
# marketing and sales could agree on instead, what to do with each kind of lead, and how leads
# move through the funnel today.
#
# Every number on this page is read from the files of the last run (`models/`); none is typed in.

# %%
import pandas as pd
from IPython.display import Markdown, display

from pipeline.report import charts, interactive

from pipeline import io
from pipeline.report.notebooks import (CRM_PERCENT, HoverChart, crm_comparison, crm_rule, design_note, interval, pct,
                                quadrant_rows, show, table)

thresholds = io.read_json(MODELS / "thresholds.json")
funnel = io.read_json(MODELS / "funnel.json")
SNAPSHOT = funnel["population"].get("mode") == "snapshot"  # one row per lead, no dates (docs/method.md)
threshold, chosen = thresholds["threshold"], thresholds["policy"]
training, later = thresholds["training"], thresholds["validation"]

# %%
design_note(MODELS)

# %% [markdown]
# ## The MQL threshold

# %%
if threshold is None:
    verdict = Markdown(f"**This run found no MQL threshold.** {thresholds.get('warning', '')}")
else:
    verdict = Markdown(
        f"Leads with **{threshold} points or more** become MQLs. The rule agreed on "
        f"(policy *{chosen.replace('_', ' ')}*): {thresholds['how']}.\n\n"
        f"- On the leads it was chosen on, **{pct(training['mql_share'], 0)} of leads** pass it"
        + (f", about **{per_week:.0f} MQLs per week**. " if (per_week := thresholds['policies'][chosen]['mql_per_week'])
           is not None else " (the export has no dates: no rate per week). ")
        + f"They close at "
        f"**{pct(training['mql_close_rate'])}**, {training['mql_lift']:.1f} times the average lead "
        f"({pct(training['average_close_rate'])}), and hold **{pct(training['customers_captured'], 0)} of the customers**.\n"
        f"- On the **{later['leads']:,} {'held-out' if SNAPSHOT else 'later'} leads**, which played no part in "
        "choosing it, "
        f"{pct(later['mql_share'], 0)} pass it and close at **{pct(later['mql_close_rate'])}** against an "
        f"average of {pct(later['average_close_rate'])} (**{later['mql_lift']:.1f} times**); they hold "
        f"{pct(later['customers_captured'], 0)} of those leads' customers."
    )
verdict

# %%
show(charts.score_distribution_chart(
    io.read_csv(MODELS / "plots" / "score_distribution.csv"), threshold,
    population=charts.population("training leads", io.read_json(MODELS / "metrics" / "train.json")["training"],
                                 counts=False) + ", each at its highest score"))

# %% [markdown]
# What any other threshold would give: hover the curves for the MQLs per week, their close
# rate and the customers they hold at each threshold.

# %%
HoverChart(interactive.threshold_chart(
    interactive.threshold_curve(io.read_csv(MODELS / "plots" / "score_distribution.csv"), training.get("weeks")),
    threshold, training["average_close_rate"],
    charts.population(f"the {training['leads']:,} leads it was chosen on, each at its peak score"),
    min_leads=thresholds.get("min_mql_leads") or 1), "MQLs per week and their close rate at every possible threshold")

# %% [markdown]
# ## Every way to set the threshold, side by side
#
# Each policy answers a different question: *how good must an MQL be* (close-rate multiple,
# target precision), *how many can sales call* (sales capacity), *how many customers may we
# miss* (target recall), or *what pays* (cost / benefit). The ranges are 95 % intervals from
# resampling the leads. The last two columns are the later leads, unseen when choosing.


# %%
def policy_row(name: str, policy: dict) -> dict:
    """One line per policy, in business words."""
    low, high = policy.get("interval_95", {}).get("threshold") or (None, None)
    held = policy.get("validation", {})
    return {
        "policy": name.replace("_", " ") + (" (chosen)" if name == chosen else ""),
        "threshold": "none" if policy["threshold"] is None else f"{policy['threshold']}",
        "threshold range": "" if low is None else f"{low:.0f} to {high:.0f}",
        "MQLs per week": policy.get("mql_per_week"),
        "MQL close rate": policy.get("mql_close_rate"),
        "customers captured": policy.get("customers_captured"),
        "later leads: MQL close rate": held.get("mql_close_rate"),
        "later leads: lift": held.get("mql_lift"),
        "how it is set": policy["how"],
    }


policies = pd.DataFrame([policy_row(name, p) for name, p in thresholds["policies"].items()])
table(policies, percent=["MQL close rate", "customers captured", "later leads: MQL close rate"], decimals=1)

# %% [markdown]
# ## The threshold inside each CRM
#
# The threshold above is true under leadcal's own arithmetic: engagement points fade
# continuously with the half-life, and the caps apply. HubSpot fades points only in whole
# months, Account Engagement and Mautic not at all, and Account Engagement turns fit into a
# grade (F to A+, in thirds of a letter). So each export carries **its own MQL rule**, chosen
# with the same policy under that tool's arithmetic and checked on the later leads. The last two
# columns show what pasting leadcal's own threshold into the tool unchanged would do.

# %%
crm = thresholds.get("crm") or {}
comparison = crm_comparison(thresholds)
if not comparison.empty:
    crm_table = table(comparison, decimals=3, percent=CRM_PERCENT)
    own = thresholds["validation"]
    worst = max((e for e in crm.values() if e.get("at_leadcal_threshold")),
                key=lambda e: e["at_leadcal_threshold"]["validation"].get("mql_share") or 0, default=None)
    crm_text = Markdown(
        f"Pasted unchanged into **{worst['label']}**, leadcal's threshold of {threshold} points would make "
        f"**{pct(worst['at_leadcal_threshold']['validation']['mql_share'])}** of the later leads MQLs, closing at "
        f"{pct(worst['at_leadcal_threshold']['validation']['mql_close_rate'])}, instead of "
        f"{pct(own['mql_share'])} closing at {pct(own['mql_close_rate'])}. Its own rule: "
        f"**{crm_rule(worst)}**." if worst and threshold is not None else
        "Each tool's rule is in its export file (docs/crm-exports.md).")
else:
    crm_table, crm_text = Markdown("This run predates per-CRM thresholds: rerun the thresholds stage."), Markdown("")
display(crm_text)
crm_table

# %% [markdown]
# ## The fit x interest matrix: what to do with each lead
#
# Every lead gets two scores: **fit** (who it is) and **engagement** (what it did). Each is
# cut where it best separates future customers from the rest, which gives four groups, each
# with an action.

# %%
matrix = thresholds["matrix"]
Markdown(
    f"**Fit** means a fit score of **{matrix['fit_boundary']:g} points or more**; **interested** means an "
    f"engagement score of **{matrix['engagement_boundary']:g} points or more**."
)


# %%
hot = matrix["validation"]["quadrants"]["hot"]
dropped = matrix["validation"]["quadrants"]["drop"]
Markdown(
    f"On the later leads, the **hot** group closes at **{pct(hot['close_rate'])}** and the dropped group at "
    f"**{pct(dropped['close_rate'])}**. Leads the groups were learnt on:"
)

# %%
table(quadrant_rows(matrix["training"]["quadrants"]), percent=["share of leads", "close rate", "share of customers"])

# %% [markdown]
# Later leads, unseen when the groups were drawn:

# %%
table(quadrant_rows(matrix["validation"]["quadrants"]), percent=["share of leads", "close rate", "share of customers"])

# %% [markdown]
# CRMs often grade leads A to D on fit and 1 to 4 on engagement, each grade a quarter of the
# leads. The close rate in each cell (hover a cell for its leads and customers):

# %%
HoverChart(interactive.matrix_chart(
    matrix["training"]["grades"], training["average_close_rate"],
    charts.population("training leads", io.read_json(MODELS / "metrics" / "train.json")["training"], counts=False)),
    "Close rate by fit grade and engagement grade")

# %% [markdown]
# ## The funnel today
#
# How far the leads in your CRM history went. A lead counts as reaching a stage if it has that
# stage or any later one (CRMs skip stages). Only leads old enough to have had their chance
# are counted.

# %%
stages = pd.DataFrame(funnel["funnel"])
stages = stages.assign(interval=[interval(lo, hi) for lo, hi in zip(stages["rate_from_previous_low"],
                                                                    stages["rate_from_previous_high"])])
won = stages.iloc[-1]
Markdown(
    f"Of **{stages['leads'].iloc[0]:,} leads**, **{won['leads']:,}** became {won['stage']}s: "
    f"**{pct(won['rate_from_lead'])}** of all leads. Here *MQL* means an MQL in your CRM history, under the rule "
    f"you used then, not the new threshold above."
)

# %%
show(charts.funnel_chart(funnel["funnel"], population=f"matured leads (created at least "
                                                      f"{funnel['population']['horizon_days']} days before the export)"))

# %%
table(stages[["stage", "leads", "rate_from_previous", "interval", "rate_from_lead"]].rename(columns={
    "rate_from_previous": "from the stage before", "interval": "95 % interval", "rate_from_lead": "from lead"}),
    percent=["from the stage before", "from lead"])

# %% [markdown]
# ### By source
#
# The share of each source's leads that reached each stage.

# %%
by_source = pd.DataFrame(funnel["by_source"])
if by_source.empty:  # the export has no `source` attribute
    display(Markdown("The leads carry no `source` attribute, so there is no breakdown by source."))
else:
    source_table = by_source.pivot(index="source", columns="stage", values="rate_from_lead")[stages["stage"].iloc[1:]]
    source_table = source_table.rename_axis(columns=None)
    source_table = source_table.assign(leads=by_source[by_source["stage"] == stages["stage"].iloc[0]]
                                       .set_index("source")["leads"]).reset_index()
    display(table(source_table[["source", "leads", *stages["stage"].iloc[1:]]]
                  .sort_values(stages["stage"].iloc[-1], ascending=False), percent=list(stages["stage"].iloc[1:])))

# %% [markdown]
# ## Does sales follow up MQLs in time?

# %%
sla = funnel["sla"]
within = "" if SNAPSHOT else "; ".join(f"within {w['hours']:g} hours: **{pct(w['share'])}**" for w in sla["within_sla"])
waited = sla.get("hours_to_next_stage")
Markdown(
    "The export is a snapshot without dates (one row per lead): follow-up times cannot be measured."
    if SNAPSHOT else
    f"Of the **{sla['mqls_due']:,} MQLs** old enough to judge, sales **accepted {pct(sla['accepted']['share'], 0)}** "
    f"and **followed up {pct(sla['followed_up']['share'], 0)}** (accepted, or rejected). Followed up {within}. "
    f"The typical MQL waited **{waited['median'] / 24:.0f} days** for a next step "
    f"(one in ten waited more than {waited['p90'] / 24:.0f} days)."
    if sla["mqls_due"] and waited["median"] is not None else
    "The history holds no MQL stage dates that sales could have followed up (no `mql` rows in the stages), "
    "so follow-up times cannot be measured."
)

# %% [markdown]
# ## How long each step takes

# %%
cycle = funnel["durations"]["sales_cycle"]
Markdown(
    "The export is a snapshot without dates (one row per lead): how long each step takes is unknown."
    if SNAPSHOT else
    f"From lead to customer takes **{cycle['median_days']:.0f} days** for the typical customer; nine in ten "
    f"close within {cycle['p90_days']:.0f} days ({cycle['customers']:,} customers)."
)

# %%
steps = pd.DataFrame(funnel["durations"]["transitions"])
None if steps.empty else table(steps.assign(step=steps["from_stage"] + " to " + steps["to_stage"])[["step", "leads", "median_days", "p90_days"]]
      .rename(columns={"median_days": "typical days (median)", "p90_days": "days for nine in ten"}), decimals=0)

# %% [markdown]
# ## Which signals bring MQLs that sales rejects?
#
# An MQL that sales rejects (it never became a sales-qualified lead) costs a sales touch. These
# signals show up in rejected MQLs more often than in the average MQL, even at the low end of
# their interval:

# %%
feedback = funnel["rejection_feedback"]
rejected = pd.DataFrame(feedback["signals"])
rejected = rejected[rejected["relative_low"] > 1]
Markdown(
    f"On average sales rejects **{pct(feedback['overall']['rate'], 0)}** of MQLs. "
    + (f"**{len(rejected)}** signal(s) stand out:" if len(rejected) else "No signal stands out.")
)

# %%
table(rejected[["signal", "mqls", "rejected", "rejection_rate", "relative"]].rename(columns={
    "mqls": "MQLs", "rejection_rate": "rejected share", "relative": "times the average"}),
    percent=["rejected share"])

# %% [markdown]
# ## Conversion by month
#
# The last months have not had time to convert yet: their lower rates are not a trend.

# %%
show(charts.monthly_trend_chart(
    io.read_csv(MODELS / "plots" / "funnel_by_month.csv"), counts=funnel["by_month"],
    export_date=funnel["population"].get("export_date"), horizon_days=funnel["population"]["horizon_days"],
    population="all leads by month of creation (SQL → customer: matured leads only)"))
