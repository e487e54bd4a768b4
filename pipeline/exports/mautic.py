"""Mautic: point actions (engagement), segments (fit) and the MQL point trigger as REST API request
bodies (mautic_point_actions.json); what no point action expresses goes to `by_campaign`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.exports.criteria import (
    LIST_SEPARATOR,
    NO_MAPPING,
    activity_channel,
    activity_in_crm,
    in_crm_names,
    is_mapped,
    mql_figures,
    unmapped_signals,
)
from pipeline.params import ActivityMapping, CrmMapping

# Mautic core point actions (Points > Manage actions); None: Mautic has no point action for it.
MAUTIC_ACTIONS = {
    "form": "form.submit",
    "download": "asset.download",
    "page": "url.hit",
    "email_open": "email.open",
    "email_click": None,
    "unsubscribe": None,
    "webinar": None,
    "other": None,
}
MAUTIC_CUSTOM = "custom"


def mautic_type(activity: str) -> str:
    """Mautic point-action type for an activity: form.submit, asset.download, url.hit, email.open, or custom."""
    return MAUTIC_ACTIONS[activity_channel(activity)] or MAUTIC_CUSTOM


# The property of a point action that lists what it counts (empty: ANY form, asset, email or page).
MAUTIC_ID_PROPERTY = {"form.submit": "forms", "asset.download": "assets", "email.open": "emails",
                      "email.send": "emails", "page.hit": "pages"}
MAUTIC_OPERATORS = {"is": "=", "at_least": "gte", "less_than": "lt"}


def mautic_point_action(row: Mapping[str, Any], spec: ActivityMapping | None) -> dict[str, Any] | None:
    """The body of POST /api/points/new for an engagement row, or None when no Mautic point action can
    express it (no core type for the activity, a recency row, a count other than page hits): a campaign
    adjusts the points instead.

    Without a mapping the action counts ANY form (asset, email, page): Mautic's meaning of an empty
    list. Such actions are marked unmapped and must be given ids before they are used.
    """
    action = spec.event if spec and spec.event else mautic_type(row["attribute"])
    if row["type"] == "recency" or action == MAUTIC_CUSTOM or (row["type"] == "frequency" and action != "url.hit"):
        return None
    properties: dict[str, Any] = {}
    if action in MAUTIC_ID_PROPERTY:
        properties[MAUTIC_ID_PROPERTY[action]] = list(spec.ids) if spec else []
    if action == "url.hit":
        if spec and spec.page_url:
            properties["page_url"] = spec.page_url
        if row["type"] == "frequency":
            properties["page_hits"] = int(row["value"])
    return {"name": row["criterion"][:190], "description": f"leadcal signal '{row['signal']}': {int(row['points']):+d} points",
            "type": action, "delta": int(row["points"]), "repeatable": False, "isPublished": True,
            "properties": properties}


def mautic_segment(row: Mapping[str, Any], numeric: Iterable[str]) -> dict[str, Any]:
    """The body of POST /api/segments/new for a fit row (already in Mautic's names): its filters, ANDed."""
    field, operator, value, high = row["attribute"], row["operator"], row["value"], row["value_high"]
    kind = "number" if row.get("leadcal_attribute", field) in set(numeric) else "text"

    def condition(op: str, filter_value: Any) -> dict[str, Any]:
        return {"glue": "and", "object": "lead", "field": field, "type": kind, "operator": op,
                "properties": {"filter": filter_value}}

    if operator in MAUTIC_OPERATORS:
        filters = [condition(MAUTIC_OPERATORS[operator], value)]
    elif operator == "is_unknown":
        filters = [condition("empty", None)]
    elif operator == "is_none_of":
        listed = str(value).split(LIST_SEPARATOR) if value else []
        filters = [condition("!empty", None)] + [condition("!=", v) for v in listed]
    elif operator == "between":
        filters = [condition("gte", value), condition("lte", high)]
    else:  # at_least_and_below
        filters = [condition("gte", value), condition("lt", high)]
    return {"name": f"leadcal fit: {row['criterion']}"[:190], "isPublished": True, "filters": filters}


def _campaign_how(row: Mapping[str, Any]) -> str:
    """How to build in Mautic an engagement row no point action expresses (a recency, a count, an
    activity without a core type): a campaign that adjusts the contact's points."""
    return (
        f"a segment of contacts active in the last {row['value']} days, with a campaign 'Adjust contact points'"
        if row["type"] == "recency" else
        f"a campaign decision on '{row['attribute']}'" + (f" ({row['value']} or more times within "
                                                           f"{row['window_days']} days)" if row["type"] == "frequency" else "")
        + " followed by the action 'Adjust contact points' by delta")


def _point_trigger(threshold: Any, mql: Mapping[str, Any]) -> dict[str, Any]:
    """The point trigger at the MQL threshold, with the body of POST /api/points/triggers/new; its
    description names the threshold's figures so whoever reads it in Mautic knows where it came from."""
    return {
        "points": threshold,
        "api": {"name": f"leadcal MQL: {threshold} points", "points": int(threshold), "triggerExistingLeads": True,
                "isPublished": True, "color": "b8860b", "events": [],
                "description": f"the MQL threshold chosen for Mautic's scoring (no decay, no caps); {mql_figures(mql)}"},
    }


def mautic_export(export_rows: list[dict[str, Any]], header: Mapping[str, Any], mql: Mapping[str, Any] | None = None,
                  mapping: CrmMapping = NO_MAPPING, numeric: Iterable[str] = ()) -> dict[str, Any]:
    """Mautic's side of the points table: what to create through its REST API (or by hand), as request bodies.

    - `point_actions`: engagement rows a Mautic point action expresses; `api` is the body of
      POST /api/points/new.
    - `segments`: fit rows; `api` is the body of POST /api/segments/new (Mautic's field names with
      params exports.mapping.mautic), and a campaign on the segment adjusts the points by `delta`.
    - `by_campaign`: engagement rows no point action expresses (no core type, a recency or a count):
      a campaign decision on the activity, then "Adjust contact points" by `delta`.
    - `point_trigger`: `api` is the body of POST /api/points/triggers/new, at the threshold chosen for
      Mautic's scoring (no decay, no caps; `mql`: thresholds.json crm.mautic).
    Every entry has `leadcal_signal`, `delta` and `mapped`; `unmapped` lists the signals still in
    leadcal's names. All of them add to the contact's one points total, so it is fit + engagement.
    """
    actions, segments, campaigns = [], [], []
    for row in export_rows:
        entry = {"leadcal_signal": row["signal"], "delta": int(row["points"]), "mapped": is_mapped(row, mapping)}
        if row["score_group"] == "fit":
            renamed = in_crm_names(row, mapping)
            segments.append({**entry,
                             "api": mautic_segment({**renamed, "leadcal_attribute": row["attribute"]}, numeric)})
            continue
        spec = activity_in_crm(row, mapping)
        body = mautic_point_action(row, spec)
        if body is not None:
            actions.append({**entry, "api": body})
        else:
            campaigns.append({**entry, "how": _campaign_how(row)})
    half_life = header.get("half_life_days")
    threshold = None if mql is None else mql.get("threshold")
    return {
        "point_actions": actions,
        "segments": segments,
        "by_campaign": campaigns,
        "point_trigger": None if threshold is None else _point_trigger(threshold, mql),
        "mql": mql,
        "unmapped": unmapped_signals(export_rows, mapping),
        "notes": {
            "points_total": (
                "a Mautic contact has one points total: point actions and campaigns add engagement points to it, and "
                "each fit segment's campaign adds its delta, so the total is fit + engagement"
            ),
            "unmapped": (
                "an unmapped point action has empty forms/assets/emails/pages, which Mautic reads as ANY: give it the "
                "ids of the forms, assets, emails or pages that record the activity (params exports.mapping.mautic)"
            ),
            "decay": (
                "Mautic points never decay (leadcal's engagement points halve every "
                f"{half_life:.1f} days): the point trigger's threshold is chosen for points that never decay"
                if half_life is not None else "no decay"
            ),
            "caps": "Mautic has no caps; the threshold is chosen without them",
            "trigger_events": "add the trigger's event that hands the contact to sales (change segment, stage or owner)",
        },
    }
