"""The report's front page (pipeline.report.summary), built from a small hand-made run: what it says when
the run was rejected, when it has no threshold or no lift, and how it writes boundaries and ranges.

Pure tests: no pipeline run, no files; `inputs` builds summary.Inputs the way summary.read would.
"""

from __future__ import annotations

import dataclasses
import html
import re

import pandas as pd

from pipeline.report import summary

PERIOD = {"from": "2024-01", "to": "2024-12", "leads": 1000, "customers": 50}


def signals(signal: str = "demo_request") -> list[dict[str, object]]:
    return [
        {"signal": signal, "kind": "engagement", "points": 12, "points_p025": 0.4, "points_p975": 12.3,
         "leads": 300, "customers": 30, "close_rate": 0.1, "lift": 2.0, "status": "scored"},
        {"signal": "size = 1-10", "kind": "fit", "points": -4, "points_p025": float("nan"), "points_p975": -1.0,
         "leads": 400, "customers": 10, "close_rate": 0.025, "lift": 0.5, "status": "scored"},
    ]


def thresholds(threshold: int | None = 20, **changes: object) -> dict[str, object]:
    part = {"leads": 1000, "customers": 50, "average_close_rate": 0.05, "mql_share": 0.2, "mql_close_rate": 0.15,
            "mql_lift": 3.0, "customers_captured": 0.6, "mql_leads": 200}
    cell = {"action": "fit and interested: hand to sales within 24 h", "close_rate": 0.2, "customers": 20, "leads": 100,
            "share_of_customers": 0.4, "share_of_leads": 0.1}
    grades = {f"{fit}{engagement}": {"leads": 60, "customers": 3, "close_rate": 0.05, "share_of_leads": 1 / 16,
                                     "share_of_customers": 1 / 16} for fit in "ABCD" for engagement in "1234"}
    return {"threshold": threshold, "policy": "close_rate_multiple", "how": "lowest total at 3 x the average",
            "policies": {"close_rate_multiple": {"threshold": threshold, "mql_per_week": 4.0}},
            "min_mql_leads": 10, "capped_because": None,
            "training": {**part, "weeks": 50.0}, "validation": dict(part),
            "matrix": {"fit_boundary": 12.5, "engagement_boundary": 30.0,
                       "training": {"quadrants": {"hot": cell}, "grades": grades}, "validation": {}},
            **changes}


def inputs(signal: str = "demo_request", **changes: object) -> summary.Inputs:
    """A published run (threshold 20) with a previous publication at 18."""
    weights = {"signals": signals(signal), "fitted_on": PERIOD, "points_to_double_odds": 10.0, "half_life_days": 30.0}
    built = summary.Inputs(
        weights=weights, thresholds=thresholds(), train={"training": PERIOD, "validation": PERIOD},
        distribution=pd.DataFrame({"total_points": [0, 10, 20, 30], "customers": [5, 10, 15, 20],
                                   "other_leads": [395, 290, 185, 80]}),
        record={"status": "published", "reasons": [], "drift": {"flags": []}},
        current=summary.Publication(weights, thresholds()), previous=summary.Publication(weights, thresholds(18)),
        rejected=summary.Publication(None, None), pages=[("01_close_rates.html", "Close rates")])
    return dataclasses.replace(built, **changes)


def rejected(published: bool, threshold: int | None = 25) -> summary.Inputs:
    """A run publish refused: its files in published/rejected/, the current publication (or none) kept."""
    base = inputs()
    run = thresholds(threshold, warning="no policy finds a threshold on the training leads") \
        if threshold is None else thresholds(threshold)
    status = "rejected: the previous publication stays" if published else "rejected: nothing published yet"
    return dataclasses.replace(
        base, thresholds=run, record={"status": status, "reasons": ["model held-out AUC 0.55 is below the floor 0.6"]},
        current=base.current if published else summary.Publication(None, None),
        previous=summary.Publication(None, None), rejected=summary.Publication(base.weights, run))


def text(page: str) -> str:
    """What a reader sees: tags removed, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", page)))


def test_a_published_run_says_what_to_put_in_the_crm_and_no_rejection() -> None:
    page = text(summary.summary_page(inputs()))
    assert "Lead scoring: what to put in the CRM" in page and "not published" not in page
    assert "The MQL threshold moved from 18 to 20 points. No drift flags." in page


def test_a_rejected_run_says_so_at_the_top_before_any_number() -> None:
    document = summary.summary_page(rejected(published=True))
    page = text(document)
    assert "what to put in the CRM" not in page
    top = page[:page.index("The MQL threshold")]  # before the first section
    assert "The last run was not published" in top and "model held-out AUC 0.55 is below the floor 0.6" in top
    assert "The CRM keeps the current publication (MQL threshold 20 points" in top
    assert "The numbers below are the rejected run's, for review only." in top
    changes = page[page.index("What changed since the last publication"):]
    assert "The MQL threshold would have moved from 20 to 25 points." in changes
    assert "No drift flags" not in changes and "Drift is not measured for a rejected run" in changes


def test_a_rejected_run_with_nothing_published_is_not_called_a_first_publication() -> None:
    page = text(summary.summary_page(rejected(published=False)))
    top = page[:page.index("The MQL threshold")]
    assert "Nothing is published yet" in top and "The CRM keeps" not in top
    assert "This is the first publication" not in page and "No drift flags" not in page
    assert "nothing is published yet, so there is nothing to compare" in page


def test_a_rejected_run_without_a_threshold_would_have_had_none_and_says_why() -> None:
    page = text(summary.summary_page(rejected(published=True, threshold=None)))
    assert "The run would have had no MQL threshold (the current publication's: 20 points)." in page
    assert "None points" not in page and "to None" not in page
    # the threshold section gives thresholds.json's warning, not a generic line
    assert "No MQL threshold could be chosen: no policy finds a threshold on the training leads." in page


def test_no_threshold_falls_back_to_the_cap_note_and_a_missing_lift_is_not_a_crash() -> None:
    capped = thresholds(None, capped_because="3 x the average asks for 15 %, the best is 9 %")
    assert "No MQL threshold could be chosen: 3 x the average asks for 15 %, the best is 9 %." in \
        text(summary.threshold_section(inputs(thresholds=capped)))
    no_lift = thresholds()
    no_lift["training"] = {**no_lift["training"], "mql_lift": None}
    page = text(summary.threshold_section(inputs(thresholds=no_lift)))
    assert "They closed at 15.0% (lift n/a) against the average 5.0%" in page


def test_boundaries_and_points_ranges_keep_their_decimals() -> None:
    page = text(summary.summary_page(inputs()))
    assert "a fit score of 12.5 points or more" in page and "an engagement score of 30 points or more" in page
    cells = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", summary.points_section(inputs()))))
    assert "demo_request engagement 12 +0.4 to +12.3" in cells  # not "+0 to +12"
    assert "size = 1-10 fit -4 not measured" in cells  # a NaN bound, not "+nan to -1"


def test_crm_values_that_look_like_markup_or_loads_are_text() -> None:
    """A signal named like CSS made the regex network check raise; '<!--<script>' broke the chart's JSON."""
    name = "industry = url(https://x.example) <!--<script>"
    document = summary.summary_page(inputs(signal=name))
    assert html.escape(name) in document and "<!--<script>" not in document
