"""The published points as a HubSpot Lead Scoring API score configuration (models/exports/hubspot_score_configuration.json).

HubSpot's Lead Scoring API (beta, `/marketing/lead-scoring/2026-09-beta`) creates a score as a
draft from groups of rules and publishes it on request. `score_configuration` writes the body of
that create request (`PublicDraftCreateRequest` in HubSpot's OpenAPI spec) under `api`, so
`leadcal push hubspot` (pipeline.exports.push_hubspot) can send it as it is, plus what a person needs
beside it: which leadcal signal each rule carries, which rules still use leadcal's names, the MQL
threshold chosen for exactly this scoring, and what the configuration cannot express.

How leadcal's rows become HubSpot rules (one rule per row, so each signal keeps its points):

| leadcal row | group | calculation |
|---|---|---|
| fit value (`is`, bands, unknown, "any other value") | one FIT group per attribute | CONDITIONAL: the row's points where the property matches (AND of single conditions) |
| activity (at least once) | INTENT "Activities", decay on | MULTI_UE: the event's points, the rule capped at one event's worth |
| frequency (N times within W days) | INTENT "Frequency", no decay | MULTI_UE with a frequency range "at least N" in the last W days |
| recency (any activity within D days) | INTENT "Recency", no decay | CONDITIONAL: a date property less than D days ago |

The property operators are the CRM property operations HubSpot's Lead Scoring spec shares with
its Lists API (whose spec lists the operator strings: IS_ANY_OF, IS_GREATER_THAN_OR_EQUAL_TO,
IS_UNKNOWN, IS_LESS_THAN_X_DAYS_AGO...). Decay: HubSpot's API takes any whole number of days,
but its scoring screen offers 1, 3, 6 or 12 months; the configuration uses the month option the
HubSpot sheet uses (pipeline.core.crm_scoring.hubspot_decay_months), so a score built by hand and one
pushed by the API are the same score, and the MQL threshold chosen for it holds in both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pipeline.core.crm_scoring import DAYS_PER_MONTH, hubspot_decay_months
from pipeline.exports.criteria import LIST_SEPARATOR, RECENCY_ATTRIBUTE, as_number, is_missing
from pipeline.exports.hubspot import criteria_group
from pipeline.params import CrmMapping

FORMAT = "leadcal-hubspot-score-configuration"
FORMAT_VERSION = 1
API_VERSION = "2026-09-beta"
SCORE_NAME = "leadcal lead score"
CONTACTS = "0-1"  # HubSpot's object type id of contacts
# The date property HubSpot keeps of a contact's latest engagement (Last engagement date); params
# exports.mapping.hubspot.properties.any_activity names another.
RECENCY_PROPERTY = "hs_last_sales_activity_timestamp"


def _operation(operation_type: str, operator: str, include_unset: bool = False, **fields: Any) -> dict[str, Any]:
    return {"operationType": operation_type, "operator": operator, "includeObjectsWithNoValueSet": include_unset,
            **fields}


def _condition(prop: str, operation: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "SINGLE", "property": prop, "operation": dict(operation)}


def _conditional(points: int, conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "CONDITIONAL", "value": points,
            "whereCondition": {"type": "COMPOSITE", "operator": "AND", "conditions": conditions}}


def _values_operation(property_type: str, positive: bool, values: list[str]) -> dict[str, Any]:
    """'is any of' / 'is none of' for a dropdown (ENUMERATION) or a text property (MULTISTRING)."""
    if property_type == "string":
        return _operation("MULTISTRING", "IS_EQUAL_TO" if positive else "IS_NOT_EQUAL_TO", values=values)
    return _operation("ENUMERATION", "IS_ANY_OF" if positive else "IS_NONE_OF", values=values)


def fit_conditions(row: Mapping[str, Any], prop: str, values: Mapping[str, str], property_type: str) -> list[dict[str, Any]]:
    """The conditions a contact's property must meet for a fit row's points (all must hold)."""
    operator, low, high = row["operator"], row["value"], row["value_high"]
    number = lambda op, value: _condition(prop, _operation("NUMBER", op, value=as_number(value)))  # noqa: E731
    if operator == "is":
        return [_condition(prop, _values_operation(property_type, True, [values.get(str(low), str(low))]))]
    if operator == "is_none_of":  # known, and none of the values scored on their own
        listed = [values.get(v, v) for v in str(low or "").split(LIST_SEPARATOR) if v]
        known = [_condition(prop, _operation("ALL_PROPERTY", "IS_KNOWN"))]
        return known + ([_condition(prop, _values_operation(property_type, False, listed))] if listed else [])
    if operator == "is_unknown":
        return [_condition(prop, _operation("ALL_PROPERTY", "IS_UNKNOWN", include_unset=True))]
    if operator == "between":  # both ends included
        return [number("IS_GREATER_THAN_OR_EQUAL_TO", low), number("IS_LESS_THAN_OR_EQUAL_TO", high)]
    if operator == "at_least":
        return [number("IS_GREATER_THAN_OR_EQUAL_TO", low)]
    if operator == "less_than":
        return [number("IS_LESS_THAN", low)]
    if operator == "at_least_and_below":
        return [number("IS_GREATER_THAN_OR_EQUAL_TO", low), number("IS_LESS_THAN", high)]
    raise ValueError(f"fit operator {operator!r} has no HubSpot condition")


def _event_calculation(row: Mapping[str, Any], event_type_id: str, event_property: str | None,
                       ids: list[str]) -> dict[str, Any]:
    """One MULTI_UE event entry: the event's points, restricted to the mapped forms/pages when it names them."""
    points = int(row["points"])
    frequency = row["type"] == "frequency"
    value = 0 if frequency else points  # a frequency rule's points come from its range, not from each event
    record: dict[str, Any] = {"type": "CONSTANT", "value": value}
    if event_property and ids:
        record = _conditional(value, [_condition(event_property, _operation("MULTISTRING", "IS_EQUAL_TO", values=ids))])
    entry: dict[str, Any] = {"eventTypeId": event_type_id, "recordCalculation": record}
    if frequency:
        entry["eventFrequencyCriteria"] = {"type": "BETWEEN", "ranges": [
            {"type": "AT_LEAST", "from": int(row["value"]), "value": points}]}
        entry["eventTimeframe"] = {"eventFilterOperation": _operation(
            "ROLLING_DATE_RANGE", "IS_LESS_THAN_X_DAYS_AGO", numberOfDays=int(row["window_days"]),
            requiresTimeZoneConversion=False)}
    return {"type": "MULTI_UE", "eventCalculators": [entry]}


