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
# # 2. The points table, and how well it picks future customers
#
# This page shows the points you paste into the CRM: what each signal adds to a lead's
# score, how sure we are of each number, and how fast interest fades. Then it checks the
# table on **later leads it never saw**, side by side with a predictive model built from the
# same signals.
#
# Every number on this page is read from the files of the last run (`models/`); none is typed in.

# %%
import pandas as pd
from IPython.display import Markdown

from pipeline.report import charts, interactive

from pipeline import io
from pipeline.report.notebooks import HoverChart, design_note, pct, show, table

weights = io.read_json(MODELS / "weights.json")
signals = pd.DataFrame(weights["signals"])
train = io.read_json(MODELS / "metrics" / "train.json")
scored = signals[signals["status"] == "scored"]
pdo = weights["points_to_double_odds"]

# %%
design_note(MODELS)

# %% [markdown]
# ## The points

# %%
fitted = weights["fitted_on"]
Markdown(
    f"**{len(scored)} signals carry points**: {(scored['kind'] == 'engagement').sum()} engagement signals "
    f"(what the lead did) and {(scored['kind'] == 'fit').sum()} fit values (who the lead is). "
    f"They were fitted on {fitted['leads']:,} leads created from {fitted['from']} to {fitted['to']}.\n\n"
    f"**{pdo:.0f} more points double a lead's odds of closing.** Fit points are centred: 0 means "
    f"an average fit, negative points a worse one. Negative engagement points mean the activity "
    f"makes a lead *less* likely to close. All signals are fitted together, so a webinar attendee "
    f"is not counted twice for registering and attending."
)

# %% [markdown]
# The black lines show how far each signal's points moved when the table was refitted on
# resampled leads: a long line means the data cannot pin that number down, so it is not
# worth fine-tuning by hand in the CRM. Hover a bar for the signal's leads, close rate and lift.

# %%
HoverChart(interactive.points_chart(signals, charts.population("fitted on the training leads", fitted)),
           "The points of every scored signal with its 95 % range")


