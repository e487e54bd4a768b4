"""Raw export -> the three canonical tables as Parquet, plus a report of what was dropped.

This is the only stage that reads user files, so it is where bad input is caught:
every problem names the file, the column and example rows (pipeline.contract).
"""

from __future__ import annotations

import io as _io
import logging
from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.contract import validate_activities, validate_leads, validate_stages
from pipeline.errors import LeadcalError
from pipeline.params import Params

log = logging.getLogger(__name__)

TABLES = ("leads", "activities", "stages")


def find_table(folder: Path, name: str) -> Path:
    """`name`.parquet or `name`.csv in `folder` (Parquet wins when both exist)."""
    for suffix in (".parquet", ".csv"):
        candidate = folder / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    raise LeadcalError(f"{folder}: no {name}.csv or {name}.parquet found (expected one file per table: {', '.join(TABLES)})")


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (as text: types are checked by the contract) or a Parquet file.

    CSV rows keep their position in the file as index (blank lines included), so
    error messages can name the line; only empty cells count as missing, so a
    value such as 'NA' (Namibia) or 'null' stays a value.
    """
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path, engine="pyarrow")
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise LeadcalError(f"{path}: cannot read as Parquet: {exc}") from exc
    raw = path.read_bytes()
    if not raw.strip():
        raise LeadcalError(f"{path}: the file is empty; expected a header line and rows")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise LeadcalError(
            f"{path}: line {line}: not UTF-8 text (byte {raw[exc.start:exc.start + 1]!r} at offset {exc.start}); "
            "re-export the file as UTF-8"
        ) from exc
    try:
        frame = pd.read_csv(
            _io.StringIO(text), dtype="string", keep_default_na=False, na_values=[""],
            skip_blank_lines=False, engine="c",
        )
    except pd.errors.ParserError as exc:
        raise LeadcalError(f"{path}: cannot parse as CSV: {exc}") from exc
    frame = frame.dropna(how="all")  # blank lines: dropped, but the index still counts them
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if len(frame.columns) == 1:
        header = str(frame.columns[0])
        for name, delimiter in (("semicolons", ";"), ("tabs", "\t"), ("pipes", "|")):
            if delimiter in header:
                raise LeadcalError(
                    f"{path}: the header is one column {header[:60]!r}: the file looks separated by {name}; "
                    "export it comma-separated (CSV with ',')"
                )
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:
        raise LeadcalError(f"{path}: column(s) {repeated} appear more than once (names are compared ignoring case)")
    return frame


def extract(params: Params) -> dict[str, object]:
    """Validate the raw tables, write them under paths.extracted, return the report."""
    raw, out = params.paths.raw, params.paths.extracted
    fit_attributes = params.signals.fit_attributes
    numeric = [a for a in fit_attributes if a in params.signals.numeric_bins]

    leads_path = find_table(raw, "leads")
    leads, leads_report = validate_leads(read_table(leads_path), str(leads_path), fit_attributes, numeric)
    log.info("extract: %s: %d leads", leads_path, len(leads))

    activities_path = find_table(raw, "activities")
    policy, now = params.extract.on_bad_rows, pd.Timestamp.now(tz="UTC").tz_localize(None)
    activities, activities_report = validate_activities(
        read_table(activities_path), str(activities_path), leads["lead_id"], leads["created_at"], policy, now
    )
    log.info("extract: %s: %d events kept of %d", activities_path, len(activities), activities_report.rows_read)

    stages_path = find_table(raw, "stages")
    stages, stages_report = validate_stages(
        read_table(stages_path), str(stages_path), leads["lead_id"], leads["created_at"], policy, now
    )
    log.info("extract: %s: %d stage rows kept of %d", stages_path, len(stages), stages_report.rows_read)

    keep = ["lead_id", "created_at", *[a for a in fit_attributes if a not in ("lead_id", "created_at")]]
    extras = [c for c in leads.columns if c not in keep]
    leads = leads[keep + extras]
    io.write_parquet(out / "leads.parquet", leads)
    io.write_parquet(out / "activities.parquet", activities[["lead_id", "activity", "occurred_at"]])
    io.write_parquet(out / "stages.parquet", stages)

    timestamps = pd.concat([leads["created_at"], activities["occurred_at"], stages["entered_at"]])
    report = {
        "tables": {
            "leads": {"file": str(leads_path), **vars(leads_report)},
            "activities": {"file": str(activities_path), **vars(activities_report)},
            "stages": {"file": str(stages_path), **vars(stages_report)},
        },
        "activities_seen": activities["activity"].value_counts().sort_index().to_dict(),
        "date_range": {"first": timestamps.min(), "last": timestamps.max()},
    }
    io.write_json(out / "extract_report.json", report)
    return report
