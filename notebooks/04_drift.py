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
# # 4. What changed since the last publication
#
# The points table and the MQL threshold that the CRM uses are the **publication**. A new run
# replaces it only when it is good enough on later leads; when it moves a lot, the move is
# flagged so that someone looks before the CRM is updated. This page compares the current
# publication with the one it replaced: the threshold, every signal whose points, close rate or
# lift moved, and the signals that appeared or disappeared.
#
# Every number on this page is read from the files of the last run (`models/published/`); none is typed in.

# %%
import pandas as pd
from IPython.display import Markdown

from pipeline import io
from pipeline.report.notebooks import signal_changes, table

published = MODELS / "published"
FILES = ("weights.json", "thresholds.json")
WORDS = {"points_before": "points before", "points_after": "points after", "close_rate_before": "close rate before",
         "close_rate_after": "close rate after", "lift_before": "lift before", "lift_after": "lift after"}


FIRST_TIME = "Nothing to compare yet (no earlier publication). From the next publication on, this shows {}."


def publication(folder: Path) -> dict | None:
    """A points table and threshold (weights.json, thresholds.json) in `folder`, or None if it has none."""
    if not all((folder / name).exists() for name in FILES):
        return None
    return {"weights": io.read_json(folder / "weights.json"), "thresholds": io.read_json(folder / "thresholds.json")}


record = io.read_json(published / "publication.json") if (published / "publication.json").exists() else None
status = record["status"] if record else "nothing published"
drift = (record or {}).get("drift", {})
current, previous, rejected = publication(published), publication(published / "previous"), publication(published / "rejected")

# %% [markdown]
# ## Status of the last run

# %%
if record is None:
    before, after = None, None
    story = "**Nothing has been published yet**, so there is nothing to compare. Run the pipeline to make a first publication."
elif status.startswith("rejected"):
    before, after = current, rejected
    reasons = "".join(f"\n- {reason}" for reason in record.get("reasons", []))
    story = (f"**The last run was not published** ({status}). It was not good enough on later leads:{reasons}\n\n"
             + ("The CRM keeps the current publication. Below: what the rejected run **would have** changed."
                if current else "Nothing has been published yet. Below: what the rejected run proposed."))
elif previous is None or drift.get("note") == "first publication":
    before, after = None, current
    story = ("**This is the first publication**: there is no earlier one, so there is nothing to compare yet. "
             "From the next publication on (a later `dvc repro` on a newer export), this page shows what changed "
             "before the new points go into the CRM: drift flags beyond the limits in `params.yaml` (`publish:`), "
             "how the MQL threshold moved and what that does to the MQL share and their close rate, every signal "
             "whose points moved (biggest first), the signals whose close rate and lift moved most, and the "
             "signals added to or removed from the points table. Below: what is published now.")
else:
    before, after = previous, current
    story = "**The last run was published.** Below: how it differs from the publication it replaced."
    if drift.get("note"):
        story += f" (Note: {drift['note']}.)"
Markdown(story)

# %% [markdown]
# ## Drift flags
#
# A flag means a move bigger than the limits set in `params.yaml` (`publish:`): check it
# before importing the points into the CRM.

# %%
flags = drift.get("flags", [])
Markdown("\n".join(f"- ⚠ {flag}" for flag in flags) if flags else
         "No drift flags: the last run was rejected, so its drift was not measured." if status.startswith("rejected") else
         "No drift flags." if before is not None else "No drift flags: there is nothing to compare with.")

# %% [markdown]
# ## The MQL threshold

# %%
if after is None:
    moved = Markdown("No threshold is published.")
elif before is None:
    whose = "proposed by the rejected run" if status.startswith("rejected") else "published"
    moved = Markdown(f"The MQL threshold {whose} is **{after['thresholds']['threshold']} points**.")
else:
    old, new = before["thresholds"]["threshold"], after["thresholds"]["threshold"]
    would = "would have " if status.startswith("rejected") else ""  # a rejected run changed nothing
    moved = Markdown(
        f"The MQL threshold **{would}stayed at {new} points**." if old == new else
        f"The MQL threshold **{would}moved from {old} to {new} points ({new - old:+d})**." if None not in (old, new) else
        f"The MQL threshold {would}changed from {old} to {new}."
    )
