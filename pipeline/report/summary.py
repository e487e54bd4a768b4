"""The report's front page (models/report/index.html): what a marketer needs from one run, on one page.

Four answers, each read from the run's artifacts and never typed in:

1. the MQL threshold and what it means in MQLs per week, and what any other threshold would give;
2. the points table to put in the CRM, with how sure each number is;
3. the fit x interest matrix and what to do with each group;
4. what changed since the last publication.

A run the publish stage rejected says so first (`rejected_banner`): its numbers are shown for
review, and the CRM keeps the current publication, so the page must not read as an instruction.

Then links to the four notebooks, which explain each part at length. The page opens offline
(pipeline.report.page): sortable tables, Vega-Lite charts with hover details, nothing from a CDN.
`summary_page` is a pure function of the artifacts' contents; `read` is the I/O edge.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.artifacts import PUBLICATION, PUBLISHED, THRESHOLDS, WEIGHTS
from pipeline.design import SNAPSHOT_NOTE
from pipeline.report import interactive
from pipeline.report.charts import population
from pipeline.report.page import CSS, network_references, pct, scripts, sortable_table, vega_chart

PAGE_NAME = "index.html"
MOVED_SIGNALS_SHOWN = 15

PAGE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1000px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
nav a { margin-right: 1.2em; } .population { color: #555; font-size: 0.9em; }
.headline { font-size: 1.15em; } .banner { background: #fff4d6; border-left: 4px solid #b8860b; padding: 0.6em 1em; }
table.leadcal { border-collapse: collapse; margin: 0.6em 0 1.2em 0; font-size: 0.92em; }
table.leadcal th, table.leadcal td { border-bottom: 1px solid #e3e3e3; padding: 0.25em 0.7em; text-align: left; }
table.leadcal caption { text-align: left; color: #555; padding-bottom: 0.3em; }
figure { margin: 0; }
"""


@dataclass(frozen=True)
class Publication:
    """The published points table and threshold of a run, and what publish decided about it."""

    weights: Mapping[str, object] | None
    thresholds: Mapping[str, object] | None


@dataclass(frozen=True)
class Inputs:
    """Everything the page shows, as read from a models folder."""

    weights: Mapping[str, object]
    thresholds: Mapping[str, object]
    train: Mapping[str, object]
    distribution: pd.DataFrame
    record: Mapping[str, object] | None  # published/publication.json
    current: Publication
    previous: Publication
    rejected: Publication
    pages: Sequence[tuple[str, str]]  # (file name, title) of the notebooks, in reading order


def _publication(folder: Path) -> Publication:
    def read(name: str) -> Mapping[str, object] | None:
        return io.read_json(folder / name) if (folder / name).exists() else None

    return Publication(read(WEIGHTS), read(THRESHOLDS))


def read(models: Path, pages: Sequence[tuple[str, str]]) -> Inputs:
    """The artifacts the page is drawn from (the notebooks stage depends on each)."""
    published = models / PUBLISHED
    record = published / PUBLICATION
    return Inputs(
        weights=io.read_json(models / WEIGHTS), thresholds=io.read_json(models / THRESHOLDS),
        train=io.read_json(models / "metrics" / "train.json"),
        distribution=io.read_csv(models / "plots" / "score_distribution.csv"),
        record=io.read_json(record) if record.exists() else None,
        current=_publication(published), previous=_publication(published / "previous"),
        rejected=_publication(published / "rejected"), pages=pages)


def _e(text: object) -> str:
    return html.escape(str(text))


# --- the four sections --------------------------------------------------------------------------

def _no_threshold_reason(thresholds: Mapping[str, object]) -> str:
    """Why a run has no threshold: thresholds.json's warning (what the thresholds stage logged), else
    the cap or fallback note; the stage writes these, the page never guesses."""
    fallback = thresholds.get("fallback")
    if isinstance(fallback, Mapping):
        fallback = fallback.get("reason")
    return str(thresholds.get("warning") or thresholds.get("capped_because") or fallback or "no score met the policy")


def _against_the_average(lift: object) -> str:
    """', 2.4x the average' or, when thresholds.json has no lift (null: nothing to divide by),
    ' (lift n/a) against the average'."""
    return " (lift n/a) against the average" if lift is None or pd.isna(lift) else f", {float(lift):.1f}x the average"


