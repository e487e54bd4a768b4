"""Raw export -> the three canonical tables as Parquet, plus a report of what was dropped.

This is the only stage that reads user files, so it is where bad input is caught:
every problem names the file, the column and example rows (pipeline.contract).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pipeline import io, sources
from pipeline.contract import KNOWN_ACTIVITIES, TableReport, validate_activities, validate_leads, validate_stages
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.sources import TABLES, existing_table, find_table, read_table

log = logging.getLogger(__name__)

def validate_tables(
    raw: dict[str, pd.DataFrame], origins: dict[str, str], params: Params, policy: str, now: pd.Timestamp | None,
) -> tuple[dict[str, pd.DataFrame], dict[str, TableReport]]:
    """Raw tables (contract column names, values still text) -> validated canonical tables.

    A missing stages table gives an empty one (new leads to score have no funnel history).
    """
    fit_attributes = params.signals.fit_attributes
    numeric = [a for a in fit_attributes if a in params.signals.numeric_bins]
    leads, leads_report = validate_leads(raw["leads"], origins["leads"], fit_attributes, numeric)
    activities, activities_report = validate_activities(
        raw["activities"], origins["activities"], leads["lead_id"], leads["created_at"], policy, now
    )
    if raw.get("stages") is None:
        stages = pd.DataFrame({"lead_id": pd.Series(dtype=object), "stage": pd.Series(dtype=object),
                               "entered_at": pd.Series(dtype="datetime64[us]"), "amount": pd.Series(dtype=float)})
        stages_report = TableReport()
    else:
        stages, stages_report = validate_stages(
            raw["stages"], origins["stages"], leads["lead_id"], leads["created_at"], policy, now
        )
    tables = {"leads": leads, "activities": activities[["lead_id", "activity", "occurred_at"]], "stages": stages}
    reports = {"leads": leads_report, "activities": activities_report, "stages": stages_report}
    return tables, reports


def read_export(
    folder: Path, params: Params, policy: str, now: pd.Timestamp | None, stages_required: bool = True,
) -> tuple[dict[str, pd.DataFrame], dict[str, TableReport], dict[str, Path | None]]:
    """The three tables of an export folder in the contract's own shape, validated.

    Returns (tables, reports, paths). Without `stages_required` a missing stages file gives
    an empty stages table (new leads to score have no funnel history yet).
    """
    paths: dict[str, Path | None] = {"leads": find_table(folder, "leads"), "activities": find_table(folder, "activities"),
                                     "stages": find_table(folder, "stages") if stages_required else existing_table(folder, "stages")}
    raw = {name: None if path is None else read_table(path) for name, path in paths.items()}
    tables, reports = validate_tables(raw, {name: str(path) for name, path in paths.items()}, params, policy, now)
    return tables, reports, paths


def read_source(params: Params, policy: str, now: pd.Timestamp | None
                ) -> tuple[dict[str, pd.DataFrame], dict[str, TableReport], dict[str, str], dict[str, object]]:
    """The tables as params `source:` maps them (CRM export, event-log folder, wide sheet, SQL), validated."""
    if params.source.leads is None:
        tables, reports, paths = read_export(params.paths.raw, params, policy, now)
        return tables, reports, {name: str(path) for name, path in paths.items()}, {}
    raw, origins, normalisation = sources.load(params.source, params.paths.raw)
    tables, reports = validate_tables(raw, origins, params, policy, now)
    return tables, reports, origins, normalisation


def extract(params: Params) -> dict[str, object]:
    """Read the source, validate it, write the canonical tables under paths.extracted, return the report."""
    out, fit_attributes = params.paths.extracted, params.signals.fit_attributes
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    tables, reports, origins, normalisation = read_source(params, params.extract.on_bad_rows, now)
    for name in TABLES:
        log.info("extract: %s: %d rows kept of %d", origins[name], reports[name].rows_written, reports[name].rows_read)

    leads = tables["leads"]
    keep = ["lead_id", "created_at", *[a for a in fit_attributes if a not in ("lead_id", "created_at")]]
    tables["leads"] = leads[keep + [c for c in leads.columns if c not in keep]]
    for name in TABLES:
        io.write_parquet(out / f"{name}.parquet", tables[name])

    timestamps = pd.concat([tables["leads"]["created_at"], tables["activities"]["occurred_at"],
                            tables["stages"]["entered_at"]])
    seen = tables["activities"]["activity"].value_counts().sort_index()
    unknown = {name: int(count) for name, count in seen.items() if name not in KNOWN_ACTIVITIES}
    if unknown:
        log.info("extract: %d activity name(s) outside the usual vocabulary (scored anyway; map spellings in "
                 "source.activities.values if needed): %s", len(unknown), ", ".join(list(unknown)[:8]))
    report = {
        "tables": {name: {"file": origins[name], **vars(reports[name])} for name in TABLES},
        "activities_seen": seen.to_dict(),
        "unknown_activities": unknown,
        "date_range": {"first": timestamps.min(), "last": timestamps.max()},
    }
    if normalisation:
        report["normalisation"] = normalisation
    io.write_json(out / "extract_report.json", report)
    return report
