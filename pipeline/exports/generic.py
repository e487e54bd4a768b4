"""The generic export (models/exports/weights.{csv,json}): one row per signal with points, for any tool.

`apply_export` re-applies the generic export, and nothing else, to leads' signals: the
round-trip test checks that it gives every lead exactly the points of
`pipeline.core.scorecard.score_features`, so the generic file holds all a CRM needs. The CSV is
written with `pipeline.spreadsheet.write_csv` (formula-like cells get a quote in front) and
`read_export_rows` takes the quote off again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import io, spreadsheet
from pipeline.core.signals import UNKNOWN
from pipeline.errors import LeadcalError
from pipeline.exports.criteria import GENERIC_COLUMNS, GROUP_ORDER, LIST_SEPARATOR, as_cell, is_missing, mql_figures

FORMAT = "leadcal-points-export"
FORMAT_VERSION = 1


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
        frame[column] = [as_cell(v) for v in frame[column]]
    return frame


def read_export_rows(path: str | Path) -> list[dict[str, Any]]:
    """Generic export rows from models/exports/weights.json or weights.csv."""
    path = Path(path)
    if path.suffix == ".json":
        return list(io.read_json(path)["rows"])
    frame = spreadsheet.read_csv(path)  # a cell escaped against spreadsheet formulas ('=x) reads back as written (=x)
    return [{k: (None if is_missing(v) else v) for k, v in r.items()} for r in frame.to_dict(orient="records")]


def apply_export(
    export_rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
    leads_signals: pd.DataFrame,
    ages: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """fit_points, engagement_points and total_points per lead from the GENERIC export.

    `leads_signals`: leads x signals (columns named like the export's `signal`), 0/1, or
    already decayed values for the activities (pipeline.core.signals.decay_matrix). `ages`:
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
    leads_signals = with_other_values(rows, leads_signals)
    missing = [s for s in rows["signal"] if s not in leads_signals.columns]
    if missing:
        raise LeadcalError(f"apply_export: the leads have no column for signals {missing}")
    values = leads_signals[list(rows["signal"])].to_numpy(dtype=float).copy()
    if ages is not None:
        for j, (signal, half_life) in enumerate(zip(rows["signal"], rows["decay_half_life_days"])):
            if is_missing(half_life):
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
            if not is_missing(cap):
                by_attribute[attribute] = by_attribute[attribute].clip(upper=float(cap))
        total = by_attribute.sum(axis=1).to_numpy()
        group_caps = [c for c in selected["score_group_cap"] if not is_missing(c)]
        if group_caps:
            total = np.minimum(total, float(group_caps[0]))
        scores[f"{group}_points"] = np.round(total).astype(np.int64)
    scores["total_points"] = scores["fit_points"] + scores["engagement_points"]
    return pd.DataFrame(scores, index=leads_signals.index)


def with_other_values(rows: pd.DataFrame, leads_signals: pd.DataFrame) -> pd.DataFrame:
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