# %%
def points_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Points first, with their bootstrap range (when the run refitted) and the evidence beside them."""
    if "points_p025" in rows.columns:
        spread = [interactive.range_text(lo, hi) for lo, hi in zip(rows["points_p025"], rows["points_p975"])]
    else:  # weights.bootstrap_samples = 0
        spread = ["not measured"] * len(rows)
    return rows.assign(spread=spread).sort_values("points", ascending=False)[
        ["signal", "points", "spread", "leads", "close_rate", "lift"]
    ].rename(columns={"spread": "95 % of refits", "close_rate": "close rate"})


# %% [markdown]
# ### Engagement points (per activity, when it is fresh)

# %%
table(points_rows(scored[scored["kind"] == "engagement"]), percent=["close rate"])

# %% [markdown]
# ### Fit points

# %%
table(points_rows(scored[scored["kind"] == "fit"]), percent=["close rate"])

# %%
unscored = signals[signals["status"] != "scored"]
Markdown("**Signals without points:** " + (
    "; ".join(f"{s} ({status})" for s, status in zip(unscored["signal"], unscored["status"]))
    if len(unscored) else "none: every signal carries points."))

# %% [markdown]
# ## Interest fades: the half-life of engagement points

# %%
half_life = weights["half_life_days"]
engagement = scored[scored["kind"] == "engagement"].sort_values("points", ascending=False)
if half_life:
    low, high = weights["half_life_interval_95"] or (None, None)
    fade_text = (f"Engagement points **halve every {half_life:.1f} days**: {weights['half_life_source']}"
                 + (f", 95 % interval {low:.1f} to {high:.1f} days" if low is not None else "") + ". ")
    if len(engagement):
        top = engagement.iloc[0]
        after = {days: round(top["points"] * 2 ** (-days / half_life)) for days in (7, 30)}
        fade_text += (f"Example: a fresh **{top['signal']}** adds {top['points']} points; a week old it adds "
                      f"{after[7]}, a month old {after[30]}. ")
    fade = Markdown(fade_text + "Fit points do not fade.")
else:
    fade = Markdown(f"Engagement points **do not fade** in this run: {weights['half_life_source']}.")
fade

# %%
caps = weights.get("caps") or {}
Markdown("**Caps** (the most points a group of signals may add): " + (
    ", ".join(f"{group}: {cap:g} points" for group, cap in sorted(caps.items())) if caps else
    "none. A lead's score is the plain sum of its points."))

# %% [markdown]
# ## How sure are the points?

# %%
boot = weights["bootstrap"]
refitted = bool(boot.get("samples")) and boot.get("rank_spearman") and "points_sd" in scored.columns
shaky = scored.sort_values("points_sd", ascending=False).head(5) if refitted else scored.head(0)
Markdown(
    f"The table was refitted on **{boot['samples']} resamples** of the leads. The refitted tables "
    f"rank leads almost the same way: rank agreement {boot['rank_spearman']['median']:.2f} in the "
    f"middle case and {boot['rank_spearman']['min']:.2f} at worst (1 = identical order). "
    f"The points that move most from one refit to the next:"
    if refitted else
    "This run did not refit the table on resampled leads (`weights.bootstrap_samples` is 0 in "
    "params.yaml), so how far each number could move is **not measured**. Treat small differences "
    "between points with care."
)

# %%
table(points_rows(shaky).assign(**{"typical move (points)": shaky.get("points_sd", pd.Series(dtype=float))})
      .sort_values("typical move (points)", ascending=False), percent=["close rate"], decimals=1)

# %% [markdown]
# ## The points table against a predictive model, on later leads
#
# Both were built on older leads and judged on the next few months, which they had never
# seen. This was repeated for several later periods, each time rebuilt on the months before
# it. What the measures mean:
#
# - **AUC**: the chance that a random customer scores above a random lead that did not buy
#   (0.5 = coin toss, 1 = perfect).
# - **PR-AUC**: how well the top of the ranking is filled with customers (higher is better; a
#   random order scores the close rate itself).
# - **Top-10 % lift**: how many times more often the best-scored 10 % of leads closed than the
#   average lead of that period.

# %%
model, points_table = train["model"], train["points_table"]
model_auc, points_auc = model["mean"]["auc"], points_table["mean"]["auc"]
spread = max(model["sd"]["auc"], points_table["sd"]["auc"])
Markdown(
    f"Over the {len(model['folds'])} later periods, the **points table reaches an AUC of {points_auc:.3f}** "
    f"and the **predictive model {model_auc:.3f}**. The gap ({points_auc - model_auc:+.3f}) is "
    + ("smaller than how much each moves from one period to the next"
       if abs(points_auc - model_auc) < spread else "larger than how much each moves from one period to the next")
    + f" ({spread:.3f}). The top 10 % of leads by points closed "
    f"**{points_table['mean']['top_decile_lift']:.1f} times** as often as the average lead and held "
    f"**{pct(points_table['mean']['top_decile_capture'], 0)}** of the customers "
    f"(model: {model['mean']['top_decile_lift']:.1f} times, {pct(model['mean']['top_decile_capture'], 0)})."
)

# %%
folds = pd.DataFrame({
    "period": [f"{f['from']} to {f['to']}" for f in model["folds"]],
    "leads": [f["leads"] for f in model["folds"]],
    "customers": [f["customers"] for f in model["folds"]],
    **{f"{label} ({who})": [f[key] for f in source["folds"]]
       for key, label in (("auc", "AUC"), ("pr_auc", "PR-AUC"), ("top_decile_lift", "top-10 % lift"))
       for who, source in (("points", points_table), ("model", model))},
})
table(folds, decimals=3)

# %% [markdown]
# ## Do the predicted chances come true? Calibration

# %%
curves = {"predictive model": io.read_csv(MODELS / "plots" / "calibration_model.csv"),
          "points table": io.read_csv(MODELS / "plots" / "calibration_points.csv")}
last = model["folds"][-1]
Markdown(
    f"Both turn a lead's score into a chance of closing. The {last['leads']:,} leads of the last period "
    f"({last['from']} to {last['to']}) are sorted into {len(curves['points table'])} equal groups by that chance; "
    f"each dot compares what was predicted with what really happened. On the dotted line, predictions are exactly right."
)

# %%
show(charts.calibration_chart(curves, population=charts.population("held-out months", train["validation"]),
                             unit="rows" if train["validation"].get("rows", 0) != train["validation"]["leads"] else "leads"))

# %%
Markdown(
    f"On average the predicted close rates are off by **{100 * points_table['mean']['ece']:.1f} percentage points** "
    f"for the points table and {100 * model['mean']['ece']:.1f} for the model (expected calibration error, "
    f"mean of the {len(model['folds'])} periods)."
)

# %% [markdown]
# ## Cumulative gain: how many customers sales reaches by calling the best leads first

# %%
gain_file = MODELS / "plots" / "cumulative_gain.csv"
gain = io.read_csv(gain_file) if gain_file.exists() else None
gain_chart = show(charts.cumulative_gain_chart(
    gain, population=charts.population("held-out months", train["validation"]))) if gain is not None else Markdown(
    "This run has no cumulative-gain table yet (`plots/cumulative_gain.csv`): re-run the pipeline to get it.")
gain_chart

# %%
if gain is not None:
    fifth = gain.iloc[(gain["share_of_leads"] - 0.2).abs().argmin()]
    reach = Markdown(
        f"Calling the top **{pct(fifth['share_of_leads'], 0)}** of the later leads, best points first, reaches "
        f"**{pct(fifth['points_table'], 0)} of the customers** (predictive model: {pct(fifth['model'], 0)}; "
        f"calling at random: {pct(fifth['random'], 0)})."
    )
else:
    reach = Markdown("")
reach
