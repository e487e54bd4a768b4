"""What every export shares: the generic rows (one per signal with points, as structured criteria),
their wording, the numeric bands, the pooled rare values, and the mapping to a CRM's own names.

`generic_rows` turns the points table into rows every vendor module reads; `criterion_parts`
says each row as (attribute, operator, value, value_high, window_days). Fit values seen in fewer
than `signals.min_support` training leads are pooled into one rule per attribute, "any other
value" (`is_none_of` the values listed on their own). `in_crm_names` / `is_mapped` apply params
`exports.mapping` (a CRM's properties, values and events).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.scorecard import STATUS_LOW_SUPPORT_FIT
from pipeline.core.signals import UNKNOWN, band, band_labels
from pipeline.errors import LeadcalError
from pipeline.params import ActivityMapping, CrmMapping

GENERIC_COLUMNS = [
    "score_group", "criterion", "attribute", "operator", "value", "value_high", "window_days", "points",
    "decay_half_life_days", "attribute_cap", "score_group_cap", "type", "signal",
]
GROUP_ORDER = ("fit", "engagement")
TYPE_ORDER = ("activity", "frequency", "recency", "fit")
OTHER_VALUE = "(any other value)"  # the pooled rule of an attribute's rare values: "<attribute> = (any other value)"
LIST_SEPARATOR = "; "  # between the values of an is_none_of rule
RECENCY_ATTRIBUTE = "any_activity"  # the attribute of recency rows ("any activity within the last N days")


def as_number(value: float) -> int | float:
    """1000000.0 -> 1000000; 0.5 -> 0.5 (a band edge as a plain number)."""
    value = float(value)
    return int(value) if value.is_integer() else value


def as_text(value: Any) -> str:
    """A value as written in a criterion: whole numbers without '.0', floats at full precision."""
    if isinstance(value, float):
        return str(as_number(value)) if math.isfinite(value) else str(value)
    return str(value)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def as_cell(value: Any) -> str:
    """A number for a CSV cell, exactly as in the JSON (no %g rounding); empty if missing."""
    return "" if is_missing(value) else as_text(value)


def activity_channel(activity: str) -> str:
    """The kind of event an activity name most likely records: form, download, page, email_open,
    email_click, unsubscribe, webinar, or other (not obvious from the name)."""
    name = activity.lower()
    words = set(name.replace("-", "_").replace(" ", "_").split("_"))
    if "unsubscribe" in name or "opt_out" in name or "optout" in name:
        return "unsubscribe"
    if "email" in words and ("open" in words or "opened" in words):
        return "email_open"
    if "email" in words and ("click" in words or "clicked" in words):
        return "email_click"
    if "download" in name:
        return "download"
    if "webinar" in words and ({"attendance", "attended", "attend"} & words):
        return "webinar"
    if {"form", "submission", "submit", "request", "registration", "register", "signup", "subscribe", "trial"} & words:
        return "form"
    if {"page", "visit", "view", "read", "pageview"} & words:
        return "page"
    return "other"


def _band_bounds(edges: list[float]) -> dict[str, tuple[str, int | float | None, int | float | None]]:
    """Band label -> (operator, value, value_high) of the numeric criterion it stands for.

    Bands are [e_i, e_i+1) (pipeline.core.signals.band). With whole-number edges the values are
    taken as whole numbers and the band reads inclusively: 'between 201 and 1000'.
    """
    labels = band_labels(edges)
    below = band(pd.Series([-np.inf]), edges).iloc[0]
    bounds: dict[str, tuple[str, int | float | None, int | float | None]] = {
        below: ("less_than", as_number(edges[0]), None)}
    for label, low, high in zip(labels, edges, edges[1:]):
        if float(low).is_integer() and float(high).is_integer() and high - low > 1:  # [2, 3) may hold 2.5
            bounds[label] = ("between", as_number(low), as_number(high) - 1)
        else:
            bounds[label] = ("at_least_and_below", as_number(low), as_number(high))
    bounds[labels[-1]] = ("at_least", as_number(edges[-1]), None)
    return bounds


def criterion_parts(row: Mapping[str, Any], numeric_bins: Mapping[str, list[float]]) -> dict[str, Any]:
    """(attribute, operator, value, value_high, window_days) of one points-table row."""
    kind, attribute, value = row["type"], row["attribute"], row["value"]
    if kind == "activity":
        return {"attribute": attribute, "operator": "count_at_least", "value": 1, "value_high": None,
                "window_days": None}
    if kind == "frequency":
        parts = str(value).split()  # ">= 4 in 30 days"
        try:
            count, window = int(parts[1]), int(parts[3])
        except (IndexError, ValueError) as exc:
            raise LeadcalError(f"frequency signal {row['signal']!r}: value {value!r} is not '>= N in W days'") from exc
        return {"attribute": attribute, "operator": "count_at_least", "value": count, "value_high": None,
                "window_days": window}
    if kind == "recency":
        parts = str(value).split()  # "<= 7 days"
        try:
            days = int(parts[1])
        except (IndexError, ValueError) as exc:
            raise LeadcalError(f"recency signal {row['signal']!r}: value {value!r} is not '<= N days'") from exc
        return {"attribute": RECENCY_ATTRIBUTE, "operator": "within_last_days", "value": days, "value_high": None,
                "window_days": None}
    if kind != "fit":
        raise LeadcalError(f"signal {row['signal']!r}: unknown type {kind!r}")
    if value == OTHER_VALUE:
        return {"attribute": attribute, "operator": "is_none_of", "value": LIST_SEPARATOR.join(row["listed_values"]),
                "value_high": None, "window_days": None}
    if value == UNKNOWN:
        return {"attribute": attribute, "operator": "is_unknown", "value": None, "value_high": None,
                "window_days": None}
    if attribute in numeric_bins:
        bounds = _band_bounds(list(numeric_bins[attribute]))
        if value not in bounds:
            raise LeadcalError(
                f"signal {row['signal']!r}: band {value!r} is not one of params signals.numeric_bins.{attribute} "
                f"({', '.join(bounds)}); were the points fitted with other bands? Re-run `dvc repro`"
            )
        operator, low, high = bounds[value]
        return {"attribute": attribute, "operator": operator, "value": low, "value_high": high, "window_days": None}
    return {"attribute": attribute, "operator": "is", "value": str(value), "value_high": None, "window_days": None}


def criterion_text(kind: str, parts: Mapping[str, Any]) -> str:
    """The criterion in plain words, e.g. 'company_size between 201 and 1000'."""
    attribute, operator, value, high = parts["attribute"], parts["operator"], parts["value"], parts["value_high"]
    if kind == "activity":
        return f"Activity: {attribute} at least once"
    if kind == "frequency":
        return f"{attribute} {value} or more times within {parts['window_days']} days"
    if kind == "recency":
        return f"any activity within the last {value} days"
    words = {
        "is": f"is {value}",
        "is_unknown": "is unknown (empty)",
        "between": f"between {as_text(value)} and {as_text(high)}",
        "at_least": f"{as_text(value)} or more",
        "less_than": f"less than {as_text(value)}",
        "at_least_and_below": f"at least {as_text(value)} and below {as_text(high)}",
        "is_none_of": f"is not empty and none of {value}",
    }
    return f"{attribute} {words[operator]}"


def pool_rare_values(table: pd.DataFrame, numeric_bins: Mapping[str, list[float]]) -> pd.DataFrame:
    """The points table with each category attribute's too-rare values replaced by one row, '(any other value)'.

    They all carry the attribute's reference points (the points table scores them alike, and a
    value never seen in training too), so one rule says it: the row's `value` lists the
    attribute's values scored on their own, and it matches a lead whose value is none of them
    and not empty (an empty value has its own `is_unknown` rule).
    """
    status = table["status"] if "status" in table.columns else pd.Series("", index=table.index)
    # a numeric band is a range a CRM can test, and 'unknown' an empty field: those keep rules of their own
    rare = ((table["type"] == "fit") & (status == STATUS_LOW_SUPPORT_FIT) & (table["value"] != UNKNOWN)
            & ~table["attribute"].isin(list(numeric_bins)))
    if not rare.any():
        return table
    pooled = []
    for attribute, group in table[rare].groupby("attribute", sort=False):
        listed = table[(table["type"] == "fit") & (table["attribute"] == attribute) & ~rare & (table["value"] != UNKNOWN)]
        pooled.append({**group.iloc[0].to_dict(), "signal": f"{attribute} = {OTHER_VALUE}", "value": OTHER_VALUE,
                       "listed_values": [str(v) for v in listed["value"]]})
    return pd.concat([table[~rare], pd.DataFrame(pooled)], ignore_index=True)


def ordered_rows(table: pd.DataFrame, numeric_bins: Mapping[str, list[float]]) -> pd.DataFrame:
    """Rows with points, sorted: fit then engagement, by attribute, type, then table order (bands in order);
    rare category values pooled (`pool_rare_values`)."""
    table = pool_rare_values(table, numeric_bins)
    scored = table[table["points"].astype(int) != 0].copy()
    scored["_group"] = scored["kind"].map({g: i for i, g in enumerate(GROUP_ORDER)})
    scored["_type"] = scored["type"].map({t: i for i, t in enumerate(TYPE_ORDER)})
    scored["_position"] = np.arange(len(scored))
    unknown = scored[scored["_group"].isna() | scored["_type"].isna()]
    if len(unknown):
        raise LeadcalError(f"points table: unknown kind or type in signals {list(unknown['signal'])}")
    scored = scored.sort_values(["_group", "attribute", "_type", "_position"], kind="mergesort")
    return scored.drop(columns=["_group", "_type", "_position"]).reset_index(drop=True)


def cap_of(caps: Mapping[str, float], key: str) -> float | None:
    return float(caps[key]) if key in caps else None


def generic_rows(
    table: pd.DataFrame, header: Mapping[str, Any], numeric_bins: Mapping[str, list[float]]
) -> list[dict[str, Any]]:
    """One dict per signal with points != 0 (columns GENERIC_COLUMNS), sorted.

    decay_half_life_days is set on the rows whose points fade (activity signals, when the
    table has a half-life): their points are points * 2^(-age_days / half-life). Frequency
    and recency rows keep their points. attribute_cap / score_group_cap: the most points the
    row's attribute (an activity with its frequency rows, a fit attribute) or its score group
    may add (params weights.caps), empty if none.
    """
    caps = dict(header.get("caps") or {})
    half_life = header.get("half_life_days")
    rows = []
    for row in ordered_rows(table, numeric_bins).to_dict(orient="records"):
        parts = criterion_parts(row, numeric_bins)
        rows.append({
            "score_group": row["kind"],
            "criterion": criterion_text(row["type"], parts),
            **parts,
            "points": int(row["points"]),
            "decay_half_life_days": float(half_life) if half_life is not None and row["type"] == "activity" else None,
            "attribute_cap": cap_of(caps, row["attribute"]),
            "score_group_cap": cap_of(caps, row["kind"]),
            "type": row["type"],
            "signal": row["signal"],
        })
    return [{column: r[column] for column in GENERIC_COLUMNS} for r in rows]


def mql_figures(entry: Mapping[str, Any] | None) -> str:
    """One line of what a CRM's own MQL rule does on the held-out months (thresholds.json "crm")."""
    if not entry or entry.get("threshold") is None:
        return "no MQL threshold in this tool's scoring"
    later, base = entry["validation"], entry.get("at_leadcal_threshold", {}).get("validation")

    def rate(value: Any) -> str:
        return "n/a" if value is None else f"{100 * value:.1f} %"

    text = (f"on the held-out months: {rate(later.get('mql_share'))} of leads are MQLs, closing at "
            f"{rate(later.get('mql_close_rate'))} (average {rate(later.get('average_close_rate'))}), holding "
            f"{rate(later.get('customers_captured'))} of the customers")
    if base and entry.get("at_leadcal_threshold", {}).get("threshold") != entry["threshold"]:
        text += (f"; leadcal's own threshold ({entry['at_leadcal_threshold']['threshold']}) would send "
                 f"{rate(base.get('mql_share'))} closing at {rate(base.get('mql_close_rate'))} in this tool")
    return text


