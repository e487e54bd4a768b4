"""The exports stage: the published points table in the formats a CRM or marketing-automation tool takes in.

Every export is built by a pure function from the points table (models/published/weights.json),
its header (half-life, caps, PDO) and the numeric bands of params `signals.numeric_bins`; this
module only reads the published table and writes the files:

- `criteria.generic_rows`: one row per signal with points, in plain words and as structured
  (attribute, operator, value) criteria, which every other module reads;
- `generic`: models/exports/weights.{csv,json};
- `hubspot`: hubspot_score_properties.csv and hubspot_score_settings.json (decay rounded to
  HubSpot's options); `hubspot_api`: the same score as a Lead Scoring API body,
  hubspot_score_configuration.json;
- `salesforce`: Account Engagement (Pardot) scoring rules and profile criteria, salesforce_scoring.csv;
- `mautic`: point actions (engagement), segments (fit) and the point trigger, mautic_point_actions.json.

Signals with 0 points are left out of every export: they change no lead's score. Fit values
seen in fewer than `signals.min_support` training leads never become rules of their own:
the points table scores them like their attribute's reference, and the exports pool them
into one rule per attribute, "any other value" (`is_none_of` the values listed on their own).
`apply_export` re-applies the generic export, and nothing else, to leads' signals: the
round-trip test checks that it gives every lead exactly the points of
`pipeline.core.scorecard.score_features`, so the generic file holds all a CRM needs.
The CSV sheets are written with `pipeline.spreadsheet.write_csv`: a text cell that a
spreadsheet would run as a formula (`=1+2`, starting with = + - @ tab or CR) gets a single
quote in front, and `read_export_rows` takes it off again.
How to import each file: docs/crm-exports.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import io, spreadsheet
from pipeline.artifacts import PUBLICATION, PUBLISHED, THRESHOLDS, WEIGHTS
from pipeline.artifacts.readers import read_scorecard
from pipeline.core.crm_scoring import points_per_third
from pipeline.errors import LeadcalError
from pipeline.exports import hubspot_api
from pipeline.exports.criteria import NO_MAPPING, generic_rows, unmapped_signals
from pipeline.exports.generic import generic_frame, generic_payload
from pipeline.exports.hubspot import HUBSPOT_COLUMNS, hubspot_rows, hubspot_settings
from pipeline.exports.mautic import mautic_export
from pipeline.exports.salesforce import SALESFORCE_COLUMNS, salesforce_rows
from pipeline.params import CrmMapping, Params

log = logging.getLogger(__name__)


def write_exports(
    folder: Path, table: pd.DataFrame, header: Mapping[str, Any], numeric_bins: Mapping[str, list[float]],
    thresholds: Mapping[str, Any] | None = None, mappings: Mapping[str, CrmMapping] | None = None,
) -> dict[str, Any]:
    """Every export of one points table into `folder`; returns a summary.

    `mappings` (params exports.mapping) puts each tool's own names in its files; the summary lists,
    per tool, the signals left in leadcal's names.

    `thresholds` (the published thresholds.json) gives each file the MQL threshold chosen for its
    tool's own scoring (its "crm" block, pipeline.core.crm_scoring) and the fit x interest cut-offs.
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
    io.write_json(folder / "hubspot_score_configuration.json", hubspot_api.score_configuration(
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
    published = models / PUBLISHED
    if not (published / WEIGHTS).exists():
        status = published / PUBLICATION
        why = io.read_json(status)["status"] if status.exists() else "the publish stage has not run"
        raise LeadcalError(f"{published / WEIGHTS}: no published points table to export ({why}); "
                           f"see {status} for the reasons; the candidate is in {models / WEIGHTS}")
    card = read_scorecard(published)
    thresholds = io.read_json(published / THRESHOLDS) if (published / THRESHOLDS).exists() else None
    summary = write_exports(models / "exports", card.table_, card.header_, params.signals.numeric_bins, thresholds,
                            params.exports.mapping)
    for tool, signals in summary["unmapped"].items():
        if signals:
            log.info("exports: %s: %d of %d signals keep leadcal's names (no params exports.mapping.%s for them): %s",
                     tool, len(signals), summary["rows"], tool, ", ".join(signals[:5]) + (" ..." if len(signals) > 5 else ""))
    log.info("exports: %d signals with points written to %s (%d without points left out)",
             summary["rows"], summary["folder"], summary["left_out_zero_points"])
    return summary