def threshold_section(inputs: Inputs) -> str:
    """The threshold in one sentence (MQLs per week, their close rate against the average, customers
    captured), the same figures on the later leads, and the threshold curve."""
    t = inputs.thresholds
    training, later = t["training"], t.get("validation") or {}
    chosen = t["policies"].get(t["policy"], {}) if isinstance(t.get("policies"), Mapping) else {}
    weeks = training.get("weeks")
    threshold = t.get("threshold")
    if threshold is None:
        headline = f"<p class='headline'><b>No MQL threshold could be chosen</b>: {_e(_no_threshold_reason(t))}.</p>"
    else:
        per_week = chosen.get("mql_per_week")
        band = (chosen.get("interval_95") or {}).get("mql_per_week")
        volume = (f"about <b>{per_week:,.0f} MQLs a week</b>"
                  + (f" (95 % range {band[0]:,.0f} to {band[1]:,.0f})" if band else "")
                  + f", {pct(training['mql_share'])} of leads" if per_week else
                  f"<b>{pct(training['mql_share'])} of leads</b> (a snapshot export has no weeks)")
        headline = (
            f"<p class='headline'>A lead becomes an MQL at <b>{threshold} points</b>: {volume}. "
            f"They closed at <b>{pct(training['mql_close_rate'])}</b>{_against_the_average(training.get('mql_lift'))} "
            f"{pct(training['average_close_rate'])}, and hold {pct(training['customers_captured'])} of the customers.")
        if later.get("leads"):
            headline += (f" On later leads, unseen when it was chosen: {pct(later['mql_share'])} were MQLs, closing at "
                         f"{pct(later['mql_close_rate'])} against {pct(later['average_close_rate'])}, holding "
                         f"{pct(later['customers_captured'])} of the customers.")
        headline += f"</p><p class='population'>How it was chosen: {_e(t.get('how', ''))}.</p>"
    rows = pd.DataFrame([
        {"leads": label, "leads counted": int(part["leads"]), "MQL share": part.get("mql_share"),
         "MQL close rate": part.get("mql_close_rate"), "average close rate": part.get("average_close_rate"),
         "customers captured": part.get("customers_captured")}
        for label, part in (("leads it was chosen on", training), ("later leads", later)) if part.get("leads")])
    figures = sortable_table(rows, percent=["MQL share", "MQL close rate", "average close rate", "customers captured"])
    curve = interactive.threshold_curve(inputs.distribution, weeks)
    chart = interactive.threshold_chart(curve, threshold, training["average_close_rate"],
                                        population(f"the {int(training['leads']):,} leads it was chosen on, each at its peak score"),
                                        min_leads=int(t.get("min_mql_leads") or 1))
    return (f"<h2 id='threshold'>The MQL threshold</h2>{headline}{figures}"
            + vega_chart(chart, "MQLs per week and their close rate at every possible threshold") + crm_table(t))


def crm_table(thresholds: Mapping[str, object]) -> str:
    """Each CRM's own MQL rule (thresholds.json "crm", pipeline.core.crm_scoring) and what it does on the later
    leads, beside what leadcal's threshold pasted unchanged would do there. Empty for an older run."""
    from pipeline.report.notebooks import CRM_PERCENT, crm_comparison

    rows = crm_comparison(thresholds)
    if rows.empty:
        return ""
    return ("<h3>The threshold inside each CRM</h3><p>HubSpot decays points only in whole months, Account Engagement "
            "and Mautic not at all, and Account Engagement grades fit instead of adding points: each export file "
            "carries the rule chosen for its own tool (docs/crm-exports.md).</p>"
            + sortable_table(rows.drop(columns="AUC"), percent=CRM_PERCENT))


def points_section(inputs: Inputs) -> str:
    """The points table as a chart with hover details and as a sortable table."""
    w = inputs.weights
    signals = pd.DataFrame(w["signals"])
    scored = signals[signals["status"] == "scored"]
    fitted = population("fitted on the training leads", w.get("fitted_on"))
    low, high, has_range = interactive.points_interval(scored)
    rows = scored.assign(range_low=low, range=[interactive.range_text(lo, hi) if has_range else "not measured"
                                                 for lo, hi in zip(low, high)])
    rows = rows.sort_values(["points", "signal"], ascending=[False, True], kind="stable")
    rows = rows.reindex(columns=["signal", "kind", "points", "range", "range_low", "leads", "customers", "close_rate", "lift"])
    rows = rows.rename(columns={"range": "95 % range of refits", "close_rate": "close rate"})
    pdo = w.get("points_to_double_odds")
    decay = w.get("half_life_days")
    facts = [f"<b>{len(scored)} signals carry points</b> ({(scored['kind'] == 'engagement').sum()} engagement, "
             f"{(scored['kind'] == 'fit').sum()} fit)."]
    if pdo:
        facts.append(f"{pdo:.0f} more points double a lead's odds of closing.")
    if decay:
        facts.append(f"Engagement points halve every {decay:.0f} days.")
    table = sortable_table(rows, percent=["close rate"], sort_by={"95 % range of refits": "range_low"},
                           caption="Click a header to sort. The 95 % range: how far the points moved over the bootstrap refits.")
    chart = interactive.points_chart(signals, fitted)
    return (f"<h2 id='points'>The points table</h2><p>{' '.join(facts)}</p><p class='population'>{_e(fitted)}</p>"
            + vega_chart(chart, "The points of every scored signal with its 95 % range") + table)