NO_MAPPING = CrmMapping()


def in_crm_names(row: Mapping[str, Any], mapping: CrmMapping) -> dict[str, Any]:
    """A generic fit row with the CRM's property and values (params exports.mapping). Values without a
    mapping keep leadcal's spelling; bands are numbers and stay."""
    renamed = dict(row)
    prop = mapping.properties.get(row["attribute"])
    values = mapping.values.get(row["attribute"], {})
    if row["operator"] == "is_none_of" and row["value"]:
        renamed["value"] = LIST_SEPARATOR.join(values.get(v, v) for v in str(row["value"]).split(LIST_SEPARATOR))
    elif row["operator"] == "is":
        renamed["value"] = values.get(str(row["value"]), row["value"])
    renamed["attribute"] = prop or row["attribute"]
    return renamed


def activity_in_crm(row: Mapping[str, Any], mapping: CrmMapping) -> ActivityMapping | None:
    """How the CRM records a generic engagement row's activity (None: not mapped; recency rows need none)."""
    return mapping.activities.get(row["attribute"])


def is_mapped(row: Mapping[str, Any], mapping: CrmMapping) -> bool:
    """Whether a generic row is in the CRM's names: its fit attribute or its activity is in the mapping
    (a recency row names no activity and needs none)."""
    if row["score_group"] == "fit":
        return row["attribute"] in mapping.properties
    return row["type"] == "recency" or activity_in_crm(row, mapping) is not None


def unmapped_signals(export_rows: list[dict[str, Any]], mapping: CrmMapping) -> list[str]:
    """The signals whose attribute or activity the mapping does not name: they keep leadcal's names."""
    return [row["signal"] for row in export_rows if not is_mapped(row, mapping)]
