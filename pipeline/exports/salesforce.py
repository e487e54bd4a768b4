"""Salesforce Account Engagement (Pardot): scoring rules (activities), automation rules (frequency),
profile criteria moving the grade in the steps the tool offers (fit), and the MQL automation rule
on grade and score (salesforce_scoring.csv).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.core.crm_scoring import grade_change_text, grade_thirds
from pipeline.exports.criteria import (
    NO_MAPPING,
    activity_channel,
    activity_in_crm,
    as_text,
    in_crm_names,
    is_mapped,
    mql_figures,
)
from pipeline.params import CrmMapping

SALESFORCE_COLUMNS = ["rule_type", "field", "operator", "value", "points", "grade_change", "leadcal_signal", "mapped",
                      "note"]
MQL_RULE = "MQL automation rule"
SALESFORCE_ACTIVITIES = {  # (field, operator) of an Account Engagement scoring / automation rule
    "form": ("Prospect form", "was submitted"),
    "download": ("Prospect file", "was downloaded"),
    "page": ("Prospect page view", "was viewed"),
    "email_open": ("Prospect email", "was opened"),
    "email_click": ("Prospect email", "link was clicked"),
    "unsubscribe": ("Prospect opted out", "is true"),
    "webinar": ("Prospect webinar", "attended"),
    "other": ("Prospect custom activity", "occurred"),
}


def _salesforce_fit(parts: Mapping[str, Any]) -> tuple[str, str]:
    operator, value, high = parts["operator"], parts["value"], parts["value_high"]
    return {
        "is": ("is", str(value)),
        "is_unknown": ("is empty", ""),
        "between": ("is between (inclusive)", f"{as_text(value)} and {as_text(high)}"),
        "at_least": ("is greater than or equal to", as_text(value)),
        "less_than": ("is less than", as_text(value)),
        "at_least_and_below": ("is greater than or equal to / is less than", f"{as_text(value)} / {as_text(high)}"),
        "is_none_of": ("is not empty and is not any of", str(value)),
    }[operator]


def salesforce_rows(export_rows: list[dict[str, Any]], per_third: float = 1.0,
                    mql: Mapping[str, Any] | None = None, mapping: CrmMapping = NO_MAPPING) -> list[dict[str, Any]]:
    """Account Engagement rows (columns SALESFORCE_COLUMNS) from the generic rows.

    Fit rows become profile (grading) criteria that move the grade, not the score: each by its
    points over `per_third` (pipeline.core.crm_scoring.points_per_third) in the steps the tool
    offers (1/3, 2/3 or a whole letter; 'none' when smaller than half a third). Activity rows
    become scoring rules (points per form, page, file, email...); frequency and recency rows
    automation rules ('adjust prospect's score'), since a scoring rule cannot count occurrences.
    The last two rows are the MQL automation rule, grade at or above G and score at or above S,
    chosen for this scoring (`mql`: thresholds.json crm.account_engagement), with its figures.
    With `mapping` (params exports.mapping.account_engagement) fields, values and assets are
    Account Engagement's own; `mapped` says whether they are.
    """
    out = []
    for row in export_rows:
        if row["score_group"] == "fit":
            renamed = in_crm_names(row, mapping)
            operator, value = _salesforce_fit(renamed)
            thirds = int(grade_thirds([row["points"]], per_third)[0])
            out.append({"rule_type": "profile criterion (grading)", "field": renamed["attribute"], "operator": operator,
                        "value": value, "points": None, "grade_change": grade_change_text(thirds),
                        "leadcal_signal": row["signal"], "mapped": "yes" if is_mapped(row, mapping) else "no",
                        "note": f"leadcal: {int(row['points']):+d} points; {per_third:g} points = 1/3 of a letter"})
            continue
        elif row["type"] == "recency":
            out.append({"rule_type": "automation rule", "field": "Prospect time: last activity",
                        "operator": "days ago is less than",
                        "value": str(int(row["value"]) + 1)})
        else:
            spec = activity_in_crm(row, mapping)
            field, operator = SALESFORCE_ACTIVITIES[activity_channel(row["attribute"])]
            field = spec.event if spec and spec.event else field
            if row["type"] == "frequency":
                operator += f" at least {row['value']} times in the last {row['window_days']} days"
            out.append({"rule_type": "scoring rule" if row["type"] == "activity" else "automation rule",
                        "field": field, "operator": operator,
                        "value": ", ".join(str(i) for i in spec.ids) if spec and spec.ids else row["attribute"]})
        out[-1].update({"points": int(row["points"]), "grade_change": None, "leadcal_signal": row["signal"],
                        "mapped": "yes" if is_mapped(row, mapping) else "no", "note": None})
    if mql is not None and mql.get("threshold") is not None:
        figures = mql_figures(mql)
        out.append({"rule_type": MQL_RULE, "field": "Prospect grade", "operator": "is greater than or equal to",
                    "value": mql["grade_at_least"], "points": None, "grade_change": None, "leadcal_signal": None,
                    "mapped": None, "note": "and the next row: both must hold"})
        out.append({"rule_type": MQL_RULE, "field": "Prospect score", "operator": "is greater than or equal to",
                    "value": str(mql["threshold"]), "points": None, "grade_change": None, "leadcal_signal": None,
                    "mapped": None, "note": figures})
    return [{c: r[c] for c in SALESFORCE_COLUMNS} for r in out]
