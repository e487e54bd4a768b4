"""The published points table in the formats a CRM or marketing-automation tool takes in.

Every export is built by a pure function from the points table (models/weights.json), its
header (half-life, caps, PDO) and the numeric bands of params `signals.numeric_bins`:

- `generic_rows`:     one row per signal with points, in plain words and as structured
                      (attribute, operator, value) criteria: models/exports/weights.{csv,json}
- `hubspot_rows` / `hubspot_settings`: HubSpot lead-score criteria and the score decay
                      rounded to HubSpot's options: hubspot_score_properties.csv,
                      hubspot_score_settings.json; the same as a Lead Scoring API
                      configuration (pipeline.hubspot_config): hubspot_score_configuration.json
- `salesforce_rows`:  Account Engagement (Pardot) scoring rules and profile criteria:
                      salesforce_scoring.csv
- `mautic_export`:    Mautic point actions (engagement) and segment filters (fit):
                      mautic_point_actions.json

Signals with 0 points are left out of every export: they change no lead's score. Fit values
seen in fewer than `signals.min_support` training leads never become rules of their own:
the points table scores them like their attribute's reference, and the exports pool them
into one rule per attribute, "any other value" (`is_none_of` the values listed on their own).
`apply_export` re-applies the generic export, and nothing else, to leads' signals: the
round-trip test checks that it gives every lead exactly the points of
`pipeline.weights.score_features`, so the generic file holds all a CRM needs.
The CSV sheets are written with `pipeline.spreadsheet.write_csv`: a text cell that a
spreadsheet would run as a formula (`=1+2`, starting with = + - @ tab or CR) gets a single
quote in front, and `read_export_rows` takes it off again.
How to import each file: docs/crm-exports.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import hubspot_config, io, spreadsheet
from pipeline.crm_scoring import DAYS_PER_MONTH, grade_change_text, grade_thirds, hubspot_decay_months, points_per_third
from pipeline.errors import LeadcalError
from pipeline.params import ActivityMapping, CrmMapping, Params
from pipeline.signals import UNKNOWN, band, band_labels
from pipeline.weights import STATUS_LOW_SUPPORT_FIT, read_weights

log = logging.getLogger(__name__)

FORMAT = "leadcal-points-export"
FORMAT_VERSION = 1
GROUP_ORDER = ("fit", "engagement")
TYPE_ORDER = ("activity", "frequency", "recency", "fit")
GENERIC_COLUMNS = [
    "score_group", "criterion", "attribute", "operator", "value", "value_high", "window_days", "points",
    "decay_half_life_days", "attribute_cap", "score_group_cap", "type", "signal",
]
HUBSPOT_COLUMNS = ["group", "criteria_group", "criteria", "points", "decay", "leadcal_signal", "mapped"]
SALESFORCE_COLUMNS = ["rule_type", "field", "operator", "value", "points", "grade_change", "leadcal_signal", "mapped",
                      "note"]
MQL_RULE = "MQL automation rule"

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
OTHER_VALUE = "(any other value)"  # the pooled rule of an attribute's rare values: "<attribute> = (any other value)"
LIST_SEPARATOR = "; "  # between the values of an is_none_of rule


# --------------------------------------------------------------------------- helpers

def _number(value: float) -> int | float:
    """1000000.0 -> 1000000; 0.5 -> 0.5 (a band edge as a plain number)."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _text(value: Any) -> str:
    """A value as written in a criterion: whole numbers without '.0', floats at full precision."""
    if isinstance(value, float):
        return str(_number(value)) if math.isfinite(value) else str(value)
    return str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(value: Any) -> str:
    """A number for a CSV cell, exactly as in the JSON (no %g rounding); empty if missing."""
    return "" if _missing(value) else _text(value)


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

    Bands are [e_i, e_i+1) (pipeline.signals.band). With whole-number edges the values are
    taken as whole numbers and the band reads inclusively: 'between 201 and 1000'.
    """
    labels = band_labels(edges)
    below = band(pd.Series([-np.inf]), edges).iloc[0]
    bounds: dict[str, tuple[str, int | float | None, int | float | None]] = {
        below: ("less_than", _number(edges[0]), None)}
    for label, low, high in zip(labels, edges, edges[1:]):
        if float(low).is_integer() and float(high).is_integer() and high - low > 1:  # [2, 3) may hold 2.5
            bounds[label] = ("between", _number(low), _number(high) - 1)
        else:
            bounds[label] = ("at_least_and_below", _number(low), _number(high))
    bounds[labels[-1]] = ("at_least", _number(edges[-1]), None)
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
        return {"attribute": "any_activity", "operator": "within_last_days", "value": days, "value_high": None,
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
        "between": f"between {_text(value)} and {_text(high)}",
        "at_least": f"{_text(value)} or more",
        "less_than": f"less than {_text(value)}",
        "at_least_and_below": f"at least {_text(value)} and below {_text(high)}",
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


def _ordered(table: pd.DataFrame, numeric_bins: Mapping[str, list[float]]) -> pd.DataFrame:
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


def _cap(caps: Mapping[str, float], key: str) -> float | None:
    return float(caps[key]) if key in caps else None


# --------------------------------------------------------------------------- generic

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
    for row in _ordered(table, numeric_bins).to_dict(orient="records"):
        parts = criterion_parts(row, numeric_bins)
        rows.append({
            "score_group": row["kind"],
            "criterion": criterion_text(row["type"], parts),
            **parts,
            "points": int(row["points"]),
            "decay_half_life_days": float(half_life) if half_life is not None and row["type"] == "activity" else None,
            "attribute_cap": _cap(caps, row["attribute"]),
            "score_group_cap": _cap(caps, row["kind"]),
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


def generic_payload(rows: list[dict[str, Any]], header: Mapping[str, Any],
                    mql: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """weights.json of the exports: the rows with what is needed to add them up, and the MQL threshold
    that holds for exactly this arithmetic (`mql`: thresholds.json crm.generic)."""
    half_life = header.get("half_life_days")
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "points_to_double_odds": header.get("points_to_double_odds"),
        "base_log_odds": header.get("base_log_odds"),
        "probability": "P(close) = 1 / (1 + exp(-(base_log_odds + total_points * ln(2) / points_to_double_odds)))",
        "half_life_days": half_life,
        "decay": (
            "rows with decay_half_life_days: points * 2^(-days since the lead last did the activity"
            " / decay_half_life_days)"
            if half_life is not None else "none"
        ),
        "caps": dict(header.get("caps") or {}),
        "scoring": (
            "per score group (fit, engagement): add the points of the rows the lead meets (decayed where "
            "decay_half_life_days is set); per attribute, keep at most attribute_cap; add the attributes, keep at most "
            "score_group_cap; round to a whole number (halves to even). total = fit + engagement. "
            "Every lead has exactly one value per fit attribute; values not listed score 0."
        ),
        "mql": None if mql is None else {"total_points_at_least": mql.get("threshold"), "figures": mql_figures(mql), **mql},
        "rows": rows,
    }


def generic_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The generic rows as a CSV-ready frame: numbers written exactly, missing as empty cells."""
    frame = pd.DataFrame(rows, columns=GENERIC_COLUMNS)
    for column in ("value", "value_high", "window_days", "decay_half_life_days", "attribute_cap", "score_group_cap"):
        frame[column] = [_cell(v) for v in frame[column]]
    return frame