def _rule(calculation: Mapping[str, Any], cap_points: int | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"enabled": True, "configuration": {"calculation": dict(calculation)}}
    if cap_points is not None:  # an event rule counts at most one event's worth, like leadcal's "at least once"
        rule["maximumValue" if cap_points >= 0 else "minimumValue"] = cap_points
    return rule


def rule_for(row: Mapping[str, Any], mapping: CrmMapping, numeric: set[str]) -> tuple[dict[str, Any], bool]:
    """(the HubSpot rule of one generic row, whether it uses HubSpot's own names)."""
    points = int(row["points"])
    if row["score_group"] == "fit":
        attribute = str(row["attribute"])
        prop = mapping.properties.get(attribute, attribute)
        kind = "number" if attribute in numeric else mapping.property_types.get(attribute, "enumeration")
        conditions = fit_conditions(row, prop, mapping.values.get(attribute, {}), kind)
        return _rule(_conditional(points, conditions)), attribute in mapping.properties
    if row["type"] == "recency":
        prop = mapping.properties.get(RECENCY_ATTRIBUTE, RECENCY_PROPERTY)
        condition = _condition(prop, _operation("ROLLING_DATE_RANGE", "IS_LESS_THAN_X_DAYS_AGO",
                                                numberOfDays=int(row["value"]), requiresTimeZoneConversion=False))
        return _rule(_conditional(points, [condition])), True
    spec = mapping.activities.get(str(row["attribute"]))
    event_type_id = spec.event_type_id if spec and spec.event_type_id else str(row["attribute"])
    ids = [str(i) for i in spec.ids] if spec else []
    calculation = _event_calculation(row, event_type_id, spec.event_property if spec else None, ids)
    return _rule(calculation, points if row["type"] == "activity" else None), bool(spec and spec.event_type_id)