def matrix_section(inputs: Inputs) -> str:
    """The four groups with their action, on the training and the later leads, and the A-D x 1-4 grid."""
    matrix = inputs.thresholds.get("matrix")
    if not matrix:
        return "<h2 id='matrix'>Fit x interest</h2><p>No matrix: the run has no fit or no engagement signals.</p>"
    from pipeline.report.notebooks import quadrant_rows

    rows = quadrant_rows(matrix["training"]["quadrants"], (matrix.get("validation") or {}).get("quadrants", {}))
    # :g, not :.0f: a boundary of 12.5 points must not read "12 points or more"
    rules = (f"<p><b>Fit</b> means a fit score of <b>{matrix['fit_boundary']:g} points or more</b>; "
             f"<b>interested</b> an engagement score of <b>{matrix['engagement_boundary']:g} points or more</b>.</p>")
    table = sortable_table(rows, percent=["share of leads", "close rate", "share of customers", "later leads: close rate"])
    average = inputs.thresholds["training"]["average_close_rate"]
    chart = interactive.matrix_chart(matrix["training"]["grades"], average,
                                     population("training leads", inputs.train.get("training"), counts=False))
    return (f"<h2 id='matrix'>Fit x interest: what to do with each lead</h2>{rules}{table}"
            + vega_chart(chart, "Close rate by fit grade and engagement grade"))


def _rejected(inputs: Inputs) -> bool:
    """Whether publish refused the run these artifacts come from (publication.json status 'rejected: ...')."""
    return inputs.record is not None and str(inputs.record.get("status", "")).startswith("rejected")


def rejected_banner(inputs: Inputs) -> str:
    """For a run publish refused: said first, before any number, since every number below is that run's
    and none of it is in the CRM. Empty for a published run."""
    if not _rejected(inputs):
        return ""
    reasons = "".join(f"<li>{_e(reason)}</li>" for reason in inputs.record.get("reasons") or [])
    kept = inputs.current.thresholds
    if kept is not None and kept.get("threshold") is not None:
        crm = (f"The CRM keeps the current publication (MQL threshold <b>{_e(kept['threshold'])} points</b>, "
               "and its points table): change nothing in the CRM.")
    elif kept is not None:
        crm = "The CRM keeps the current publication: change nothing in the CRM."
    else:
        crm = "Nothing is published yet: there is no points table or threshold to put in the CRM."
    return (f"<div class='banner'><p><b>The last run was not published</b> ({_e(inputs.record.get('status'))}). "
            f"Why:</p><ul>{reasons}</ul><p>{crm} The numbers below are the rejected run's, for review only.</p></div>")