moved

# %%
if before is not None and after is not None:
    measures = {"mql_share": "share of leads above it", "mql_close_rate": "their close rate",
                "customers_captured": "share of customers they hold"}
    effect = table(pd.DataFrame([
        {"leads": label, "measure": name, "before": before["thresholds"][key].get(field),
         "after": after["thresholds"][key].get(field)}
        for key, label in (("training", "leads it was chosen on"), ("validation", "later leads"))
        for field, name in measures.items()]), percent=["before", "after"])
else:
    effect = Markdown("")
effect

# %% [markdown]
# ## Signals whose points moved

# %%
if before is not None and after is not None:
    changes = signal_changes(pd.DataFrame(before["weights"]["signals"]), pd.DataFrame(after["weights"]["signals"]))
    moved_signals = changes[(changes["change"] != 0) | (changes["status"] != "kept")]
    if len(moved_signals):
        top = moved_signals.iloc[0]
        biggest = (f"The biggest move: **{top['signal']}**, from {top['points_before']:.0f} to "
                   f"{top['points_after']:.0f} points ({top['change']:+.0f})." if top["status"] == "kept" else
                   f"The biggest change: **{top['signal']}** was {top['status']}.")
        summary = Markdown(f"**{len(moved_signals)} of {len(changes)} signals** changed points. {biggest}")
    else:
        summary = Markdown(f"No signal's points changed ({len(changes)} signals).")
else:
    changes = moved_signals = None
    summary = Markdown(FIRST_TIME.format("every signal whose points moved, biggest first, with its close rate "
                                         "before and after"))
summary

# %%
if moved_signals is not None and len(moved_signals):
    shown = moved_signals.assign(change=[f"{c:+.0f}" for c in moved_signals["change"]]).rename(columns=WORDS)
    signals_table = table(shown.drop(columns="kind"), percent=["close rate before", "close rate after"], decimals=2)
else:
    signals_table = Markdown("")
signals_table

# %% [markdown]
# ## Signals whose evidence moved most
#
# Even with the same points, a signal's close rate and lift move as new leads come in. The
# biggest moves in lift:

# %%
if changes is not None:
    kept = changes[changes["status"] == "kept"]
    kept = kept.assign(lift_move=(kept["lift_after"] - kept["lift_before"]).abs()).sort_values("lift_move", ascending=False)
    kept = kept[(kept["lift_move"] > 0) | (kept["close_rate_after"] != kept["close_rate_before"])]
    lifts = table(kept.head(8)[["signal", "close_rate_before", "close_rate_after", "lift_before", "lift_after"]]
                  .rename(columns=WORDS), percent=["close rate before", "close rate after"]) if len(kept) else \
        Markdown("No signal's close rate or lift moved.")
else:
    lifts = Markdown(FIRST_TIME.format("the eight signals whose lift moved most, even where their points did not"))
lifts

# %% [markdown]
# ## Signals added or removed

# %%
if changes is not None:
    added, removed = (changes.loc[changes["status"] == s, "signal"].tolist() for s in ("added", "removed"))
    listed = Markdown(
        f"**Added** (new in the points table): {', '.join(added) if added else 'none'}.\n\n"
        f"**Removed** (no longer in the points table): {', '.join(removed) if removed else 'none'}."
    )
else:
    listed = Markdown(FIRST_TIME.format("the signals new to the points table and those it no longer holds"))
listed

# %% [markdown]
# ## What is published now

# %%
in_use = current or after  # after a rejection the CRM keeps the current publication, if there is one
if in_use is not None:
    points = pd.DataFrame(in_use["weights"]["signals"])
    points = points.assign(size=points["points"].abs()).sort_values(["size", "signal"], ascending=[False, True])
    label = f"published (MQL threshold {in_use['thresholds']['threshold']} points)" if current else \
        f"proposed by the rejected run (MQL threshold {in_use['thresholds']['threshold']} points)"
    now = table(points.head(10)[["signal", "kind", "points", "close_rate", "lift"]].rename(
        columns={"close_rate": "close rate"}), percent=["close rate"])
    heading = Markdown(f"The {min(10, len(points))} signals with the most points (up or down), as {label}:")
else:
    heading, now = Markdown("Nothing is published yet."), Markdown("")
heading

# %%
now