def read_export_rows(path: str | Path) -> list[dict[str, Any]]:
    """Generic export rows from models/exports/weights.json or weights.csv."""
    path = Path(path)
    if path.suffix == ".json":
        return list(io.read_json(path)["rows"])
    frame = spreadsheet.read_csv(path)  # a cell escaped against spreadsheet formulas ('=x) reads back as written (=x)
    return [{k: (None if _missing(v) else v) for k, v in r.items()} for r in frame.to_dict(orient="records")]


def apply_export(
    export_rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
    leads_signals: pd.DataFrame,
    ages: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """fit_points, engagement_points and total_points per lead from the GENERIC export.

    `leads_signals`: leads x signals (columns named like the export's `signal`), 0/1, or
    already decayed values for the activities (pipeline.signals.decay_matrix). `ages`:
    optionally, days since each lead last did each activity (same columns, NaN: never); the
    rows with decay_half_life_days are then decayed here, from the export's own half-life,
    and `leads_signals` must hold plain 0/1 values.
    """
    records = export_rows.to_dict(orient="records") if isinstance(export_rows, pd.DataFrame) else list(export_rows)
    rows = pd.DataFrame(records)
    if rows.empty:
        zeros = np.zeros(len(leads_signals), dtype=np.int64)
        return pd.DataFrame({"fit_points": zeros, "engagement_points": zeros, "total_points": zeros},
                            index=leads_signals.index)
    leads_signals = _with_other_values(rows, leads_signals)
    missing = [s for s in rows["signal"] if s not in leads_signals.columns]
    if missing:
        raise LeadcalError(f"apply_export: the leads have no column for signals {missing}")
    values = leads_signals[list(rows["signal"])].to_numpy(dtype=float).copy()
    if ages is not None:
        for j, (signal, half_life) in enumerate(zip(rows["signal"], rows["decay_half_life_days"])):
            if _missing(half_life):
                continue
            age = ages[signal].to_numpy(dtype=float)
            values[:, j] = np.where(np.isnan(age), 0.0, values[:, j] * np.exp2(-np.nan_to_num(age) / float(half_life)))
    points = rows["points"].to_numpy(dtype=float)
    contributions = pd.DataFrame(values * points, columns=range(len(rows)), index=leads_signals.index)
    scores = {}
    for group in GROUP_ORDER:
        in_group = (rows["score_group"] == group).to_numpy()
        selected = rows[in_group]
        if not in_group.any():
            scores[f"{group}_points"] = np.zeros(len(leads_signals), dtype=np.int64)
            continue
        by_attribute = contributions.loc[:, in_group].T.groupby(selected["attribute"].to_numpy()).sum().T
        for attribute, cap in selected.groupby("attribute", sort=True)["attribute_cap"].first().items():
            if not _missing(cap):
                by_attribute[attribute] = by_attribute[attribute].clip(upper=float(cap))
        total = by_attribute.sum(axis=1).to_numpy()
        group_caps = [c for c in selected["score_group_cap"] if not _missing(c)]
        if group_caps:
            total = np.minimum(total, float(group_caps[0]))
        scores[f"{group}_points"] = np.round(total).astype(np.int64)
    scores["total_points"] = scores["fit_points"] + scores["engagement_points"]
    return pd.DataFrame(scores, index=leads_signals.index)


def _with_other_values(rows: pd.DataFrame, leads_signals: pd.DataFrame) -> pd.DataFrame:
    """The leads' signals plus a column per is_none_of row: 1 where the lead has none of the listed values."""
    pooled = rows[rows["operator"] == "is_none_of"] if "operator" in rows.columns else rows.iloc[:0]
    if pooled.empty:
        return leads_signals
    columns = {}
    for row in pooled.itertuples(index=False):
        listed = [f"{row.attribute} = {v}" for v in str(row.value).split(LIST_SEPARATOR)] if row.value else []
        absent = [c for c in listed if c not in leads_signals.columns]
        if absent:
            raise LeadcalError(f"apply_export: the leads have no column for signals {absent}")
        empty = f"{row.attribute} = {UNKNOWN}"  # an empty value is not "another value"
        listed += [empty] if empty in leads_signals.columns else []
        columns[row.signal] = 1.0 - leads_signals[listed].to_numpy(dtype=float).sum(axis=1)
    return leads_signals.assign(**columns)


# --------------------------------------------------------------------------- names in the CRM

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


# --------------------------------------------------------------------------- HubSpot

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
        "between": f"is between {_text(value)} and {_text(high)}",
        "at_least": f"is greater than or equal to {_text(value)}",
        "less_than": f"is less than {_text(value)}",
        "at_least_and_below": f"is greater than or equal to {_text(value)} and is less than {_text(high)}",
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
        decays = not _missing(row.get("decay_half_life_days"))
        if not engagement:
            group = row["attribute"]
        elif not _missing(row.get("attribute_cap")):
            group = f"{row['attribute']} ({'decay' if decays else 'no decay'})"
        else:
            group = {"activity": "Activities", "frequency": "Frequency", "recency": "Recency"}[row["type"]]
        out.append({
            "group": "Engagement" if engagement else "Fit",
            "criteria_group": group,
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
    for attribute in sorted({r["attribute"] for r in export_rows if not _missing(r.get("attribute_cap"))}):
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


# --------------------------------------------------------------------------- Salesforce Account Engagement

def _salesforce_fit(parts: Mapping[str, Any]) -> tuple[str, str]:
    operator, value, high = parts["operator"], parts["value"], parts["value_high"]
    return {
        "is": ("is", str(value)),
        "is_unknown": ("is empty", ""),
        "between": ("is between (inclusive)", f"{_text(value)} and {_text(high)}"),
        "at_least": ("is greater than or equal to", _text(value)),
        "less_than": ("is less than", _text(value)),
        "at_least_and_below": ("is greater than or equal to / is less than", f"{_text(value)} / {_text(high)}"),
        "is_none_of": ("is not empty and is not any of", str(value)),
    }[operator]


def salesforce_rows(export_rows: list[dict[str, Any]], per_third: float = 1.0,
                    mql: Mapping[str, Any] | None = None, mapping: CrmMapping = NO_MAPPING) -> list[dict[str, Any]]:
    """Account Engagement rows (columns SALESFORCE_COLUMNS) from the generic rows.

    Fit rows become profile (grading) criteria that move the grade, not the score: each by its
    points over `per_third` (pipeline.crm_scoring.points_per_third) in the steps the tool
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


# --------------------------------------------------------------------------- Mautic

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
            campaigns.append({**entry, "how": (
                f"a segment of contacts active in the last {row['value']} days, with a campaign 'Adjust contact points'"
                if row["type"] == "recency" else
                f"a campaign decision on '{row['attribute']}'" + (f" ({row['value']} or more times within "
                                                                   f"{row['window_days']} days)" if row["type"] == "frequency" else "")
                + " followed by the action 'Adjust contact points' by delta")})
    half_life = header.get("half_life_days")
    threshold = None if mql is None else mql.get("threshold")
    return {
        "point_actions": actions,
        "segments": segments,
        "by_campaign": campaigns,
        "point_trigger": None if threshold is None else {
            "points": threshold,
            "api": {"name": f"leadcal MQL: {threshold} points", "points": int(threshold), "triggerExistingLeads": True,
                    "isPublished": True, "color": "b8860b", "events": [],
                    "description": f"the MQL threshold chosen for Mautic's scoring (no decay, no caps); {mql_figures(mql)}"},
        },
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


# --------------------------------------------------------------------------- stage

def write_exports(
    folder: Path, table: pd.DataFrame, header: Mapping[str, Any], numeric_bins: Mapping[str, list[float]],
    thresholds: Mapping[str, Any] | None = None, mappings: Mapping[str, CrmMapping] | None = None,
) -> dict[str, Any]:
    """Every export of one points table into `folder`; returns a summary.

    `mappings` (params exports.mapping) puts each tool's own names in its files; the summary lists,
    per tool, the signals left in leadcal's names.

    `thresholds` (the published thresholds.json) gives each file the MQL threshold chosen for its
    tool's own scoring (its "crm" block, pipeline.crm_scoring) and the fit x interest cut-offs.
    """
    crm = dict((thresholds or {}).get("crm") or {})
    mappings = dict(mappings or {})
    rows = generic_rows(table, header, numeric_bins)
    spreadsheet.write_csv(folder / "weights.csv", generic_frame(rows))
    io.write_json(folder / "weights.json", generic_payload(rows, header, crm.get("generic")))
    spreadsheet.write_csv(folder / "hubspot_score_properties.csv",
                          pd.DataFrame(hubspot_rows(rows, mappings.get("hubspot", NO_MAPPING)), columns=HUBSPOT_COLUMNS))
    settings = hubspot_settings(rows, header, table, crm.get("hubspot"), (thresholds or {}).get("matrix"))
    io.write_json(folder / "hubspot_score_settings.json", settings)
    io.write_json(folder / "hubspot_score_configuration.json", hubspot_config.score_configuration(
        rows, header, settings["points_range"], crm.get("hubspot"), mappings.get("hubspot", NO_MAPPING)))
    spreadsheet.write_csv(folder / "salesforce_scoring.csv", pd.DataFrame(
        salesforce_rows(rows, points_per_third(table), crm.get("account_engagement"),
                        mappings.get("account_engagement", NO_MAPPING)), columns=SALESFORCE_COLUMNS))
    io.write_json(folder / "mautic_point_actions.json",
                  mautic_export(rows, header, crm.get("mautic"), mappings.get("mautic", NO_MAPPING), numeric_bins))
    unmapped = {tool: unmapped_signals(rows, mappings.get(tool, NO_MAPPING))
                for tool in ("hubspot", "account_engagement", "mautic")}
    files = ["weights.csv", "weights.json", "hubspot_score_properties.csv", "hubspot_score_settings.json",
             "hubspot_score_configuration.json", "salesforce_scoring.csv", "mautic_point_actions.json"]
    return {
        "folder": folder.as_posix(),
        "files": files,
        "rows": len(rows),
        "left_out_zero_points": int((table["points"].astype(int) == 0).sum()),
        "hubspot_decay": settings["engagement_decay"],
        "unmapped": unmapped,
    }


def run(params: Params) -> dict[str, Any]:
    """models/published/weights.json -> models/exports/ (generic, HubSpot, Salesforce, Mautic).

    Ops import what passed the guard rails: the published table, not this run's candidate,
    so a run rejected by the publish stage never reaches a CRM sheet.
    """
    models = params.paths.models
    published = models / "published"
    if not (published / "weights.json").exists():
        status = published / "publication.json"
        why = io.read_json(status)["status"] if status.exists() else "the publish stage has not run"
        raise LeadcalError(f"{published / 'weights.json'}: no published points table to export ({why}); "
                           f"see {status} for the reasons; the candidate is in {models / 'weights.json'}")
    table, header = read_weights(published)
    thresholds = io.read_json(published / "thresholds.json") if (published / "thresholds.json").exists() else None
    summary = write_exports(models / "exports", table, header, params.signals.numeric_bins, thresholds,
                            params.exports.mapping)
    for tool, signals in summary["unmapped"].items():
        if signals:
            log.info("exports: %s: %d of %d signals keep leadcal's names (no params exports.mapping.%s for them): %s",
                     tool, len(signals), summary["rows"], tool, ", ".join(signals[:5]) + (" ..." if len(signals) > 5 else ""))
    log.info("exports: %d signals with points written to %s (%d without points left out)",
             summary["rows"], summary["folder"], summary["left_out_zero_points"])
    return summary
