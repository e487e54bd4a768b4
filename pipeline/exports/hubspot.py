"""HubSpot lead scoring: criteria in HubSpot's words (hubspot_score_properties.csv) and the
score-level settings beside them (hubspot_score_settings.json): decay rounded to HubSpot's
options, group and score limits, the MQL threshold chosen for HubSpot's own decay. The same score
as a Lead Scoring API body is pipeline.exports.hubspot_api.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pipeline.core.crm_scoring import DAYS_PER_MONTH, hubspot_decay_months
from pipeline.exports.criteria import (
    GROUP_ORDER,
    NO_MAPPING,
    activity_channel,
    activity_in_crm,
    as_text,
    in_crm_names,
    is_mapped,
    is_missing,
    mql_figures,
)
from pipeline.params import ActivityMapping, CrmMapping

HUBSPOT_COLUMNS = ["group", "criteria_group", "criteria", "points", "decay", "leadcal_signal", "mapped"]
# Activity channel -> how each tool words / types it. The channel is guessed from the
# activity's name (`activity_channel`); "other" is anything not obviously one of these.
HUBSPOT_EVENTS = {
    "form": "Has completed form submission",
    "download": "Has completed form submission (download form)",
    "page": "Has viewed page",
    "email_open": "Has opened marketing email",
    "email_click": "Has clicked link in marketing email",
    "unsubscribe": "Has unsubscribed from marketing email",
    "webinar": "Has attended marketing event",
    "other": "Has completed custom event",
}


def hubspot_decay(half_life_days: float | None) -> dict[str, Any] | None:
    """leadcal's half-life as HubSpot's 'lose 50 % of points every N months', N in 1, 3, 6, 12.

    N is the option nearest to the half-life on a ratio scale (decay is multiplicative: a
    half-life twice too long is as wrong as one half too short), i.e. the boundaries are the
    geometric means of neighbouring options: below 1.73 months -> 1, below 4.24 -> 3, below
    8.49 -> 6, else 12; a month is 365.25 / 12 days. None: no decay.
    """
    if half_life_days is None:
        return None
    choice = hubspot_decay_months(half_life_days)
    per_month_loss = 1 - 2 ** (-DAYS_PER_MONTH / float(half_life_days))
    return {
        "lose_percent": 50,
        "every_months": choice,
        "leadcal_half_life_days": float(half_life_days),
        "hubspot_half_life_days": choice * DAYS_PER_MONTH,
        "ratio_hubspot_to_leadcal": choice * DAYS_PER_MONTH / float(half_life_days),
        "leadcal_loss_per_month_percent": round(100 * per_month_loss, 1),
        "rounding": (
            "HubSpot offers decay every 1, 3, 6 or 12 months; leadcal's half-life is rounded to the option nearest on "
            "a ratio scale (boundaries at 1.73, 4.24 and 8.49 months)"
        ),
        "applied": "in steps: an activity keeps its points for a whole period, then loses 50 %; the MQL threshold "
                   "below is chosen for exactly this",
    }


def _hubspot_fit_criteria(parts: Mapping[str, Any]) -> str:
    attribute, operator, value, high = parts["attribute"], parts["operator"], parts["value"], parts["value_high"]
    condition = {
        "is": f"is any of {value}",
        "is_unknown": "is unknown",
        "between": f"is between {as_text(value)} and {as_text(high)}",
        "at_least": f"is greater than or equal to {as_text(value)}",
        "less_than": f"is less than {as_text(value)}",
        "at_least_and_below": f"is greater than or equal to {as_text(value)} and is less than {as_text(high)}",
        "is_none_of": f"is known and is none of {value}",
    }[operator]
    return f"Contact property {attribute} {condition}"


def _hubspot_engagement_criteria(row: Mapping[str, Any], spec: ActivityMapping | None = None) -> str:
    if row["type"] == "recency":
        return f"Has any engagement in the last {row['value']} days"
    event = (spec.event if spec and spec.event else None) or HUBSPOT_EVENTS[activity_channel(row["attribute"])]
    assets = ", ".join(str(i) for i in spec.ids) if spec and spec.ids else row["attribute"]
    text = f"{event}: {assets}"
    if row["type"] == "frequency":
        text += f", at least {row['value']} times in the last {row['window_days']} days"
    return text


def criteria_group(row: Mapping[str, Any]) -> str:
    """The HubSpot group of a generic row: its attribute for fit (a contact has one value of it), the
    attribute with "(decay)" / "(no decay)" for a capped engagement attribute (its cap is the group's
    limit, and decay is set per group), else Activities, Frequency or Recency. The sheet and the
    Lead Scoring API configuration (pipeline.exports.hubspot_api) group alike."""
    if row["score_group"] != "engagement":
        return str(row["attribute"])
    if not is_missing(row.get("attribute_cap")):
        return f"{row['attribute']} ({'no decay' if is_missing(row.get('decay_half_life_days')) else 'decay'})"
    return {"activity": "Activities", "frequency": "Frequency", "recency": "Recency"}[row["type"]]


def hubspot_rows(export_rows: list[dict[str, Any]], mapping: CrmMapping = NO_MAPPING) -> list[dict[str, Any]]:
    """HubSpot lead-score criteria (columns HUBSPOT_COLUMNS) from the generic rows.

    criteria_group: the HubSpot group to put the criterion in. A fit attribute is one group
    (a lead has one value of it); engagement criteria go to 'Activities' (decay on),
    'Frequency' or 'Recency' (decay off: leadcal does not decay them), or to a group of their
    own attribute when that attribute has a cap (the group limit). With `mapping` (params
    exports.mapping.hubspot) the criteria use HubSpot's properties, values, events and assets;
    `mapped` says whether they do.
    """
    out = []
    for row in export_rows:
        engagement = row["score_group"] == "engagement"
        spec = activity_in_crm(row, mapping) if engagement else None
        renamed = row if engagement else in_crm_names(row, mapping)
        decays = not is_missing(row.get("decay_half_life_days"))
        out.append({
            "group": "Engagement" if engagement else "Fit",
            "criteria_group": criteria_group(row),
            "criteria": _hubspot_engagement_criteria(row, spec) if engagement else _hubspot_fit_criteria(renamed),
            "points": int(row["points"]),
            "decay": "yes" if decays else "no",
            "leadcal_signal": row["signal"],
            "mapped": "yes" if is_mapped(row, mapping) else "no",
        })
    return out


def _score_range(table: pd.DataFrame, kind: str) -> tuple[int, int]:
    """(lowest, highest) points a lead can get in a group, before caps and decay."""
    rows = table[table["kind"] == kind]
    points = rows["points"].astype(int)
    if kind == "fit":  # one value per attribute; a value without points scores 0
        lows = rows.assign(points=points).groupby("attribute")["points"].min()
        highs = rows.assign(points=points).groupby("attribute")["points"].max()
        return int(lows.clip(upper=0).sum()), int(highs.clip(lower=0).sum())
    return int(points[points < 0].sum()), int(points[points > 0].sum())


def hubspot_settings(
    export_rows: list[dict[str, Any]], header: Mapping[str, Any], table: pd.DataFrame,
    mql: Mapping[str, Any] | None = None, matrix: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score-level settings HubSpot needs beside the criteria: decay, group limits, score range, and the
    MQL threshold chosen for HubSpot's own decay (`mql`: thresholds.json crm.hubspot), with the fit
    cut-off of the fit x interest matrix (`matrix`: thresholds.json matrix)."""
    caps = dict(header.get("caps") or {})
    group_limits = []
    for attribute in sorted({r["attribute"] for r in export_rows if not is_missing(r.get("attribute_cap"))}):
        of_attribute = [r for r in export_rows if r["attribute"] == attribute]
        groups = sorted({h["criteria_group"] for h in hubspot_rows(of_attribute)})
        group_limits.append({"attribute": attribute, "criteria_groups": groups, "limit": caps[attribute],
                             "note": "one HubSpot limit per group: if two groups are listed, the cap covers both "
                                     "together"
                             if len(groups) > 1 else ""})
    ranges = {kind: _score_range(table, kind) for kind in GROUP_ORDER}
    return {
        "score_type": "Combined (Fit + Engagement)",
        "engagement_decay": hubspot_decay(header.get("half_life_days")),
        "decay_applies_to": "criteria groups whose rows have decay = yes (turn decay off for the others)",
        "score_limits": {
            "fit": caps.get("fit"),
            "engagement": caps.get("engagement"),
            "note": "null: leadcal has no cap; pick a HubSpot score limit that the range below does not reach",
        },
        "group_limits": group_limits,
        "points_range": {kind: {"lowest": low, "highest": high} for kind, (low, high) in ranges.items()},
        "mql_threshold": None if mql is None else {
            "rule": f"Combined score is greater than or equal to {mql.get('threshold')}",
            "figures": mql_figures(mql), **mql},
        "fit_engagement_matrix": None if not matrix else {
            "fit_score_at_least": matrix.get("fit_boundary"),
            "fit_grade_cutoffs": {"A": matrix["fit_grade_cutoffs"][0], "B": matrix["fit_grade_cutoffs"][1],
                                  "C": matrix["fit_grade_cutoffs"][2]} if matrix.get("fit_grade_cutoffs") else None,
            "engagement_score_at_least_in_leadcal_scoring": matrix.get("engagement_boundary"),
            "note": "fit does not decay, so the fit cut-offs hold in HubSpot as they are; the engagement boundary is "
                    "leadcal's (continuous decay) and is only a guide under HubSpot's decay",
        },
    }
