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
from pipeline.contract import TableReport, validate_activities, validate_leads, validate_stages
from pipeline.errors import LeadcalError
from pipeline.params import Params

log = logging.getLogger(__name__)

TABLES = ("leads", "activities", "stages")


def existing_table(folder: Path, name: str) -> Path | None:
    """`name`.parquet or `name`.csv in `folder` (Parquet wins when both exist), or None."""
    for suffix in (".parquet", ".csv"):
        candidate = folder / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    return None


def find_table(folder: Path, name: str) -> Path:
    found = existing_table(folder, name)
    if found is not None:
        return found
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


def read_export(
    folder: Path, params: Params, policy: str, now: pd.Timestamp | None, stages_required: bool = True,
) -> tuple[dict[str, pd.DataFrame], dict[str, TableReport], dict[str, Path | None]]:
    """The three tables of an export folder, validated against the contract.

    Returns (tables, reports, paths). Without `stages_required` a missing stages file gives
    an empty stages table (new leads to score have no funnel history yet).
    """
    fit_attributes = params.signals.fit_attributes
    numeric = [a for a in fit_attributes if a in params.signals.numeric_bins]
    paths: dict[str, Path | None] = {"leads": find_table(folder, "leads"), "activities": find_table(folder, "activities"),
                                     "stages": find_table(folder, "stages") if stages_required else existing_table(folder, "stages")}
    leads, leads_report = validate_leads(read_table(paths["leads"]), str(paths["leads"]), fit_attributes, numeric)
    activities, activities_report = validate_activities(
        read_table(paths["activities"]), str(paths["activities"]), leads["lead_id"], leads["created_at"], policy, now
    )
    if paths["stages"] is None:
        stages = pd.DataFrame({"lead_id": pd.Series(dtype=object), "stage": pd.Series(dtype=object),
                               "entered_at": pd.Series(dtype="datetime64[us]"), "amount": pd.Series(dtype=float)})
        stages_report = TableReport()
    else:
        stages, stages_report = validate_stages(
            read_table(paths["stages"]), str(paths["stages"]), leads["lead_id"], leads["created_at"], policy, now
        )
    tables = {"leads": leads, "activities": activities[["lead_id", "activity", "occurred_at"]], "stages": stages}
    reports = {"leads": leads_report, "activities": activities_report, "stages": stages_report}
    return tables, reports, paths


def extract(params: Params) -> dict[str, object]:
    """Validate the raw tables, write them under paths.extracted, return the report."""
    out, fit_attributes = params.paths.extracted, params.signals.fit_attributes
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    tables, reports, paths = read_export(params.paths.raw, params, params.extract.on_bad_rows, now)
    for name in TABLES:
        log.info("extract: %s: %d rows kept of %d", paths[name], reports[name].rows_written, reports[name].rows_read)

    leads = tables["leads"]
    keep = ["lead_id", "created_at", *[a for a in fit_attributes if a not in ("lead_id", "created_at")]]
    tables["leads"] = leads[keep + [c for c in leads.columns if c not in keep]]
    for name in TABLES:
        io.write_parquet(out / f"{name}.parquet", tables[name])

    timestamps = pd.concat([tables["leads"]["created_at"], tables["activities"]["occurred_at"],
                            tables["stages"]["entered_at"]])
    report = {
        "tables": {name: {"file": str(paths[name]), **vars(reports[name])} for name in TABLES},
        "activities_seen": tables["activities"]["activity"].value_counts().sort_index().to_dict(),
        "date_range": {"first": timestamps.min(), "last": timestamps.max()},
    }
    io.write_json(out / "extract_report.json", report)
    return report