def changes_section(inputs: Inputs) -> str:
    """Status of the last publication, the threshold move, drift flags and the signals whose points moved."""
    from pipeline.report.notebooks import signal_changes

    record = inputs.record
    heading = "<h2 id='changes'>What changed since the last publication</h2>"
    if record is None:
        return heading + "<p>Nothing has been published yet.</p>"
    rejected = _rejected(inputs)
    before, after = (inputs.current, inputs.rejected) if rejected else (inputs.previous, inputs.current)
    drift = record.get("drift") or {}
    parts = []
    if rejected and (before.weights is None or before.thresholds is None):
        return heading + ("<p>The last run was not published (why: at the top of this page) and nothing is published "
                          "yet, so there is nothing to compare.</p>")
    if rejected:
        parts.append("<p>The last run was not published (why: at the top of this page); the CRM keeps the current "
                     "publication. Below: what the rejected run would have changed.</p>")
    if before.weights is None or before.thresholds is None or drift.get("note") == "first publication":
        parts.append("<p><b>This is the first publication</b>: there is nothing to compare yet. From the next publication "
                     "on, this shows the drift flags, how the threshold moved and every signal whose points moved.</p>")
        return heading + "".join(parts)
    if after.weights is None or after.thresholds is None:
        return heading + "".join(parts) + "<p>No publication to compare.</p>"
    old, new = before.thresholds.get("threshold"), after.thresholds.get("threshold")
    would = "would have " if rejected else ""
    if new is None:
        moved = (f"The run <b>{would}had no MQL threshold</b>"
                 + (f" (the current publication's: {old} points)." if old is not None else "."))
    elif old is None:
        moved = f"The MQL threshold <b>{would}become {new} points</b> (there was none)."
    else:
        moved = (f"The MQL threshold <b>{would}stayed at {new} points</b>." if old == new else
                 f"The MQL threshold <b>{would}moved from {old} to {new} points</b>.")
    flags = drift.get("flags") or []
    if rejected:  # publish measures drift only for a run it publishes
        parts.append(f"<p>{moved} Drift is not measured for a rejected run: compare the points below by hand.</p>")
    else:
        parts.append(f"<p>{moved} " + (f"<b>{len(flags)} drift flag(s)</b>: check them before updating the CRM.</p><ul>"
                                       + "".join(f"<li>{_e(flag)}</li>" for flag in flags) + "</ul>" if flags else
                                       "No drift flags.</p>"))
    changes = signal_changes(pd.DataFrame(before.weights["signals"]), pd.DataFrame(after.weights["signals"]))
    changed = changes[(changes["change"] != 0) | (changes["status"] != "kept")]
    if changed.empty:
        parts.append(f"<p>No signal's points changed ({len(changes)} signals).</p>")
    else:
        shown = changed.head(MOVED_SIGNALS_SHOWN)[["signal", "status", "points_before", "points_after", "change",
                                                   "close_rate_before", "close_rate_after"]]
        shown = shown.rename(columns=lambda c: c.replace("_", " "))
        more = f" (the {MOVED_SIGNALS_SHOWN} biggest moves; notebook 4 lists all)" if len(changed) > MOVED_SIGNALS_SHOWN else ""
        parts.append(f"<p><b>{len(changed)} of {len(changes)} signals</b> changed points{more}.</p>"
                     + sortable_table(shown, percent=["close rate before", "close rate after"], decimals=0))
    return heading + "".join(parts)


def summary_page(inputs: Inputs) -> str:
    """The whole page, as one self-contained HTML document."""
    snapshot = inputs.thresholds["training"].get("weeks") is None and inputs.train.get("validated_on") == SNAPSHOT_NOTE
    banner = (f"<p class='banner'><b>Snapshot export (one row per lead, no dates)</b>: {_e(SNAPSHOT_NOTE)}. No MQLs "
              "per week, no decay; a column filled after the deal would leak into every number here.</p>"
              if snapshot else "")
    nav = "".join(f"<a href='#{anchor}'>{label}</a>" for anchor, label in
                  (("threshold", "Threshold"), ("points", "Points"), ("matrix", "Fit x interest"), ("changes", "Changes")))
    pages = "".join(f"<li><a href='{_e(name)}'>{_e(title)}</a></li>" for name, title in inputs.pages)
    rejected = rejected_banner(inputs)
    heading = ("Lead scoring: a run that was not published, for review" if rejected else
               "Lead scoring: what to put in the CRM")
    body = (f"<h1>{heading}</h1>{rejected}"
            f"<p class='population'>Every number here is read from this run's files in <code>models/</code>; "
            f"{_e(population('training leads', inputs.train.get('training')))}; "
            f"{_e(population('later leads (held out)', inputs.train.get('validation')))}.</p>"
            f"<nav>{nav}</nav>{banner}"
            + threshold_section(inputs) + points_section(inputs) + matrix_section(inputs) + changes_section(inputs)
            + f"<h2 id='notebooks'>The full report</h2><ol>{pages}</ol>")
    document = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
                f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
                f"<title>Lead scoring summary</title><style>{PAGE_CSS}{CSS}</style></head>"
                f"<body>{body}\n</body></html>\n")
    end = document.rindex("</body>")
    document = f"{document[:end]}{scripts(document)}\n{document[end:]}"
    if leaks := network_references(document):  # a bug in this module, never the data's fault
        raise AssertionError(f"the summary page would load from the network: {leaks[:3]}")
    return document