def category_limit(caps: Mapping[str, float], points_range: Mapping[str, Any]) -> tuple[int, list[str]]:
    """HubSpot's one limit for both categories (maxScorePerCategory), and what it cannot express.

    Each category's own limit is leadcal's cap, or else the highest score a contact can reach in
    it (a limit that never cuts); HubSpot takes the larger, so a lower cap on the other category
    is lost, and said."""
    own = {}
    for category in ("fit", "engagement"):
        highest = max(int(points_range.get(category, {}).get("highest", 0)), 1)
        own[category] = int(math.ceil(caps[category])) if caps.get(category) is not None else highest
    limit = max(own.values())
    lost = [f"HubSpot has one limit for both categories ({limit}); leadcal caps {category} at {as_number(caps[category])}, "
            f"which HubSpot cannot apply" for category in own
            if caps.get(category) is not None and own[category] < limit]
    return limit, lost


def decay_interval_days(half_life_days: float | None) -> int | None:
    """The decay period, in whole days, of the month option nearest leadcal's half-life (None: no decay)."""
    if not half_life_days:
        return None
    return int(round(hubspot_decay_months(half_life_days) * DAYS_PER_MONTH))


def score_configuration(export_rows: list[dict[str, Any]], header: Mapping[str, Any], points_range: Mapping[str, Any],
                        mql: Mapping[str, Any] | None, mapping: CrmMapping) -> dict[str, Any]:
    """The export file: the API create body under `api`, and per rule the signal it carries (`rules`)."""
    numeric = set(header.get("numeric_attributes") or ())
    caps = dict(header.get("caps") or {})
    interval = decay_interval_days(header.get("half_life_days"))
    groups: dict[str, dict[str, Any]] = {}
    index: list[dict[str, Any]] = []
    for row in export_rows:
        name = criteria_group(row)
        fit = row["score_group"] == "fit"
        group = groups.get(name)
        if group is None:
            group = groups[name] = {"groupName": name, "groupCategory": "FIT" if fit else "INTENT",
                                    "ruleConfigurations": []}
            if not is_missing(row.get("attribute_cap")):  # an attribute's cap is its group's limit
                group["maxValue"] = as_number(row["attribute_cap"])
            if not fit and not is_missing(row.get("decay_half_life_days")) and interval:
                group["groupDecay"] = {"decayIntervalDays": interval, "percentToDecayPerInterval": 50}
        rule, mapped = rule_for(row, mapping, numeric)
        index.append({"group": name, "rule": len(group["ruleConfigurations"]), "signal": row["signal"],
                      "criterion": row["criterion"], "points": int(row["points"]), "mapped": mapped})
        group["ruleConfigurations"].append(rule)
    limit, not_expressed = category_limit(caps, points_range)
    decays: dict[str, set[bool]] = {}  # capped engagement attribute -> whether its rows decay
    for r in export_rows:
        if r["score_group"] == "engagement" and not is_missing(r.get("attribute_cap")):
            decays.setdefault(str(r["attribute"]), set()).add(not is_missing(r.get("decay_half_life_days")))
    caps_of = {str(r["attribute"]): r["attribute_cap"] for r in export_rows if not is_missing(r.get("attribute_cap"))}
    not_expressed += [f"{a}: leadcal caps its activity and frequency rows together at {as_number(caps_of[a])}; HubSpot "
                      f"limits each of its two groups ('{a} (decay)', '{a} (no decay)') at that"
                      for a in sorted(decays) if len(decays[a]) == 2]
    api = {"name": SCORE_NAME, "objectTypeId": CONTACTS, "allowedGroupTypes": ["FIT", "INTENT"],
           "maxScorePerCategory": limit, "groupConfigs": list(groups.values())}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "api_version": API_VERSION,
        "api": api,
        "rules": index,
        "unmapped": [r["signal"] for r in index if not r["mapped"]],
        "mql": None if mql is None else {
            "threshold": mql.get("threshold"),
            "rule": f"Combined score is greater than or equal to {mql.get('threshold')}",
            "training": mql.get("training"), "validation": mql.get("validation")},
        "decay": None if interval is None else {
            "decay_interval_days": interval, "percent_per_interval": 50,
            "leadcal_half_life_days": float(header["half_life_days"]),
            "note": "the month option HubSpot's scoring screen offers nearest leadcal's half-life; the MQL threshold "
                    "is chosen for exactly this decay"},
        "not_expressed": not_expressed + [
            "an event rule is capped at one event's points; HubSpot decays each event on its own, so a contact "
            "who repeats an event keeps up to its full points where leadcal decays from the latest",
            "frequency rules count events in the last W days; leadcal counts the busiest W days before the cut-off",
        ],
    }
